"""Security headers on every response, and no page that loads anything from another host.

Every route of ``graven serve``'s router (the API, sign-in, the API reference, the UI and its
assets), of the demo and of the witness server is requested (GET, or its one method with an empty
body), plus a 404, a 405 and an unhandled error (500): each answer carries the content policy with
``frame-ancestors 'none'``, ``nosniff`` and a referrer policy. Every HTML page and stylesheet served
is then searched for a URL of another host.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser
from starlette.routing import BaseRoute, Mount, Route

import graven
from graven.core.note import CosignerKey, Signer
from graven.server import ServerConfig, create_app
from graven.trail import Trail
from graven.web import create_web_app
from graven.witnessing import WitnessService, WitnessState
from graven.witnessing.app import create_app as create_witness_app
from tests.server.server_harness import SECRET, SETUP
from tests.web.conftest import LiveServer

PASSWORD = "correct horse"
CSP = "content-security-policy"


def assert_secure(response: httpx.Response, what: str) -> None:
    headers = response.headers
    policy = headers.get(CSP, "")
    assert "frame-ancestors 'none'" in policy, f"{what}: {response.status_code} without frame-ancestors"
    assert "default-src 'self'" in policy, what
    assert "script-src 'self'" in policy, what
    assert "nosniff" == headers.get("x-content-type-options"), what
    assert headers.get("referrer-policy") in ("same-origin", "no-referrer"), what
    assert "DENY" == headers.get("x-frame-options"), what


def routes_of(app: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) for every route, mounted ones included; path parameters filled with 0."""
    found: list[BaseRoute] = list(app.routes)
    for route in found:
        if isinstance(route, Mount):
            if route.path == "/static":
                yield "GET", prefix + "/static/app.css"
                continue
            yield from routes_of(route.app, prefix + route.path)
        elif hasattr(route, "original_router"):  # an included router (FastAPI keeps it whole)
            yield from routes_of(route.original_router, prefix + getattr(route.include_context, "prefix", ""))
        elif isinstance(route, Route):
            path = prefix + re.sub(r"\{[^}]+\}", "0", route.path)
            for method in sorted(route.methods or {"GET"}):
                if method != "HEAD":
                    yield method, path


def walk(client: httpx.Client, app: Any, refused: str = "/api/v1/entries/0", **headers: str) -> list[str]:
    """Request every route (and a 404 and a 405) of the served ``app``; returns the paths requested.

    Only the head of each answer is read: live streams (server-sent events) never end by themselves.
    """
    seen = []
    for method, path in routes_of(app):
        with client.stream(method, path, headers=headers, content=b"") as response:
            assert_secure(response, f"{method} {path}")
        seen.append(path)
    # a session without its CSRF token gets 403 before the 405
    for method, path, status in (
        ("GET", "/no-such-page", {404}),
        ("DELETE", refused, {403, 405}),
        ("DELETE", "/console", {403, 405}),
    ):
        response = client.request(method, path, headers=headers)
        assert response.status_code in status, path
        assert_secure(response, f"{method} {path}")
    return seen


class ServedLog(LiveServer):
    """``create_app`` over a real log, served by uvicorn in a thread; failures are not throttled here."""

    def __init__(self, trail: Trail) -> None:
        self.app = create_app(trail, ServerConfig(secret=SECRET, auth_failure_limit=100_000))
        super().__init__(self.app)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServedLog]:
    """``graven serve``'s app over a real SQLite log, served by uvicorn on a free port, with an admin."""
    with graven.init(tmp_path / "trail.db", signing_key=tmp_path / "k") as trail:
        trail.record({"action": "file.delete", "actor": "u-1", "targets": [{"type": "file", "id": "f"}]})
        with ServedLog(trail) as server:
            server.app.state.graven.accounts.add_user("admin-1", "admin", PASSWORD, by=SETUP)
            yield server


@contextmanager
def signed_in(server: ServedLog) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        signed = client.post("/auth/login", json={"username": "admin-1", "password": PASSWORD})
        assert 200 == signed.status_code, signed.text
        yield client


def test_every_route_of_the_service(service: ServedLog) -> None:
    """Signed out, signed in, and with an API key: every answer of every route of ``graven serve``."""
    with httpx.Client(base_url=service.url, timeout=30) as anonymous:
        paths = walk(anonymous, service.app)
        assert 405 == anonymous.delete("/api/v1/entries/0").status_code
    for must in ("/login", "/api/v1/docs", "/api/v1/openapi.json", "/console", "/static/app.css", "/auth/login",
                 "/api/v1/entries/0", "/events"):  # fmt: skip
        assert must in paths
    with signed_in(service) as client:
        walk(client, service.app)
    key = service.app.state.graven.accounts.create_key("walker", "admin", by=SETUP)[1]
    with httpx.Client(base_url=service.url, timeout=30) as client:
        walk(client, service.app, authorization=f"Bearer {key}", accept="application/json")


def test_every_route_of_the_demo(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        paths = walk(client, live_server.server.config.app, refused="/try/attempt")
        assert 405 == client.delete("/try/attempt").status_code
    assert {"/try", "/try/attempt", "/console/export", "/how", "/static/app.css", "/events"} <= set(paths)


def test_every_route_of_the_witness(tmp_path: Path) -> None:
    log = Signer.generate("example.com/log")
    service = WitnessService(CosignerKey.generate("witness.example/w1"), [log.verifier()], WitnessState(tmp_path))
    app = create_witness_app(service)
    with TestClient(app) as client:
        for method, path in routes_of(app):
            assert_secure(client.request(method, path, content=b""), f"{method} {path}")  # type: ignore[arg-type]
        assert_secure(client.get("/nothing"), "404")  # type: ignore[arg-type]


def test_an_unhandled_error_has_them_too(tmp_path: Path) -> None:
    """A 500 comes from Starlette's outermost error middleware: the headers are outside even that."""

    def broken(request: Any) -> None:
        raise RuntimeError("the viewer function fails")

    with graven.init(tmp_path / "trail.db", signing_key=tmp_path / "k") as trail:
        app: FastAPI = create_web_app(trail, viewer=broken)
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/console")
            assert 500 == response.status_code
            assert_secure(response, "500")


class Links(HTMLParser):
    """Every URL a page loads or links to: src, href, action, srcset, and url(...) in style attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and name in ("src", "href", "action", "srcset", "poster", "data", "formaction"):
                self.urls.append(value)
            if value and name == "style":
                self.urls += re.findall(r"url\(([^)]*)\)", value)


def foreign(urls: list[str]) -> list[str]:
    return [u for u in urls if urlsplit(u.strip(" '\"")).netloc or u.strip().startswith("//")]


def assert_nothing_foreign(response: httpx.Response, what: str) -> None:
    kind = response.headers.get("content-type", "")
    if kind.startswith("text/html"):
        links = Links()
        links.feed(response.text)
        assert [] == foreign(links.urls), what
        assert not re.search(r"<script[^>]*>\s*[^<\s]", response.text), f"{what}: inline script"
    if kind.startswith("text/css"):
        assert not re.search(r"(url\(|@import)\s*['\"]?(https?:)?//", response.text), what
    if kind.startswith(("text/javascript", "application/javascript")):
        assert not re.search(r"['\"](https?:)?//[^'\"]", response.text), what


def test_no_page_of_the_service_loads_from_another_host(service: ServedLog) -> None:
    pages = ["/login", "/api/v1/docs", "/console", "/entry/0", "/tail", "/how", "/timeline?target=file:f",
             "/no-such-page", "/static/app.css", "/static/app.js"]  # fmt: skip
    with signed_in(service) as client:
        for path in pages:
            response = client.get(path)
            assert response.status_code in (200, 404), path
            assert_nothing_foreign(response, path)
        assert "<code>POST /api/v1/events</code>" in client.get("/api/v1/docs").text


def test_no_page_of_the_demo_loads_from_another_host(client: TestClient) -> None:
    for path in ("/try", "/console", "/entry/4", "/tail", "/how", "/timeline?target=customer:c-1042",
                 "/no-such-page", "/static/app.css", "/static/app.js"):  # fmt: skip
        response = client.get(path)
        assert_nothing_foreign(response, path)


def test_docs_page_in_a_browser_fetches_only_its_own_origin(browser: Browser, service: ServedLog) -> None:
    """The API reference renders under the content policy (no violation reported) and asks no other host."""
    server = service
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    errors: list[str] = []
    requested: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda r: requested.append(r.url))
    try:
        for path in ("/api/v1/docs", "/login"):
            page.goto(path)
            page.wait_for_load_state("networkidle")
        heading = page.goto("/api/v1/docs")
        assert heading is not None
        assert 200 == heading.status
        assert page.get_by_role("heading", level=1).inner_text().startswith("Graven API")
        assert page.locator("#schema-Event").count() == 1  # the event a client sends, from entry schema v1
        assert page.evaluate("getComputedStyle(document.querySelector('header.top')).display") != "inline"
    finally:
        context.close()
    assert [] == errors
    assert requested
    assert all(u.startswith(server.url) for u in requested), requested
