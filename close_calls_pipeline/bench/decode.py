"""Decode time of one 100-call /activity/call/ page (all fields + transcripts), and typing time.

    python -m close_calls_pipeline.bench.decode [--calls 3000] [--repeat 200]

Pages are the exact bytes the sandbox serves (its store renders them) when the sandbox is
importable, else synthetic calls shaped like docs/close-api.md describes. Two kinds of page are timed:
"mixed" (the seeded share of transcripts) and "transcripts" (100 calls that all carry one).
Decoders: full decodes into Python objects (json, orjson, msgspec) against what the client does
(split the page into each call's raw JSON text with msgspec). Then typing a whole batch: the
bulk path of `records.type_calls` (Arrow's JSON reader) against the per-record path it falls
back to (orjson + Python checks), both from raw call text to Arrow tables.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import time
from collections.abc import Callable

import msgspec
import orjson

from close_calls_pipeline.core.close_api.client import _CALL_PAGE, CALL_FIELDS

PAGE = 100


def _wrap(items: list[bytes]) -> bytes:
    return b'{"data":[' + b",".join(items) + b'],"has_more":true}'


def sandbox_pages(calls: int, seed: int) -> tuple[list[bytes], list[bytes]] | None:
    try:
        from close_calls_pipeline.sandbox.store import SandboxStore
    except Exception:  # noqa: BLE001 - the sandbox is optional here
        return None
    store = SandboxStore(calls=calls, seed=seed)
    fields = frozenset(CALL_FIELDS)
    rendered = []
    skip = 0
    while True:
        recs, more = store.query_calls(skip=skip, limit=PAGE)
        rendered.extend(r.render(fields) for r in recs)
        if not more:
            break
        skip += PAGE
    mixed = [_wrap(rendered[i : i + PAGE]) for i in range(0, len(rendered) - PAGE + 1, PAGE)]
    with_tx = [b for b in rendered if b'"utterances":[{' in b]
    tx = [_wrap(with_tx[i : i + PAGE]) for i in range(0, len(with_tx) - PAGE + 1, PAGE)]
    return mixed, tx


def _synthetic_call(rng: random.Random, transcript: bool) -> dict:
    def rid(prefix: str) -> str:
        return prefix + "".join(rng.choices(string.ascii_letters + string.digits, k=43))

    def words(n: int) -> str:
        return " ".join(
            "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(n)
        )

    tx = None
    if transcript:
        t = 0.0
        utt = []
        for _ in range(rng.randint(5, 80)):
            d = rng.uniform(0.5, 12)
            utt.append(
                {
                    "speaker_label": rng.choice(["Agent", "Customer"]),
                    "speaker_side": rng.choice(["contact", "close-user"]),
                    "start": round(t, 2),
                    "end": round(t + d, 2),
                    "text": words(rng.randint(3, 40)),
                }
            )
            t += d
        tx = {"utterances": utt, "summary_text": words(60), "summary_html": f"<p>{words(60)}</p>"}
    call = {f: None for f in CALL_FIELDS}
    call.update(
        {
            "_type": "Call",
            "id": rid("acti_"),
            "organization_id": rid("orga_"),
            "lead_id": rid("lead_"),
            "contact_id": rid("cont_"),
            "user_id": rid("user_"),
            "user_name": "Jane Doe",
            "users": [rid("user_")],
            "date_created": "2025-03-04T05:06:07.123456+00:00",
            "date_updated": "2025-03-04T05:16:07+00:00",
            "activity_at": "2025-03-04T05:00:07.123000+00:00",
            "status": "completed",
            "source": "Close.io",
            "direction": "outbound",
            "call_method": "regular",
            "disposition": "answered",
            "duration": rng.randint(0, 3600),
            "cost": "13.5",
            "phone": "+14155550100",
            "remote_phone": "+14155550101",
            "note": words(rng.randint(0, 80)),
            "note_html": f"<p>{words(20)}</p>",
            "recording_transcript": tx,
            "has_recording": transcript,
        }
    )
    return call


def synthetic_pages(calls: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(seed)
    mixed = [
        orjson.dumps(
            {
                "data": [_synthetic_call(rng, rng.random() < 0.3) for _ in range(PAGE)],
                "has_more": True,
            }
        )
        for _ in range(max(1, calls // PAGE))
    ]
    tx = [
        orjson.dumps({"data": [_synthetic_call(rng, True) for _ in range(PAGE)], "has_more": True})
        for _ in range(max(1, calls // PAGE // 3))
    ]
    return mixed, tx


def _time_per_page(
    decoders: dict[str, Callable[[bytes], object]], pages: list[bytes], repeat: int
) -> dict[str, float]:
    """Median seconds per page for each decoder. Decoders are interleaved page by page, so a
    busy machine slows them all alike instead of whichever happened to run during the noise."""
    for fn in decoders.values():
        for page in pages[:3]:
            fn(page)  # warm up
    samples: dict[str, list[float]] = {name: [] for name in decoders}
    clock = time.perf_counter
    for _ in range(repeat):
        for page in pages:
            for name, fn in decoders.items():
                t0 = clock()
                fn(page)
                samples[name].append(clock() - t0)
    return {name: statistics.median(ts) for name, ts in samples.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--synthetic", action="store_true", help="do not use the sandbox generator")
    args = ap.parse_args(argv)

    pages = None if args.synthetic else sandbox_pages(args.calls, args.seed)
    source = "sandbox store" if pages else "synthetic"
    if pages is None:
        pages = synthetic_pages(args.calls, args.seed)
    decoders: dict[str, Callable[[bytes], object]] = {
        "json.loads(bytes)": json.loads,
        "json.loads(text)": lambda b: json.loads(b.decode("utf-8")),
        "orjson.loads": orjson.loads,
        "msgspec.json.decode": msgspec.json.Decoder().decode,
        "client: raw calls": lambda b: [bytes(c) for c in _CALL_PAGE.decode(b).data],
    }

    print(f"pages from: {source}; {PAGE} calls per page, every field incl. transcripts")
    for kind, group in zip(("mixed", "transcripts"), pages):
        if not group:
            print(f"{kind}: no pages")
            continue
        size = statistics.mean(len(p) for p in group)
        print(f"\n{kind}: {len(group)} pages, mean {size / 1024:.0f} KiB per page")
        timings = _time_per_page(decoders, group, args.repeat)
        base = timings["json.loads(bytes)"]
        for name, per_page in timings.items():
            print(
                f"  {name:22s} {per_page * 1000:8.3f} ms/page  {size / per_page / 1e6:7.0f} MB/s"
                f"  x{base / per_page:5.2f} vs json"
            )
    _time_typing([c for group in pages for page in group for c in _CALL_PAGE.decode(page).data])
    return 0


def _time_typing(raw_calls: list[bytes]) -> None:
    from datetime import UTC, datetime

    from close_calls_pipeline.core.records import calls

    now = datetime.now(UTC)
    paths = {
        "bulk (Arrow JSON reader)": calls._type_calls_columnar,
        "per record (orjson + Python)": calls._type_calls_one_by_one,
    }
    print(f"\ntyping {len(raw_calls)} calls from raw text to Arrow tables, batches of 2,500:")
    best = {name: float("inf") for name in paths}
    for _ in range(3):  # interleaved, best of three
        for name, type_batch in paths.items():
            t0 = time.perf_counter()
            for i in range(0, len(raw_calls), 2500):
                type_batch([bytes(c) for c in raw_calls[i : i + 2500]], now)
            best[name] = min(best[name], time.perf_counter() - t0)
    for name, seconds in best.items():
        print(f"  {name:30s} {seconds / len(raw_calls) * 1e6:7.1f} us/call")


if __name__ == "__main__":
    raise SystemExit(main())
