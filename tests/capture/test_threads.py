"""The trail's context reaches work run in other threads: a pool through carry(), asyncio.to_thread by itself."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import graven
from graven.trail import Trail


def record_view(trail: Trail, customer: str) -> int:
    return trail.record(action="customer.view", targets=[("customer", customer)])


class TestPlainThreads:
    def test_a_new_thread_starts_without_the_context(self, trail: Trail) -> None:
        """Without a helper, a pool's thread has no actor: the entry is refused for want of one."""
        with trail.context(actor="u-17"), ThreadPoolExecutor(1) as pool:
            future = pool.submit(record_view, trail, "c-1")
            with pytest.raises(graven.ValidationError, match="actor"):
                future.result()
        assert 0 == trail.size


class TestCarry:
    def test_submitted_work_records_with_the_submitters_context(self, trail: Trail) -> None:
        """carry(fn) takes the actor, ip and request id of the submitting code to the worker thread."""
        with trail.context(actor="u-17", ip="198.51.100.7", request_id="req-1"), ThreadPoolExecutor(2) as pool:
            indices = list(pool.map(graven.carry(record_view), [trail, trail], ["c-1", "c-2"]))
        entries = [trail.get(i) for i in sorted(indices)]
        assert [{"type": "user", "id": "u-17", "ip": "198.51.100.7"}] * 2 == [e.actor for e in entries]
        assert ["req-1", "req-1"] == [e.get("context")["request_id"] for e in entries]

    def test_context_is_the_one_at_carry_time(self, trail: Trail) -> None:
        """The function carries the context in force when carry() was called, not when it runs."""
        with trail.context(actor="u-1"):
            bound = graven.carry(record_view)
        with trail.context(actor="u-2"), ThreadPoolExecutor(1) as pool:
            index = pool.submit(bound, trail, "c-1").result()
        assert "u-1" == trail.get(index).actor["id"]

    def test_scopes_opened_in_the_worker_stay_there(self, trail: Trail) -> None:
        """A scope a carried call opens does not reach the caller or another call of the same function."""
        seen: list[str | None] = []
        barrier = threading.Barrier(2, timeout=10)

        def work(actor: str) -> None:
            with trail.context(actor=actor):
                barrier.wait()  # both calls inside their own scope at once
                seen.append(graven.context.current()["actor"]["id"])

        with trail.context(actor="u-outer"), ThreadPoolExecutor(2) as pool:
            bound = graven.carry(work)
            list(pool.map(bound, ["u-a", "u-b"]))
            assert "u-outer" == graven.context.current()["actor"]["id"]
        assert ["u-a", "u-b"] == sorted(seen)  # type: ignore[type-var]


class TestContextThreadPoolExecutor:
    def test_submit_and_map_carry_the_context(self, trail: Trail) -> None:
        """Each task runs in the context in force where it was submitted."""
        with graven.ContextThreadPoolExecutor(2) as pool:
            with trail.context(actor="u-1", request_id="req-a"):
                first = pool.submit(record_view, trail, "c-1")
            with trail.context(actor="service:billing", request_id="req-b"):
                mapped = list(pool.map(record_view, [trail], ["c-2"]))
            first_index = first.result()
        assert ("user", "u-1", "req-a") == _who(trail, first_index)
        assert ("service", "billing", "req-b") == _who(trail, mapped[0])

    def test_outside_any_context_nothing_is_invented(self, trail: Trail) -> None:
        """A task submitted with no context in force still has none (the entry states its own actor)."""
        with graven.ContextThreadPoolExecutor(1) as pool:
            index = pool.submit(trail.record, action="job.run", actor={"type": "service", "id": "cron"}).result()
        assert {"type": "service", "id": "cron"} == trail.get(index).actor
        assert trail.get(index).get("context") is None


def test_asyncio_to_thread_carries_the_context(trail: Trail) -> None:
    """asyncio.to_thread copies the task's context, so a blocking helper needs nothing more."""

    async def main() -> int:
        with trail.context(actor="u-5", request_id="req-async"):
            return await asyncio.to_thread(record_view, trail, "c-9")

    index = asyncio.run(main())
    assert ("user", "u-5", "req-async") == _who(trail, index)


def _who(trail: Trail, index: int) -> tuple[str, str, str]:
    entry = trail.get(index)
    return entry.actor["type"], entry.actor["id"], entry.get("context")["request_id"]
