"""graven.celery with a real worker on a real broker (Redis and RabbitMQ): who queued a task is its actor."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import flask
import pytest
from celery import Celery, Task
from celery.contrib.testing.worker import start_worker

import graven
import graven.celery
from graven.flask import Graven
from graven.trail import Trail

RESULTS = "redis://127.0.0.1:6379/0"  # results of every test's tasks (rpc:// cannot follow a task a task queued)
BROKERS = {"redis": "redis://127.0.0.1:6379/0", "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//"}


@dataclass
class Jobs:
    app: Celery
    trail: Trail | None
    ship: Task[Any, Any]
    nightly: Task[Any, Any]
    fan_out: Task[Any, Any]
    flaky: Task[Any, Any]


def make_jobs(broker: str, backend: str = RESULTS) -> Jobs:
    """A Celery app of its own (own queue, so that parallel runs never take each other's tasks);
    its tasks record into ``jobs.trail``, each test's own log."""
    app = Celery(f"graven-test-{uuid.uuid4().hex[:8]}", broker=broker, backend=backend)
    app.conf.update(
        task_default_queue=f"graven-test-{uuid.uuid4().hex}",
        result_expires=300,
        broker_connection_retry_on_startup=False,
        worker_hijack_root_logger=False,
    )
    graven.celery.install(app)

    @app.task(shared=False, name="orders.ship")
    def ship(order_id: str) -> int:
        return made.trail.record(action="order.ship", targets=[("order", order_id)])

    @app.task(shared=False, name="reports.nightly")
    def nightly() -> int:
        return made.trail.record(action="report.build", targets=[("report", "nightly")])

    @app.task(shared=False, name="orders.fan_out")
    def fan_out(order_id: str) -> str:
        return str(ship.delay(order_id).id)  # queued from inside a task: the context travels on

    @app.task(shared=False, name="orders.flaky", bind=True, max_retries=1, default_retry_delay=0)
    def flaky(self: Task[Any, Any], order_id: str) -> int:
        if self.request.retries == 0:
            raise self.retry()
        return made.trail.record(action="order.retry", targets=[("order", order_id)])

    made = Jobs(app, None, ship, nightly, fan_out, flaky)  # type: ignore[arg-type]
    return made


@pytest.fixture(scope="module", params=sorted(BROKERS))
def worker(request: pytest.FixtureRequest) -> Iterator[Jobs]:
    """A real worker (in a thread) consuming from the broker the parameter names, for the module."""
    made = make_jobs(BROKERS[request.param])
    with start_worker(made.app, perform_ping_check=False, shutdown_timeout=30):
        yield made
    with made.app.connection_for_write() as conn:
        conn.default_channel.queue_delete(made.app.conf.task_default_queue)


@pytest.fixture
def jobs(worker: Jobs, trail: Trail) -> Iterator[Jobs]:
    worker.trail = trail
    yield worker
    worker.trail = None


def index_of(result: Any) -> int:
    return int(result.get(timeout=30))


class TestCarried:
    def test_task_runs_as_the_person_who_queued_it(self, trail: Trail, jobs: Jobs) -> None:
        """The actor, request id and tenant of the queuing code are the task's, with source job."""
        with trail.context(actor={"type": "user", "id": "u-17", "name": "Dana"}, request_id="req-7", tenant="acme"):
            result = jobs.ship.delay("o-1")
        entry = trail.get(index_of(result))
        assert {"type": "user", "id": "u-17", "name": "Dana"} == entry.actor
        assert ("job", "acme") == (entry.get("source"), entry.get("tenant"))
        assert {"request_id": "req-7", "task": "orders.ship", "task_id": result.id} == entry.get("context")

    def test_where_from_is_not_carried(self, trail: Trail, jobs: Jobs) -> None:
        """The person's IP address and user agent stay with the request; the worker is not there."""
        with trail.context(actor="u-1", ip="203.0.113.9", user_agent="Firefox/133"):
            result = jobs.ship.delay("o-2")
        assert {"type": "user", "id": "u-1"} == trail.get(index_of(result)).actor

    def test_no_person_means_the_task_is_its_actor(self, trail: Trail, jobs: Jobs) -> None:
        """A task queued outside any context records as the service named after the task."""
        entry = trail.get(index_of(jobs.nightly.delay()))
        assert {"type": "service", "id": "reports.nightly"} == entry.actor
        assert "job" == entry.get("source")

    def test_task_queued_by_a_task_keeps_the_person(self, trail: Trail, jobs: Jobs) -> None:
        """Work a task queues in turn still names the person behind the first one."""
        with trail.context(actor="u-5", request_id="req-9"):
            parent = jobs.fan_out.delay("o-3")
        child_id = parent.get(timeout=30)
        entry = trail.get(index_of(jobs.app.AsyncResult(child_id)))
        assert ("u-5", "req-9", child_id) == (
            entry.actor["id"],
            entry.get("context")["request_id"],
            entry.get("context")["task_id"],
        )

    def test_retry_keeps_the_person(self, trail: Trail, jobs: Jobs) -> None:
        """A retried task runs again as the same person."""
        with trail.context(actor="u-6"):
            result = jobs.flaky.delay("o-4")
        assert "u-6" == trail.get(index_of(result)).actor["id"]

    def test_worker_context_does_not_leak(self, trail: Trail, jobs: Jobs) -> None:
        """After a user's task, a task nobody queued is the service again (the worker thread is reset)."""
        with trail.context(actor="u-1"):
            index_of(jobs.ship.delay("o-5"))
        assert "service" == trail.get(index_of(jobs.nightly.delay())).actor["type"]


def test_task_queued_by_a_flask_request(trail: Trail, jobs: Jobs) -> None:
    """A view queues a task: the task's entry names the signed-in user and the request's id."""
    app = flask.Flask(__name__)
    Graven(app, trail, actor=lambda: flask.request.headers["X-User"])

    @app.post("/orders/<order_id>/ship")
    def ship(order_id: str) -> str:
        return str(jobs.ship.delay(order_id).id)

    response = app.test_client().post("/orders/o-11/ship", headers={"X-User": "u-12"})
    entry = trail.get(index_of(jobs.app.AsyncResult(response.text)))
    assert ("u-12", response.headers["X-Request-ID"], "job") == (
        entry.actor["id"],
        entry.get("context")["request_id"],
        entry.get("source"),
    )


class TestHeader:
    """What arrives in the header is checked: a malformed one falls back to the service actor."""

    def test_forged_shapes_are_dropped(self, trail: Trail, jobs: Jobs) -> None:
        """An actor of unknown type, a non-string id or an oversized field is not believed."""
        bad: list[Any] = [
            {"actor": {"type": "admin", "id": "root"}},
            {"actor": {"type": "user", "id": 7}},
            {"actor": {"type": "user", "id": "u-1" * 100}},
            "user:u-1",
        ]
        for header in bad:
            result = jobs.ship.apply_async(("o-6",), headers={graven.celery.HEADER: header})
            assert {"type": "service", "id": "orders.ship"} == trail.get(index_of(result)).actor

    def test_header_given_outside_a_context(self, trail: Trail, jobs: Jobs) -> None:
        """Code with no context may name the person itself: apply_async(headers={"graven": {...}})."""
        header = {"actor": {"type": "user", "id": "u-3", "name": "Ada", "ip": "203.0.113.1"}, "request_id": "r-3"}
        result = jobs.ship.apply_async(("o-9",), headers={graven.celery.HEADER: header})
        entry = trail.get(index_of(result))
        assert ({"type": "user", "id": "u-3", "name": "Ada"}, "r-3") == (
            entry.actor,
            entry.get("context")["request_id"],
        )

    def test_context_wins_over_a_given_header(self, trail: Trail, jobs: Jobs) -> None:
        """Inside a context, the context is what travels."""
        with trail.context(actor="u-4"):
            result = jobs.ship.apply_async(
                ("o-10",), headers={graven.celery.HEADER: {"actor": {"type": "user", "id": "x"}}}
            )
        assert "u-4" == trail.get(index_of(result)).actor["id"]


def test_eager_run_keeps_the_callers_context(trail: Trail) -> None:
    """apply() runs in the caller's context: its actor and source stay as they are."""
    jobs = make_jobs("memory://", "cache+memory://")
    jobs.trail = trail
    with trail.context(actor="u-8", source="web"):
        index = jobs.ship.apply(("o-7",)).get()
    entry = trail.get(index)
    assert ("u-8", "web", "orders.ship") == (entry.actor["id"], entry.get("source"), entry.get("context")["task"])
    assert {"type": "service", "id": "orders.ship"} == trail.get(jobs.ship.apply(("o-8",)).get()).actor


def test_carried_names_only_who_and_which_request(trail: Trail) -> None:
    """carried() is what a message takes along: never the IP address, user agent or session."""
    with trail.context(actor={"type": "user", "id": "u-1", "ip": "203.0.113.9"}, session="s", request_id="r"):
        assert {"actor": {"type": "user", "id": "u-1"}, "request_id": "r"} == graven.celery.carried()
    assert {} == graven.celery.carried()
