"""Seeded, deterministic generation of the sandbox's Close data.

Everything here is a pure function of a `random.Random` state: the same seed and the same
sequence of calls give byte-identical records. Timestamps are handled as integer microseconds
since the Unix epoch (`us`), which sort and compare cheaply; they are rendered the way Close
renders them (ISO 8601 with `+00:00`, fractional seconds only when non-zero).
"""

from __future__ import annotations

import base64
import html
import math
import random
from datetime import UTC, datetime, timedelta

import orjson

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)  # live mode: history ends here, hourly ticks start here
US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S

TRANSCRIPT_FIELDS = ("recording_transcript", "voicemail_transcript")

# Every key a generated call may carry (documented fields, then the drift extras).
CALL_FIELDS = (
    "_type",
    "id",
    "organization_id",
    "lead_id",
    "contact_id",
    "user_id",
    "user_name",
    "created_by",
    "created_by_name",
    "updated_by",
    "updated_by_name",
    "users",
    "date_created",
    "date_updated",
    "activity_at",
    "status",
    "source",
    "direction",
    "call_method",
    "disposition",
    "duration",
    "cost",
    "phone",
    "local_phone",
    "local_phone_formatted",
    "local_country_iso",
    "remote_phone",
    "remote_phone_formatted",
    "remote_country_iso",
    "note",
    "note_html",
    "outcome_id",
    "recording_url",
    "voicemail_url",
    "voicemail_duration",
    "dialer_id",
    "dialer_saved_search_id",
    "sequence_id",
    "sequence_name",
    "sequence_subscription_id",
    "quality_info",
    "conversation_type_id",
    "custom_fields",
)
EXTRA_FIELDS = ("has_recording", "date_answered", "custom.cf_lead_temperature")


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

LINES_CONTACT = [
    "Hi, yes this is {n}.",
    "We're already using another tool for that.",
    "Can you send me the pricing?",
    "Sure, next Tuesday works — morning is best.",
    "Honestly I'm not sure we have budget this quarter.",
    "Who else is using it in our space?",
    "Ok, um, let me think about it.",
    "Ça marche, merci !",
    "That sounds interesting 👍",
    "Is there a free trial?",
    "Our team is about twenty people.",
    "Can you call me back after 3pm?",
    'We had issues with the "old" integration & the API.',
]
LINES_USER = [
    "Hi {n}, this is {u} from Acme — did I catch you at a bad time?",
    "I'm calling about the demo request you sent last week.",
    "Totally understand. Can I ask what you're using today?",
    "Great, I'll send over a calendar invite and the pricing sheet.",
    "We integrate with most CRMs out of the box <and> via webhooks.",
    "Perfect, talk soon. Have a great day!",
    "Let me check that and get back to you.",
    "Our average customer sees results in 2–3 weeks.",
    "Would Thursday at 10:30 work instead?",
]


def _transcript(rng: random.Random, n_utt: int, voicemail: bool) -> dict:
    contact = rng.choice(FIRST)
    user = rng.choice(FIRST)
    t = round(rng.uniform(0.0, 2.0), 2)
    utterances = []
    for i in range(n_utt):
        if voicemail:
            side = "close-user"
        else:
            side = "close-user" if (i % 2 == 0) != (rng.random() < 0.15) else "contact"
        pool = LINES_USER if side == "close-user" else LINES_CONTACT
        text = rng.choice(pool).format(n=contact, u=user)
        if rng.random() < 0.2:
            text += " " + rng.choice(pool).format(n=contact, u=user)
        dur = round(0.5 + len(text) * rng.uniform(0.04, 0.08), 2)
        utterances.append(
            {
                "speaker_label": (f"{user} (Acme)" if side == "close-user" else contact),
                "speaker_side": side,
                "start": t,
                "end": round(t + dur, 2),
                "text": text,
            }
        )
        t = round(t + dur + rng.uniform(0.1, 1.5), 2)
    if n_utt == 0:
        summary = ""
    elif voicemail:
        summary = f"{user} left a voicemail asking {contact} to call back."
    else:
        summary = f"{user} spoke with {contact} about pricing and next steps ({n_utt} turns)."
    return {
        "utterances": utterances,
        "summary_text": summary,
        "summary_html": f"<p>{html.escape(summary)}</p>" if summary else "",
    }


def make_transcript_pools(seed: int) -> tuple[list[bytes], list[bytes]]:
    """Pre-serialized recording transcripts (0–80 utterances) and voicemail ones (0–8)."""
    rng = random.Random(f"transcripts:{seed}")
    rec = []
    for i in range(48):
        n = 0 if i in (0, 17) else (rng.randrange(1, 12) if i % 3 == 0 else rng.randrange(10, 81))
        rec.append(bytes(memoryview(orjson.dumps(_transcript(rng, n, voicemail=False)))))
    vm = []
    for i in range(16):
        n = 0 if i == 5 else rng.randrange(1, 9)
        vm.append(bytes(memoryview(orjson.dumps(_transcript(rng, n, voicemail=True)))))
    return rec, vm


def random_transcript(rng: random.Random, voicemail: bool = False) -> dict:
    return _transcript(rng, rng.randrange(0, 8 if voicemail else 60), voicemail)


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
    for cum, (iso_code, cc, _w) in _COUNTRY_CUM:
        if r < cum:
            break
    n = 10**8 + int(rnd() * (10**9 - 10**8))
    if cc == "1":
        area = _choice(rnd, (415, 212, 646, 312, 512, 206, 303))
        digits = f"{area}555{n % 10000:04d}"
        return f"+1{digits}", f"+1 {digits[:3]}-{digits[3:6]}-{digits[6:]}", iso_code
    digits = f"{n}"
    return f"+{cc}{digits}", f"+{cc} {digits[:3]} {digits[3:6]} {digits[6:]}", iso_code


class CallFactory:
    """Generates calls for one organization; all randomness comes from the rng passed in."""

    def __init__(self, seed: int, n_leads: int):
        rng = random.Random(f"refdata:{seed}")
        self.org_id = make_org_id(seed)
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
        self.rec_pool, self.vm_pool = make_transcript_pools(seed)

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
        rtx = vtx = None
        if recording and rnd() < 0.3:
            rtx = self.rec_pool[int(rnd() * len(self.rec_pool))]
        if vm_left and rnd() < 0.5:
            vtx = self.vm_pool[int(rnd() * len(self.vm_pool))]
        return call, rtx, vtx
