"""The package's log lines in the Dagster run's event log, which the UI shows.

During a run Dagster records what its own logger (`get_dagster_logger()`) says, and the
loggers the instance names in `python_logs.managed_python_loggers`. The orchestrator-free core
logs to `close_calls_pipeline.*`, which no instance names unless told: a run in the UI would not
say what the sync did, why dbt built what it built, or that nothing changed since the last run.
While a run's warehouse resource is set up, the package's INFO lines (and above) are handed to
Dagster's logger as well. They are the lines `close-calls run` prints: no key, no personal data.
"""

import logging
import threading

from dagster import get_dagster_logger

PACKAGE_LOGGER = "close_calls_pipeline"


class _ToDagster(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            get_dagster_logger().log(record.levelno, record.getMessage())
        except Exception:  # noqa: BLE001 - a log line must never fail a step
            self.handleError(record)


_handler = _ToDagster(logging.INFO)
_guard = threading.Lock()
_users = 0  # resources set up in this process that asked for the lines
_level_before = logging.NOTSET


def start() -> None:
    """Hand the package's INFO lines to Dagster's logger until the matching `stop`."""
    global _users, _level_before
    with _guard:
        _users += 1
        if _users > 1:
            return
        logger = logging.getLogger(PACKAGE_LOGGER)
        _level_before = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(_handler)


def stop() -> None:
    global _users
    with _guard:
        _users -= 1
        if _users > 0:
            return
        logger = logging.getLogger(PACKAGE_LOGGER)
        logger.removeHandler(_handler)
        logger.setLevel(_level_before)
