"""The `close-calls` command: the sandbox server, the whole pipeline, and the benchmarks."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from close_calls_pipeline.core import config


def _sandbox_command(args: argparse.Namespace) -> int:
    from close_calls_pipeline.core.sandbox.server import serve

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

    return run_pipeline(reconcile=args.reconcile, backfill_start=args.backfill_start,
                        sandbox_calls=args.sandbox_calls)


def _report_command(args: argparse.Namespace) -> int:
    from close_calls_pipeline.cli.run import warehouse_path
    from close_calls_pipeline.report import PeriodError, ReportError, write_report

    try:
        report = write_report(
            str(warehouse_path()), args.out, days=args.days, start=args.start, end=args.end
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="close-calls", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sandbox = sub.add_parser("sandbox", help="serve the sandbox Close API on loopback")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8765)
    sandbox.add_argument("--calls", type=int, default=5000, help="calls in the seeded history")
    sandbox.add_argument("--seed", type=int, default=42)
    sandbox.add_argument("--api-key", default=config.SANDBOX_API_KEY)
    sandbox.add_argument("--latency-ms", type=float, default=0.0, help="wait added to every request")
    sandbox.add_argument("--rps", type=float, default=None, help="rate limit per key and endpoint group")
    sandbox.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that fail (5xx or cut body)")
    sandbox.add_argument("--max-skip", type=int, default=250_000)
    sandbox.add_argument("--frozen", action="store_true", help="keep the clock still instead of following wall time")
    sandbox.set_defaults(func=_sandbox_command)

    run = sub.add_parser(
        "run",
        help="run the whole pipeline (sync, then dbt build) through Dagster, in this process",
        description="Sync Close calls into DuckDB, then `dbt build` the analytics marts (the "
        "Dagster job close_calls_pipeline). Against Close when CLOSE_API_KEY is set, otherwise "
        "against the sandbox Close API started on loopback for the run.",
    )
    run.add_argument("--reconcile", action="store_true",
                     help="walk every call by date_created and soft-delete the ones Close no longer has")
    run.add_argument("--backfill-start", metavar="YYYY-MM-DD", default=None,
                     help="where a backfill or reconcile walk starts (default: all history)")
    run.add_argument("--sandbox-calls", type=int, default=None,
                     help="calls in the sandbox's seeded history, only without CLOSE_API_KEY "
                     f"(default: {config.SANDBOX_CALLS})")
    run.set_defaults(func=_run_command)

    report = sub.add_parser(
        "report",
        help="write the call report (one self-contained HTML file) from the analytics marts",
        description="Write the call-analytics report for a period: headline figures against the "
        "previous period of the same length, calls and answer rate per day, dispositions, "
        "outcomes, reps, answer rate by weekday and hour, talk share. One HTML file that opens "
        "from disk with no network. Prints the path it wrote.",
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
        help="the last N days, ending on the last day with calls (default: 30); "
        "not with --from/--to",
    )
    report.add_argument(
        "--from",
        dest="start",
        type=_iso_date,
        default=None,
        metavar="DATE",
        help="first day, YYYY-MM-DD (default: 30 days before --to; without --to, "
        "the period runs to the last day with calls)",
    )
    report.add_argument(
        "--to",
        dest="end",
        type=_iso_date,
        default=None,
        metavar="DATE",
        help="last day, YYYY-MM-DD, included (default: the last day with calls)",
    )
    report.set_defaults(func=_report_command)

    # `bench` has its own options (close_calls_pipeline.bench.sync); listed here for --help only.
    sub.add_parser("bench", help="benchmark the sync against the sandbox (prints figures)")
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
