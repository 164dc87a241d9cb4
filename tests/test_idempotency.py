"""An id names one event: a repeat with the same content keeps its index, other content is refused.

On SQLite and PostgreSQL through the library, and over HTTP through the service.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import graven
from graven import IdempotencyConflict
from graven.core.idempotency import differing_fields
from graven.trail import Trail
from tests.pgserver import Server
from tests.server.server_harness import SETUP, Served


def _paid(**extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "invoice-9-paid", "action": "invoice.pay", "actor": {"type": "service", "id": "billing"},
        "targets": [{"type": "invoice", "id": "9"}], "metadata": {"amount": 120},
    }  # fmt: skip
    event.update(extra)
    return event


@pytest.fixture(params=["sqlite", "postgres"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Trail]:
    """A fresh log on each backend, with its signing key beside it."""
    url: str | Path = tmp_path / "trail.db"
    if request.param == "postgres":
        server: Server = request.getfixturevalue("pg")
        url = server.schema_url("idem")
    with graven.init(url, signing_key=tmp_path / "signing.key") as trail:
        yield trail


def _conflicts(trail: Trail) -> list[dict[str, Any]]:
    return [e.data for e in trail.query(action="event.id_conflict", limit=100)]


class TestLibrary:
    def test_an_identical_repeat_returns_the_first_index(self, log: Trail) -> None:
        """A retry without occurred_at, later (another recorded_at), is the same event."""
        first = log.record(_paid())
        size = log.size
        assert first == log.record(_paid())
        assert first == log.record_many([_paid()])[0]
        assert size == log.size
        assert [] == _conflicts(log)

    def test_a_different_event_with_the_same_id_is_refused_and_recorded(self, log: Trail) -> None:
        first = log.record(_paid())
        size = log.size
        with pytest.raises(IdempotencyConflict) as caught:
            log.record(_paid(metadata={"amount": 1}, actor={"type": "user", "id": "mallory"}))
        conflict = caught.value
        assert ("invoice-9-paid", first, ["actor", "metadata"]) == (conflict.event_id, conflict.index, conflict.fields)
        assert f"entry {first}" in str(conflict)
        assert "actor, metadata" in str(conflict)
        assert size + 1 == log.size  # only the refusal was appended
        (refusal,) = _conflicts(log)
        assert "denied" == refusal["outcome"]
        assert {"event_id": "invoice-9-paid", "first_index": first,
                "differing_fields": ["actor", "metadata"]} == refusal["metadata"]  # fmt: skip
        assert "amount" not in str(refusal)  # nothing of the refused content
        assert {"type": "user", "id": "mallory"} == refusal["actor"]  # the writer (no context given)
        assert log.get(first).data["metadata"] == {"amount": 120}
        assert log.verify().ok

    def test_nothing_of_a_refused_batch_is_appended(self, log: Trail) -> None:
        log.record(_paid())
        size = log.size
        with pytest.raises(IdempotencyConflict):
            log.record_many([{"action": "invoice.create", "actor": "u-1", "id": "fresh-1"}, _paid(reason="other")])
        assert size + 1 == log.size
        assert [] == log.query(action="invoice.create").entries

    def test_two_events_with_one_id_in_one_batch_are_refused(self, log: Trail) -> None:
        with log.context(actor={"type": "service", "id": "importer"}), pytest.raises(IdempotencyConflict) as caught:
            log.record_many([_paid(), _paid(outcome="failure")])
        assert (None, ["outcome"]) == (caught.value.index, caught.value.fields)
        (refusal,) = _conflicts(log)
        assert {"type": "service", "id": "importer"} == refusal["actor"]  # the context names the writer
        assert 1 == log.size  # only the refusal
        # The same event twice in one batch is one event.
        first, again = log.record_many([_paid(), _paid()])
        assert first == again

    def test_a_stated_occurred_at_must_match(self, log: Trail) -> None:
        moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        first = log.record(_paid(occurred_at=moment))
        assert first == log.record(_paid(occurred_at=moment))
        assert first == log.record(_paid())  # a retry that leaves occurred_at out
        with pytest.raises(IdempotencyConflict) as caught:
            log.record(_paid(occurred_at=moment + timedelta(seconds=1)))
        assert ["occurred_at"] == caught.value.fields

    def test_a_conflicting_writer_does_not_fail_the_others_of_its_group_commit(self, log: Trail) -> None:
        """Writers in many threads share commits: only the one reusing an id fails."""
        log.record(_paid())
        errors: list[BaseException] = []
        done: list[int] = []

        def write(n: int) -> None:
            try:
                event = _paid(reason=f"other {n}") if n % 5 == 0 else {"action": "a.b", "actor": "u-1"}
                done.append(log.record(event))
            except IdempotencyConflict as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert 8 == len(errors)
        assert 32 == len(set(done))
        assert 8 == len(_conflicts(log))
        assert log.verify().ok


class TestComparison:
    def test_what_the_log_adds_is_not_compared(self) -> None:
        stored = {"id": "x", "occurred_at": "t0", "recorded_at": "t0", "context": {"ingested_by": "a"}}
        retry = {"id": "x", "occurred_at": "t1", "recorded_at": "t1", "context": {"ingested_by": "b"}}
        assert [] == differing_fields(stored, retry)

    def test_json_types_are_compared_exactly(self) -> None:
        assert ["metadata"] == differing_fields({"metadata": {"n": 1}}, {"metadata": {"n": True}})
        assert ["context"] == differing_fields({"context": {"a": 1}}, {"context": {"ingested_by": "b"}})


class TestService:
    def test_a_different_event_with_a_taken_id_gets_409(self, served: Served) -> None:
        client = served.client
        first = client.post("/api/v1/events", json=_paid(), headers=served.auth("writer"))
        assert 201 == first.status_code
        index = first.json()["indices"][0]
        retry = client.post("/api/v1/events", json=_paid(), headers=served.auth("writer"))
        assert (201, [index]) == (retry.status_code, retry.json()["indices"])
        other_key = served.accounts.create_key("other-writer", "writer", by=SETUP)[1]
        other = client.post("/api/v1/events", json=[_paid(metadata={"amount": 5})],
                            headers={"Authorization": f"Bearer {other_key}"})  # fmt: skip
        assert 409 == other.status_code
        body = other.json()
        assert ("id_conflict", "invoice-9-paid", index, ["metadata"]) == (
            body["error"],
            body["id"],
            body["index"],
            body["fields"],
        )
        assert "metadata" in body["message"]
        # The same event sent again by another writer is the same event (ingested_by is the service's).
        again = client.post("/api/v1/events", json=_paid(), headers={"Authorization": f"Bearer {other_key}"})
        assert (201, [index]) == (again.status_code, again.json()["indices"])
        (refusal,) = [e.data for e in served.entries(action="event.id_conflict")]
        assert ("other-writer", "denied") == (refusal["actor"]["id"], refusal["outcome"])
        assert {"amount": 120} == served.trail.get(index).data["metadata"]
