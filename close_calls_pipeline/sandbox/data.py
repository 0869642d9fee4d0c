"""Seeded, deterministic generation of the sandbox's Close data.

Everything here is a pure function of a `random.Random` state: the same seed and the same
sequence of calls give byte-identical records. Timestamps are handled as integer microseconds
since the Unix epoch (`us`), which sort and compare cheaply; they are rendered the way Close
renders them (ISO 8601 with `+00:00`, fractional seconds only when non-zero).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import html
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from close_calls_pipeline.core.call_fields import (
    DOCUMENTED_CALL_FIELDS,
    UNDOCUMENTED_CALL_FIELDS,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)  # live mode: history ends here, hourly ticks start here
US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S

# Every key a generated call may carry: the documented fields, then the drift extras.
CALL_FIELDS = DOCUMENTED_CALL_FIELDS
EXTRA_FIELDS = (*UNDOCUMENTED_CALL_FIELDS, "custom.cf_lead_temperature")


def dt_to_us(dt: datetime) -> int:
    """Aware datetime (naive = UTC) → integer microseconds since the epoch."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US_PER_S + delta.microseconds


def us_to_dt(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def iso(us: int) -> str:
    """Close's call timestamp form: `2026-01-02T03:04:05.637000+00:00` or without fraction."""
    return (EPOCH + timedelta(microseconds=us)).isoformat()


def iso_naive(us: int) -> str:
    """The event log's form: no offset, always microseconds."""
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%f")


def parse_ts(value: str) -> int:
    """ISO 8601 date-time (offset-aware, naive = UTC) or plain date (midnight UTC) → us.

    Raises ValueError when it does not parse.
    """
    text = value.strip()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        # a '+' in an unencoded query string arrives as a space
        if " " in text[10:]:
            head, _, tail = text.rpartition(" ")
            dt = datetime.fromisoformat(head + "+" + tail)
        else:
            raise
    return dt_to_us(dt)


def make_id(rng: random.Random, prefix: str, chars: int = 43) -> str:
    raw = base64.urlsafe_b64encode(rng.randbytes((chars * 3 + 3) // 4)).decode("ascii")
    return prefix + raw[:chars]


def format_cost(cents: float) -> str:
    """US cents as Close writes them: "0", "2", "13.5"."""
    text = f"{cents:.4f}".rstrip("0").rstrip(".")
    return text or "0"


# ---------------------------------------------------------------------------- reference data

FIRST = [
    "Ana",
    "Bram",
    "Chloé",
    "Dmitri",
    "Eve",
    "Farah",
    "Gustavo",
    "Hiro",
    "Ines",
    "Jonas",
    "Kofi",
    "Léa",
    "Mateo",
    "Noor",
    "Oskar",
    "Priya",
]
LAST = [
    "Ortiz",
    "de Vries",
    "Müller",
    "Okafor",
    "Tanaka",
    "Nguyen",
    "O'Brien",
    "Schmidt",
    "Kowalski",
    "Haddad",
    "Silva",
    "Johansson",
]


def make_org_id(seed: int) -> str:
    return make_id(random.Random(f"org:{seed}"), "orga_")


def make_users(rng: random.Random, org_id: str, created_us: int, n: int = 8) -> list[dict]:
    users = []
    for i in range(n):
        first = FIRST[(i * 5 + rng.randrange(3)) % len(FIRST)]
        last = rng.choice(LAST)
        dc = created_us - rng.randrange(30, 900) * US_PER_DAY
        users.append(
            {
                "id": make_id(rng, "user_"),
                "first_name": first,
                "last_name": last,
                "email": f"{first.lower()}.{last.lower().replace(' ', '').replace(chr(39), '')}"
                f"@example.com".encode("ascii", "ignore").decode(),
                "image": None if rng.random() < 0.5 else f"https://gravatar.example/{i}.png",
                "date_created": iso(dc),
                "date_updated": iso(dc + rng.randrange(0, 20) * US_PER_DAY),
                "organizations": [org_id],
            }
        )
    return users


OUTCOME_NAMES = [
    ("Interested", "custom"),
    ("Not interested", "custom"),
    ("Meeting booked", "custom"),
    ("Call back later", "custom"),
    ("Wrong number", "custom"),
    ("Gatekeeper", "custom"),
    ("Left voicemail (drop)", "vm-dropped"),
    ("Do not call", "custom"),
]


def make_outcomes(
    rng: random.Random, org_id: str, users: list[dict], created_us: int
) -> tuple[list[dict], list[str]]:
    """The outcome list, and 2 outcome ids that calls reference but that were deleted."""
    outcomes = []
    for name, kind in OUTCOME_NAMES:
        dc = created_us - rng.randrange(200, 400) * US_PER_DAY
        creator = rng.choice(users)["id"]
        outcomes.append(
            {
                "id": make_id(rng, "outcome_", 22),
                "name": name,
                "description": "" if rng.random() < 0.5 else f"Use when: {name.lower()} ✓",
                "type": kind,
                "applies_to": ["calls"] if kind == "vm-dropped" else ["calls", "meetings"],
                "organization_id": org_id,
                "created_by": creator,
                "updated_by": creator,
                "date_created": iso(dc),
                "date_updated": iso(dc + rng.randrange(0, 30) * US_PER_DAY),
            }
        )
    deleted = [make_id(rng, "outcome_", 22) for _ in range(2)]
    return outcomes, deleted


# ---------------------------------------------------------------------------- transcripts
#
# A transcript belongs to its call: a recording transcript only on an answered call with a
# `recording_url`, a voicemail transcript only on a `vm-left` call with a `voicemail_url`, and
# every utterance inside [0, duration] (voicemails: [0, voicemail_duration]). Conversations
# follow the habits of the rep on the call (talk share, turn length, questions, patience), so
# conversation metrics computed on the sandbox differ per rep the way they do in real teams.
#
# Serving stays cheap: transcripts are pre-serialized and shared from pools keyed by
# (kind, rep, fit, variant), where `fit` is the call's duration rounded down to one of the
# `FIT_EDGES` (~1.2x apart): a pooled transcript spans at most `fit` seconds, so it fits every
# call of that bucket. Pool entries are generated on first use, each from its own seed, so the
# data does not depend on the order in which calls ask for them.

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
        return _choice(rnd, short)
    tail = _choice(rnd, questions) if question else None
    parts = []
    length = len(tail) + 1 if tail else 0
    while len(parts) < 12:
        line = _choice(rnd, lines)
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
    contact = _choice(rnd, FIRST)
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
            text, dur = _choice(rnd, ASR_BLIPS), 0.0
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
    summary = f"{names[1]} spoke with {contact} about {_choice(rnd, TOPICS)}."
    if any(u["speaker_side"] == CONTACT and u["text"].endswith("?") for u in utterances):
        summary += f" {contact} asked questions; follow up by email."
    return {"utterances": utterances, **_summary(summary)}


def make_voicemail(rng: random.Random, habits: RepHabits, rep_name: str, limit: float) -> dict:
    """A voicemail the rep left, spanning <= `limit` seconds."""
    rnd = rng.random
    contact = _choice(rnd, FIRST)
    names = {"n": contact, "u": rep_name.split(" ")[0]}
    lines = [_choice(rnd, VOICEMAIL_OPENINGS).format(**names)]
    body = list(VOICEMAIL_LINES)
    rng.shuffle(body)
    lines += body[: 1 + int(rnd() * 3)]
    lines.append(_choice(rnd, VOICEMAIL_CLOSINGS))
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


# ---------------------------------------------------------------------------- notes

NOTE_BITS = [
    "Spoke with the decision maker.",
    "Wants a follow-up next week.",
    "Left message with reception.",
    "Pricing objection — wants 20% off.",
    "Très intéressé par l'offre.",
    "顧客は来月導入予定。",
    "Asked for case studies 📈🔥",
    "Mentioned competitor <Acme & Co>.",
    'R&D team needs a "sandbox".',
    "Call dropped; will retry.",
    "Budget approved for Q3 ✅",
    "Gatekeeper said to email instead.",
    "Tabs\tand\nnewlines\nin the note.",
    "Emoji test: 😀🙈🚀 and ZWJ 👩‍💻.",
]


def _choice(rnd, seq):
    return seq[int(rnd() * len(seq))]


def make_note(rng: random.Random) -> tuple[str | None, str | None]:
    rnd = rng.random
    r = rnd()
    if r < 0.35:
        return None, None
    if r < 0.42:
        return "", ""
    if r < 0.4225:  # a few very long notes (> 10 KB)
        parts = [_choice(rnd, NOTE_BITS) for _ in range(450 + int(rnd() * 250))]
    else:
        parts = [_choice(rnd, NOTE_BITS) for _ in range(1 + int(rnd() * 3))]
    note = " ".join(parts)
    return note, "<p>" + html.escape(note, quote=False).replace("\n", "<br>") + "</p>"


# ---------------------------------------------------------------------------- calls

COUNTRIES = [  # (iso, calling code, weight)
    ("US", "1", 70),
    ("GB", "44", 10),
    ("DE", "49", 8),
    ("AU", "61", 5),
    ("FR", "33", 4),
    ("BR", "55", 3),
]
_COUNTRY_CUM = []
_acc = 0
for _c in COUNTRIES:
    _acc += _c[2]
    _COUNTRY_CUM.append((_acc, _c))
_COUNTRY_TOTAL = _acc


def _phone(rng: random.Random) -> tuple[str, str, str]:
    rnd = rng.random
    r = int(rnd() * _COUNTRY_TOTAL)
    iso_code, cc, _w = next((c for cum, c in _COUNTRY_CUM if r < cum), _COUNTRY_CUM[-1][1])
    n = 10**8 + int(rnd() * (10**9 - 10**8))
    if cc == "1":
        area = _choice(rnd, (415, 212, 646, 312, 512, 206, 303))
        digits = f"{area}555{n % 10000:04d}"
        return f"+1{digits}", f"+1 {digits[:3]}-{digits[3:6]}-{digits[6:]}", iso_code
    digits = f"{n}"
    return f"+{cc}{digits}", f"+{cc} {digits[:3]} {digits[3:6]} {digits[6:]}", iso_code


class CallFactory:
    """Generates calls for one organization; all randomness comes from the rng passed in."""

    def __init__(self, seed: int, n_leads: int, org_id: str | None = None):
        rng = random.Random(f"refdata:{seed}")
        self.org_id = org_id or make_org_id(seed)
        ref_us = dt_to_us(ANCHOR) - 400 * US_PER_DAY
        self.users = make_users(rng, self.org_id, ref_us)
        self.outcomes, self.deleted_outcome_ids = make_outcomes(
            rng, self.org_id, self.users, ref_us
        )
        self.custom_outcomes = [o["id"] for o in self.outcomes if o["type"] == "custom"]
        self.vm_outcomes = [o["id"] for o in self.outcomes if o["type"] == "vm-dropped"]
        self.user_names = {u["id"]: f"{u['first_name']} {u['last_name']}" for u in self.users}
        self.user_ids = [u["id"] for u in self.users]
        lrng = random.Random(f"leads:{seed}")
        self.leads = [make_id(lrng, "lead_") for _ in range(max(20, n_leads))]
        self.contacts = [make_id(lrng, "cont_") for _ in range(max(20, n_leads) * 2)]
        self.local_phones = [_phone(lrng) for _ in range(6)]
        self.dialers = [make_id(lrng, "dial_") for _ in range(5)]
        self.saved_searches = [make_id(lrng, "save_") for _ in range(4)]
        self.sequences = [
            (make_id(lrng, "seq_"), name)
            for name in ("Inbound follow-up", "Q3 Outreach 🚀", "Re-engage churned", "Event leads")
        ]
        self.conv_types = [make_id(lrng, "convtype_") for _ in range(3)]
        self.transcripts = TranscriptPools(seed, self.users)

    def make_call(
        self, rng: random.Random, call_id: str, dc_us: int, max_us: int
    ) -> tuple[dict, bytes | None, bytes | None]:
        """One call created at `dc_us` (its date_updated stays <= max_us).

        Returns the call (without transcripts) and its serialized transcripts (or None).
        """
        rnd = rng.random
        user_id = self.user_ids[int(rnd() * len(self.user_ids))]
        user_name = self.user_names[user_id]
        lead_idx = int(rnd() * len(self.leads))
        external = rnd() < 0.08
        direction = "outbound" if rnd() < 0.7 else "inbound"
        if external:
            method = "external"
        elif direction == "inbound":
            method = "regular"
        else:
            r = rnd()
            method = "regular" if r < 0.6 else ("power" if r < 0.85 else "predictive")
        r = rnd()
        if direction == "inbound":
            disp = (
                "answered"
                if r < 0.55
                else "vm-answer"
                if r < 0.78
                else "no-answer"
                if r < 0.92
                else "busy"
                if r < 0.97
                else "error"
            )
        else:
            if method == "predictive" and r < 0.1:
                disp = "abandoned"
            else:
                r = rnd()
                disp = (
                    "answered"
                    if r < 0.45
                    else "no-answer"
                    if r < 0.70
                    else "vm-left"
                    if r < 0.83
                    else "busy"
                    if r < 0.91
                    else "blocked"
                    if r < 0.94
                    else "error"
                )
        if disp == "answered":
            duration = int(min(5400, 8 + rng.expovariate(1 / 180)))
            status = "completed"
        elif disp == "vm-left":
            duration = 15 + int(rnd() * (75 - 15))
            status = "completed"
        elif disp == "vm-answer":
            duration = 8 + int(rnd() * (95 - 8))
            status = "completed"
        elif disp == "no-answer":
            duration = 0 if rnd() < 0.6 else (1 + int(rnd() * (30 - 1)))
            status = "no-answer" if rnd() < 0.85 else "timeout"
        elif disp == "busy":
            duration, status = 0, "busy"
        elif disp == "abandoned":
            duration, status = (0 + int(rnd() * (5 - 0))), "cancel"
        else:  # blocked / error
            duration, status = 0, "failed"
        if not external and rnd() < 0.003:
            status = "in-progress" if rnd() < 0.5 else "created"
        if external:
            cost = "0" if rnd() < 0.7 else None
        elif duration == 0:
            cost = "0"
        else:
            rate = (1, 1.5, 2, 2.5, 4.5)[int(rnd() * 5)]
            cost = format_cost(math.ceil(duration / 60) * rate)
        if rnd() < 0.7:  # millisecond timestamps (".637000"), else whole seconds
            dc_us = dc_us - dc_us % 1000
        else:
            dc_us = dc_us - dc_us % US_PER_S
        r = rnd()
        if r < 0.75:
            du_us = dc_us + (0 + int(rnd() * (5 * 60 * US_PER_S - 0)))
        elif r < 0.95:
            du_us = dc_us
        else:
            du_us = dc_us + (0 + int(rnd() * (40 * US_PER_DAY - 0)))
        du_us = max(dc_us, min(du_us, max_us))
        du_us -= du_us % 1000
        du_us = max(dc_us, du_us)
        aa = (
            None
            if rnd() < 0.1
            else max(0, dc_us - duration * US_PER_S - (0 + int(rnd() * (3 - 0))) * US_PER_S)
        )
        remote, remote_fmt, remote_iso = _phone(rng)
        local, local_fmt, local_iso = self.local_phones[int(rnd() * len(self.local_phones))]
        note, note_html = make_note(rng)
        outcome_id = None
        if disp == "answered" and rnd() < 0.7:
            if rnd() < 0.06:
                outcome_id = self.deleted_outcome_ids[int(rnd() * len(self.deleted_outcome_ids))]
            else:
                outcome_id = self.custom_outcomes[int(rnd() * len(self.custom_outcomes))]
        elif disp == "vm-left" and rnd() < 0.3:
            outcome_id = self.vm_outcomes[0]
        recording = disp == "answered" and not external and rnd() < 0.6
        vm_left = disp == "vm-left"
        updater = user_id if rnd() < 0.85 else self.user_ids[int(rnd() * len(self.user_ids))]
        dialer = None
        saved = None
        if method in ("power", "predictive"):
            dialer = self.dialers[int(rnd() * len(self.dialers))]
            saved = (
                self.saved_searches[int(rnd() * len(self.saved_searches))] if rnd() < 0.7 else None
            )
        seq = (
            self.sequences[int(rnd() * len(self.sequences))]
            if (direction == "outbound" and not external and rnd() < 0.15)
            else None
        )
        users = (
            [user_id] if rnd() < 0.9 else [user_id, self.user_ids[int(rnd() * len(self.user_ids))]]
        )
        call = {
            "_type": "Call",
            "id": call_id,
            "organization_id": self.org_id,
            "lead_id": self.leads[lead_idx],
            "contact_id": None
            if (external and rnd() < 0.2)
            else self.contacts[lead_idx * 2 + (rnd() < 0.3)],
            "user_id": user_id,
            "user_name": user_name,
            "created_by": user_id,
            "created_by_name": user_name,
            "updated_by": updater,
            "updated_by_name": self.user_names[updater],
            "users": users,
            "date_created": iso(dc_us),
            "date_updated": iso(du_us),
            "activity_at": None if aa is None else iso(aa),
            "status": status,
            "source": "External" if external else "Close.io",
            "direction": direction,
            "call_method": method,
            "disposition": disp,
            "duration": duration,
            "cost": cost,
            "phone": remote,
            "local_phone": None if external else local,
            "local_phone_formatted": None if external else local_fmt,
            "local_country_iso": None if external else local_iso,
            "remote_phone": remote,
            "remote_phone_formatted": remote_fmt,
            "remote_country_iso": remote_iso,
            "note": note,
            "note_html": note_html,
            "outcome_id": outcome_id,
            "recording_url": (
                f"https://recordings.close.example/{self.org_id}/{call_id}.mp3"
                if recording
                else None
            ),
            "voicemail_url": (
                f"https://voicemails.close.example/{self.org_id}/{call_id}.mp3" if vm_left else None
            ),
            "voicemail_duration": duration if vm_left else (None if rnd() < 0.5 else 0),
            "dialer_id": dialer,
            "dialer_saved_search_id": saved,
            "sequence_id": seq[0] if seq else None,
            "sequence_name": seq[1] if seq else None,
            "sequence_subscription_id": make_id(rng, "sub_", 22) if seq else None,
            "quality_info": None
            if rnd() < 0.93
            else _choice(rnd, ("poor: high jitter", "good", "fair: packet loss 2.1%", "")),
            "conversation_type_id": (
                self.conv_types[int(rnd() * len(self.conv_types))] if rnd() < 0.2 else None
            ),
            "custom_fields": {}
            if rnd() < 0.8
            else {
                "cf_lead_source": _choice(rnd, ("webinar", "referral", "cold")),
                "cf_score": (0 + int(rnd() * (100 - 0))),
            },
        }
        r = rnd()
        if r < 0.4:
            call["has_recording"] = recording
        if disp == "answered" and rnd() < 0.3:
            call["date_answered"] = iso(dc_us + (1 + int(rnd() * (20 - 1))) * US_PER_S)
        if rnd() < 0.03:
            call["custom.cf_lead_temperature"] = _choice(rnd, ("hot", "warm", "cold"))
        # transcripts follow the call: a recording's only on an answered call with a recording,
        # a voicemail's only on a voicemail left; both fit the call's (voicemail) duration
        rtx = vtx = None
        if recording and rnd() < 0.3:
            if rnd() < 0.04:  # a recording in which the ASR found no speech
                rtx = EMPTY_TRANSCRIPT
            else:
                variant = int(rnd() * REC_VARIANTS)
                rtx = self.transcripts.get("recording", user_id, duration, variant)
        if vm_left and rnd() < 0.5:
            if rnd() < 0.05:
                vtx = EMPTY_TRANSCRIPT
            else:
                vtx = self.transcripts.get("voicemail", user_id, duration, int(rnd() * VM_VARIANTS))
        return call, rtx, vtx
