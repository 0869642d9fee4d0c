"""Seeded, deterministic generation of the sandbox's calls (their notes, phones, dispositions,
durations and costs); the organization is in `people`, transcripts in `transcripts`.

Everything here is a pure function of a `random.Random` state: the same seed and the same
sequence of calls give byte-identical records.
"""

from __future__ import annotations

import html
import math
import random

from close_calls_pipeline.core.call_fields import (
    DOCUMENTED_CALL_FIELDS,
    UNDOCUMENTED_CALL_FIELDS,
)
from close_calls_pipeline.sandbox.clock import REFERENCE_DAY, US_PER_DAY, US_PER_S, dt_to_us, iso
from close_calls_pipeline.sandbox.people import (
    make_id,
    make_org_id,
    make_outcomes,
    make_users,
    pick,
)
from close_calls_pipeline.sandbox.transcripts import (
    EMPTY_TRANSCRIPT,
    REC_VARIANTS,
    VM_VARIANTS,
    TranscriptPools,
)

# Every key a generated call may carry: the documented fields, then the drift extras.
CALL_FIELDS = DOCUMENTED_CALL_FIELDS
EXTRA_FIELDS = (*UNDOCUMENTED_CALL_FIELDS, "custom.cf_lead_temperature")


def format_cost(cents: float) -> str:
    """US cents as Close writes them: "0", "2", "13.5"."""
    text = f"{cents:.4f}".rstrip("0").rstrip(".")
    return text or "0"


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


def make_note(rng: random.Random) -> tuple[str | None, str | None]:
    rnd = rng.random
    r = rnd()
    if r < 0.35:
        return None, None
    if r < 0.42:
        return "", ""
    if r < 0.4225:  # a few very long notes (> 10 KB)
        parts = [pick(rnd, NOTE_BITS) for _ in range(450 + int(rnd() * 250))]
    else:
        parts = [pick(rnd, NOTE_BITS) for _ in range(1 + int(rnd() * 3))]
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
        area = pick(rnd, (415, 212, 646, 312, 512, 206, 303))
        digits = f"{area}555{n % 10000:04d}"
        return f"+1{digits}", f"+1 {digits[:3]}-{digits[3:6]}-{digits[6:]}", iso_code
    digits = f"{n}"
    return f"+{cc}{digits}", f"+{cc} {digits[:3]} {digits[3:6]} {digits[6:]}", iso_code


class CallFactory:
    """Generates calls for one organization; all randomness comes from the rng passed in."""

    def __init__(self, seed: int, n_leads: int, org_id: str | None = None):
        rng = random.Random(f"refdata:{seed}")
        self.org_id = org_id or make_org_id(seed)
        ref_us = dt_to_us(REFERENCE_DAY) - 400 * US_PER_DAY
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

        Returns the call (without transcripts) and its serialized transcripts (or None). The
        parts below draw from `rng` in a fixed order, so one rng state gives one call.
        """
        rnd = rng.random
        user_id = self.user_ids[int(rnd() * len(self.user_ids))]
        lead_idx = int(rnd() * len(self.leads))
        external = rnd() < 0.08
        direction = "outbound" if rnd() < 0.7 else "inbound"
        method = _call_method(rnd, external, direction)
        disp = _disposition(rnd, direction, method)
        duration, status = _duration_and_status(rng, disp)
        if not external and rnd() < 0.003:
            status = "in-progress" if rnd() < 0.5 else "created"
        cost = _cost(rnd, external, duration)
        dc_us, du_us, aa = _timestamps(rnd, dc_us, max_us, duration)
        remote, remote_fmt, remote_iso = _phone(rng)
        local, local_fmt, local_iso = self.local_phones[int(rnd() * len(self.local_phones))]
        note, note_html = make_note(rng)
        outcome_id = self._outcome(rnd, disp)
        recording = disp == "answered" and not external and rnd() < 0.6
        vm_left = disp == "vm-left"
        updater = user_id if rnd() < 0.85 else self.user_ids[int(rnd() * len(self.user_ids))]
        dialer, saved = self._dialer(rnd, method)
        seq = (
            self.sequences[int(rnd() * len(self.sequences))]
            if (direction == "outbound" and not external and rnd() < 0.15)
            else None
        )
        users = (
            [user_id] if rnd() < 0.9 else [user_id, self.user_ids[int(rnd() * len(self.user_ids))]]
        )
        user_name = self.user_names[user_id]
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
            **_extras(rnd, self.conv_types),
        }
        _add_optional_keys(rnd, call, disp, recording, dc_us)
        rtx, vtx = self._transcripts(rnd, user_id, duration, recording, vm_left)
        return call, rtx, vtx

    def _outcome(self, rnd, disp: str) -> str | None:
        """Answered calls mostly get a custom outcome (a few a deleted one), left voicemails
        sometimes the voicemail-drop outcome."""
        if disp == "answered" and rnd() < 0.7:
            if rnd() < 0.06:
                return self.deleted_outcome_ids[int(rnd() * len(self.deleted_outcome_ids))]
            return self.custom_outcomes[int(rnd() * len(self.custom_outcomes))]
        if disp == "vm-left" and rnd() < 0.3:
            return self.vm_outcomes[0]
        return None

    def _dialer(self, rnd, method: str) -> tuple[str | None, str | None]:
        """The power / predictive dialer of the call and, mostly, the saved search it dialed."""
        if method not in ("power", "predictive"):
            return None, None
        dialer = self.dialers[int(rnd() * len(self.dialers))]
        saved = self.saved_searches[int(rnd() * len(self.saved_searches))] if rnd() < 0.7 else None
        return dialer, saved

    def _transcripts(
        self, rnd, user_id: str, duration: int, recording: bool, vm_left: bool
    ) -> tuple[bytes | None, bytes | None]:
        """A recording's transcript only on an answered call with a recording, a voicemail's only
        on a voicemail left; both fit the call's (voicemail) duration."""
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
        return rtx, vtx


def _call_method(rnd, external: bool, direction: str) -> str:
    if external:
        return "external"
    if direction == "inbound":
        return "regular"
    r = rnd()
    return "regular" if r < 0.6 else ("power" if r < 0.85 else "predictive")


def _pick_by_share(r: float, shares: tuple[tuple[str, float], ...]) -> str:
    """The first value whose cumulative share exceeds `r` (the last one otherwise)."""
    for value, upper in shares:
        if r < upper:
            return value
    return shares[-1][0]


INBOUND_DISPOSITIONS = (
    ("answered", 0.55),
    ("vm-answer", 0.78),
    ("no-answer", 0.92),
    ("busy", 0.97),
    ("error", 1.0),
)
OUTBOUND_DISPOSITIONS = (
    ("answered", 0.45),
    ("no-answer", 0.70),
    ("vm-left", 0.83),
    ("busy", 0.91),
    ("blocked", 0.94),
    ("error", 1.0),
)


def _disposition(rnd, direction: str, method: str) -> str:
    r = rnd()
    if direction == "inbound":
        return _pick_by_share(r, INBOUND_DISPOSITIONS)
    if method == "predictive" and r < 0.1:
        return "abandoned"
    return _pick_by_share(rnd(), OUTBOUND_DISPOSITIONS)


def _duration_and_status(rng: random.Random, disp: str) -> tuple[int, str]:
    rnd = rng.random
    if disp == "answered":
        return int(min(5400, 8 + rng.expovariate(1 / 180))), "completed"
    if disp == "vm-left":
        return 15 + int(rnd() * (75 - 15)), "completed"
    if disp == "vm-answer":
        return 8 + int(rnd() * (95 - 8)), "completed"
    if disp == "no-answer":
        duration = 0 if rnd() < 0.6 else (1 + int(rnd() * (30 - 1)))
        return duration, "no-answer" if rnd() < 0.85 else "timeout"
    if disp == "busy":
        return 0, "busy"
    if disp == "abandoned":
        return int(rnd() * 5), "cancel"
    return 0, "failed"  # blocked / error


def _cost(rnd, external: bool, duration: int) -> str | None:
    """A decimal string of US cents, per started minute at one of a few rates."""
    if external:
        return "0" if rnd() < 0.7 else None
    if duration == 0:
        return "0"
    rate = (1, 1.5, 2, 2.5, 4.5)[int(rnd() * 5)]
    return format_cost(math.ceil(duration / 60) * rate)


def _timestamps(rnd, dc_us: int, max_us: int, duration: int) -> tuple[int, int, int | None]:
    """date_created (millisecond or whole-second precision), date_updated (<= max_us) and
    activity_at (the call's start, sometimes missing)."""
    if rnd() < 0.7:  # millisecond timestamps (".637000"), else whole seconds
        dc_us = dc_us - dc_us % 1000
    else:
        dc_us = dc_us - dc_us % US_PER_S
    r = rnd()
    if r < 0.75:
        du_us = dc_us + int(rnd() * (5 * 60 * US_PER_S))
    elif r < 0.95:
        du_us = dc_us
    else:
        du_us = dc_us + int(rnd() * (40 * US_PER_DAY))
    du_us = max(dc_us, min(du_us, max_us))
    du_us -= du_us % 1000
    du_us = max(dc_us, du_us)
    aa = None if rnd() < 0.1 else max(0, dc_us - duration * US_PER_S - int(rnd() * 3) * US_PER_S)
    return dc_us, du_us, aa


def _extras(rnd, conv_types: list[str]) -> dict:
    """quality_info, conversation_type_id and custom_fields, mostly empty."""
    return {
        "quality_info": None
        if rnd() < 0.93
        else pick(rnd, ("poor: high jitter", "good", "fair: packet loss 2.1%", "")),
        "conversation_type_id": (conv_types[int(rnd() * len(conv_types))] if rnd() < 0.2 else None),
        "custom_fields": {}
        if rnd() < 0.8
        else {
            "cf_lead_source": pick(rnd, ("webinar", "referral", "cold")),
            "cf_score": int(rnd() * 100),
        },
    }


def _add_optional_keys(rnd, call: dict, disp: str, recording: bool, dc_us: int) -> None:
    """Keys Close sends on some calls only (undocumented ones among them)."""
    if rnd() < 0.4:
        call["has_recording"] = recording
    if disp == "answered" and rnd() < 0.3:
        call["date_answered"] = iso(dc_us + (1 + int(rnd() * 19)) * US_PER_S)
    if rnd() < 0.03:
        call["custom.cf_lead_temperature"] = pick(rnd, ("hot", "warm", "cold"))
