"""The `close-calls` command: the sandbox server, the whole pipeline, and the benchmarks."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from close_calls_pipeline.core import config
from close_calls_pipeline.sandbox.clock import HISTORY_DAYS


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


def _run_command(args: argparse.Namespace) -> int:
    from close_calls_pipeline.cli.run import run_pipeline

    return run_pipeline(
        reconcile=args.reconcile,
        full_refresh=args.full_refresh,
        backfill_start=args.backfill_start,
        sandbox_calls=args.sandbox_calls,
        verbose=args.verbose,
    )


def _ui_command(args: argparse.Namespace) -> int:
    from close_calls_pipeline.cli.tools import open_ui

    return open_ui(port=args.port)


def _docs_command(args: argparse.Namespace) -> int:
    from close_calls_pipeline.cli.tools import dbt_docs

    return dbt_docs(port=args.port, serve=not args.no_serve)


def _report_command(args: argparse.Namespace) -> int:
    from close_calls_pipeline.cli.run import load_component
    from close_calls_pipeline.report import PeriodError, ReportError, write_report

    settings = load_component().settings(config.REPO_ROOT)
    try:
        report = write_report(
            str(settings.duckdb_path),
            args.out,
            days=args.days,
            start=args.start,
            end=args.end,
            timezone=settings.reporting_timezone,
        )
    except (PeriodError, ReportError) as error:
        print(f"close-calls report: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, PeriodError) else 1
    print(report.path)
    return 0


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="close-calls", description=__doc__, formatter_class=_HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help_text, description=description, formatter_class=_HelpFormatter
        )

    run = command(
        "run",
        "run the whole pipeline (sync, dbt build, report) through Dagster, in this process",
        "Sync Close calls into DuckDB, then `dbt build` the analytics marts and write the call "
        "report (the Dagster job close_calls_pipeline, with this project's defs.yaml). Against "
        "Close when CLOSE_API_KEY is set, otherwise against the sandbox Close API started on "
        "loopback for the run. Runs are recorded in the project's Dagster instance "
        "(.dagster_home/, or DAGSTER_HOME), so `close-calls ui` shows them.",
    )
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
        default=None,
        help="where the first walk starts; not in the future (default: all history)",
    )
    run.add_argument(
        "--sandbox-calls",
        type=int,
        default=None,
        metavar="N",
        help="calls in the sandbox's seeded history, only without CLOSE_API_KEY "
        f"(default: {config.SANDBOX_CALLS}). " + SANDBOX_SIZE,
    )
    run.add_argument(
        "--verbose",
        action="store_true",
        help="also print Dagster's DEBUG log lines (default: progress lines only)",
    )
    run.set_defaults(func=_run_command)

    ui = command(
        "ui",
        "open the Dagster UI on this project (dg dev) with the project's Dagster instance",
        "Start `dg dev` from the repo root with DAGSTER_HOME set to the project's instance "
        "(.dagster_home/ unless DAGSTER_HOME is set), so the UI shows the runs `close-calls run` "
        "made, and the schedules run there.",
    )
    ui.add_argument("--port", type=int, default=3000, help="port of the UI")
    ui.set_defaults(func=_ui_command)

    docs = command(
        "docs",
        "build the dbt docs site (the column catalog of every model) and serve it",
        "Run `dbt docs generate` on the bundled dbt project against the warehouse, then `dbt "
        "docs serve`. Works from any folder.",
    )
    docs.add_argument("--port", type=int, default=8080, help="port of the docs site")
    docs.add_argument(
        "--no-serve",
        action="store_true",
        help="only build the site (dbt_project/target/index.html), do not serve it",
    )
    docs.set_defaults(func=_docs_command)

    sandbox = command(
        "sandbox",
        "serve the sandbox Close API on loopback until Ctrl-C",
        "Serve a deterministic fake Close organization over HTTP on loopback: the endpoints the "
        "connector uses, with rate limits, faults and latency on request. " + SANDBOX_SIZE,
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sandbox.add_argument("--port", type=int, default=config.SANDBOX_PORT, help="port to listen on")
    sandbox.add_argument(
        "--calls",
        type=int,
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
        "--latency-ms", type=float, default=0.0, help="wait added to every request, in milliseconds"
    )
    sandbox.add_argument(
        "--rps",
        type=float,
        default=None,
        help="rate limit per key and endpoint group, requests per second, "
        "answered with 429 beyond it (default: no limit)",
    )
    sandbox.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="share of requests that fail (a 5xx or a body cut mid-way)",
    )
    sandbox.add_argument(
        "--max-skip",
        type=int,
        default=config.CLOSE_MAX_SKIP,
        help="largest _skip the call list accepts (Close's cap), 400 beyond it",
    )
    sandbox.add_argument(
        "--frozen", action="store_true", help="keep the clock still instead of following wall time"
    )
    sandbox.set_defaults(func=_sandbox_command)

    report = command(
        "report",
        "write the call report (one self-contained HTML file) from the analytics marts",
        "Write the call-analytics report for a period: headline figures against the "
        "previous period of the same length, calls and answer rate per day, dispositions, "
        "outcomes, reps, answer rate by weekday and hour, talk share. One HTML file that opens "
        "from disk with no network. Prints the path it wrote. A period without calls is refused.",
    )
    report.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="PATH",
        help="where to write the HTML file (default: call_report.html in the folder of the "
        f"DuckDB file, {config.DEFAULT_DUCKDB_RELATIVE_PATH.parent}/ unless CLOSE_CALLS_DUCKDB "
        "says otherwise)",
    )
    report.add_argument(
        "--days",
        type=int,
        default=None,
        metavar="N",
        help="N whole days ending on the last complete day: yesterday in the reporting time zone, "
        "or the last day with calls if earlier (default: 30); not with --from/--to",
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
