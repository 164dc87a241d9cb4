"""A fixed corpus of events, valid and not, whose outcomes (leaf hash, or error field, rule and value)
are frozen in golden_outcomes.json: leaf bytes and error messages must never change.

The outcomes were written by the implementation proven identical, on generated events, to the
validation of entry v1 as it was before the one schema (the frozen copy that served as the oracle).
Regenerate only on purpose: ``python -m tests.core.golden`` (and say why in the commit).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from graven.core.model import Actor, Change, Target, ValidationError

GOLDEN = Path(__file__).with_name("golden_outcomes.json")
NOW = datetime(2026, 11, 26, 9, 30, 0, 250000, tzinfo=UTC)

TEXTS = ["u-1", "c-42", "José", "Jose\u0301", "a\u200bb", "", " ", "x" * 200, "x" * 201, "名前", "\U0001f600",
         "UPPER", "user.login", "a..b", "web", "Web", "job.nightly", "\x00", "a\x00b", "\ud800", "ok text", "9",
         "\u212b", "e\u0301" * 150, "tab\there"]  # fmt: skip
VALUES: list[Any] = [None, True, False, 0, -1, 7, 2**53 - 1, 2**53, -(2**53), 10**20, 1.5, 2.0, -0.0, 1e21, 1e-7,
                     1e16, 2.0**53, float("nan"), float("inf"), "s", "é", "\ud800", "r" * 70_000, [1, "a"], (1, 2),
                     {"k": "v"}, {"é": [1.25, {"z": None}]}, {"\U0001f600": 1, "\ue000": 2}, {1: "int key"},
                     [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]], {"b": 1, "a": 2}]  # fmt: skip
TIMES: list[Any] = ["2026-11-25T10:00:00Z", "2026-11-25T10:00:00.123456Z", "2026-11-25T10:00:00+02:00",
                    "2026-11-25T10:00:00", "yesterday", "1969-12-31T23:59:59Z", " 2026-01-01T00:00:00.5z ",
                    "2026-02-30T10:00:00.000000Z", datetime(2026, 5, 1, 12, tzinfo=UTC), datetime(2026, 5, 1),
                    datetime(2026, 5, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))), 1700000000]  # fmt: skip
IPS: list[Any] = ["10.0.0.1", "2001:DB8::0:1", "::ffff:1.2.3.4", " 10.0.0.1", "010.0.0.1", "256.1.1.1", "fe80::1%eth0",
                  "not an ip", 7]  # fmt: skip


def golden_events(count: int = 800, seed: int = 20261205) -> list[Any]:
    """``count`` events from a seeded generator: mostly the common shape, with oddities mixed in."""
    rng = random.Random(seed)

    def often(good: Any, odd: list[Any], odds: int = 10) -> Any:
        return rng.choice(odd) if rng.randrange(odds) == 0 else good

    events: list[Any] = []
    for n in range(count):
        actor: Any = {"type": often("user", ["service", "system", "anonymous", "robot", None, ["user"]]),
                      "id": often(f"u-{n % 13}", [*TEXTS, 5, None])}  # fmt: skip
        for key, pool in (("name", TEXTS), ("ip", IPS), ("user_agent", TEXTS), ("session", TEXTS)):
            if rng.randrange(3) == 0:
                actor[key] = often(pool[0], pool)
        actor = often(actor, ["u-9", Actor(id="u-2"), Actor(type="system"), {"type": "user", "idd": "x"}], 12)
        event: dict[Any, Any] = {
            "actor": actor,
            "action": often("customer.update", ["user.login", "a..b", "UPPER", "x.y-z_1", "", None, 3], 6),
        }
        if rng.randrange(2):
            targets: Any = [{"type": often("customer", TEXTS, 6), "id": often(f"c-{n}", [*TEXTS, 5, 10**20, True], 6)}
                            for _ in range(rng.randrange(4))]  # fmt: skip
            if targets and rng.randrange(8) == 0:
                targets.append(dict(targets[0]))
            event["targets"] = often(targets, [("file", "f-1"), [Target("doc", "d-1"), ("user", 7)], "t", [{}]], 8)
        if rng.randrange(2):
            changes: list[Any] = []
            for _ in range(rng.randrange(4)):
                shape = rng.randrange(10)
                field = often("plan", TEXTS, 6)
                if shape == 0:
                    changes.append({"field": field, "redacted": True, **({"fingerprint": "ab12"} if n % 2 else {})})
                elif shape == 1:
                    changes.append({"field": field, "redacted": rng.choice([False, 1, None]), "new": 1})
                elif shape == 2:
                    changes.append(rng.choice([{"field": field}, {"field": "f", "fingerprint": "x", "old": 1}, "bad"]))
                else:
                    changes.append({"field": field, "old": often("a", VALUES), "new": often("b", VALUES)})
            event["changes"] = often(changes, [[Change("plan", "free", "pro")], {}, "x", tuple(changes)], 8)
        for key, good, pool in (
            ("occurred_at", "2026-11-25T10:00:00Z", TIMES), ("outcome", "denied", ["ok", "", None, 1]),
            ("reason", "ticket T-1", ["é", "\ud800", "r" * 70_000, 5]), ("source", "web", TEXTS),
            ("tenant", "t-1", TEXTS), ("id", f"id-{n}", TEXTS), ("v", 1, [1.0, True, 2, "1"]),
            ("context", {"request_id": f"r-{n}"}, [*VALUES[-10:], "x", []]),
            ("metadata", {"n": n}, [*VALUES[-10:], {"big": "m" * 70_000}]),
        ):  # fmt: skip
            if rng.randrange(3) == 0:
                event[key] = often(good, pool)
        if rng.randrange(40) == 0:
            event[rng.choice(["index", "recorded_at", "extra", "Actor"])] = 1
        events.append(event)
    return events


def outcome_text(prepare: Callable[..., Any], event: Any) -> str:
    """One line: ``ok`` with the leaf hash and the ids drawn, or the error's type, field, rule and value."""
    numbers = itertools.count()
    drawn = [0]

    def new_id() -> str:
        drawn[0] += 1
        return f"id-{next(numbers)}"

    try:
        prepared = prepare(copy.deepcopy(event), now=NOW, new_id=new_id)
    except ValidationError as exc:
        given = repr(exc.value)
        if len(given) > 120:
            given = f"{given[:80]}...sha256:{hashlib.sha256(given.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"
        return f"error {exc.field!r} {exc.rule!r} {given} ids={drawn[0]}"
    return f"ok {prepared.leaf_hash.hex()} ids={drawn[0]}"


if __name__ == "__main__":
    from graven.core import model

    lines = [outcome_text(model.prepare, event) for event in golden_events()]
    GOLDEN.write_text(json.dumps(lines, indent=0, ensure_ascii=True) + "\n")
    print(f"{len(lines)} outcomes, {sum(line.startswith('ok') for line in lines)} accepted, written to {GOLDEN}")
