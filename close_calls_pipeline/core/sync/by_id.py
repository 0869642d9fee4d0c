"""Fetching calls by id, and what the answers prove about the ids that are missing from them."""

from __future__ import annotations

from dataclasses import dataclass, field

from close_calls_pipeline.core.close_api.client import IDS_PER_REQUEST
from close_calls_pipeline.core.records import record_id
from close_calls_pipeline.core.sync.batches import Batcher
from close_calls_pipeline.core.sync.fetch import fetch_concurrently
from close_calls_pipeline.core.sync.landing import LandingThread, Target, land
from close_calls_pipeline.core.sync.options import Totals
from close_calls_pipeline.core.sync.run import Run


@dataclass
class Answers:
    """What Close answered to requests for calls by id."""

    returned: set[str] = field(default_factory=set)  # ids it returned (readable or not)
    # Ids asked for in a request whose answer held a record without a readable id: that record
    # may be any of them, so their absence proves nothing.
    unproven: set[str] = field(default_factory=set)

    def missing(self, asked: list[str]) -> list[str]:
        """The ids Close positively does not have: asked for, and absent from a clean answer."""
        return [i for i in asked if i not in self.returned and i not in self.unproven]


def fetch_and_land_by_ids(
    run: Run, ids: list[str], batcher: Batcher, lander: LandingThread, target: Target
) -> tuple[Answers, Totals]:
    """Fetch calls by id (100 a request, concurrently) and land them in batches; returns what
    the answers say and what the batches landed (up to the one still in flight)."""
    chunks = [ids[i : i + IDS_PER_REQUEST] for i in range(0, len(ids), IDS_PER_REQUEST)]
    answers, totals = _fetch(run, chunks, batcher, lander, target)
    # A record without a readable id leaves its request's missing ids unproven: ask for those
    # one by one, so that only the id the record may be stays unproven (the record itself was
    # quarantined the first time: it is not landed twice).
    unproven = sorted(answers.unproven - answers.returned)
    if unproven and any(len(chunk) > 1 for chunk in chunks):
        again, landed = _fetch(run, [[i] for i in unproven], batcher, lander, target, False)
        answers = Answers(answers.returned | again.returned, again.unproven)
        totals += landed
    return answers, totals


def _fetch(
    run: Run,
    chunks: list[list[str]],
    batcher: Batcher,
    lander: LandingThread,
    target: Target,
    land_unidentified: bool = True,
) -> tuple[Answers, Totals]:
    answers, totals = Answers(), Totals()
    pages = fetch_concurrently(chunks, run.client.iter_calls_by_ids, run.options.workers)
    for chunk, page in pages:
        if page is None:
            continue
        read = [record_id(raw) for raw in page]
        answers.returned.update(i for i in read if i)
        if None in read:
            answers.unproven.update(chunk)
            if not land_unidentified:
                page = [raw for raw, call_id in zip(page, read) if call_id]
        run.stage("page")
        batch = batcher.add(page)
        if batch is not None:
            for landed, _ in lander.submit(land, run.con, batch, target, None, run.stage):
                totals += landed
    return answers, totals
