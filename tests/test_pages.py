"""Reading pages that do not decode (close_api.pages), and the walk's resume bookkeeping: units."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from close_calls_pipeline.core.close_api import WindowPage
from close_calls_pipeline.core.close_api.pages import (
    Unreadable,
    loads_lenient,
    recover_id,
    repair_lone_surrogates,
    split_page,
)
from close_calls_pipeline.core.records import record_id
from close_calls_pipeline.core.sync.walk import NewestFirst, tasks_left
from close_calls_pipeline.core.warehouse import WalkPlan


def call(i: int) -> bytes:
    return orjson.dumps({
        "id": f"acti_{i:04d}", "note": 'a,{"id":"acti_x"}[b]\\', "users": ["u1"],
        "custom_fields": {"cf": [1, {"id": "acti_nested"}]},
        "recording_transcript": {"utterances": [{"speaker_label": "A", "text": "x"}] * 3},
    })  # fmt: skip


def page(records: list[bytes], more: bool = True) -> bytes:
    return b'{"data":[' + b",".join(records) + b'],"has_more":' + orjson.dumps(more) + b"}"


def test_a_record_cut_anywhere_loses_only_itself():
    good = [call(i) for i in range(4)]
    for cut in range(1, len(good[1])):
        split = split_page(page([good[0], good[1][:cut], good[2], good[3]]))
        assert split is not None
        assert split.records[0] == good[0] and split.records[2:] == good[2:], cut
        assert len(split.records) == 4 and split.broken == 1
        assert split.members == {"has_more": True}


def test_bad_bytes_and_surrogates_are_split_exactly():
    records = [call(0), call(1).replace(b"a,{", b"\xff\xfe,{"), call(2).replace(b"a,", b"\\ud800,")]
    split = split_page(page(records, more=False))
    assert split.records == records and split.broken == 0 and split.members["has_more"] is False


@pytest.mark.parametrize(
    "body",
    [b"<html>502 Bad Gateway</html>", page([call(0), call(1)])[:-30], b'{"error": "x"}', b""],
)
def test_what_is_not_a_page_is_not_split(body):
    assert split_page(body) is None


def test_members_around_the_data_array():
    body = b'{"has_more": false, "data": [' + call(0)[:20] + b'], "cursor_next": "ab=", "n": 3}'
    split = split_page(body)
    assert split.members == {"has_more": False, "cursor_next": "ab=", "n": 3}
    assert split.records == [call(0)[:20]] and split.broken == 1


def test_lone_surrogates_are_replaced_and_pairs_and_escaped_backslashes_kept():
    text = rb'"\ud800 \\ud800 \ud83d\ude00 \udc00\ud800 x\\\ud801"'
    assert repair_lone_surrogates(text) == rb'"\ufffd \\ud800 \ud83d\ude00 \ufffd\ufffd x\\\ufffd"'
    assert repair_lone_surrogates(b'"fine \\u00e9"') is None


def test_ids_are_read_from_text_that_does_not_parse():
    assert recover_id(b'{"_type":"Call","id" : "acti_a-B_9","note":"\xff', "acti_") == "acti_a-B_9"
    assert recover_id(b'{"id":"acti_a\xff"}', "acti_") is None  # a broken id is no id
    assert record_id(call(3)) == "acti_0003"
    assert record_id(b'{"id":"acti_7","note":"\\ud800"}') == "acti_7"
    assert record_id(b'{"note":"x"}') is None


def test_a_body_that_does_not_decode_is_read_record_by_record():
    events = [b'{"id":"ev_1","object_id":"acti_1","date_updated":"2026-01-01T00:00:00"}',
              b'{"id":"ev_2","object_id":"acti_2","note":"\xff"}',
              b'{"id":"ev_3","object_id":"acti_3","data":{"note":"cut']  # fmt: skip
    body = b'{"data":[' + b",".join(events) + b'],"cursor_next":null}'
    data = loads_lenient(body)
    assert data["cursor_next"] is None
    first, second, third = data["data"]
    assert first["object_id"] == "acti_1" and second["note"] == "\ufffd"
    assert isinstance(third, Unreadable) and third.get("object_id") == "acti_3"
    assert loads_lenient(b"<html>") is None


def at(minutes: float) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)


def dated(minutes: float) -> bytes:
    return orjson.dumps({"id": "acti_x", "date_created": at(minutes).isoformat()})


def test_newest_first_is_checked_within_each_sequence_of_pages():
    window = (at(0), at(100))
    check = NewestFirst()
    assert check.holds(window, WindowPage([dated(90), dated(80)], *window, 0))
    assert check.holds(window, WindowPage([dated(80), dated(70)], *window, 2))  # seam tie: fine
    assert not check.holds(window, WindowPage([dated(75), dated(60)], *window, 4))
    # a new sequence (a split's newer half) starts again from the top
    assert check.holds(window, WindowPage([dated(95), dated(85)], at(50), at(100), 0))
    assert not check.holds(window, WindowPage([dated(10), dated(20)], *window, 2))
    assert check.holds(window, WindowPage([b'{"id":"acti_cut', dated(1)], *window, 4))


def test_a_resumed_walk_reads_each_window_only_below_where_it_landed():
    windows = [(at(0), at(10)), (at(10), at(20)), (at(20), at(30))]
    plan = WalkPlan("run", "backfill", at(40), at(35), windows, windows[1:],
                    landed_down_to={windows[1]: at(15), windows[2]: at(29.99)},
                    loaded_since=at(40), totals={})  # fmt: skip
    tasks = tasks_left(plan)
    assert [(t.start, t.end) for t in tasks] == [
        (at(10), at(15) + timedelta(seconds=1)),
        (at(20), at(30)),  # the margin would pass the window's end
    ]
