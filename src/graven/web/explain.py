"""The "how it works" page: the parts of the flow, and the three approaches shown on the log's own data.

``approaches()`` reads one target's history and derives, from those real entries, what an audit
table would hold, the state an event-sourced rebuild reaches step by step, and what a separate
system receives and can check. Blocking: run it in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graven.core import canonical
from graven.core.model import Entry
from graven.trail import Trail
from graven.web import present


@dataclass(frozen=True)
class Component:
    key: str
    name: str
    does: str
    why: str
    x: int
    y: int


# The diagram: 3 rows of 4 columns, boxes 180 x 64 in a 900 x 420 view.
COMPONENTS = (
    Component(
        "app",
        "Application",
        "Your code: a sign-in, a password reset, a file deletion, a refused attempt.",
        "Only the application knows who asked, for what and why; that knowledge is what an audit trail keeps.",
        20,
        30,
    ),
    Component(
        "capture",
        "Capture",
        "Turns each attempt into one event: actor, IP, browser, action, targets, "
        "outcome, reason, and old and new value of each field. Secrets are replaced before anything is hashed.",
        "Capturing at one place (a context, trail.action, middleware, database triggers) means denied and "
        "failed attempts are recorded too, not just the successes.",
        245,
        30,
    ),
    Component(
        "sequencer",
        "Sequencer",
        "Validates events, gives each the next index and commits batches durably before answering.",
        "Gapless, ordered indices are what make a missing or reordered entry detectable.",
        470,
        30,
    ),
    Component(
        "store",
        "Append-only store",
        "SQLite or PostgreSQL tables that accept INSERT and SELECT; triggers refuse UPDATE and DELETE.",
        "It stops accidents and the application's own credentials from rewriting history; the hashes "
        "catch whoever drops the triggers.",
        695,
        30,
    ),
    Component(
        "merkle",
        "Merkle tree",
        "Hashes every entry's canonical JSON as a leaf and combines the leaves pairwise up to one root (RFC 9162).",
        "One root stands for the whole log: change one byte anywhere and the root changes; a short "
        "proof shows one entry belongs.",
        470,
        180,
    ),
    Component(
        "checkpoint",
        "Signed checkpoint",
        "The tree size and root, signed with an Ed25519 key kept outside the database.",
        "Whoever controls the database cannot forge a signature; a new checkpoint is only signed if the "
        "new tree extends the old one.",
        470,
        330,
    ),
    Component(
        "witnesses",
        "Witnesses",
        "Copies of the checkpoints kept elsewhere: a file beside the key, a witness server, a second database.",
        "Someone who rewrites the whole log and re-signs it is still caught: the witnessed checkpoints disagree.",
        695,
        330,
    ),
    Component(
        "siem",
        "SIEM",
        "Systems outside the application (syslog, Splunk, webhooks) receiving every entry, with proofs they can check.",
        "The security team sees events where the application's operators cannot edit them, and can "
        "prove nothing was dropped.",
        695,
        180,
    ),
)
LINKS = (("app", "capture"), ("capture", "sequencer"), ("sequencer", "store"), ("sequencer", "merkle"),
         ("merkle", "checkpoint"), ("checkpoint", "witnesses"), ("store", "siem"))  # fmt: skip
BOX_W, BOX_H = 180, 64


def link_path(a: str, b: str) -> str:
    """An SVG path from one box's edge to the next one's, straight across or straight down."""
    by_key = {c.key: c for c in COMPONENTS}
    s, t = by_key[a], by_key[b]
    if s.y == t.y:
        y = s.y + BOX_H // 2
        return f"M{s.x + BOX_W} {y} L{t.x - 6} {y}"
    x = s.x + BOX_W // 2
    return f"M{x} {s.y + BOX_H} L{x} {t.y - 6}"


@dataclass
class Approaches:
    """The three approaches, each shown on one target's real entries."""

    target: tuple[str, str] | None
    target_name: str = ""
    audit_rows: list[dict[str, Any]] = field(default_factory=list)
    replay: list[dict[str, Any]] = field(default_factory=list)
    initial_state: dict[str, str] = field(default_factory=dict)
    final_state: dict[str, str] = field(default_factory=dict)
    shipped: Entry | None = None
    shipped_line: str = ""
    checkpoint: str = ""


def pick_target(trail: Trail, preferred: tuple[str, str] | None) -> tuple[str, str] | None:
    """The target to explain with: ``preferred`` if it has entries, else the newest entry's with changes."""
    if preferred is not None and trail.query(target=preferred, limit=1).entries:
        return preferred
    for entry in trail.query(newest_first=True, limit=200).entries:
        if entry.changes and entry.targets:
            return entry.targets[0]["type"], entry.targets[0]["id"]
    return None


def approaches(trail: Trail, preferred: tuple[str, str] | None = None) -> Approaches:
    """The audit table, the replayed state and what a separate system receives, from real entries."""
    target = pick_target(trail, preferred)
    if target is None:
        return Approaches(None)
    history = trail.history(target, limit=500)
    name = next((t.get("name", "") for e in history for t in e.targets if (t["type"], t["id"]) == target), "")
    out = Approaches(target, name or f"{target[0]}:{target[1]}")
    state: dict[str, str] = {}
    for entry in history:
        for change in entry.changes or [{}]:
            out.audit_rows.append({"entry": entry, "change": change})
        if entry.outcome != "success" or not entry.changes:
            continue
        for change in entry.changes:
            fieldname = change["field"]
            if change.get("redacted"):
                state[fieldname] = f"(changed; {present.HIDDEN})"
            else:
                out.initial_state.setdefault(fieldname, present.value(change.get("old")))
                state[fieldname] = present.value(change.get("new"))
        out.replay.append({"entry": entry, "state": dict(state)})
    out.final_state = state
    decisive = [e for e in history if e.changes and e.outcome == "success"]
    shipped = decisive[0] if decisive else history[-1]
    out.shipped = shipped
    out.shipped_line = canonical.canonical(shipped.data).decode()  # the leaf: what the Merkle tree hashes
    out.checkpoint = trail.latest_checkpoint() or ""
    return out
