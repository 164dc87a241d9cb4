"""The demo company's event-sourced customer accounts: the pure aggregate, and the sandbox's log as its store."""

from __future__ import annotations

import html
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from graven import demo
from graven.core.streams import stream_of
from graven.errors import ValidationError
from graven.sourcing import EventStore
from graven.web import Sandbox, accounts, pretend

ADA = ("customer", "c-1042")


def story_account_events() -> list[tuple[str, dict[str, object]]]:
    events = [demo.story(datetime(2026, 12, 3, tzinfo=UTC))[i]["metadata"]["sourcing"] for i in range(4, 10)]
    return [(e["event"], e["data"]) for e in events]


class TestAggregate:
    def test_the_story_replays_to_the_demo_company_of_the_morning_after(self) -> None:
        """Ada's account as opened, plus the story's events, is the account the pretend company starts with."""
        state = accounts.replay(accounts.OPENED["c-1042"], story_account_events())[-1]
        ada = pretend.initial_world().customers["c-1042"]
        assert (ada.email, ada.credit_limit, ada.locked, ada.failed_logins, ada.closed) == (
            state.email, state.credit_limit, state.locked, state.failed_logins, state.closed,
        )  # fmt: skip
        assert 1 == state.password_changes

    def test_open_change_lock_unlock_close(self) -> None:
        """Every event of an account's life, replayed from its Opened event."""
        states = accounts.replay(None, [
            ("Opened", {"name": "Ann", "email": "ann@example.com", "credit_limit": 10}),
            ("EmailChanged", {"email": "ann@example.org"}), ("PasswordChanged", {"unlocked": False}),
            ("SignInFailed", {"failed_logins": 1}), ("Locked", {}), ("Unlocked", {}), ("Closed", {}),
        ], "c-9")  # fmt: skip
        last = states[-1]
        assert ("c-9", "ann@example.org", 1, 0, False, True) == (
            last.id, last.email, last.password_changes, last.failed_logins, last.locked, last.closed,
        )  # fmt: skip
        assert states[4].locked

    @pytest.mark.parametrize(
        ("start", "event", "rule"),
        [
            (None, "Locked", "must follow the account's Opened event"),
            (accounts.OPENED["c-1043"], "Opened", "Opened must be an account's first event"),
            (accounts.Account("c-1", "A", "a@example.com", 1, closed=True), "Unlocked", "must not follow Closed"),
            (accounts.OPENED["c-1043"], "Renamed", "must be an account event"),
        ],
    )
    def test_an_impossible_stream_is_named(self, start: accounts.Account | None, event: str, rule: str) -> None:
        """A stream that cannot be replayed says which event and why."""
        with pytest.raises(ValidationError, match=rule) as caught:
            accounts.apply(start, event, {"name": "A", "email": "a@example.com", "credit_limit": 1})
        assert "event" == caught.value.field

    def test_refusals_and_looks_are_no_events(self) -> None:
        """Only what changes the account is an event of its stream."""
        ada = accounts.OPENED["c-1042"]
        assert accounts.event_for("user.password.change", "denied", ada, ada) is None
        assert accounts.event_for("customer.view", "success", ada, ada) is None
        assert accounts.event_for("session.login", "success", ada, ada) is None


class TestSandbox:
    def test_the_story_is_ada_s_stream(self, sandbox: Sandbox) -> None:
        """The seeded log holds Ada's account as the stream customer:c-1042, versions 1 to 6."""
        steps = sandbox.account("c-1042")
        assert [(4, 1), (5, 2), (6, 3), (7, 4), (8, 5), (9, 6)] == [(e.index, e.version) for e, _ in steps]
        assert steps[-1][1].locked

    def test_an_attempt_is_one_entry_and_the_next_event(self, sandbox: Sandbox) -> None:
        """A reset by support is one entry, the stream's next event; the world is what the replay says."""
        done = sandbox.attempt("u-17", "password", {"customer": "c-1042", "new_password": "long-enough-1"}, session="s")
        with sandbox.using() as trail:
            entry = trail.get(done.indices[0])
            assert 11 == trail.size
            position = stream_of(entry.data)
        assert position is not None
        assert (ADA, 7) == (position.stream, position.version)
        assert "redacted" in str(entry.changes)
        event, state = sandbox.account("c-1042")[-1]
        assert ("PasswordChanged", {"unlocked": True}) == (event.type, event.data)
        world = sandbox.world.customers["c-1042"]
        assert (False, 0, False) == (state.locked, state.failed_logins, world.locked)

    def test_three_failed_sign_ins_lock_then_unlock(self, sandbox: Sandbox) -> None:
        """Each failed sign-in is an event, the lock another; support unlocks; all replayed from the log."""
        for _ in range(3):
            sandbox.attempt("anonymous", "login", {"account": "c-1043", "password": "guess"}, session="s")
        assert ["SignInFailed"] * 3 + ["Locked"] == [e.type for e, _ in sandbox.account("c-1043")]
        assert sandbox.world.customers["c-1043"].locked
        sandbox.attempt("u-17", "unlock", {"customer": "c-1043"}, session="s")
        event, state = sandbox.account("c-1043")[-1]
        assert ("Unlocked", 5, False) == (event.type, event.version, state.locked)
        done = sandbox.attempt(
            "anonymous", "login", {"account": "c-1043", "password": "cobol-compiler-59"}, session="s"
        )
        assert "success" == done.decision.outcome

    def test_a_closed_account_takes_no_more_changes(self, sandbox: Sandbox) -> None:
        """Closing is an event; a change after it fails, and its entry is no event of the stream."""
        sandbox.attempt("u-1", "close", {"customer": "c-1044"}, session="s")
        done = sandbox.attempt("u-1", "email", {"customer": "c-1044", "email": "alan@example.org"}, session="s")
        assert "failure" == done.decision.outcome
        assert ["Closed"] == [e.type for e, _ in sandbox.account("c-1044")]
        with sandbox.using() as trail:
            assert 1 == EventStore(trail).version(("customer", "c-1044"))
            assert trail.verify().ok

    def test_how_it_works_replays_ada_event_by_event(self, client: TestClient) -> None:
        """The "how it works" page replays Ada's stream from the log, each step a link to its entry."""
        page = " ".join(html.unescape(client.get("/how").text).split())
        assert "the stream <code>customer:c-1042</code>" in page
        assert "v1 PasswordChanged" in page
        assert "v6 Locked" in page
        assert 'href="/entry/9"' in page
        assert "failed_logins = 3" in page
        link = "/state?target=customer%3Ac-1042&at_index=5"
        assert f'href="{link}"' in page
        assert "ada.lovelace@mailbox.example" in client.get(link).text
