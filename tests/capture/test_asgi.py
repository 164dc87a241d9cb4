"""The ASGI middleware on a small FastAPI application: context per request, refusals recorded."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

import graven
from graven.capture.asgi import AuditMiddleware
from graven.trail import Trail


def make_app(trail: Trail) -> TestClient:
    app = FastAPI()

    @app.get("/customers/{customer_id}")
    def view(customer_id: str, request: Request) -> dict[str, str]:
        if request.headers.get("x-user") is None:
            raise HTTPException(401, "sign in first")
        if customer_id == "secret":
            raise HTTPException(403, "not yours")
        trail.record(action="customer.view", targets=[("customer", customer_id)])
        return {"id": customer_id}

    def actor(scope: dict[str, object]) -> str | None:
        headers = dict(scope["headers"])  # type: ignore[call-overload]
        user = headers.get(b"x-user")
        return user.decode() if user else None

    wrapped = AuditMiddleware(app, trail, actor=actor, trusted_proxies=["10.0.0.0/8"])
    return TestClient(wrapped, client=("10.0.0.5", 50000))


class TestMiddleware:
    def test_context_per_request(self, trail: Trail) -> None:
        """Entries recorded during a request carry its actor, client IP, user agent and request id."""
        client = make_app(trail)
        response = client.get(
            "/customers/c-1",
            headers={"x-user": "u-17", "user-agent": "Firefox/133", "x-forwarded-for": "203.0.113.7, 10.0.0.9"},
        )
        assert 200 == response.status_code
        entry = trail.get(0)
        assert {"type": "user", "id": "u-17", "ip": "203.0.113.7", "user_agent": "Firefox/133"} == entry.actor
        assert response.headers["x-request-id"] == entry.get("context")["request_id"]

    def test_given_request_id_is_kept(self, trail: Trail) -> None:
        """A request id sent by the client is used and returned."""
        response = make_app(trail).get("/customers/c-1", headers={"x-user": "u-1", "x-request-id": "req-42"})
        assert "req-42" == response.headers["x-request-id"]
        assert "req-42" == trail.get(0).get("context")["request_id"]

    def test_forwarded_for_ignored_from_untrusted_peer(self, trail: Trail) -> None:
        """X-Forwarded-For is not believed when the connection does not come from a trusted proxy."""
        app = make_app(trail)
        untrusted = TestClient(app.app, client=("198.51.100.4", 1))
        untrusted.get("/customers/c-1", headers={"x-user": "u-1", "x-forwarded-for": "1.2.3.4"})
        assert "198.51.100.4" == trail.get(0).actor["ip"]

    def test_401_and_403_are_recorded_as_denied(self, trail: Trail) -> None:
        """Every refused request is a denied entry naming the route and who tried."""
        client = make_app(trail)
        assert 401 == client.get("/customers/c-1").status_code
        assert 403 == client.get("/customers/secret", headers={"x-user": "u-9"}).status_code
        entries = trail.query(outcome="denied", limit=10).entries
        assert [
            ("anonymous", "GET /customers/{customer_id}", "HTTP 401 Unauthorized"),
            ("u-9", "GET /customers/{customer_id}", "HTTP 403 Forbidden"),
        ] == [(e.actor.get("id", e.actor["type"]), e.targets[0]["id"], e.get("reason")) for e in entries]
        assert all(e.actor.get("ip") == "10.0.0.5" for e in entries)


def test_no_leak_between_requests(trail: Trail) -> None:
    """A request without a user does not inherit the previous request's actor."""
    client = make_app(trail)
    client.get("/customers/c-1", headers={"x-user": "u-1"})
    client.get("/customers/c-1")
    denied = trail.query(outcome="denied").entries[0]
    assert "anonymous" == denied.actor["type"]
    assert graven.Report is not None
