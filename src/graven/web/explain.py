"""The "how it works" page: the parts of the flow, and the three approaches shown on the log's own data.

``approaches()`` reads one target's history and derives, from those real entries, what an audit
table would hold, the state an event-sourced rebuild reaches step by step, and what a separate
system receives and can check. Blocking: run it in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graven.core import canonical, merkle
from graven.core.model import Entry
from graven.forward.formats import native
from graven.sourcing import EventStore
from graven.trail import Trail
from graven.web import accounts, present


@dataclass(frozen=True)
class Component:
    key: str
    name: str
    does: str
    why: str


COMPONENTS = (
    Component(
        "app",
        "Application",
        "Your code: a sign-in, a password reset, a file deletion, a refused attempt.",
        "Only the application knows who asked, for what and why; that knowledge is what an audit trail keeps.",
    ),
    Component(
        "capture",
        "Capture",
        "Turns each attempt into one event: actor, IP, browser, action, targets, "
        "outcome, reason, and old and new value of each field. Secrets are replaced before anything is hashed.",
        "Capturing at one place (a context, trail.action, middleware, database triggers) means denied and "
        "failed attempts are recorded too, not just the successes.",
    ),
    Component(
        "sequencer",
        "Sequencer",
        "Validates events, gives each the next index and commits batches durably before answering.",
        "Gapless, ordered indices are what make a missing or reordered entry detectable.",
    ),
    Component(
        "store",
        "Append-only store",
        "SQLite or PostgreSQL tables that accept INSERT and SELECT; triggers refuse UPDATE and DELETE.",
        "It stops accidents and the application's own credentials from rewriting history; the hashes "
        "catch whoever drops the triggers.",
    ),
    Component(
        "merkle",
        "Merkle tree",
        "Hashes every entry's canonical JSON as a leaf and combines the leaves pairwise up to one root (RFC 9162).",
        "One root stands for the whole log: change one byte anywhere and the root changes; a short "
        "proof shows one entry belongs.",
    ),
    Component(
        "checkpoint",
        "Signed checkpoint",
        "The tree size and root, signed with an Ed25519 key kept outside the database.",
        "Whoever controls the database cannot forge a signature; a new checkpoint is only signed if the "
        "new tree extends the old one.",
    ),
    Component(
        "witnesses",
        "Witnesses",
        "Copies of the checkpoints kept elsewhere: a file beside the key, a witness server, a second database.",
        "Someone who rewrites the whole log and re-signs it is still caught: the witnessed checkpoints disagree.",
    ),
    Component(
        "siem",
        "SIEM",
        "Systems outside the application (JSON Lines files, syslog, Splunk HEC, webhooks, NATS JetStream) receiving "
        "every entry in order, at least once, each batch followed by the signed checkpoint covering it.",
        "The security team sees events where the application's operators cannot edit them, and proves with "
        "the public key alone (graven receive verify, or its own code) that nothing was dropped, changed or reordered.",
    ),
)
LINKS = (
    ("app", "capture"),
    ("capture", "sequencer"),
    ("sequencer", "store"),
    ("sequencer", "merkle"),
    ("merkle", "checkpoint"),
    ("checkpoint", "witnesses"),
    ("store", "siem"),
)


@dataclass(frozen=True)
class Layout:
    """Where each part sits in one drawing of the diagram (a wide one and a narrow one for phones)."""

    name: str
    width: int
    height: int
    box_w: int
    box_h: int
    at: dict[str, tuple[int, int]]

    def boxes(self) -> list[tuple[Component, int, int]]:
        return [(c, *self.at[c.key]) for c in COMPONENTS]

    def paths(self) -> list[str]:
        """SVG paths from one box's edge to the next one's, straight across or straight down."""
        out = []
        for a, b in LINKS:
            (sx, sy), (tx, ty) = self.at[a], self.at[b]
            if sy == ty:
                y = sy + self.box_h // 2
                start, end = (sx + self.box_w, tx - 6) if tx > sx else (sx, tx + self.box_w + 6)
                out.append(f"M{start} {y} L{end} {y}")
            else:
                x = sx + self.box_w // 2
                out.append(f"M{x} {sy + self.box_h} L{x} {ty - 6}")
        return out


WIDE = Layout(
    "wide", 900, 420, 180, 64,
    {"app": (20, 30), "capture": (245, 30), "sequencer": (470, 30), "store": (695, 30),
     "merkle": (470, 180), "siem": (695, 180), "checkpoint": (470, 330), "witnesses": (695, 330)},
)  # fmt: skip
NARROW = Layout(
    "narrow", 400, 560, 170, 60,
    {"app": (10, 10), "capture": (220, 10), "store": (10, 150), "sequencer": (220, 150),
     "siem": (10, 290), "merkle": (220, 290), "witnesses": (10, 430), "checkpoint": (220, 430)},
)  # fmt: skip
LAYOUTS = (WIDE, NARROW)


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
    sourced: bool = False  # the replay is of an event-sourced account's stream (its events, not its changes)


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
    _replay_account(trail, target, out)
    decisive = [e for e in history if e.changes and e.outcome == "success"]
    shipped = decisive[0] if decisive else history[-1]
    out.shipped = shipped
    body = trail.store.entry(shipped.index) or canonical.canonical(shipped.data)  # the leaf, as stored
    out.shipped_line = native(shipped.index, body, merkle.leaf_hash(body)).decode()  # as graven forward sends it
    out.checkpoint = trail.latest_checkpoint() or ""
    return out


def _replay_account(trail: Trail, target: tuple[str, str], out: Approaches) -> None:
    """For a demo customer whose account is event-sourced: the replay of its stream, event by event
    (failed sign-ins included: they change the account), from the account as it was opened."""
    if target[0] != accounts.STREAM_TYPE:
        return
    events = EventStore(trail).read(target)
    if not events:
        return
    start = accounts.OPENED.get(target[1])
    states = accounts.replay(start, [(e.type, e.data) for e in events], target[1])
    out.sourced = True
    out.initial_state = start.shown() if start is not None else {}
    out.replay = [{"entry": e.entry, "state": s.shown(), "event": e.type, "version": e.version}
                  for e, s in zip(events, states, strict=True)]  # fmt: skip
    out.final_state = states[-1].shown()
