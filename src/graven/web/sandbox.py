"""Where the web UI reads its log from: a fixed :class:`Trail`, or the demo's :class:`Sandbox`.

The sandbox owns a folder. It keeps one SQLite log there, seeded with the locked-out-customer
story, records every attempt made in the pretend application through ``trail.action(...)`` /
``trail.login_attempt(...)``, starts a fresh log on reset, and can tamper with its own database
on purpose so that a visitor watches verification catch it. Blocking: call it from a worker thread.
MUST NOT close a log while a request still uses it: readers hold it through :meth:`using`.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from graven import demo
from graven.action import Denied
from graven.core import canonical
from graven.errors import ConfigError, GravenError, ValidationError
from graven.opening import init
from graven.store.sqlite import SQLiteStore
from graven.trail import MAX_PAGE, Trail
from graven.web import pretend

STORY_CUSTOMER = ("customer", "c-1042")
ROUTES = {
    "login": ("/login", "sign-in"),
    "password": ("/admin/customers/{customer}/reset-password", "admin password reset"),
    "email": ("/admin/customers/{customer}", "customer profile"),
    "credit_limit": ("/admin/customers/{customer}/billing", "credit limit"),
    "grant": ("/admin/roles", "role assignment"),
    "revoke": ("/admin/roles", "role assignment"),
    "delete_file": ("/admin/documents/{document}", "documents"),
    "view_customer": ("/admin/customers/{customer}", "customer record"),
}
MAX_REASON = 1000
MAX_ENTRIES = 5000  # the most a demo log holds; then attempts are refused until Reset


class LogSource(Protocol):
    """What the UI reads: a log it may use for the length of one call, and whether it is the demo."""

    demo: bool

    @property
    def generation(self) -> int: ...

    def using(self) -> Any: ...


class FixedLog:
    """An application's own log: always the same trail, never reset."""

    demo = False
    generation = 0

    def __init__(self, trail: Trail) -> None:
        self.trail = trail

    @contextmanager
    def using(self) -> Iterator[Trail]:
        yield self.trail


class LogFull(GravenError):
    """The demo log holds as many entries as it may; Reset starts a fresh one."""


class _AttemptFailed(GravenError):
    """The pretend application could not do what was asked (recorded as a failure)."""


@dataclass(frozen=True)
class Attempted:
    """An attempt as recorded: the decision and the indices of its entries (the attempt's first)."""

    decision: pretend.Decision
    indices: list[int]


@dataclass(frozen=True)
class Tampering:
    index: int
    message: str


class Sandbox:
    """The demo's log and pretend application, in ``directory`` (which it owns and recreates)."""

    demo = True

    def __init__(self, directory: Path, *, clock: Callable[[], datetime] | None = None, owned: bool = False,
                 max_entries: int = MAX_ENTRIES) -> None:  # fmt: skip
        self.directory = directory
        self.max_entries = max_entries  # an attempt that could take the log past this is refused (LogFull)
        self.owned = owned  # remove the folder on close
        self._clock = clock or (lambda: datetime.now(UTC))
        self._changing = threading.RLock()  # one attempt, reset or tamper at a time
        self._users = threading.Condition()
        self._active: dict[int, int] = {}
        self._generation = 0
        self._trail: Trail | None = None
        self.world = pretend.initial_world()
        self.seeded = 0
        demo.clear_folder(directory)
        self.reset()

    @property
    def generation(self) -> int:
        """Goes up by one at each reset."""
        return self._generation

    @property
    def trail(self) -> Trail:
        if self._trail is None:
            raise ConfigError("the demo log is closed")
        return self._trail

    @contextmanager
    def using(self) -> Iterator[Trail]:
        """The current log, kept open until the block ends even if a reset happens meanwhile."""
        with self._users:
            generation, trail = self._generation, self.trail
            self._active[generation] = self._active.get(generation, 0) + 1
        try:
            yield trail
        finally:
            with self._users:
                self._active[generation] -= 1
                self._users.notify_all()

    def _folder(self, generation: int) -> Path:
        return self.directory / f"log-{generation}"

    def reset(self) -> None:
        """Start a fresh log seeded with the story, and a fresh pretend application."""
        with self._changing:
            generation = self._generation + 1
            folder = self._folder(generation)
            trail = init(folder / "trail.db", signing_key=folder / "signing.key")
            try:
                trail.record_many(demo.story(self._clock()))
                trail.checkpoint()
            except BaseException:
                trail.close()
                raise
            with self._users:
                old, self._trail = self._trail, trail
                previous, self._generation = self._generation, generation
                self.world = pretend.initial_world()
                self.seeded = trail.size
            if old is not None:
                self._retire(previous, old)

    def _retire(self, generation: int, trail: Trail, *, remove: bool = True) -> None:
        """Close a log once no request uses it (waiting at most 30 s), and remove its folder."""
        with self._users:
            self._users.wait_for(lambda: self._active.get(generation, 0) == 0, timeout=30)
            self._active.pop(generation, None)
        trail.close()
        if remove:
            shutil.rmtree(self._folder(generation), ignore_errors=True)

    @property
    def folder(self) -> Path:
        """The folder of the current log (``trail.db`` and ``signing.key``)."""
        return self._folder(self._generation)

    def close(self) -> None:
        """Close the log; keep its folder for the CLI unless the sandbox owns its directory."""
        with self._changing:
            if self._trail is not None:
                self._retire(self._generation, self._trail, remove=self.owned)
                self._trail = None
            if self.owned:
                shutil.rmtree(self.directory, ignore_errors=True)

    # --- the pretend application -------------------------------------------------------------

    def attempt(
        self, persona: str, operation: str, params: Mapping[str, Any], *, session: str, reason: str | None = None
    ) -> Attempted:
        """Decide an attempt, record it (and any consequence), then let the world change.

        Nothing changes when the request is malformed (``ValidationError``), cannot be recorded, or
        could take the log past ``max_entries`` (``LogFull``: an attempt records at most two entries).
        """
        if reason is not None and len(reason) > MAX_REASON:
            raise ValidationError("reason", f"must be at most {MAX_REASON} characters", f"{len(reason)} chars")
        with self._changing, self.using() as trail:
            if trail.size + 2 > self.max_entries:
                raise LogFull(
                    f"the demo log is full: it holds {trail.size} entries and keeps at most {self.max_entries}; "
                    "press Reset to start a fresh one"
                )
            decision = pretend.decide(self.world, persona, operation, params)
            person = self.world.people[persona]
            route, form = ROUTES[operation]
            where = {k: params.get(k, "") for k in ("customer", "document")}
            indices = [_record(trail, decision, person, route.format(**where), form, session, reason or None)]
            if decision.follow_up is not None:
                indices.append(_record_consequence(trail, decision.follow_up))
            self.world = decision.world
        return Attempted(decision, indices)

    # --- counting and tampering ----------------------------------------------------------------

    def counters(self, trail: Trail) -> dict[str, int]:
        """Total, successes, denials and failures among the visitors' entries (after the story)."""
        counts = {"total": 0, "success": 0, "denied": 0, "failure": 0}
        after = self.seeded - 1
        while True:
            page = trail.query(after=after, limit=MAX_PAGE)
            for entry in page.entries:
                counts["total"] += 1
                counts[entry.outcome] = counts.get(entry.outcome, 0) + 1
            if page.next_cursor is None:
                return counts
            after = page.next_cursor

    def tamper(self, index: int | None = None) -> Tampering:
        """Rewrite one stored entry behind the log's back, as someone with the database file could.

        Opens the SQLite file on a connection of its own, drops the trigger that refuses UPDATE on
        entries, rewrites the entry's body (still canonical JSON, indexed columns to match), and puts
        the trigger back. Without ``index``: the story's password change, made to blame the customer.
        """
        with self._changing, self.using() as trail:
            if index is None:
                found = trail.query(action="user.password.change", target=STORY_CUSTOMER, limit=1).entries
                if not found:
                    raise ConfigError("the story's password change is not in this log; reset the demo")
                index = found[0].index
            entry = trail.get(index)
            data, message = _altered(entry.index, dict(entry.data))
            store = trail.store
            if not isinstance(store, SQLiteStore):
                raise ConfigError("only the demo's SQLite log can be tampered with")
            _rewrite(store.path, index, data)
        return Tampering(index, message)


def _record(
    trail: Trail, decision: pretend.Decision, person: pretend.Person, route: str, form: str, session: str,
    reason: str | None,
) -> int:  # fmt: skip
    """One entry for one attempt, with who (and from where), how and why."""
    actor = {k: v for k, v in person.actor.items() if k not in ("ip", "user_agent")}
    scope = trail.context(
        actor=actor, ip=person.ip, user_agent=person.user_agent, session=session, source="web", reason=reason,
        request_id=f"req-{uuid.uuid4().hex[:12]}", route=route, form=form,
    )  # fmt: skip
    with scope:
        if decision.action == "session.login":
            assert decision.actor is not None
            return trail.login_attempt(
                decision.actor, ok=decision.outcome == "success", reason=decision.reason, targets=list(decision.targets)
            )
        action = trail.action(decision.action, targets=list(decision.targets))
        try:
            with action:
                if reason and decision.outcome != "success":
                    action.metadata["stated_reason"] = reason
                if decision.outcome == "denied":
                    raise Denied(decision.reason or "not allowed")
                if decision.outcome == "failure":
                    action.reason = decision.reason
                    raise _AttemptFailed(decision.reason or "failed")
                for field, old, new in decision.changes:
                    action.change(field, old, new)
        except (Denied, _AttemptFailed):
            pass  # recorded by the action; the outcome is the decision's
    assert action.index is not None
    return action.index


def _record_consequence(trail: Trail, decision: pretend.Decision) -> int:
    """What the application does on its own after an attempt (the lockout policy), as a job."""
    return trail.record(
        action=decision.action, actor=decision.actor, targets=list(decision.targets), outcome=decision.outcome,
        reason=decision.reason, source="job",
        changes=[{"field": f, "old": old, "new": new} for f, old, new in decision.changes],
    )  # fmt: skip


def _altered(index: int, data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The entry as a dishonest insider would like it to read, and a sentence saying what changed."""
    actor = dict(data.get("actor") or {})
    if data.get("action") == "user.password.change" and data.get("targets"):
        customer = data["targets"][0]
        was = actor.get("name") or actor.get("id")
        data["actor"] = {"type": "user", "id": customer["id"], "name": customer.get("name", customer["id"]),
                         "ip": "203.0.113.45"}  # fmt: skip
        data["reason"] = "reset by the customer through the emailed link"
        data.get("context", {}).pop("form", None)
        who = customer.get("name", customer["id"])
        return data, f"Entry {index} now says {who} changed the password herself; it said {was} did."
    if data.get("outcome") != "success":
        data["outcome"] = "success"
        data.pop("reason", None)
        return data, f"Entry {index} was a refused or failed attempt; it now says the attempt succeeded."
    was = actor.get("name") or actor.get("id") or actor.get("type")
    data["actor"] = {"type": "system", "id": "maintenance", "name": "nightly maintenance"}
    return data, f"Entry {index} now blames a maintenance job; it named {was}."


def _rewrite(path: Path, index: int, data: dict[str, Any]) -> None:
    """Change one row of ``entries`` directly in the file, then restore the trigger that forbids it."""
    body = canonical.canonical(data).decode()
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'entries_no_update'")
        trigger = row.fetchone()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DROP TRIGGER IF EXISTS entries_no_update")
        actor = data.get("actor") or {}
        conn.execute(
            "UPDATE entries SET body = ?, actor_id = ?, outcome = ? WHERE idx = ?",
            (body, actor.get("id"), data.get("outcome"), index),
        )
        if trigger is not None:
            conn.execute(trigger[0])
        conn.execute("COMMIT")
    finally:
        conn.close()
