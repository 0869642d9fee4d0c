"""Conversation metrics and the new roll-ups, end to end: sandbox Close API -> sync -> DuckDB ->
real `dbt build`, every figure recomputed in Python from the sandbox's truth.

The definitions are the ones documented in dbt_project/models/marts/_marts__models.yml
(fct_call_conversations); the Python here is written from that text, independently of the SQL.
Besides the generated data, a few hand-made calls carry transcripts the generator may never
produce (tied and backwards start times, zero-length, inverted and overlapping utterances, a
null side, text or bound, an empty transcript, a voicemail-only transcript), and some calls with
transcripts are deleted in Close before the last sync.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from datetime import date, timedelta

import pytest
from helpers.dbt_fixture import model_count
from helpers.duck import query
from helpers.sandbox_warehouse import (
    allowed_warnings,
    called_at,
    dbt_build,
    is_allowed,
    sync,
    warned_test_names,
)

from close_calls_pipeline.sandbox import SandboxServer, SandboxStore

# Whole pipelines, dbt builds, browsers or subprocesses: the everyday tier skips them.
pytestmark = pytest.mark.slow

TOLERANCE = 1e-9

CONVERSATION_COLUMNS = [
    "call_id",
    "user_id",
    "call_date",
    "utterance_count",
    "conversation_seconds",
    "user_talk_seconds",
    "contact_talk_seconds",
    "user_talk_share",
    "longest_user_monologue_seconds",
    "longest_contact_monologue_seconds",
    "speaker_switches",
    "switches_per_minute",
    "user_questions",
    "contact_questions",
    "patience_seconds",
]


def _utterance(side, start, end, text="..."):
    return {"speaker_label": side, "speaker_side": side, "start": start, "end": end, "text": text}


# call id suffix -> (recording transcript, voicemail transcript)
HAND_MADE_TRANSCRIPTS = {
    "ties_and_backwards": (
        {
            "utterances": [
                _utterance("contact", 0, 4, "Hello, who is this?"),
                _utterance("contact", 4, 4, ""),
                _utterance("close-user", 4, 6, "It's Ada?"),
                _utterance("close-user", 3, 5),
                _utterance("contact", 10, 8),
                _utterance("close-user", 7.25, 9, "Is now a good time?"),
            ]
        },
        None,
    ),
    "overlaps": (
        {
            "utterances": [
                _utterance("close-user", 0, 5, "Hi?"),
                _utterance("contact", 4, 9),
                _utterance("close-user", 8.5, 10),
                _utterance("contact", 12, 13),
                _utterance("close-user", 13.75, 20),
            ]
        },
        None,
    ),
    "user_only": (
        {"utterances": [_utterance("close-user", 1, 4), _utterance("close-user", 4, 9)]},
        None,
    ),
    "zero_length": ({"utterances": [_utterance("close-user", 5, 5)]}, None),
    "inverted": ({"utterances": [_utterance("contact", 10, 8, "Hello?")]}, None),
    "nulls": (
        {
            "utterances": [
                _utterance("contact", 0, 2, None),
                _utterance(None, 2, 3, "?"),
                _utterance(None, 3, 4),
                _utterance("close-user", None, 6),
                _utterance("contact", 6, 7),
                _utterance("close-user", 8, None, "Right?"),
            ]
        },
        None,
    ),
    "empty": ({"utterances": []}, None),
    "voicemail_only": (None, {"utterances": [_utterance("close-user", 0, 30, "Call me back?")]}),
}


def _add_hand_made_calls(store: SandboxStore) -> None:
    template = next(c for c in store.truth().values() if c["disposition"] == "answered")
    for index, (suffix, (recording, voicemail)) in enumerate(HAND_MADE_TRANSCRIPTS.items()):
        store.put_raw_call(
            dict(
                template,
                id=f"acti_handmade_{suffix}",
                recording_transcript=recording,
                voicemail_transcript=voicemail,
            ),
            at=store.now - timedelta(days=2 + index),
        )


def _change_transcripts(store: SandboxStore, rng: random.Random) -> None:
    """Between two syncs: delete calls with a recording transcript, drop some transcripts, give
    calls without one another call's, add new calls. The hand-made calls stay as they are."""
    truth = store.truth()
    generated = sorted(c for c in truth if not c.startswith("acti_handmade_"))
    with_recording = [
        c for c in generated if (truth[c].get("recording_transcript") or {}).get("utterances")
    ]
    without = [c for c in generated if not truth[c].get("recording_transcript")]
    changed = rng.sample(with_recording, 10)
    for call_id in changed[:5]:
        store.delete_call(call_id)
    for call_id in changed[5:]:
        store.update_call(call_id, recording_transcript=None)
    for call_id, donor in zip(rng.sample(without, 5), with_recording[:5], strict=True):
        store.update_call(call_id, recording_transcript=truth[donor]["recording_transcript"])
    store.add_calls(20)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(warehouse path, dbt result, sandbox store) after a backfill, changes, an incremental
    sync and `dbt build`."""
    work_dir = tmp_path_factory.mktemp("conversations")
    db_path = work_dir / "close_calls.duckdb"
    store = SandboxStore(calls=1500, seed=21)
    _add_hand_made_calls(store)
    server = SandboxServer(store, api_key="test-key").start()
    try:
        sync(server, db_path)
        store.advance(600)
        _change_transcripts(store, random.Random(5))
        store.advance(600)
        sync(server, db_path)
        result = dbt_build(db_path, work_dir)
    finally:
        server.stop()
    assert result.success, result.log
    return db_path, result, store


# ------------------------------------------------------------------ the definitions, in Python


def _floored(value):
    return None if value is None else max(value, 0.0)


def _span(utterances) -> float | None:
    """max(end) - min(start) over utterances, never negative; null without a start or an end."""
    starts = [u["start"] for u in utterances if u["start"] is not None]
    ends = [u["end"] for u in utterances if u["end"] is not None]
    return _floored(max(ends) - min(starts)) if starts and ends else None


def _speaking(u) -> float | None:
    return None if u["start"] is None or u["end"] is None else max(u["end"] - u["start"], 0.0)


def conversation_metrics(utterances: list[dict]) -> dict:
    """The fct_call_conversations figures of one call from its recording utterances in
    utterance_index order (the order of the transcript's list)."""
    us = [
        {
            "side": u.get("speaker_side"),
            "text": u.get("text"),
            "start": None if u.get("start") is None else float(u["start"]),
            "end": None if u.get("end") is None else float(u["end"]),
        }
        for u in utterances
    ]

    def talk(side):
        return sum(s for u in us if u["side"] == side and (s := _speaking(u)) is not None)

    def longest_run(side):
        lengths = [
            _span(list(run))
            for run_side, run in itertools.groupby(us, lambda u: u["side"])
            if run_side == side
        ]
        return max((length for length in lengths if length is not None), default=0.0)

    user, contact = talk("close-user"), talk("contact")
    conversation = _span(us)
    switches = sum(1 for a, b in itertools.pairwise(us) if a["side"] != b["side"])
    gaps = [
        max(b["start"] - a["end"], 0.0)
        for a, b in itertools.pairwise(us)
        if a["side"] == "contact"
        and b["side"] == "close-user"
        and a["end"] is not None
        and b["start"] is not None
    ]
    return {
        "utterance_count": len(us),
        "conversation_seconds": conversation,
        "user_talk_seconds": user,
        "contact_talk_seconds": contact,
        "user_talk_share": user / (user + contact) if user + contact else None,
        "longest_user_monologue_seconds": longest_run("close-user"),
        "longest_contact_monologue_seconds": longest_run("contact"),
        "speaker_switches": switches,
        "switches_per_minute": switches / (conversation / 60) if conversation else None,
        "user_questions": sum(
            1 for u in us if u["side"] == "close-user" and "?" in (u["text"] or "")
        ),
        "contact_questions": sum(
            1 for u in us if u["side"] == "contact" and "?" in (u["text"] or "")
        ),
        "patience_seconds": sum(gaps) / len(gaps) if gaps else None,
    }


def expected_conversations(truth: dict[str, dict]) -> dict[str, dict]:
    expected = {}
    for call_id, call in truth.items():
        utterances = (call.get("recording_transcript") or {}).get("utterances") or []
        if utterances:
            at = called_at(call)
            expected[call_id] = {
                "call_id": call_id,
                "user_id": call.get("user_id"),
                "call_date": None if at is None else at.date(),
                **conversation_metrics(utterances),
            }
    return expected


def _same(actual, expected) -> bool:
    if isinstance(expected, float) and actual is not None:
        return abs(actual - expected) <= TOLERANCE
    return actual == expected


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


# ------------------------------------------------------------------ tests


def test_the_sandbox_build_passes_with_only_the_warnings_its_data_explains(built):
    _, result, store = built
    statuses = result.statuses
    assert sum(1 for u in statuses if u.startswith("model.")) == model_count()
    assert all(s in ("success", "pass", "warn") for s in statuses.values()), statuses
    allowed = allowed_warnings(store)
    unexplained = {name for name in warned_test_names(result) if not is_allowed(name, allowed)}
    assert not unexplained, (unexplained, allowed)


def test_the_hand_made_edge_cases_reached_the_warehouse(built):
    db_path, _, _ = built
    rows = dict(
        query(
            db_path,
            "select call_id, count(*) from close.call_transcript_utterances"
            " where call_id like 'acti_handmade_%' group by call_id",
        )
    )
    assert rows == {
        f"acti_handmade_{suffix}": len(((rec or vm) or {}).get("utterances") or [])
        for suffix, (rec, vm) in HAND_MADE_TRANSCRIPTS.items()
        if suffix != "empty"
    }


def test_every_fct_call_conversations_column_equals_the_truth(built):
    db_path, _, store = built
    truth = store.truth()
    expected = expected_conversations(truth)
    actual = {
        row[0]: dict(zip(CONVERSATION_COLUMNS, row))
        for row in query(
            db_path,
            f"select {', '.join(CONVERSATION_COLUMNS)} from analytics.fct_call_conversations",
        )
    }
    assert set(actual) == set(expected), (
        f"missing: {sorted(set(expected) - set(actual))[:5]}, "
        f"extra: {sorted(set(actual) - set(expected))[:5]}"
    )
    # the data exercises every definition, including each null case
    assert len(expected) > 50, len(expected)
    assert "acti_handmade_voicemail_only" not in expected and "acti_handmade_empty" not in expected
    for column in ("user_talk_share", "switches_per_minute", "patience_seconds"):
        assert any(e[column] is None for e in expected.values()), column
    assert any(e["longest_contact_monologue_seconds"] == 0 for e in expected.values())
    for call_id, row in expected.items():
        for column in CONVERSATION_COLUMNS:
            assert _same(actual[call_id][column], row[column]), (
                call_id,
                column,
                actual[call_id][column],
                row[column],
            )


def test_hand_made_edge_cases_by_hand(built):
    """A few figures worked out by hand, to check the Python above as well."""
    db_path, _, _ = built
    rows = {
        r[0]: dict(zip(CONVERSATION_COLUMNS, r))
        for r in query(
            db_path,
            f"select {', '.join(CONVERSATION_COLUMNS)} from analytics.fct_call_conversations"
            " where call_id like 'acti_handmade_%'",
        )
    }
    ties = rows["acti_handmade_ties_and_backwards"]
    # runs: contact [0-4, 4-4] = 4 s; user [4-6, 3-5] = max end - min start = 6 - 3 = 3 s (not
    # 5 - 4, the last end minus the first start); contact [10-8] = 0 s; user [7.25-9] = 1.75 s
    assert ties["longest_contact_monologue_seconds"] == 4.0
    assert ties["longest_user_monologue_seconds"] == 3.0
    assert ties["conversation_seconds"] == 9.0 and ties["speaker_switches"] == 3
    # contact(1) -> user(2): 4 - 4 = 0; contact(4) -> user(5): 7.25 - 8 < 0 -> 0
    assert ties["patience_seconds"] == 0.0
    assert (ties["user_questions"], ties["contact_questions"]) == (2, 1)
    overlaps = rows["acti_handmade_overlaps"]
    # gaps: 8.5 - 9 -> 0 and 13.75 - 13 = 0.75
    assert overlaps["patience_seconds"] == pytest.approx(0.375, abs=TOLERANCE)
    assert overlaps["switches_per_minute"] == pytest.approx(4 / (20 / 60), abs=TOLERANCE)
    user_only = rows["acti_handmade_user_only"]
    assert user_only["user_talk_share"] == 1.0 and user_only["patience_seconds"] is None
    assert user_only["longest_contact_monologue_seconds"] == 0.0
    zero = rows["acti_handmade_zero_length"]
    assert zero["conversation_seconds"] == 0.0
    assert zero["switches_per_minute"] is None and zero["user_talk_share"] is None
    inverted = rows["acti_handmade_inverted"]
    assert inverted["conversation_seconds"] == 0.0 and inverted["switches_per_minute"] is None
    assert inverted["contact_talk_seconds"] == 0.0 and inverted["contact_questions"] == 1
    nulls = rows["acti_handmade_nulls"]
    assert nulls["speaker_switches"] == 4 and nulls["patience_seconds"] == 1.0
    assert nulls["user_talk_seconds"] == 0.0 and nulls["contact_talk_seconds"] == 3.0


def test_call_metrics_by_user_weekly_against_the_truth(built):
    db_path, _, store = built
    truth = store.truth()
    conversations = expected_conversations(truth)
    weeks: dict[tuple, list[str]] = defaultdict(list)
    for call_id, call in truth.items():
        at = called_at(call)
        week_start = at.date() - timedelta(days=at.weekday())
        weeks[(call.get("user_id"), week_start)].append(call_id)

    rows = query(
        db_path,
        "select user_id, week_start, calls, answered_calls, total_duration_seconds,"
        " calls_with_conversation, avg_user_talk_share, avg_longest_user_monologue_seconds,"
        " avg_switches_per_minute, avg_patience_seconds, questions_per_call"
        " from analytics.call_metrics_by_user_weekly",
    )
    with_calls = {(r[0], r[1]): r[2:] for r in rows if r[2] > 0}
    assert set(with_calls) == set(weeks)
    assert sum(r[2] for r in rows) == len(truth)
    for key, call_ids in weeks.items():
        calls = [truth[c] for c in call_ids]
        convs = [conversations[c] for c in call_ids if c in conversations]
        expected = (
            len(calls),
            sum(1 for c in calls if c["disposition"] == "answered"),
            sum(c["duration"] or 0 for c in calls),
            len(convs),
            _mean(c["user_talk_share"] for c in convs),
            _mean(c["longest_user_monologue_seconds"] for c in convs),
            _mean(c["switches_per_minute"] for c in convs),
            _mean(c["patience_seconds"] for c in convs),
            (
                sum(c["user_questions"] + c["contact_questions"] for c in convs) / len(convs)
                if convs
                else None
            ),
        )
        assert all(_same(a, e) for a, e in zip(with_calls[key], expected, strict=True)), (
            key,
            with_calls[key],
            expected,
        )

    # zero-filled weeks: exactly those between a user's first and last week with calls
    by_user: dict = defaultdict(set)
    for user_id, week_start in weeks:
        by_user[user_id].add(week_start)
    expected_weeks = {
        (user_id, min(starts) + timedelta(weeks=n))
        for user_id, starts in by_user.items()
        for n in range((max(starts) - min(starts)).days // 7 + 1)
    }
    assert {(r[0], r[1]) for r in rows} == expected_weeks
    assert all(isinstance(r[1], date) and r[1].isoweekday() == 1 for r in rows)


def test_call_metrics_by_hour_against_the_truth(built):
    db_path, _, store = built
    truth = store.truth()
    cells = Counter()
    answered = Counter()
    for call in truth.values():
        at = called_at(call)
        cells[(at.isoweekday(), at.hour)] += 1
        answered[(at.isoweekday(), at.hour)] += call["disposition"] == "answered"
    rows = query(
        db_path,
        "select weekday, weekday_name, hour, calls, answered_calls, answer_rate"
        " from analytics.call_metrics_by_hour",
    )
    assert len(rows) == 7 * 24
    assert sum(r[3] for r in rows) == len(truth)
    for weekday, name, hour, calls, answered_calls, answer_rate in rows:
        assert name == date(2024, 1, weekday).strftime("%A")  # 2024-01-01 is a Monday
        assert (calls, answered_calls) == (cells[(weekday, hour)], answered[(weekday, hour)])
        assert _same(answer_rate, answered_calls / calls if calls else None)
