"""The WSGI middleware on a bare WSGI application: context per request, refusals recorded once."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from werkzeug.test import Client

import graven
from graven.capture.wsgi import AuditMiddleware, StartResponse
from graven.trail import Trail


def make_app(trail: Trail) -> AuditMiddleware:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path == "/private":
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"no"]
        if path == "/login":
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"who?"]
        if path == "/refused":  # the application records its own refusal, then answers 403
            with pytest.raises(graven.Denied), trail.action("file.delete", target=("file", "f-1")):
                raise graven.Denied("files.delete required")
            start_response("403 Forbidden", [])
            return [b""]
        if path == "/stream":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return streamed(trail)
        trail.record(action="customer.view", targets=[("customer", path.rsplit("/", 1)[-1])])
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Request-ID", "the-app's-own")])
        return [b"ok"]

    def actor(environ: dict[str, Any]) -> str | None:
        return environ.get("HTTP_X_USER")

    def route(environ: dict[str, Any]) -> str | None:
        return "/customers/<id>" if environ["PATH_INFO"].startswith("/customers/") else None

    return AuditMiddleware(app, trail, actor=actor, route=route, trusted_proxies=["10.0.0.0/8"])


def streamed(trail: Trail) -> Iterator[bytes]:
    """A body generated while the server sends it: its entries are recorded during iteration."""
    yield b"first "
    trail.record(action="report.export", targets=[("report", "r-1")])
    yield b"second"


class PeerClient(Client):
    """A test client whose requests come from ``peer``."""

    def __init__(self, app: AuditMiddleware, peer: str) -> None:
        super().__init__(app)
        self.peer = peer

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("environ_base", {"REMOTE_ADDR": self.peer})
        return super().open(*args, **kwargs)


def client(trail: Trail, peer: str = "10.0.0.5") -> Client:
    return PeerClient(make_app(trail), peer)


class TestContext:
    def test_entries_carry_the_request(self, trail: Trail) -> None:
        """Actor, client IP behind the trusted proxy, user agent, request id, route and method."""
        response = client(trail).get(
            "/customers/c-1",
            headers={"X-User": "u-17", "User-Agent": "Firefox/133", "X-Forwarded-For": "203.0.113.7, 10.0.0.9"},
        )
        assert 200 == response.status_code
        entry = trail.get(0)
        assert {"type": "user", "id": "u-17", "ip": "203.0.113.7", "user_agent": "Firefox/133"} == entry.actor
        assert "web" == entry.get("source")
        request_id = response.headers["X-Request-ID"]
        assert {"request_id": request_id, "route": "/customers/<id>", "method": "GET"} == entry.get("context")
        assert [request_id] == response.headers.getlist("X-Request-ID")  # the application's own one replaced

    def test_given_request_id_is_kept(self, trail: Trail) -> None:
        """The client's X-Request-ID is used in the entries and returned."""
        response = client(trail).get("/customers/c-1", headers={"X-User": "u-1", "X-Request-ID": "req-42"})
        assert "req-42" == response.headers["X-Request-ID"]
        assert "req-42" == trail.get(0).get("context")["request_id"]

    def test_forwarded_for_ignored_from_untrusted_peer(self, trail: Trail) -> None:
        """X-Forwarded-For is not believed from a peer that is not a trusted proxy."""
        client(trail, "198.51.100.4").get("/customers/c-1", headers={"X-User": "u-1", "X-Forwarded-For": "1.2.3.4"})
        assert "198.51.100.4" == trail.get(0).actor["ip"]

    def test_streamed_body_sees_the_context(self, trail: Trail) -> None:
        """Code running while the body is sent records with the request's actor and request id."""
        response = client(trail).get("/stream", headers={"X-User": "u-3", "X-Request-ID": "req-s"})
        assert b"first second" == response.data
        entry = trail.get(0)
        assert ("u-3", "req-s", "/stream") == (
            entry.actor["id"],
            entry.get("context")["request_id"],
            entry.get("context")["route"],
        )

    def test_nothing_leaks_to_the_next_request(self, trail: Trail) -> None:
        """The server's thread is left without the request's context once it is done."""
        c = client(trail)
        c.get("/customers/c-1", headers={"X-User": "u-1"})
        assert {} == dict(graven.context.current())
        with pytest.raises(graven.ValidationError, match="actor"):
            c.get("/customers/c-2")  # no actor this time, and none left over from the first request


class TestDenials:
    def test_401_and_403_recorded_once_each(self, trail: Trail) -> None:
        """Every refused response is one denied http.request naming the route and who asked."""
        c = client(trail)
        assert 401 == c.get("/login").status_code
        assert 403 == c.get("/private", headers={"X-User": "u-9"}).status_code
        entries = trail.query(outcome="denied", limit=10).entries
        assert [
            ("anonymous", "GET /login", "HTTP 401 Unauthorized", 401),
            ("u-9", "GET /private", "HTTP 403 Forbidden", 403),
        ] == [
            (e.actor.get("id", e.actor["type"]), e.targets[0]["id"], e.get("reason"), e.get("context")["status"])
            for e in entries
        ]
        assert 2 == trail.size

    def test_denial_the_application_recorded_is_not_repeated(self, trail: Trail) -> None:
        """An action() refused inside the request is the only entry of that attempt."""
        assert 403 == client(trail).get("/refused", headers={"X-User": "u-2"}).status_code
        assert 1 == trail.size
        entry = trail.get(0)
        assert ("file.delete", "denied", "files.delete required") == (
            entry.action,
            entry.outcome,
            entry.get("reason"),
        )


class TestLazyAndFailingApps:
    def test_status_given_while_the_body_is_sent(self, trail: Trail) -> None:
        """A generator app that calls start_response only when iterated still has its 403 recorded once."""

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
            start_response("403 Forbidden", [])
            yield b"no"

        response = Client(AuditMiddleware(app, trail, actor=lambda environ: "u-4")).get("/late")
        assert 403 == response.status_code
        assert [("u-4", "GET /late", "HTTP 403 Forbidden", 403)] == [
            (e.actor["id"], e.targets[0]["id"], e.get("reason"), e.get("context")["status"])
            for e in trail.query(outcome="denied").entries
        ]
        assert 1 == trail.size

    def test_an_error_propagates_and_leaves_nothing_behind(self, trail: Trail) -> None:
        """An exception from the app reaches the server as it was; the caller's context is untouched."""

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            raise LookupError("no such invoice")

        with pytest.raises(LookupError, match="no such invoice"):
            AuditMiddleware(app, trail, actor=lambda environ: "u-1")({"PATH_INFO": "/x"}, lambda *a: print)
        assert {} == dict(graven.context.current())
        assert graven.capture.request.current_attempt() is None


def test_under_a_real_wsgi_server(trail: Trail) -> None:
    """wsgiref serving over a socket: context from real headers, a denial recorded once."""

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server: WSGIServer = make_server("127.0.0.1", 0, make_app(trail), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        ok = httpx.get(f"{base}/customers/c-7", headers={"X-User": "u-4", "User-Agent": "curl/8"})
        refused = httpx.get(f"{base}/private", headers={"X-User": "u-4"})
    finally:
        server.shutdown()
        server.server_close()
    assert (200, 403) == (ok.status_code, refused.status_code)
    assert "2" == ok.headers["content-length"]  # a list body reaches the server as a list, which sizes it
    assert {"type": "user", "id": "u-4", "ip": "127.0.0.1", "user_agent": "curl/8"} == trail.get(0).actor
    assert ok.headers["x-request-id"] == trail.get(0).get("context")["request_id"]
    assert ["customer.view", "http.request"] == [trail.get(i).action for i in range(trail.size)]
