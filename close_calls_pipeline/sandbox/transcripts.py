"""Seeded transcripts of the sandbox's calls.

A transcript belongs to its call: a recording transcript only on an answered call with a
`recording_url`, a voicemail transcript only on a `vm-left` call with a `voicemail_url`, and
every utterance inside [0, duration] (voicemails: [0, voicemail_duration]). Conversations
follow the habits of the rep on the call (talk share, turn length, questions, patience), so
conversation metrics computed on the sandbox differ per rep the way they do in real teams.

Serving stays cheap: transcripts are pre-serialized and shared from pools keyed by
(kind, rep, fit, variant), where `fit` is the call's duration rounded down to one of the
`FIT_EDGES` (~1.2x apart): a pooled transcript spans at most `fit` seconds, so it fits every
call of that bucket. Pool entries are generated on first use, each from its own seed, so the
data does not depend on the order in which calls ask for them.
"""

from __future__ import annotations

import bisect
import hashlib
import html
import random
from dataclasses import dataclass

import orjson

from close_calls_pipeline.sandbox.people import FIRST, pick

CONTACT = "contact"
USER = "close-user"

USER_LINES = [
    "Hi {n}, this is {u} from Acme.",
    "I'm calling about the demo request you sent last week.",
    "Totally understand.",
    "Great, I'll send over a calendar invite and the pricing sheet.",
    "We integrate with most CRMs out of the box <and> via webhooks.",
    "Perfect, talk soon. Have a great day!",
    "Let me check that and get back to you.",
    "Our average customer sees results in 2–3 weeks.",
    "So the way it works: you connect your inbox and every call gets logged automatically.",
    "Most teams your size start on the growth plan.",
    "That's a fair point — a lot of our customers said the same before switching.",
    "I'll loop in our solutions engineer for the technical part.",
    "Pricing is per seat, billed annually, and there's a 14-day trial.",
    "We also have native integrations with Zapier & Slack.",
    "I can do 20% off if you sign before the end of the quarter.",
    "The reporting side is where most teams see the quick win.",
]
USER_QUESTIONS = [
    "Did I catch you at a bad time?",
    "Can I ask what you're using today?",
    "Would Thursday at 10:30 work instead?",
    "How many people are on your sales team?",
    "What's the biggest headache with your current setup?",
    "Who else would need to be involved in the decision?",
    "Does that sound fair?",
    "What would success look like for you in six months?",
    "Is there budget set aside for this already?",
    "Can I send you a short recap by email?",
]
USER_SHORT = ["Right.", "Got it.", "Makes sense.", "Totally.", "Okay, great.", "Sure thing."]
CONTACT_LINES = [
    "Hi, yes this is {n}.",
    "We're already using another tool for that.",
    "Sure, next Tuesday works — morning is best.",
    "Honestly I'm not sure we have budget this quarter.",
    "Ok, um, let me think about it.",
    "That sounds interesting 👍",
    "Our team is about twenty people.",
    'We had issues with the "old" integration & the API.',
    "I'd have to check with my manager first.",
    "We mostly do outbound, maybe sixty calls a day per rep.",
    "The reporting is what really bugs us at the moment.",
    "Ça marche, merci !",
]
CONTACT_QUESTIONS = [
    "Can you send me the pricing?",
    "Who else is using it in our space?",
    "Is there a free trial?",
    "Can you call me back after 3pm?",
    "How long does the setup take?",
    "Does it work with Outlook?",
    "Sorry, who is this again?",
    "What does it cost per seat?",
]
CONTACT_SHORT = ["Yeah.", "Mm-hmm.", "Right, right.", "Okay.", "Sure.", "Got it 👍"]
ASR_BLIPS = ["Mm.", "Uh", "Okay", "Yeah"]  # zero-length utterances, as ASR emits them
VOICEMAIL_OPENINGS = ["Hi {n}, this is {u} from Acme.", "Hey {n}, {u} here from Acme."]
VOICEMAIL_LINES = [
    "I'm following up on the demo request you sent last week.",
    "I wanted to share a quick case study from a team like yours 📈.",
    "No rush at all — whenever suits you.",
    "I'll also drop you an email with the details & pricing.",
    "We just shipped the Outlook integration you asked about.",
]
VOICEMAIL_CLOSINGS = [
    "Give me a call back at 415-555-0134 when you get a chance. Thanks, talk soon!",
    "You can also just reply to my email. Have a great day, bye.",
]
TOPICS = [
    "pricing and next steps",
    "the demo request",
    "the tool they use today",
    "budget and timing",
    "the CRM integration",
    "a follow-up meeting",
]

# Fit buckets: every second up to 12 s, then ~1.2x apart (≈ 46 edges up to 5400 s).
FIT_EDGES = sorted({*range(1, 13), *(int(12 * 1.2**k) for k in range(1, 50))})
REC_VARIANTS = 3  # pooled recording transcripts per (rep, fit)
VM_VARIANTS = 2
EMPTY_TRANSCRIPT = b'{"utterances":[],"summary_text":"","summary_html":""}'


def fit_limit(seconds) -> int:
    """The largest fit edge <= `seconds` (0 when below the smallest): a transcript spanning at
    most that many seconds fits the call."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 1:
        return 0
    return FIT_EDGES[bisect.bisect_right(FIT_EDGES, seconds) - 1]


def transcript_limits(call: dict) -> tuple[float | None, float | None]:
    """How many seconds a recording / a voicemail transcript of `call` may span, or None when
    the call may not carry that transcript at all."""
    rec = vm = None
    disposition = call.get("disposition")
    if disposition == "answered" and call.get("recording_url"):
        rec = _positive_seconds(call.get("duration"))
    elif disposition == "vm-left" and call.get("voicemail_url"):
        vm = _positive_seconds(call.get("voicemail_duration"))
    return rec, vm


def _positive_seconds(value) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return value
    return None


def transcript_fits(tx: bytes | None, limit: float | None) -> bool:
    """Whether a serialized transcript may stay on a call whose limit is `limit`."""
    if tx is None:
        return True
    if limit is None:
        return False
    try:
        utterances = orjson.loads(tx).get("utterances") or []
        return all(0 <= u["start"] <= u["end"] <= limit for u in utterances)
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return False


@dataclass(frozen=True, slots=True)
class RepHabits:
    """How one rep talks on calls."""

    talk_share: float  # target share of the talk time that is the rep's
    run_mean: float  # mean utterances per turn (how long the rep holds the floor)
    utterance_s: float  # mean seconds per utterance
    question_rate: float  # share of the rep's utterances that end with a question
    patience_s: float  # mean pause before answering the contact
    interrupt_rate: float  # share of answers that start before the contact has finished
    chars_per_s: float  # speaking rate


# The contact side of a conversation (the same for every rep, varied per call).
CONTACT_RUN_MEAN = 1.5
CONTACT_UTTERANCE_S = 4.0
TALK_SHARE_RANGE = (0.28, 0.78)


def _habit_rng(seed: int, user_id: str) -> random.Random:
    return random.Random(f"habits:{seed}:{user_id}")


def rep_habits(seed: int, user_id: str, talk_share: float | None = None) -> RepHabits:
    """A rep's habits: a deterministic function of the seed and the user id (and, for the
    org's own reps, of a talk share spread across the team by `make_rep_habits`)."""
    rng = _habit_rng(seed, user_id)
    rnd = rng.random
    u = rnd()
    if talk_share is None:
        talk_share = TALK_SHARE_RANGE[0] + u * (TALK_SHARE_RANGE[1] - TALK_SHARE_RANGE[0])
    # rep talk seconds per contact turn for that share, split into turns of `run_mean`
    # utterances of `utterance_s` seconds: some reps say a lot in one long utterance, others
    # hold the floor over several shorter ones.
    per_turn = talk_share / (1 - talk_share) * CONTACT_RUN_MEAN * CONTACT_UTTERANCE_S
    style = 3.0 + 6.0 * rnd()  # preferred utterance length
    run_mean = min(3.5, max(1.2, per_turn / style))
    patience = 0.25 + 1.9 * rnd()
    return RepHabits(
        talk_share=talk_share,
        run_mean=run_mean,
        utterance_s=max(1.5, per_turn / run_mean),
        question_rate=0.06 + 0.34 * rnd(),
        patience_s=patience,
        interrupt_rate=(0.02 + 0.12 * rnd()) * (1.0 if patience < 1.0 else 0.3),
        chars_per_s=13.0 + 4.0 * rnd(),
    )


def make_rep_habits(seed: int, user_ids: list[str]) -> dict[str, RepHabits]:
    """Habits of the org's reps. Talk shares are spread over `TALK_SHARE_RANGE` (each rep draws
    within its own stratum, ranked by a seeded hash of its id), so every seeded team has
    talkers and listeners; the rest of each rep's habits is drawn from (seed, user id)."""
    ranked = sorted(
        user_ids, key=lambda uid: hashlib.blake2b(f"{seed}:{uid}".encode(), digest_size=8).digest()
    )
    lo, hi = TALK_SHARE_RANGE
    n = len(ranked)
    habits = {}
    for rank, uid in enumerate(ranked):
        share = lo + (hi - lo) * (rank + _habit_rng(seed, "share:" + uid).random()) / n
        habits[uid] = rep_habits(seed, uid, talk_share=share)
    return habits


def _say(rnd, lines, questions, short, target_chars: float, question: bool, names) -> str:
    """One utterance of about `target_chars` characters, ending with a question or not."""
    if not question and target_chars < 24:
        return pick(rnd, short)
    tail = pick(rnd, questions) if question else None
    parts = []
    length = len(tail) + 1 if tail else 0
    while len(parts) < 12:
        line = pick(rnd, lines)
        if (parts or tail) and length + len(line) / 2 > target_chars:
            break
        parts.append(line)
        length += len(line) + 1
    if tail:
        parts.append(tail)
    text = " ".join(parts)
    return text.format(n=names[0], u=names[1]) if "{" in text else text


def _run_length(rnd, mean: float) -> int:
    """Utterances in one turn: geometric (at least 1) with the given mean, capped at 8."""
    n = 1
    p_more = 1 - 1 / mean
    while n < 8 and rnd() < p_more:
        n += 1
    return n


def _utterance(label: str, side: str, start: float, end: float, limit: float, text: str) -> dict:
    # floats, as Close sends them; rounding must not push an utterance past the call's end
    end = float(min(round(end, 2), limit))
    return {
        "speaker_label": label,
        "speaker_side": side,
        "start": float(min(round(start, 2), end)),
        "end": end,
        "text": text,
    }


def _summary(text: str) -> dict:
    return {"summary_text": text, "summary_html": f"<p>{html.escape(text)}</p>"}


def make_conversation(rng: random.Random, habits: RepHabits, rep_name: str, limit: float) -> dict:
    """A recording transcript of a call between a rep and a contact, spanning <= `limit` s."""
    rnd = rng.random
    contact = pick(rnd, FIRST)
    names = (contact, rep_name.split(" ")[0])
    contact_rate = 12.0 + 4.0 * rnd()
    contact_questions = 0.05 + 0.2 * rnd()
    end_at = limit - rnd() * min(3.0, limit * 0.1)  # a little silence before hanging up
    utterances = []
    side = CONTACT if rnd() < 0.55 else USER
    left = _run_length(rnd, CONTACT_RUN_MEAN if side == CONTACT else habits.run_mean)
    t = 0.3 + rnd() * min(2.0, limit * 0.1)
    prev_end = 0.0
    while t <= end_at - 0.3:
        if side == USER:
            mean_s, rate, q_rate = habits.utterance_s, habits.chars_per_s, habits.question_rate
            label = rep_name
            pools = (USER_LINES, USER_QUESTIONS, USER_SHORT)
        else:
            mean_s, rate, q_rate = CONTACT_UTTERANCE_S, contact_rate, contact_questions
            label = contact
            pools = (CONTACT_LINES, CONTACT_QUESTIONS, CONTACT_SHORT)
        if rnd() < 0.007:  # an ASR blip: a word with no length
            text, dur = pick(rnd, ASR_BLIPS), 0.0
        else:
            target = mean_s * (0.35 + 1.3 * rnd()) * rate
            text = _say(rnd, *pools, target, rnd() < q_rate, names)
            dur = len(text) / rate * (0.9 + 0.2 * rnd())
        start = t
        if start + dur < prev_end:  # overlap only with an utterance that outlasts the last one
            start = prev_end
        end = min(start + dur, limit)
        utterances.append(_utterance(label, side, start, end, limit, text))
        prev_end = end
        left -= 1
        if left > 0:  # the same speaker goes on
            t = end + 0.15 + 0.75 * rnd()
            continue
        if side == CONTACT:  # the rep answers: after a pause, or cutting in
            side = USER
            left = _run_length(rnd, habits.run_mean)
            if dur > 0.8 and rnd() < habits.interrupt_rate:
                t = end - (0.1 + 0.5 * rnd()) * min(1.0, dur / 2)
            else:
                t = end + habits.patience_s * (0.3 + 1.4 * rnd())
        else:
            side = CONTACT
            left = _run_length(rnd, CONTACT_RUN_MEAN)
            if dur > 0.8 and rnd() < 0.03:
                t = end - 0.1 - 0.3 * rnd()
            else:
                t = end + 0.25 + 0.95 * rnd()
    if not utterances:
        return {"utterances": [], "summary_text": "", "summary_html": ""}
    summary = f"{names[1]} spoke with {contact} about {pick(rnd, TOPICS)}."
    if any(u["speaker_side"] == CONTACT and u["text"].endswith("?") for u in utterances):
        summary += f" {contact} asked questions; follow up by email."
    return {"utterances": utterances, **_summary(summary)}


def make_voicemail(rng: random.Random, habits: RepHabits, rep_name: str, limit: float) -> dict:
    """A voicemail the rep left, spanning <= `limit` seconds."""
    rnd = rng.random
    contact = pick(rnd, FIRST)
    names = {"n": contact, "u": rep_name.split(" ")[0]}
    lines = [pick(rnd, VOICEMAIL_OPENINGS).format(**names)]
    body = list(VOICEMAIL_LINES)
    rng.shuffle(body)
    lines += body[: 1 + int(rnd() * 3)]
    lines.append(pick(rnd, VOICEMAIL_CLOSINGS))
    rate = habits.chars_per_s
    utterances = []
    t = 0.4 + rnd() * min(1.5, limit * 0.1)
    for text in lines:
        if t > limit - 0.3:
            break
        end = min(t + len(text) / rate * (0.9 + 0.2 * rnd()), limit)
        utterances.append(_utterance(rep_name, USER, t, end, limit, text))
        t = end + 0.2 + 0.6 * rnd()
    summary = f"{names['u']} left a voicemail asking {contact} to call back."
    return {"utterances": utterances, **_summary(summary)}


class TranscriptPools:
    """Pre-serialized transcripts per (kind, rep, fit, variant), made on first use."""

    def __init__(self, seed: int, users: list[dict]):
        self.seed = seed
        self.names = {u["id"]: f"{u['first_name']} {u['last_name']}" for u in users}
        self.habits = make_rep_habits(seed, [u["id"] for u in users])
        self._pool: dict[tuple, bytes] = {}

    def habits_of(self, user_id) -> RepHabits:
        h = self.habits.get(user_id)
        if h is None:  # a rep the seeded org does not have (a raw record, say)
            h = self.habits[user_id] = rep_habits(self.seed, str(user_id))
        return h

    def name_of(self, user_id) -> str:
        return self.names.get(user_id) or "Sales Rep"

    def get(self, kind: str, user_id, seconds, variant: int) -> bytes:
        """A pooled transcript for a call of `seconds` (duration or voicemail_duration)."""
        fit = fit_limit(seconds)
        key = (kind, user_id, fit, variant)
        tx = self._pool.get(key)
        if tx is None:
            if fit == 0:
                tx = EMPTY_TRANSCRIPT
            else:
                rng = random.Random(f"tx:{self.seed}:{kind}:{user_id}:{fit}:{variant}")
                make = make_voicemail if kind == "voicemail" else make_conversation
                doc = make(rng, self.habits_of(user_id), self.name_of(user_id), fit)
                tx = bytes(memoryview(orjson.dumps(doc)))
            self._pool[key] = tx
        return tx

    def one_off(self, rng: random.Random, kind: str, user_id, seconds: float) -> dict:
        """A transcript made for one call (not shared), spanning <= `seconds`."""
        make = make_voicemail if kind == "voicemail" else make_conversation
        return make(rng, self.habits_of(user_id), self.name_of(user_id), seconds)
