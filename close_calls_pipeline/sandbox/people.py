"""The seeded organization around the calls: its id, its users (reps) and its outcomes, and the
seeded ids and picks every part of the sandbox's data uses."""

from __future__ import annotations

import base64
import random

from close_calls_pipeline.sandbox.clock import US_PER_DAY, iso


def make_id(rng: random.Random, prefix: str, chars: int = 43) -> str:
    raw = base64.urlsafe_b64encode(rng.randbytes((chars * 3 + 3) // 4)).decode("ascii")
    return prefix + raw[:chars]


def pick(rnd, seq):
    """One item of `seq`, chosen with `rnd` (a `random.Random().random`)."""
    return seq[int(rnd() * len(seq))]


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
