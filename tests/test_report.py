"""The call report (`close-calls report`), made from real warehouses and opened in a real browser.

* a warehouse synced from the sandbox Close API over loopback HTTP and modelled by the real dbt;
  the report is opened in headless Chromium with every request but the file itself aborted: no
  console error, no request, every chart drawn, headline figures equal to the marts';
* edge cases on the hand-made warehouse of test_dbt_project without its transcripts: no
  transcripts at all, a single rep, calls without (or with a deleted) outcome;
* the period rules (whole days ending yesterday; a period without calls is refused) and the
  CLI's validation;
* the layout: every table fits its box at 1,400 and 1,024 px, and says when it scrolls below.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pytest
from helpers.dbt_fixture import build_warehouse, run_dbt
from helpers.duck import query
from helpers.sandbox_warehouse import sync

from close_calls_pipeline.cli.main import main as cli_main
from close_calls_pipeline.report import (
    EmptyPeriodError,
    PeriodError,
    ReportError,
    default_report_path,
    resolve_period,
    write_report,
)
from close_calls_pipeline.report.data import load
from close_calls_pipeline.report.period import Period
from close_calls_pipeline.report.render import _json_for_script, heat_scale
from close_calls_pipeline.sandbox import SandboxServer, SandboxStore

# Whole pipelines, dbt builds, browsers or subprocesses: the everyday tier skips them.
pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]
SANDBOX_END = datetime(2026, 6, 30, 18, 0, tzinfo=UTC)
SECTIONS = ("daily", "dispositions", "outcomes", "reps", "hours", "talk-share", "talk-share-reps")
CHARTS = ("daily", "dispositions", "hours", "talk-share", "talk-share-reps")
FIGURES = (
    "calls",
    "answered_calls",
    "answer_rate",
    "talk_time_hours",
    "total_cost_usd",
    "cost_per_answered_call_usd",
)


# --- warehouses ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_warehouse(tmp_path_factory) -> Path:
    """3,000 sandbox calls over 180 days, synced over HTTP, then `dbt run` (the marts)."""
    work = tmp_path_factory.mktemp("report_sandbox")
    db_path = work / "close_calls.duckdb"
    server = SandboxServer(SandboxStore(calls=3000, seed=7, start=SANDBOX_END), api_key="k").start()
    try:
        sync(server, db_path)
    finally:
        server.stop()
    result = run_dbt(["run"], db_path, work)
    assert result.success, result.log
    return db_path


@pytest.fixture(scope="module")
def small_warehouse(tmp_path_factory) -> Path:
    """test_dbt_project's hand-made calls, without any transcript (2024-03-01 to 03-03):
    03-01 is Ada's day alone; 03-03 has two calls without an outcome; c2 has a deleted one."""
    work = tmp_path_factory.mktemp("report_small")
    db_path = work / "close_calls.duckdb"
    build_warehouse(db_path)
    con = duckdb.connect(str(db_path))
    try:
        con.execute("delete from close.call_transcript_utterances")
        con.execute(
            "update close.calls set has_recording_transcript = false,"
            " has_voicemail_transcript = false"
        )
    finally:
        con.close()
    result = run_dbt(["run"], db_path, work)
    assert result.success, result.log
    return db_path


def mart_totals(db_path: Path, start: date, end: date) -> tuple[int, int, Decimal]:
    calls, answered, cost = query(
        db_path,
        "select sum(calls), sum(answered_calls), sum(total_cost_usd)"
        " from analytics.call_metrics_daily where call_date between ? and ?",
        [start, end],
    )[0]
    return int(calls or 0), int(answered or 0), Decimal(cost or 0)


def usd(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"


# --- the browser ----------------------------------------------------------------------------------


def _chromium() -> str:
    """Debian's Chromium; installed with apt when missing and running as root, else skip."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium package (as root: "
            "apt-get install chromium); the tests install it themselves only as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, timeout=900
    )
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} does not exist")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


class OpenedPage:
    """A report opened from disk with the network blocked; what happened while it loaded."""

    def __init__(self, browser, path: Path, width: int = 1280):
        self.url = path.resolve().as_uri()
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(
            viewport={"width": width, "height": 900}, device_scale_factor=1, offline=True
        )
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on(
            "console",
            lambda message: (
                self.errors.append(f"console: {message.text}") if message.type == "error" else None
            ),
        )
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.goto(self.url, wait_until="load")

    def _route(self, route) -> None:
        if route.request.url == self.url:
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort("blockedbyclient")

    def other_requests(self) -> list[str]:
        return sorted({url for url in self.requests + self.blocked if url != self.url})

    def charts(self) -> dict[str, dict]:
        """Per chart canvas: its size and how many of its pixels were painted."""
        return self.page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('figure.chart')].map(f => {
                const c = f.querySelector('canvas, svg');
                if (!c || c.tagName.toLowerCase() !== 'canvas') return [f.dataset.chart, null];
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let painted = 0;
                for (let i = 3; i < d.length; i += 4) if (d[i] > 0) painted++;
                return [f.dataset.chart, {width: c.width, height: c.height, painted,
                                          drawn: c.dataset.drawn === 'true'}];
            }))"""
        )

    def figure(self, key: str) -> str:
        return self.page.inner_text(f'[data-figure="{key}"] .kpi-value').strip()

    def close(self) -> None:
        self.context.close()


# --- the report of a synced warehouse, in a browser --------------------------------------------


@pytest.mark.timeout(1200)  # a fresh machine installs Chromium first
def test_report_opens_offline_draws_every_chart_and_shows_the_marts_figures(
    sandbox_warehouse, browser, tmp_path
):
    out = tmp_path / "call_report.html"
    report = write_report(str(sandbox_warehouse), out)

    (last,) = query(sandbox_warehouse, "select max(call_date) from analytics.fct_calls")[0]
    assert report.period == Period(last - timedelta(days=29), last)
    calls, answered, cost = mart_totals(sandbox_warehouse, report.period.start, report.period.end)
    assert calls > 100 and answered > 10

    opened = OpenedPage(browser, out)
    try:
        assert opened.errors == []
        assert opened.other_requests() == []
        charts = opened.charts()
        assert set(charts) == set(CHARTS)
        for name, chart in charts.items():
            assert chart is not None and chart["drawn"], name
            assert chart["width"] > 200 and chart["height"] > 150, (name, chart)
            assert chart["painted"] > chart["width"] * chart["height"] * 0.01, (name, chart)
        assert opened.figure("calls") == f"{calls:,}"
        assert opened.figure("answered_calls") == f"{answered:,}"
        assert opened.figure("total_cost_usd") == usd(cost)
        assert opened.page.locator("table.reps tbody tr").count() == 1 + 8  # the team + 8 reps
        assert "Team (8 reps)" in opened.page.inner_text("table.reps tbody tr.team")
        screenshot = tmp_path / "call_report.png"
        opened.page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 50_000
    finally:
        opened.close()


def test_report_figures_equal_the_marts_and_the_file_stays_small(sandbox_warehouse, tmp_path):
    report = write_report(str(sandbox_warehouse), tmp_path / "r.html", days=90)
    assert report.period.days == 90
    calls, answered, cost = mart_totals(sandbox_warehouse, report.period.start, report.period.end)
    figures = report.figures
    assert set(figures) == set(FIGURES)
    assert (figures["calls"], figures["answered_calls"]) == (calls, answered)
    assert figures["answer_rate"] == pytest.approx(answered / calls)
    assert figures["total_cost_usd"] == pytest.approx(float(cost))
    assert figures["cost_per_answered_call_usd"] == pytest.approx(float(cost) / answered)
    previous = report.previous_period
    assert previous.days == 90 and previous.end == report.period.start - timedelta(days=1)
    prev_calls, _, _ = mart_totals(sandbox_warehouse, previous.start, previous.end)
    assert report.previous_figures["calls"] == prev_calls

    # the rep table's team row is the period's totals; every rep has a row
    html = report.path.read_text()
    (reps,) = query(
        sandbox_warehouse,
        "select count(distinct user_id) from analytics.fct_calls where call_date between ? and ?",
        [report.period.start, report.period.end],
    )[0]
    assert html.count('<tr class="team">') == 1 and f"Team ({reps} reps)" in html
    assert f"| Calls | {calls:,} |" in report.markdown_summary
    # aggregated in SQL: the page is the inlined scripts plus a few kB of figures
    assert report.size_bytes == report.path.stat().st_size < 400_000
    # nothing to fetch: no external element, stylesheet or font
    for fetching in ("<link", " src=", "<img", "<iframe", "@import", "@font-face"):
        assert fetching not in html, fetching


def test_report_talk_share_matches_the_transcripts(sandbox_warehouse, tmp_path):
    """The team's talk share is the mean over transcribed calls of the rep's speaking share,
    recomputed here from the utterances themselves."""
    report = write_report(str(sandbox_warehouse), tmp_path / "r.html")
    (share,) = query(
        sandbox_warehouse,
        """
        with per_call as (
            select u.call_id,
                   sum(greatest(u.end_seconds - u.start_seconds, 0))
                       filter (where u.speaker_side = 'close-user')
                   / nullif(sum(greatest(u.end_seconds - u.start_seconds, 0)), 0) as share
            from close.call_transcript_utterances u
            join analytics.fct_calls c on c.call_id = u.call_id
            where u.transcript_type = 'recording' and c.call_date between ? and ?
            group by u.call_id
        )
        select avg(share) from per_call
        """,
        [report.period.start, report.period.end],
    )[0]
    team_row = report.path.read_text().split('<tr class="team">')[1].split("</tr>")[0]
    assert f"{share * 100:.1f}%" in team_row


def test_the_heat_map_over_all_history_equals_call_metrics_by_hour(sandbox_warehouse):
    first, last = query(
        sandbox_warehouse, "select min(call_date), max(call_date) from analytics.fct_calls"
    )[0]
    data = load(str(sandbox_warehouse), start=first, end=last)
    cells = {
        (row["weekday"], row["hour"]): (row["calls"], row["answered_calls"]) for row in data.hours
    }
    mart = {
        (weekday, hour): (calls, answered)
        for weekday, hour, calls, answered in query(
            sandbox_warehouse,
            "select weekday, hour, calls, answered_calls from analytics.call_metrics_by_hour"
            " where calls > 0",
        )
    }
    assert cells == mart


def _row_cells(html: str, name: str) -> list[str]:
    """The cells of the reps-table row whose header is `name`."""
    row = html.split(f'<th scope="row">{name}</th>')[1].split("</tr>")[0]
    return [cell.split(">", 1)[1].split("</td")[0] for cell in row.split("<td")[1:]]


def test_a_reps_figures_equal_the_weekly_mart_over_an_iso_week(sandbox_warehouse, tmp_path):
    """Over one ISO week the report (sums of call_metrics_by_user_daily) and
    call_metrics_by_user_weekly (computed from the calls) must agree for every rep."""
    (week_start,) = query(
        sandbox_warehouse,
        "select max(week_start) - 7 from analytics.call_metrics_by_user_weekly",
    )[0]
    report = write_report(
        str(sandbox_warehouse),
        tmp_path / "r.html",
        start=week_start,
        end=week_start + timedelta(days=6),
    )
    html = report.path.read_text()
    rows = query(
        sandbox_warehouse,
        "select user_name, calls, answered_calls, total_cost_usd, calls_with_conversation,"
        " avg_user_talk_share, avg_longest_user_monologue_seconds, avg_patience_seconds"
        " from analytics.call_metrics_by_user_weekly"
        " where week_start = ? and calls > 0 and user_id is not null",
        [week_start],
    )
    assert len(rows) >= 3
    compared = 0
    for name, calls, answered, cost, transcribed, share, monologue, patience in rows:
        cells = _row_cells(html, name)
        assert cells[0] == f"{calls:,}" and cells[1] == f"{answered:,}", name
        assert cells[4] == usd(cost) and cells[5] == f"{transcribed:,}", name
        if share is not None:
            assert cells[6] == f"{share * 100:.1f}%", name
            assert cells[7] == f"{monologue:,.1f} s", name
            compared += 1
        if patience is not None:
            assert cells[9] == f"{patience:,.1f} s", name
    assert compared >= 1


def test_the_talk_share_chart_lists_reps_in_the_order_of_the_reps_table(
    sandbox_warehouse, tmp_path
):
    html = write_report(str(sandbox_warehouse), tmp_path / "r.html").path.read_text()
    table = html.split('class="data reps"')[1].split("</table>")[0]
    table_order = [
        row.split('<th scope="row">')[1].split("</th>")[0]
        for row in table.split("<tbody>")[1].split("<tr")[2:]  # after the team's row
    ]
    payload = json.loads(html.split('id="report-data">')[1].split("</script>")[0])
    (chart,) = [spec for spec in payload["charts"] if spec["id"] == "talk-share-reps"]
    assert len(chart["labels"]) >= 3
    assert chart["labels"] == [name for name in table_order if name in chart["labels"]]


TABLE_FIT = """() => [...document.querySelectorAll('.table-scroll')].map(box => {
    const edge = box.getBoundingClientRect();
    const cut = [...box.querySelectorAll('thead th')].filter(th => {
        const r = th.getBoundingClientRect();
        return r.left < edge.left - 0.5 || r.right > edge.right + 0.5
            || th.scrollWidth > th.clientWidth + 1;
    }).map(th => th.textContent.trim());
    const hint = box.parentElement.querySelector('.scroll-hint');
    return {table: box.querySelector('table').className, scrollWidth: box.scrollWidth,
            clientWidth: box.clientWidth, cut,
            hint: hint ? getComputedStyle(hint).display !== 'none' : null};
})"""


@pytest.mark.timeout(1200)
def test_tables_fit_their_box_down_to_a_laptop_width(sandbox_warehouse, browser, tmp_path):
    out = write_report(str(sandbox_warehouse), tmp_path / "call_report.html").path
    for width in (1400, 1024):
        opened = OpenedPage(browser, out, width=width)
        try:
            opened.page.screenshot(path=str(tmp_path / f"report_{width}.png"), full_page=True)
            tables = opened.page.evaluate(TABLE_FIT)
            assert {t["table"] for t in tables} == {"data outcomes", "data reps"}
            for table in tables:
                assert table["scrollWidth"] <= table["clientWidth"], (width, table)
                assert table["cut"] == [], (width, table)
                assert table["hint"] in (None, False), (width, table)
        finally:
            opened.close()
    # narrower than a laptop, the reps table may scroll, and then it says so
    opened = OpenedPage(browser, out, width=700)
    try:
        opened.page.screenshot(path=str(tmp_path / "report_700.png"), full_page=True)
        (reps,) = [t for t in opened.page.evaluate(TABLE_FIT) if t["table"] == "data reps"]
        assert reps["hint"] == (reps["scrollWidth"] > reps["clientWidth"]), reps
    finally:
        opened.close()
    print(f"screenshots in {tmp_path}")


# --- edge cases ----------------------------------------------------------------------------------


def _sections(html: str) -> None:
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    for figure in FIGURES:
        assert f'data-figure="{figure}"' in html, figure


@pytest.mark.parametrize(
    "period",
    [
        {"start": date(2023, 1, 1), "end": date(2023, 1, 31)},  # before the first call
        {"start": date(2030, 1, 1)},  # after the last call
        {"start": date(2024, 3, 2), "end": date(2024, 3, 2)},  # a day between calls
    ],
)
def test_a_period_without_calls_is_refused(small_warehouse, tmp_path, period):
    out = tmp_path / "r.html"
    with pytest.raises(EmptyPeriodError, match="no calls") as refused:
        write_report(str(small_warehouse), out, **period)
    assert isinstance(refused.value, PeriodError)  # handled like a reversed range
    assert "2024-03-01 to 2024-03-03" in str(refused.value)  # where the calls are
    assert not out.exists()


def test_days_are_whole_days_ending_yesterday(small_warehouse, tmp_path):
    """Calls on 03-01 and 03-03: on 03-03 (a partial day), --days 2 is 03-01..03-02."""
    report = write_report(str(small_warehouse), tmp_path / "r.html", days=2, today=date(2024, 3, 3))
    assert report.period == Period(date(2024, 3, 1), date(2024, 3, 2))
    assert report.figures["calls"] == 2  # 03-01's; not 03-03's, which is not over
    # later, the period ends on the last day with calls
    later = write_report(str(small_warehouse), tmp_path / "r.html", days=2, today=date(2024, 5, 1))
    assert later.period == Period(date(2024, 3, 2), date(2024, 3, 3))


def test_a_warehouse_without_transcripts_renders(small_warehouse, tmp_path):
    report = write_report(
        str(small_warehouse), tmp_path / "r.html", start=date(2024, 3, 1), end=date(2024, 3, 3)
    )
    html = report.path.read_text()
    _sections(html)
    assert report.figures["calls"] == 5
    for chart in ("daily", "dispositions", "hours"):
        assert f'data-chart="{chart}"' in html
    # no conversation: placeholders for the talk-share charts, dashes in the rep table
    assert 'data-chart="talk-share"' not in html and 'data-chart="talk-share-reps"' not in html
    assert html.count("No transcribed calls in this period.") == 2
    team_row = html.split('<tr class="team">')[1].split("</tr>")[0]
    assert "Team (2 reps)" in team_row and team_row.count("–") == 4


def test_a_single_rep_renders(small_warehouse, tmp_path):
    report = write_report(str(small_warehouse), tmp_path / "r.html", days=1, start=None)
    assert report.period == Period(date(2024, 3, 3), date(2024, 3, 3))
    html = report.path.read_text()
    _sections(html)
    assert "Team (1 rep)" in html and "Grace Hopper" in html and "Ada Lovelace" not in html


def test_calls_without_or_with_a_deleted_outcome_render(small_warehouse, tmp_path):
    report = write_report(
        str(small_warehouse), tmp_path / "r.html", start=date(2024, 3, 1), end=date(2024, 3, 3)
    )
    html = report.path.read_text()
    outcomes = html.split('id="outcomes"')[1].split("</section>")[0]
    # c3 and c7 have no outcome, c2's outcome is unknown to close.outcomes
    assert "No outcome" in outcomes and "Deleted or unknown outcome" in outcomes
    assert "40.0%" in outcomes and "Interested" in outcomes


@pytest.mark.timeout(1200)
def test_edge_cases_open_in_the_browser_without_errors(small_warehouse, browser, tmp_path):
    for name, kwargs in {
        "no_transcripts_single_rep": {"start": date(2024, 3, 1), "end": date(2024, 3, 1)},
    }.items():
        out = tmp_path / f"{name}.html"
        write_report(str(small_warehouse), out, **kwargs)
        opened = OpenedPage(browser, out)
        try:
            assert opened.errors == [], name
            assert opened.other_requests() == [], name
            assert all(chart and chart["painted"] for chart in opened.charts().values()), name
            opened.page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        finally:
            opened.close()


def test_a_missing_warehouse_or_marts_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="no warehouse"):
        write_report(str(tmp_path / "missing.duckdb"))
    bare = tmp_path / "bare.duckdb"
    duckdb.connect(str(bare)).close()
    with pytest.raises(ReportError, match="analytics.call_metrics_daily"):
        write_report(str(bare))


# --- the period and the CLI ------------------------------------------------------------------------


def test_period_rules():
    last = date(2024, 3, 31)
    today = date(2024, 4, 10)  # the data ends before yesterday: periods end on its last day
    assert resolve_period(last, today=today) == Period(date(2024, 3, 2), last)
    assert resolve_period(last, today=today, days=7) == Period(date(2024, 3, 25), last)
    assert resolve_period(last, today=today, start=date(2024, 3, 10)) == Period(
        date(2024, 3, 10), last
    )
    assert resolve_period(last, today=today, end=date(2024, 2, 29)) == Period(
        date(2024, 1, 31), date(2024, 2, 29)
    )
    # calls today: today is not over, the period ends yesterday
    assert resolve_period(last, today=last, days=7) == Period(date(2024, 3, 24), date(2024, 3, 30))
    assert resolve_period(date(2024, 3, 30), today=last, days=1) == Period(
        date(2024, 3, 30), date(2024, 3, 30)
    )
    assert resolve_period(None, today=date(2024, 5, 1), days=1) == Period(
        date(2024, 4, 30), date(2024, 4, 30)
    )
    assert Period(date(2024, 3, 1), date(2024, 3, 30)).previous == Period(
        date(2024, 1, 31), date(2024, 2, 29)
    )
    with pytest.raises(PeriodError, match="reversed"):
        resolve_period(last, today=today, start=date(2024, 3, 5), end=date(2024, 3, 4))
    with pytest.raises(PeriodError, match="not both"):
        resolve_period(last, today=today, days=7, end=date(2024, 3, 4))
    with pytest.raises(PeriodError, match="at least 1"):
        resolve_period(last, today=today, days=0)


def test_cli_writes_the_report_beside_the_warehouse(small_warehouse, monkeypatch, capsys):
    monkeypatch.setenv("CLOSE_CALLS_DUCKDB", str(small_warehouse))
    expected = default_report_path(small_warehouse)
    expected.unlink(missing_ok=True)
    assert cli_main(["report", "--from", "2024-03-01", "--to", "2024-03-03"]) == 0
    assert capsys.readouterr().out.strip() == str(expected)
    assert expected.parent == small_warehouse.parent and expected.name == "call_report.html"
    assert "Call report" in expected.read_text()


def test_cli_writes_where_asked(small_warehouse, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("CLOSE_CALLS_DUCKDB", str(small_warehouse))
    out = tmp_path / "nested" / "mine.html"
    assert cli_main(["report", "--days", "2", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--days", "7", "--from", "2024-03-01"], "not both"),
        (["--days", "7", "--to", "2024-03-01"], "not both"),
        (["--from", "2024-03-05", "--to", "2024-03-01"], "reversed"),
        (["--from", "2030-01-01"], "no calls"),
        (["--from", "2023-01-01", "--to", "2023-01-31"], "no calls"),
    ],
)
def test_cli_rejects_a_bad_period(small_warehouse, monkeypatch, capsys, argv, message):
    monkeypatch.setenv("CLOSE_CALLS_DUCKDB", str(small_warehouse))
    assert cli_main(["report", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_days_below_one_naming_the_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["report", "--days", "0"])
    assert exit_info.value.code == 2
    assert "--days" in capsys.readouterr().err


def test_cli_rejects_a_bad_date(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["report", "--from", "2024-02-30", "--to", "2024-03-01"])
    assert exit_info.value.code == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_cli_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        cli_main(["report", "--help"])
    text = capsys.readouterr().out
    for option in ("--out", "--days", "--from", "--to"):
        assert option in text
    assert "default" in text and "30" in text and "call_report.html" in text


def test_the_browser_harness_sees_and_blocks_every_request(browser, tmp_path):
    """The checks above mean something: a page that does fetch is caught, and nothing leaves."""
    page = tmp_path / "fetching.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="stylesheet" href="https://cdn.example.com/a.css">'
        '<script src="http://cdn.example.com/b.js"></script></head>'
        '<body><img src="other.png"><script>fetch("https://api.example.com/c")'
        ".catch(() => { window.fetchFailed = true; });</script></body></html>"
    )
    opened = OpenedPage(browser, page)
    try:
        # A fetch does not hold up the load event: wait until it has been refused.
        opened.page.wait_for_function("window.fetchFailed === true", timeout=10_000)
        assert opened.page.url == opened.url
        assert opened.url in opened.requests  # the file itself is seen, and let through
        assert opened.other_requests() == sorted(
            [
                "http://cdn.example.com/b.js",
                "https://api.example.com/c",
                "https://cdn.example.com/a.css",
                (tmp_path / "other.png").as_uri(),
            ]
        )
    finally:
        opened.close()


def test_the_heat_map_scale_fits_the_cells_in_whole_tens():
    def cells(*rates):
        return [{"calls": 100, "answered_calls": rate} for rate in rates]

    assert heat_scale([]) == (0, 100)
    assert heat_scale(cells(42, 57, 48)) == (40, 60)
    assert heat_scale(cells(50)) == (40, 60)
    assert heat_scale(cells(0, 100)) == (0, 100)
    assert heat_scale([*cells(45), {"calls": 0, "answered_calls": 0}]) == (40, 50)


def test_text_from_the_warehouse_cannot_break_out_of_the_page():
    payload = _json_for_script({"name": "</script><script>alert(1)</script> & <!--"})
    assert "<" not in payload and ">" not in payload and "&" not in payload
    assert json.loads(payload) == {"name": "</script><script>alert(1)</script> & <!--"}


def test_the_report_package_does_not_import_dagster():
    code = (
        "import sys, close_calls_pipeline.report; "
        "sys.exit(any(m == 'dagster' or m.startswith('dagster.') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_report_marts_is_the_true_list_of_what_the_report_reads():
    """One list: every mart the report's SQL reads is in REPORT_MARTS and every one listed is
    read; the Dagster asset depends on exactly these."""
    import re
    from importlib import resources

    from close_calls_pipeline.dagster_component.report import build_report_asset
    from close_calls_pipeline.report import REPORT_MARTS

    package = resources.files("close_calls_pipeline.report")
    texts = [path.read_text() for path in package.joinpath("sql").iterdir()]
    texts.append(package.joinpath("data.py").read_text())
    read = {name for text in texts for name in re.findall(r"analytics\.(\w+)", text)}
    assert read == set(REPORT_MARTS)
    asset = build_report_asset("UTC")
    deps = {key.path[-1] for key in asset.asset_deps[asset.key]}
    assert deps == set(REPORT_MARTS)
