"""Personal data of calls under a policy: what is kept, pseudonymised or dropped, and erasure.

A `PersonalDataPolicy` says, per category, what the warehouse keeps of a call's personal data.
`CallPolice` applies it to each call record as decoded from the API, BEFORE typing: the typed
columns, `_raw` and a quarantined record's payload are all made from the policed record, so no
later step can leak what the policy removed. It is applied in one place, where fetched calls are
typed (`sync/batches.py`); quarantined records that are not JSON (so cannot be policed) have
their payload withheld.

The same functions rewrite rows already stored when a stricter policy starts
(`apply_to_stored`), and `erase_calls` removes every personal field of chosen calls (a call
Close deleted, or one named on request). docs/privacy.md is the user's view of all this.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from close_calls_pipeline.core import warehouse
from close_calls_pipeline.core.close_api.pages import repair_lone_surrogates
from close_calls_pipeline.core.records import Rejection

log = logging.getLogger(__name__)

KEEP, HASH, DROP = "keep", "hash", "drop"
# What each category may be set to, least strict first.
CHOICES: dict[str, tuple[str, ...]] = {
    "phone_numbers": (KEEP, HASH, DROP),
    "notes": (KEEP, DROP),
    "transcript_text": (KEEP, DROP),
    "summaries": (KEEP, DROP),
    "recording_urls": (KEEP, DROP),
}
# The Call fields of each category (transcripts' fields are inside `*_transcript`).
PHONE_FIELDS = (
    "phone",
    "local_phone",
    "local_phone_formatted",
    "remote_phone",
    "remote_phone_formatted",
)
NOTE_FIELDS = ("note", "note_html")
URL_FIELDS = ("recording_url", "voicemail_url")
TRANSCRIPT_KEYS = ("recording_transcript", "voicemail_transcript")
SUMMARY_KEYS = ("summary_text", "summary_html")
# Stands in for a value of an unexpected shape that a policy had to remove: keeps the record's
# shape wrong (so it is still quarantined, for the same reason) without keeping the value.
WITHHELD = "[withheld by the personal_data policy]"
WITHHELD_PAYLOAD = warehouse.WITHHELD_PAYLOAD

HASH_KEY_ENV = "CLOSE_CALLS_HASH_KEY"
_HASHED = re.compile(r"[0-9a-f]{64}")


class PersonalDataError(ValueError):
    """A policy that cannot be applied: an unknown category or choice, or `hash` with no key."""


@dataclass(frozen=True)
class PersonalDataPolicy:
    """What the warehouse keeps of each category of a call's personal data. Default: all."""

    phone_numbers: str = KEEP  # keep | hash | drop
    notes: str = KEEP  # keep | drop
    transcript_text: str = KEEP  # keep | drop (side, timing and a question flag stay)
    summaries: str = KEEP  # keep | drop
    recording_urls: str = KEEP  # keep | drop

    def __post_init__(self) -> None:
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise PersonalDataError(
                    f"personal_data.{name} must be one of {', '.join(choices)}, got {value!r}"
                )

    @classmethod
    def of(cls, values: dict[str, Any] | None) -> PersonalDataPolicy:
        """From a mapping (a `defs.yaml` attribute, command-line flags); unknown names refused."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(CHOICES))
        if unknown:
            raise PersonalDataError(
                f"personal_data has no {', '.join(unknown)}; its categories are "
                f"{', '.join(CHOICES)}"
            )
        return cls(**{k: str(v).strip().lower() for k, v in values.items() if v is not None})

    @property
    def keeps_all(self) -> bool:
        return self == PersonalDataPolicy()

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def changes_from(self, before: PersonalDataPolicy) -> tuple[list[str], list[str]]:
        """(categories stricter than `before`, categories looser than `before`)."""
        stricter, looser = [], []
        for name, choices in CHOICES.items():
            now, then = choices.index(getattr(self, name)), choices.index(getattr(before, name))
            if now > then:
                stricter.append(f"{name}: {getattr(before, name)} -> {getattr(self, name)}")
            elif now < then:
                looser.append(f"{name}: {getattr(before, name)} -> {getattr(self, name)}")
        return stricter, looser


# --- phone numbers -------------------------------------------------------------------------------


def normalise_phone(value: Any) -> str:
    """A phone number in E.164 form (`+` and digits) as far as its text allows.

    Close sends `phone`, `local_phone` and `remote_phone` as E.164 (`+14155550100`) and the
    `*_formatted` fields as the same number with spaces and dashes (`+1 415-555-0100`), so both
    normalise to one text. Separators (spaces, dashes, dots, slashes, brackets) are removed and a
    leading `00` becomes `+`. Not done (no numbering-plan data): a national number without its
    country code stays its digits, and an extension stays appended, so such a number joins only
    with the same text."""
    text = str(value).strip()
    digits = re.sub(r"[\s\-./()\[\]]", "", text)
    if digits.startswith("00") and digits[2:].isdigit():
        digits = "+" + digits[2:]
    return digits


def phone_hash(value: Any, key: bytes) -> str:
    """The keyed HMAC-SHA256 (hex) of a number normalised to E.164: equal numbers, whichever
    way they were written, share one hash; without the key it cannot be recomputed. A value that
    is already such a hash is returned as it is (so a policy re-applied changes nothing)."""
    text = str(value).strip()
    if _HASHED.fullmatch(text):
        return text
    return hmac.new(key, normalise_phone(text).encode(), hashlib.sha256).hexdigest()


def key_fingerprint(key: bytes | None) -> str | None:
    """Tells keys apart without revealing them (stored with the policy)."""
    return None if not key else hmac.new(key, b"close-calls key check", "sha256").hexdigest()[:16]


# --- policing records ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CallPolice:
    """A policy with its hash key (needed for `phone_numbers: hash`), applied to call records."""

    policy: PersonalDataPolicy = PersonalDataPolicy()
    key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.policy.phone_numbers == HASH and not self.key:
            raise PersonalDataError(
                f"personal_data.phone_numbers is hash but no hash key is set: set {HASH_KEY_ENV} "
                "(a long random secret, kept as safely as the API key: without it hashes cannot "
                "be recomputed, with another one they no longer join)"
            )

    def call(self, record: Any) -> Any:
        """One call record (as decoded from the API) with the policy applied; a new object."""
        policy = self.policy
        if policy.keeps_all:
            return record
        if not isinstance(record, dict):
            return WITHHELD
        policed = dict(record)
        for name in PHONE_FIELDS:
            value = policed.get(name)
            if value is None or value == "":
                continue
            if policy.phone_numbers == DROP:
                policed[name] = None
            elif policy.phone_numbers == HASH:
                policed[name] = phone_hash(value, self.key)
        for names, choice in ((NOTE_FIELDS, policy.notes), (URL_FIELDS, policy.recording_urls)):
            if choice == DROP:
                policed.update({name: None for name in names if policed.get(name) is not None})
        for key in TRANSCRIPT_KEYS:
            if policed.get(key) is not None:
                policed[key] = self.transcript(policed[key])
        return policed

    def transcript(self, transcript: Any) -> Any:
        """A transcript (summaries and utterances) with the policy applied."""
        drop_text, drop_summaries = (
            self.policy.transcript_text == DROP,
            self.policy.summaries == DROP,
        )
        if not (drop_text or drop_summaries):
            return transcript
        if not isinstance(transcript, dict):
            return WITHHELD
        policed = dict(transcript)
        if drop_summaries:
            policed.update({k: None for k in SUMMARY_KEYS if policed.get(k) is not None})
        utterances = policed.get("utterances")
        if drop_text and utterances:
            policed["utterances"] = (
                [_without_text(u) for u in utterances] if isinstance(utterances, list) else WITHHELD
            )
        return policed

    def raw_calls(self, raw_calls: list[bytes]) -> tuple[list[bytes], int]:
        """Calls as received (JSON text) with the policy applied, as JSON text; and how many had
        a lone surrogate escape replaced (see `records`). Text that is not JSON is returned as
        it is: typing quarantines it, and `rejection` withholds its payload."""
        if self.policy.keeps_all:
            return raw_calls, 0
        policed, repaired = [], 0
        for raw in raw_calls:
            record, was_repaired = _decode(raw)
            if record is _UNREADABLE:
                policed.append(raw)
                continue
            repaired += was_repaired
            policed.append(orjson.dumps(self.call(record)))
        return policed, repaired

    def raw_text(self, text: str | None) -> str | None:
        """A stored `_raw` (or a rejected payload) with the policy applied (SQL's UDF)."""
        if text is None or self.policy.keeps_all:
            return text
        record, _ = _decode(text.encode())
        if record is _UNREADABLE:
            return WITHHELD_PAYLOAD
        return orjson.dumps(self.call(record)).decode()

    def rejection(self, rejection: Rejection) -> Rejection:
        """A quarantined record as it may be stored: one that is not JSON could not be policed,
        so its payload is withheld (its id and reason stay)."""
        if self.policy.keeps_all or rejection.raw is None:
            return rejection
        return replace(rejection, payload=WITHHELD_PAYLOAD, raw=None)


_UNREADABLE = object()


def _decode(raw: bytes) -> tuple[Any, int]:
    try:
        return orjson.loads(raw), 0
    except orjson.JSONDecodeError:
        fixed = repair_lone_surrogates(raw)
        if fixed is not None:
            try:
                return orjson.loads(fixed), 1
            except orjson.JSONDecodeError:
                pass
    return _UNREADABLE, 0


def _without_text(utterance: Any) -> Any:
    """An utterance without its text, keeping side, timing and whether it asked a question (as
    the dbt models decide it: the text contains `?`), so conversation metrics stay exact."""
    if not isinstance(utterance, dict):
        return WITHHELD
    text = utterance.get("text")
    policed = dict(utterance)
    if text is not None:
        policed["is_question"] = isinstance(text, str) and "?" in text
        policed["text"] = None
    return policed


# --- rows already stored -------------------------------------------------------------------------

POLICY_COLUMNS = [f.name for f in fields(PersonalDataPolicy)]


def stored_policy(con: duckdb.DuckDBPyConnection) -> tuple[PersonalDataPolicy, str | None] | None:
    """The policy (and key fingerprint) the warehouse's rows were last written with; None for a
    warehouse written before policies existed."""
    row = con.execute(
        f"SELECT {', '.join(POLICY_COLUMNS)}, key_fingerprint FROM close.personal_data_policy"
    ).fetchall()
    if not row:
        return None
    row = row[0]
    return PersonalDataPolicy(*row[:-1]), row[-1]


def apply_to_stored(con: duckdb.DuckDBPyConnection, police: CallPolice) -> list[str]:
    """Before a run syncs: bring the rows already stored under `police`'s policy when it is
    stricter than the one they were written with (one transaction), and record the policy.
    Returns the lines the run should say (none when nothing changed)."""
    stored = stored_policy(con)
    before, fingerprint = stored if stored else (PersonalDataPolicy(), None)
    stricter, looser = police.policy.changes_from(before)
    new_fingerprint = key_fingerprint(police.key) if police.policy.phone_numbers == HASH else None
    said = []
    with warehouse.transaction(con):
        if stored is None:  # first run of this version: calls deleted earlier still hold data
            erased = erase_deleted_calls(con)
            if erased:
                said.append(f"personal data: erased the personal fields of {erased} calls "
                            "deleted in Close before this version")  # fmt: skip
        calls = _rewrite_stored(con, police) if stricter else 0
        if calls:
            said.append(f"personal data: the policy is stricter than the stored rows' "
                        f"({'; '.join(stricter)}): rewrote {calls} stored calls")  # fmt: skip
        if looser:
            said.append(f"personal data: the policy is looser than the stored rows' "
                        f"({'; '.join(looser)}): new rows keep more, but what was dropped or "
                        "hashed before cannot be restored (a reconcile re-reads calls Close "
                        "still has only when they change)")  # fmt: skip
        if (
            fingerprint
            and new_fingerprint
            and fingerprint != new_fingerprint
            and before.phone_numbers == HASH
        ):
            said.append("personal data: the hash key differs from the one stored numbers were "
                        "hashed with: their hashes will not join the new ones")  # fmt: skip
        if stored is None or stricter or looser or fingerprint != new_fingerprint:
            con.execute("DELETE FROM close.personal_data_policy")
            con.execute(
                f"INSERT INTO close.personal_data_policy ({', '.join(POLICY_COLUMNS)}, "
                "key_fingerprint, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [*police.policy.as_dict().values(), new_fingerprint, datetime.now(UTC)],
            )
    for line in said:
        log.info(line)
    return said


REWRITE_BATCH = 8_192  # calls read, policed and written back at a time (bounds memory)


def _rewrite_stored(con: duckdb.DuckDBPyConnection, police: CallPolice) -> int:
    """Every stored call, its utterances and quarantined payloads under `police`'s policy: `_raw`
    through the same Python function as new records, a batch of calls at a time, then the typed
    columns from it in SQL (police_stored.sql). Returns how many calls were rewritten."""
    count, after = 0, ""
    while True:
        rows = con.execute(
            "SELECT id, CAST(_raw AS VARCHAR) FROM close.calls WHERE id > ? ORDER BY id LIMIT ?",
            [after, REWRITE_BATCH],
        ).fetchall()
        if not rows:
            break
        policed = pa.table(
            {
                "id": pa.array([call_id for call_id, _ in rows], pa.string()),
                "raw": pa.array([police.raw_text(raw) for _, raw in rows], pa.string()),
            }
        )
        with warehouse.registered(con, policed_calls=policed):
            con.execute(
                "UPDATE close.calls AS t SET _raw = p.raw FROM policed_calls AS p WHERE t.id = p.id"
            )
        count, after = count + len(rows), rows[-1][0]
    warehouse.run_script(
        con, "police_stored.sql", {"drop_text": police.policy.transcript_text == DROP}
    )
    payloads = con.execute(
        "SELECT DISTINCT payload FROM close.rejected_records WHERE object_type IN ('call', 'event')"
    ).fetchall()
    for (payload,) in payloads:
        con.execute(
            "UPDATE close.rejected_records SET payload = ?, payload_bytes = NULL "
            "WHERE object_type IN ('call', 'event') AND payload = ?",
            [police.raw_text(payload), payload],
        )
    return count


# --- erasure -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Erased:
    """What an erasure changed (counts only: never the values)."""

    calls: int = 0  # calls whose personal fields were removed
    utterances: int = 0  # utterance texts removed
    rejected_records: int = 0  # quarantined payloads withheld


def erase_deleted_calls(con: duckdb.DuckDBPyConnection) -> int:
    """Remove the personal fields of every call marked deleted (inside the caller's
    transaction); returns how many calls were erased."""
    ids = [i for (i,) in con.execute(
        "SELECT id FROM close.calls WHERE _deleted_at IS NOT NULL").fetchall()]  # fmt: skip
    return _erase(con, ids).calls


def erase_calls(
    con: duckdb.DuckDBPyConnection,
    *,
    call_ids: Iterable[str] = (),
    lead_ids: Iterable[str] = (),
    phones: Iterable[str] = (),
    hash_key: bytes | None = None,
) -> Erased:
    """Remove the personal data of the calls named by id, by lead id, or by a phone number they
    hold (as stored, or as its hash when `hash_key` is given), in one transaction. Their id,
    dates, disposition, duration, cost and `_deleted_at` stay, so metrics keep their history."""
    numbers = [p for p in phones if p.strip()]
    forms = {normalise_phone(p) for p in numbers}
    forms |= {phone_hash(p, hash_key) for p in numbers if hash_key}
    named = (
        [("id", i) for i in call_ids]
        + [("lead", i) for i in lead_ids]
        + [("phone", form) for form in sorted(forms)]
    )
    selection = pa.table(
        {
            "kind": pa.array([kind for kind, _ in named], pa.string()),
            "value": pa.array([value for _, value in named], pa.string()),
        }
    )
    with warehouse.transaction(con), warehouse.registered(con, erase_selection=selection):
        (rows,) = warehouse.run_script(con, "select_calls_to_erase.sql")
        return _erase(con, [call_id for (call_id,) in rows])


def _erase(con: duckdb.DuckDBPyConnection, ids: list[str]) -> Erased:
    if not ids:
        return Erased()
    with warehouse.registered(con, erase_ids=pa.table({"id": pa.array(ids, pa.string())})):
        con.execute(
            "CREATE OR REPLACE TEMP TABLE erased_calls AS SELECT DISTINCT id FROM erase_ids"
        )
    return Erased(*warehouse.erase_listed_calls(con))
