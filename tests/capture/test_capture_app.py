"""Capture from the application: context, every attempt recorded, async, without ceremony."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import graven
from graven.trail import Trail


class NotAllowed(Exception):
    """A framework's own permission error, configured as a denial."""


def last(trail: Trail) -> graven.Entry:
    return trail.get(trail.size - 1)


class TestContext:
    def test_entries_inside_carry_the_context(self, trail: Trail) -> None:
        """Actor, where from, source, reason and request ids come from the context."""
        with trail.context(actor="u-17", ip="198.51.100.23", user_agent="Firefox", request_id="r-1", source="web"):
            trail.record(action="customer.view", targets=[("customer", "c-1")])
        entry = last(trail)
        assert {"type": "user", "id": "u-17", "ip": "198.51.100.23", "user_agent": "Firefox"} == entry.actor
        assert ("web", {"request_id": "r-1"}) == (entry.get("source"), entry.get("context"))

    def test_nested_scopes_and_event_fields_win(self, trail: Trail) -> None:
        """An inner scope adds to the outer one; what an event states itself is never overridden."""
        with trail.context(actor="u-1", request_id="r-1"), trail.context(reason="ticket 7", route="/x"):
            trail.record(action="a.b", reason="own reason", context={"request_id": "mine"})
        entry = last(trail)
        assert "own reason" == entry.get("reason")
        assert {"request_id": "mine", "route": "/x"} == entry.get("context")
        assert "u-1" == entry.actor["id"]

    def test_outside_a_scope_nothing_is_added(self, trail: Trail) -> None:
        """Once a scope ends its context is gone."""
        with trail.context(actor="u-1", reason="inside"):
            pass
        trail.record(action="a.b", actor="u-2")
        assert (None, "u-2") == (last(trail).get("reason"), last(trail).actor["id"])

    def test_threads_do_not_share_context(self, trail: Trail) -> None:
        """Each thread records under its own actor; none leaks into another."""
        barrier = threading.Barrier(4)

        def work(n: int) -> None:
            with trail.context(actor=f"u-{n}", request_id=f"r-{n}"):
                barrier.wait()
                for _ in range(10):
                    trail.record(action="item.touch", targets=[("item", str(n))])

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for entry in trail.query(limit=100):
            n = entry.targets[0]["id"]
            assert (f"u-{n}", f"r-{n}") == (entry.actor["id"], entry.get("context")["request_id"])

    def test_asyncio_tasks_do_not_share_context(self, trail: Trail) -> None:
        """Concurrent tasks with different actors each record under their own."""

        async def task(n: int) -> None:
            with trail.context(actor=f"u-{n}"):
                await asyncio.sleep(0.01 * (3 - n))
                await trail.arecord(action="item.touch", targets=[("item", str(n))])
                async with trail.action("item.check", target=("item", str(n))):
                    await asyncio.sleep(0)

        async def main() -> None:
            await asyncio.gather(*(task(n) for n in range(3)))

        asyncio.run(main())
        entries = trail.query(limit=100).entries
        assert 6 == len(entries)
        for entry in entries:
            assert f"u-{entry.targets[0]['id']}" == entry.actor["id"]


class TestAction:
    def test_success(self, trail: Trail) -> None:
        """A block that completes is one success entry with its changes."""
        with trail.context(actor="u-1"), trail.action("customer.update", target=("customer", "c-1")) as a:
            a.change("email", "a@example.com", "b@example.com")
        entry = trail.get(a.index or 0)
        assert ("success", [{"field": "email", "old": "a@example.com", "new": "b@example.com"}]) == (
            entry.outcome,
            entry.changes,
        )

    def test_denied_by_exception_and_reraised(self, trail: Trail) -> None:
        """Raising Denied records a denial with its reason and the exception propagates."""
        with (
            trail.context(actor="u-2"),
            pytest.raises(graven.Denied),
            trail.action("file.delete", target=("file", "f")),
        ):
            raise graven.Denied("permission files.delete required")
        entry = last(trail)
        assert ("denied", "permission files.delete required") == (entry.outcome, entry.get("reason"))

    def test_denied_by_call(self, trail: Trail) -> None:
        """a.deny(reason) records a denial without raising."""
        with trail.context(actor="u-2"), trail.action("role.grant") as a:
            a.deny("not an admin")
        assert ("denied", "not an admin") == (last(trail).outcome, last(trail).get("reason"))

    def test_configured_denial_type(self, tmp_path: object) -> None:
        """A framework's permission error can be configured to count as a denial (graven.open(denied=...))."""
        from pathlib import Path

        folder = Path(str(tmp_path))
        graven.init(folder / "t.db", signing_key=folder / "k").close()
        with graven.open(folder / "t.db", signing_key=folder / "k", denied=[NotAllowed]) as trail:
            with trail.context(actor="u-1"), pytest.raises(NotAllowed), trail.action("a.b"):
                raise NotAllowed("nope")
            assert ("denied", "nope") == (last(trail).outcome, last(trail).get("reason"))
            with trail.context(actor="u-1"), pytest.raises(KeyError), trail.action("a.b"):
                raise KeyError("other")
            assert "failure" == last(trail).outcome
        with pytest.raises(graven.ConfigError, match="denied: must be exception types"):
            graven.open(folder / "t.db", signing_key=folder / "k", denied=["NotAllowed"])  # type: ignore[list-item]

    def test_failure_keeps_type_and_message_not_traceback(self, trail: Trail) -> None:
        """Any other exception is a failure naming the error; the exception propagates."""
        with trail.context(actor="u-1"), pytest.raises(ZeroDivisionError), trail.action("report.build"):
            _ = 1 / 0
        entry = last(trail)
        assert ("failure", "ZeroDivisionError: division by zero") == (entry.outcome, entry.get("reason"))
        assert "Traceback" not in str(entry.data)

    def test_exactly_one_entry_each_time(self, trail: Trail) -> None:
        """Whatever happens inside, each block is one entry."""
        for outcome in ("ok", "deny", "fail"):
            with trail.context(actor="u-1"), trail.action("a.b") as a:
                if outcome == "deny":
                    a.deny("x")
        with pytest.raises(ValueError, match="bad"), trail.context(actor="u-1"), trail.action("a.b"):
            raise ValueError("bad")
        assert ["success", "denied", "success", "failure"] == [e.outcome for e in trail.query(limit=10)]

    def test_audited_decorator_sync_and_async(self, trail: Trail) -> None:
        """@trail.audited records each call of a function, sync or async, with its target."""

        @trail.audited("file.delete", target=lambda file_id: ("file", file_id))
        def delete(file_id: str) -> str:
            if file_id == "locked":
                raise graven.Denied("file is locked")
            return "deleted"

        @trail.audited("file.read")
        async def read() -> str:
            return "content"

        with trail.context(actor="u-1"):
            assert "deleted" == delete("f-1")
            with pytest.raises(graven.Denied):
                delete("locked")
            assert "content" == asyncio.run(read())
        got = [(e.action, e.outcome, [t["id"] for t in e.targets]) for e in trail.query(limit=10)]
        assert [
            ("file.delete", "success", ["f-1"]),
            ("file.delete", "denied", ["locked"]),
            ("file.read", "success", []),
        ] == got


class TestLogin:
    def test_failed_sign_ins_are_recorded(self, trail: Trail) -> None:
        """Three wrong passwords are three failures; a right one a success."""
        with trail.context(ip="203.0.113.9", source="web"):
            for _ in range(3):
                trail.login_attempt("c-1042", ok=False, reason="wrong password")
            trail.login_attempt("c-1042", ok=True)
        entries = trail.query(action="session.login", limit=10).entries
        assert ["failure"] * 3 + ["success"] == [e.outcome for e in entries]
        assert {"type": "user", "id": "c-1042", "ip": "203.0.113.9"} == entries[0].actor


class TestRedaction:
    def test_diff_redacts_secrets_before_hashing(self, trail: Trail) -> None:
        """A customer's email and password changed: the email diff is kept, the password only marked."""
        before = {"email": "ada@example.com", "password_hash": "$2b$old", "profile": {"name": "Ada", "api_key": "k1"}}
        after = {"email": "ada@evil.example", "password_hash": "$2b$new", "profile": {"name": "Ada", "api_key": "k2"}}
        with trail.context(actor="u-17"), trail.action("customer.update", target=("customer", "c-1042")) as a:
            a.diff(before, after)
        entry = trail.get(a.index or 0)
        assert [
            {"field": "email", "old": "ada@example.com", "new": "ada@evil.example"},
            {"field": "password_hash", "redacted": True},
            {"field": "profile.api_key", "redacted": True},
        ] == entry.changes
        stored = trail.store.entry(a.index or 0) or b""
        assert b"$2b$" not in stored
        assert b"k2" not in stored

    def test_every_path_redacts(self, trail: Trail) -> None:
        """record, record_many and free-form context/metadata never store a secret's value."""
        trail.record(action="a.b", actor="u", changes=[{"field": "Password", "old": "p1", "new": "p2"}])
        trail.record_many([{"action": "a.b", "actor": "u", "metadata": {"nested": {"API-Key": "sk-live-1"}}}])
        with trail.context(actor="u", token="t-secret"):
            trail.record(action="a.c")
        raw = b"".join(trail.store.entry(i) or b"" for i in range(trail.size))
        for secret in (b"p1", b"p2", b"sk-live-1", b"t-secret"):
            assert secret not in raw
        assert trail.verify().ok


def test_fingerprint_key_from_a_file(tmp_path: Path) -> None:
    """With a fingerprint key file, equal secret values get equal fingerprints and the values stay out."""
    key = tmp_path / "fingerprint.key"
    key.write_bytes(b"k" * 32)
    with graven.open(tmp_path / "t.db", signing_key=tmp_path / "s.key", fingerprint_key=key) as trail:
        for new in ("hunter2", "hunter2", "other"):
            trail.record(
                action="user.password.change", actor="u-1", changes=[{"field": "password", "old": "x", "new": new}]
            )
        prints = [e.changes[0]["fingerprint"] for e in trail.query(limit=10)]
        assert prints[0] == prints[1] != prints[2]
        assert b"hunter2" not in b"".join(trail.store.entry(i) or b"" for i in range(3))
    short = tmp_path / "short.key"
    short.write_bytes(b"tiny")
    with pytest.raises(graven.ConfigError, match="at least 16 bytes"):
        graven.open(tmp_path / "t.db", signing_key=tmp_path / "s.key", fingerprint_key=short)
