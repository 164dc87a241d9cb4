"""graven.fastapi on real FastAPI applications: the request's context as a dependency, denials answered once."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

import graven
import graven.fastapi
from graven.capture.asgi import AuditMiddleware
from graven.trail import Trail


def user_id(x_user: str | None = Header(default=None)) -> str | None:
    """The test applications' sign-in: the X-User header names the user."""
    return x_user


def make_app(trail: Trail, **options: Any) -> FastAPI:
    app = FastAPI(dependencies=[Depends(graven.fastapi.audit_context(trail, actor=user_id, **options))])

    @app.get("/sync/{doc}")
    def read_sync(doc: str) -> dict[str, str]:
        trail.record(action="document.view", targets=[("document", doc)])
        return {"id": doc}

    @app.get("/async/{doc}")
    async def read_async(doc: str) -> dict[str, str]:
        await trail.arecord(action="document.view", targets=[("document", doc)])
        return {"id": doc}

    @app.delete("/plain/{doc}")
    def delete_plain(doc: str) -> None:
        raise graven.Denied(f"documents.delete required for {doc}")

    @app.delete("/action/{doc}")
    async def delete_in_action(doc: str) -> None:
        async with trail.action("document.delete", target=("document", doc)):
            raise graven.Denied("documents.delete required")

    @app.post("/login")
    def login(user: str) -> None:
        trail.login_attempt(user, ok=False, reason="wrong password")
        raise HTTPException(401, "wrong user name or password")

    return app


class TestSyncYieldDependency:
    def test_the_problem(self, trail: Trail) -> None:
        """Entering trail.context in a sync yield dependency fails: FastAPI leaves it in another context."""
        app = FastAPI()

        def naive() -> Iterator[None]:
            with trail.context(actor="u-1"):
                yield

        @app.get("/", dependencies=[Depends(naive)])
        def route() -> None:
            return None

        with pytest.raises(ValueError, match="was created in a different Context"):
            TestClient(app).get("/")


class TestAuditContext:
    @pytest.mark.parametrize("kind", ["sync", "async"])
    def test_context_reaches_the_route(self, trail: Trail, kind: str) -> None:
        """Sync and async routes record with the dependency's actor, address, agent, request id and route."""
        client = TestClient(make_app(trail), client=("198.51.100.4", 1000))
        response = client.get(f"/{kind}/d-1", headers={"x-user": "u-17", "user-agent": "Firefox/133",
                                                        "x-request-id": "req-9"})  # fmt: skip
        assert 200 == response.status_code
        entry = trail.get(0)
        assert {"type": "user", "id": "u-17", "ip": "198.51.100.4", "user_agent": "Firefox/133"} == entry.actor
        assert {"request_id": "req-9", "route": f"/{kind}/{{doc}}"} == entry.get("context")
        assert "web" == entry.get("source")

    def test_no_leak_between_requests(self, trail: Trail) -> None:
        """A request without a user does not inherit the previous request's actor."""
        client = TestClient(make_app(trail))
        client.get("/sync/d-1", headers={"x-user": "u-1"})
        with pytest.raises(graven.ValidationError, match="actor"):
            client.get("/sync/d-1")  # nobody is signed in and the route names nobody: refused, not u-1
        assert 1 == trail.size

    def test_forwarded_for_only_from_trusted_proxies(self, trail: Trail) -> None:
        """X-Forwarded-For names the client only when the peer is a trusted proxy."""
        app = make_app(trail, trusted_proxies=["10.0.0.0/8"])
        headers = {"x-user": "u", "x-forwarded-for": "203.0.113.9"}
        TestClient(app, client=("10.1.2.3", 1)).get("/sync/d", headers=headers)
        TestClient(app, client=("192.0.2.1", 1)).get("/sync/d", headers=headers)
        assert ["203.0.113.9", "192.0.2.1"] == [trail.get(i).actor["ip"] for i in (0, 1)]

    def test_async_actor_dependency(self, trail: Trail) -> None:
        """The actor may be an async dependency returning a mapping."""

        async def service() -> dict[str, str]:
            return {"type": "service", "id": "billing"}

        app = FastAPI(dependencies=[Depends(graven.fastapi.audit_context(trail, actor=service, source="api"))])

        @app.post("/pay")
        def pay() -> None:
            trail.record(action="invoice.pay")

        TestClient(app).post("/pay")
        expected = {"type": "service", "id": "billing", "user_agent": "testclient"}
        assert (expected, "api") == (trail.get(0).actor, trail.get(0).get("source"))


def denials(trail: Trail) -> list[tuple[str, str, str | None]]:
    return [(e.action, e.actor.get("id", e.actor["type"]), e.get("reason")) for e in trail.query(outcome="denied")]


class TestDenied:
    def test_handler_answers_403_once(self, trail: Trail) -> None:
        """A Denied escaping a route is a 403 JSON error and one denied entry naming the route and actor."""
        app = make_app(trail)
        graven.fastapi.handle_denied(app, trail)
        response = TestClient(app).delete("/plain/d-4", headers={"x-user": "u-3"})
        assert (403, {"error": "denied", "message": "documents.delete required for d-4"}) == (
            response.status_code, response.json()
        )  # fmt: skip
        assert [("http.request", "u-3", "documents.delete required for d-4")] == denials(trail)
        assert "DELETE /plain/{doc}" == trail.get(0).targets[0]["id"]

    def test_handler_and_middleware_record_once(self, trail: Trail) -> None:
        """The middleware sees the handler's 403 but does not record the refusal a second time."""
        app = make_app(trail)
        graven.fastapi.handle_denied(app, trail)
        client = TestClient(AuditMiddleware(app, trail))
        assert 403 == client.delete("/plain/d-4", headers={"x-user": "u-3"}).status_code
        assert [("http.request", "u-3", "documents.delete required for d-4")] == denials(trail)

    def test_denied_action_and_middleware_record_once(self, trail: Trail) -> None:
        """A denied trail.action() block, its 403 answer and the middleware make one denied entry: the action's."""
        app = make_app(trail)
        graven.fastapi.handle_denied(app, trail)
        client = TestClient(AuditMiddleware(app, trail))
        assert 403 == client.delete("/action/d-5", headers={"x-user": "u-3"}).status_code
        assert [("document.delete", "u-3", "documents.delete required")] == denials(trail)

    def test_middleware_inside_the_app_answers_403(self, trail: Trail) -> None:
        """Added with app.add_middleware and no handler, the middleware itself answers a Denied 403, once."""
        app = make_app(trail)
        app.add_middleware(AuditMiddleware, trail=trail)
        response = TestClient(app).delete("/plain/d-6", headers={"x-user": "u-8"})
        assert (403, "denied") == (response.status_code, response.json()["error"])
        assert [("http.request", "u-8", "documents.delete required for d-6")] == denials(trail)
        assert response.headers["x-request-id"]

    def test_other_errors_still_fail(self, trail: Trail) -> None:
        """Only denials are answered 403: any other error stays the application's."""
        app = FastAPI()
        graven.fastapi.handle_denied(app, trail)

        @app.get("/")
        def broken() -> None:
            raise RuntimeError("disk full")

        assert 500 == TestClient(app, raise_server_exceptions=False).get("/").status_code
        assert 0 == trail.size


def test_failed_sign_in_is_one_entry(trail: Trail) -> None:
    """A failed sign-in answered 401 is the session.login failure alone, not also an http.request denial."""
    client = TestClient(AuditMiddleware(make_app(trail), trail))
    assert 401 == client.post("/login", params={"user": "dana"}).status_code
    assert [("session.login", "failure")] == [(e.action, e.outcome) for e in trail.query()]


def test_refusal_without_recorded_cause_is_recorded(trail: Trail) -> None:
    """A 401 with nothing recorded for it is still recorded by the middleware (the fold does not hide it)."""
    app = FastAPI()

    @app.get("/")
    def refuse() -> None:
        raise HTTPException(401, "sign in first")

    TestClient(AuditMiddleware(app, trail)).get("/")
    assert [("http.request", "anonymous", "HTTP 401 Unauthorized")] == denials(trail)


def test_readme_example(tmp_path: Path) -> None:
    """The README's FastAPI example runs as written, in a fresh folder."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## FastAPI\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    out = subprocess.run([sys.executable, "-c", block.group(1)], cwd=tmp_path, capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert 0 == out.returncode, out.stderr
    assert (tmp_path / "audit.db").exists()
