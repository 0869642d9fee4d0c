"""The `close-calls` command: `run` the whole pipeline (sync, dbt build, report) in a project
folder, open the Dagster `ui` on it, build the dbt `docs` site, write the call `report`, serve the
`sandbox` Close API, `bench` the sync, `start-over` (move a warehouse aside), `erase` the
personal data of named calls and `maintain` a lake (compact its files, expire old snapshots).

`run`, `erase`, `start-over`, `ui`, `docs` and `report` work in a project folder: the current directory, or
`--project-dir`. They write there (`data/`, `.dagster_home/`, `.close_calls/`) and nowhere else.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from close_calls_pipeline.core import config, files
from close_calls_pipeline.core.personal_data import CHOICES, HASH_KEY_ENV
from close_calls_pipeline.sandbox.clock import HISTORY_DAYS


def _run_command(args: argparse.Namespace) -> int:
    from close_calls_pipeline.cli.run import run_pipeline

    return run_pipeline(
        project_dir=args.project_dir,
        reconcile=args.reconcile,
        full_refresh=args.full_refresh,
        backfill_start=args.backfill_start,
        sandbox_calls=args.sandbox_calls,
        verbose=args.verbose,
        allow_mass_delete=args.allow_mass_delete,
        max_reconcile_delete_share=args.max_reconcile_delete_share,
        personal_data={name: getattr(args, name) for name in CHOICES if getattr(args, name)},
        file_mode=args.file_mode,
        lake_catalog=args.lake_catalog,
        lake_data_path=args.lake_data_path,
    )


def _erase_command(args: argparse.Namespace) -> int:
    from close_calls_pipeline.cli.erase import erase

    return erase(
        args.project_dir,
        call_ids=args.call_id,
        lead_ids=args.lead_id,
        phones=args.phone,
        out=sys.stdout,
    )


def _start_over_command(args: argparse.Namespace) -> int:
    import shlex

    from close_calls_pipeline.cli.project import settings_of
    from close_calls_pipeline.core import locks
    from close_calls_pipeline.core.start_over import move_warehouse_aside
    from close_calls_pipeline.report import default_report_path

    settings = settings_of(args.project_dir)
    if settings.lake is not None:
        print(
            f"close-calls start-over: error: the warehouse is {settings.lake.describe()}, which "
            f"is not moved aside: to start a new one, set {config.CLOSE_CALLS_LAKE_CATALOG_ENV} "
            f"and {config.CLOSE_CALLS_LAKE_DATA_PATH_ENV} (lake_catalog, lake_data_path) to a "
            "new catalog and data path",
            file=sys.stderr,
        )
        return 1
    path = settings.duckdb_path
    try:
        moves = move_warehouse_aside(path, also=[default_report_path(path)])
    except (locks.RunInProgressError, FileExistsError) as error:
        print(f"close-calls start-over: error: {error}", file=sys.stderr)
        return 1
    if not moves:
        print(f"Nothing to move: there is no warehouse at {path}.")
        return 0
    print("Moved aside (nothing was deleted):")
    print("\n".join(f"  {source} -> {target}" for source, target in moves))
    print(f"The next `close-calls run` starts a new, empty warehouse at {path}.")
    restore = " && ".join(
        f"mv {shlex.quote(str(target))} {shlex.quote(str(source))}" for source, target in moves
    )
    print(f"To restore it (no run in progress, and after moving any new warehouse away): {restore}")
    return 0


def _maintain_command(args: argparse.Namespace) -> int:
    from close_calls_pipeline.cli.maintain import maintain_lake

    return maintain_lake(
        args.project_dir,
        lake_catalog=args.lake_catalog,
        lake_data_path=args.lake_data_path,
        retention_days=args.retention_days,
        file_grace_hours=args.file_grace_hours,
        out=sys.stdout,
    )


def _ui_command(args: argparse.Namespace) -> int:
    from close_calls_pipeline.cli.ui import open_ui

    return open_ui(args.project_dir, port=args.port)


def _docs_command(args: argparse.Namespace) -> int:
    from close_calls_pipeline.cli.docs import dbt_docs

    return dbt_docs(args.project_dir, port=args.port, serve=not args.no_serve)


def _report_command(args: argparse.Namespace) -> int:
    from close_calls_pipeline.cli.project import settings_of
    from close_calls_pipeline.report import PeriodError, ReportError, write_report

    settings = settings_of(args.project_dir)
    try:
        report = write_report(
            str(settings.duckdb_path),
            args.out,
            days=args.days,
            start=args.start,
            end=args.end,
            timezone=settings.reporting_timezone,
            file_mode=settings.file_mode,
            lake=settings.lake,
        )
    except (PeriodError, ReportError) as error:
        print(f"close-calls report: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, PeriodError) else 1
    print(report.path)
    return 0


def _sandbox_command(args: argparse.Namespace) -> int:
    from close_calls_pipeline.sandbox.server import serve

    serve(
        host=args.host,
        port=args.port,
        calls=args.calls,
        seed=args.seed,
        api_key=args.api_key,
        latency_ms=args.latency_ms,
        rps=args.rps,
        fault_rate=args.fault_rate,
        max_skip=args.max_skip,
        live=not args.frozen,
    )
    return 0


# --- option types: a bad value is refused by argparse, naming the option once ----------------------


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def _backfill_start(text: str) -> str:
    try:
        config.parse_backfill_start(text, name=None)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _number(kind: type, text: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
    if value != value:  # NaN
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(float, text)
    if value < 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more (and finite), got {text}")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def share(text: str) -> float:
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def port(text: str) -> int:
    value = _number(int, text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 1 to 65535, got {text}")
    return value


def project_dir(text: str) -> Path:
    path = Path(text).expanduser().resolve()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {text}")
    return path


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless it has none or its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if action.default in (None, False) or "default" in help_text:
            return help_text
        return super()._get_help_string(action)


SANDBOX_SIZE = (
    f"Its size: --calls calls spread over the last {HISTORY_DAYS} days; with the live clock (the default) "
    "that window slides every hour (new calls, edits, deletes; a call leaving it is deleted), "
    "so it serves the same number of calls whatever the date. --frozen serves a fixed history."
)


def _add_project_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project-dir",
        type=project_dir,
        default=".",  # argparse applies the type to a string default: the current directory
        metavar="DIR",
        help="the project folder: its data/, .dagster_home/ and .close_calls/ (dbt's files), "
        "and its own defs.yaml if it is a dg project with a CloseCallsComponent, else the "
        "packaged one (default: the current directory)",
    )


def _add_run(command) -> None:
    run = command(
        "run",
        "run the whole pipeline (sync, dbt build, report) through Dagster, in this process",
        "Sync Close calls into DuckDB, then `dbt build` the analytics marts and write the call "
        "report (the Dagster job close_calls_pipeline, with the project's defs.yaml). Against "
        "Close when CLOSE_API_KEY is set (into data/close_calls.duckdb), otherwise against the "
        "sandbox Close API started on loopback for the run (into data/sandbox.duckdb). A "
        "warehouse belongs to the organization of its first run: a run whose API answers for "
        "another one fails before writing (see `close-calls start-over`). Runs are recorded in "
        "the project's Dagster instance "
        "(.dagster_home/, or DAGSTER_HOME), so `close-calls ui` shows them.",
    )
    _add_project_dir(run)
    run.add_argument(
        "--reconcile",
        action="store_true",
        help="walk every call by date_created, repair drift and soft-delete the "
        "calls Close no longer has",
    )
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild every dbt model from all calls (default: only what changed since the "
        "last build, or a full rebuild when one is needed: docs/incremental.md)",
    )
    run.add_argument(
        "--backfill-start",
        metavar="YYYY-MM-DD",
        type=_backfill_start,
        default=None,
        help="where the first walk (or a --reconcile) starts; not in the future; ignored, "
        "with a warning, once the warehouse holds calls (default: all history)",
    )
    run.add_argument(
        "--sandbox-calls",
        type=positive_int,
        default=None,
        metavar="N",
        help="calls in the sandbox's window, only without CLOSE_API_KEY "
        f"(default: {config.SANDBOX_CALLS}; `close-calls sandbox --help` says what it serves)",
    )
    run.add_argument(
        "--max-reconcile-delete-share",
        type=share,
        default=None,
        metavar="SHARE",
        help="a reconcile that would soft-delete more than this share of the live calls stops "
        f"before deleting anything (default: {config.DEFAULT_MAX_RECONCILE_DELETE_SHARE}, "
        "i.e. 20%%, or the component's max_reconcile_delete_share)",
    )
    run.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="let this run's reconcile delete more than that share: only once you have checked "
        "that the calls really are gone from Close (not a wrong key, organization or API fault)",
    )
    run.add_argument(
        "--verbose",
        action="store_true",
        help="also print Dagster's DEBUG log lines (default: progress lines only)",
    )
    for name, choices in CHOICES.items():
        run.add_argument(
            "--" + name.replace("_", "-"),
            choices=choices,
            default=None,
            help=f"personal_data.{name} for this run (default: defs.yaml's, else keep)"
            + (f"; hash is keyed by {HASH_KEY_ENV}" if "hash" in choices else ""),
        )
    run.add_argument(
        "--file-mode",
        choices=tuple(files.MODES),
        default=None,
        help="private: files owner-only; group: shared with your group "
        "(default: defs.yaml's, else private)",
    )
    run.add_argument(
        "--lake-catalog",
        default=None,
        metavar="CATALOG",
        help="write the warehouse into this DuckLake catalog, as ATTACH 'ducklake:...' takes it "
        "(e.g. sqlite:/srv/calls/catalog.sqlite), its data path given too (docs/lake.md) "
        f"(default: the component's lake_catalog, {config.CLOSE_CALLS_LAKE_CATALOG_ENV})",
    )
    run.add_argument(
        "--lake-data-path",
        default=None,
        metavar="PATH",
        help="the DuckLake's data files: a folder or s3://bucket/prefix "
        f"(default: the component's lake_data_path, {config.CLOSE_CALLS_LAKE_DATA_PATH_ENV})",
    )
    run.set_defaults(func=_run_command)


def _add_erase(command) -> None:
    erase = command(
        "erase",
        "remove the personal data of named calls from the warehouse (a data-subject request)",
        "Remove the phone numbers, notes, recording URLs, summaries and transcript text (also "
        "inside _raw and quarantined payloads) of the calls named by id, lead id or phone "
        "number, keeping ids, dates, disposition, duration and cost. Holds the warehouse's run "
        "lock, then publishes the read-only copy again. Prints counts, never values. "
        f"Hashed numbers are found with {HASH_KEY_ENV}.",
    )
    _add_project_dir(erase)
    erase.add_argument("--call-id", action="append", default=[], help="a call id (repeatable)")
    erase.add_argument("--lead-id", action="append", default=[], help="a lead id (repeatable)")
    erase.add_argument(
        "--phone", action="append", default=[], help="a phone number, E.164 (repeatable)"
    )
    erase.set_defaults(func=_erase_command)


def _add_start_over(command) -> None:
    start_over = command(
        "start-over",
        "move the warehouse aside (never deleted) so that the next run starts a new one",
        "A warehouse belongs to the Close organization of its first run; a run whose API key "
        "answers for another organization (or a run without a key, on a Close warehouse) "
        "refuses to write it. To start again with another organization, move the warehouse "
        "that `close-calls run` would use (CLOSE_CALLS_DUCKDB, else data/close_calls.duckdb "
        "with CLOSE_API_KEY set, data/sandbox.duckdb without) aside: it, its WAL, its "
        "read-only copy and its report are renamed to <name>.<UTC timestamp>.bak.<ext> in the "
        "same folder. Refused while a run is writing the warehouse. Prints what it moved and "
        "how to restore it.",
    )
    _add_project_dir(start_over)
    start_over.set_defaults(func=_start_over_command)


def _add_maintain(command) -> None:
    maintain = command(
        "maintain",
        "maintain the lake: flush inlined rows, compact small files, expire old snapshots",
        "For a warehouse kept as a DuckLake (lake_catalog and lake_data_path): write the rows "
        "DuckLake inlined into its catalog to Parquet, rewrite files with deleted rows and merge "
        "small ones, expire the snapshots older than the retention (time travel reaches that "
        "far back), and delete the files no snapshot needs once they are older than the grace "
        "period. Prints the files, bytes and snapshots before and after. The Dagster job "
        "close_calls_lake_maintenance does the same daily. Credentials come from the "
        "environment (PGPASSWORD, AWS_*: docs/lake.md).",
    )
    _add_project_dir(maintain)
    maintain.add_argument(
        "--lake-catalog",
        default=None,
        metavar="CATALOG",
        help="the lake's catalog as DuckLake's ATTACH takes it after `ducklake:` "
        "(default: the project's lake_catalog)",
    )
    maintain.add_argument(
        "--lake-data-path",
        default=None,
        metavar="PATH",
        help="the lake's data folder or s3:// prefix (default: the project's lake_data_path)",
    )
    maintain.add_argument(
        "--retention-days",
        type=non_negative_float,
        default=None,
        metavar="DAYS",
        help="keep this many days of snapshots (default: the project's "
        "lake_snapshot_retention_days)",
    )
    maintain.add_argument(
        "--file-grace-hours",
        type=non_negative_float,
        default=config.DEFAULT_LAKE_FILE_GRACE_HOURS,
        metavar="HOURS",
        help="delete a file no snapshot needs only once it has waited this long (a reader "
        "mid-query, or a run's uncommitted batch, may still use it)",
    )
    maintain.set_defaults(func=_maintain_command)


def _add_ui(command) -> None:
    ui = command(
        "ui",
        "open the Dagster UI (dg dev) on the project, with its Dagster instance",
        "Start `dg dev` in the project folder with DAGSTER_HOME set to the project's instance "
        "(.dagster_home/ unless DAGSTER_HOME is set), so the UI shows the runs `close-calls run` "
        "made, and the schedules run there. Ctrl-C or SIGTERM stops it and everything it "
        "started. Runs launched with `dg launch` are recorded there when DAGSTER_HOME names the "
        "same folder: DAGSTER_HOME=\"$PWD/.dagster_home\" dg launch --assets '*'.",
    )
    _add_project_dir(ui)
    ui.add_argument("--port", type=port, default=3000, help="port of the UI")
    ui.set_defaults(func=_ui_command)


def _add_docs(command) -> None:
    docs = command(
        "docs",
        "build the dbt docs site (the column catalog of every model) and serve it",
        "Run `dbt docs generate --static` on the bundled dbt project against the project's "
        "warehouse, then `dbt docs serve`. The site is written under the project's "
        ".close_calls/dbt/docs/; its static_index.html opens from disk.",
    )
    _add_project_dir(docs)
    docs.add_argument("--port", type=port, default=8080, help="port of the docs site")
    docs.add_argument(
        "--no-serve",
        action="store_true",
        help="only build the site (prints the path of its static_index.html), do not serve it",
    )
    docs.set_defaults(func=_docs_command)


def _add_report(command) -> None:
    report = command(
        "report",
        "write the call report (one self-contained HTML file) from the analytics marts",
        "Write the call-analytics report for a period: headline figures against the "
        "previous period of the same length, calls and answer rate per day, dispositions, "
        "outcomes, reps, answer rate by weekday and hour, talk share. One HTML file that opens "
        "from disk with no network. Prints the path it wrote. A period without calls is refused.",
    )
    _add_project_dir(report)
    report.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="PATH",
        help="where to write the HTML file (default: call_report.html in the folder of the "
        f"DuckDB file, {config.DEFAULT_DUCKDB_RELATIVE_PATH.parent}/ of the project unless "
        "CLOSE_CALLS_DUCKDB says otherwise; sandbox_call_report.html for the sandbox's warehouse)",
    )
    report.add_argument(
        "--days",
        type=positive_int,
        default=None,
        metavar="N",
        help="N whole days ending on the last complete day: yesterday in the reporting time zone, "
        "or the last day with calls if earlier (default: 30); "
        "not with --from/--to",
    )
    report.add_argument(
        "--from",
        dest="start",
        type=_iso_date,
        default=None,
        metavar="DATE",
        help="first day, YYYY-MM-DD (default: 30 days before --to; without --to, "
        "the period runs to the last complete day)",
    )
    report.add_argument(
        "--to",
        dest="end",
        type=_iso_date,
        default=None,
        metavar="DATE",
        help="last day, YYYY-MM-DD, included (default: the last complete day)",
    )
    report.set_defaults(func=_report_command)


def _add_sandbox(command) -> None:
    sandbox = command(
        "sandbox",
        "serve the sandbox Close API on loopback until Ctrl-C",
        "Serve a deterministic fake Close organization over HTTP on loopback: the endpoints the "
        "connector uses, with rate limits, faults and latency on request. " + SANDBOX_SIZE,
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sandbox.add_argument("--port", type=port, default=config.SANDBOX_PORT, help="port to listen on")
    sandbox.add_argument(
        "--calls",
        type=positive_int,
        default=config.SANDBOX_CALLS,
        help=f"calls in the {HISTORY_DAYS}-day window (see above)",
    )
    sandbox.add_argument(
        "--seed",
        type=int,
        default=config.SANDBOX_SEED,
        help="seed of the generated data (same seed and clock: same data)",
    )
    sandbox.add_argument(
        "--api-key",
        default=config.SANDBOX_API_KEY,
        help="the key clients must send (HTTP Basic user, or Bearer token)",
    )
    sandbox.add_argument(
        "--latency-ms",
        type=non_negative_float,
        default=0.0,
        help="wait added to every request, in milliseconds",
    )
    sandbox.add_argument(
        "--rps",
        type=positive_float,
        default=None,
        help="rate limit per key and endpoint group, requests per second, "
        "answered with 429 beyond it (default: no limit)",
    )
    sandbox.add_argument(
        "--fault-rate",
        type=share,
        default=0.0,
        help="share of requests that fail (a 5xx or a body cut mid-way), 0 to 1",
    )
    sandbox.add_argument(
        "--max-skip",
        type=positive_int,
        default=config.CLOSE_MAX_SKIP,
        help="largest _skip the call list accepts (Close's cap), 400 beyond it",
    )
    sandbox.add_argument(
        "--frozen", action="store_true", help="keep the clock still instead of following wall time"
    )
    sandbox.set_defaults(func=_sandbox_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="close-calls", description=__doc__, formatter_class=_HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help_text, description=description, formatter_class=_HelpFormatter
        )

    for add in (
        _add_run,
        _add_erase,
        _add_start_over,
        _add_maintain,
        _add_ui,
        _add_docs,
        _add_report,
        _add_sandbox,
    ):
        add(command)
    # `bench` has its own options (close_calls_pipeline.bench.sync); listed here for --help only.
    sub.add_parser(
        "bench",
        help="benchmark the sync against the sandbox (prints figures; "
        "`close-calls bench --help` for its options)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from close_calls_pipeline.bench.sync import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
