"""Fixtures for the HTTP service tests: a served log on SQLite and on PostgreSQL, one key per role."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import graven
from graven.core.model import Entry
from graven.server import ServerConfig, create_app
from graven.server.accounts.service import Accounts, By
from graven.trail import Trail

ROLES = ("writer", "reader", "auditor", "admin")
SECRET = b"test-server-secret-0123456789abcdef"
SETUP = By({"type": "system", "id": "test-setup"}, "cli")


@dataclass
class Served:
    """A log behind the app, a client, and a key per role."""

    trail: Trail
    app: FastAPI
    client: TestClient
    backend: str
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def accounts(self) -> Accounts:
        found: Accounts = self.app.state.graven.accounts
        return found

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def entries(self, **filters: Any) -> list[Entry]:
        """Every entry matching the filters, read with the library (not through the API)."""
        return self.trail.query(**filters, limit=10_000).entries


Factory = Callable[..., Served]


@pytest.fixture(params=["sqlite", "postgres"])
def serve_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Make served logs (``serve_log(**config)``) on the parametrised backend; all closed afterwards."""
    backend: str = request.param
    opened: list[tuple[Trail, TestClient, FastAPI]] = []

    def make(base_url: str = "http://testserver", **config: Any) -> Served:
        folder = tmp_path / f"log{len(opened)}"
        folder.mkdir()
        url: str | Path = folder / "trail.db"
        if backend == "postgres":
            url = request.getfixturevalue("pg").schema_url("srv")
        trail = graven.init(url, signing_key=folder / "signing.key")
        app = create_app(trail, ServerConfig(secret=SECRET, **{"tail_poll": 0.05, **config}))
        client = TestClient(app, base_url=base_url)
        client.__enter__()
        opened.append((trail, client, app))
        served = Served(trail, app, client, backend)
        for role in ROLES:
            served.keys[role] = served.accounts.create_key(f"{role}-key", role, by=SETUP)[1]
        return served

    yield make
    for trail, client, app in opened:
        client.__exit__(None, None, None)
        app.state.graven.accounts.store.close()  # the app opened it beside a trail it does not own
        trail.close()


@pytest.fixture
def served(serve_log: Factory) -> Served:
    """A served log with the default limits."""
    return serve_log()


def form_sign_in(client: TestClient, data: dict[str, str], **kwargs: Any) -> Any:
    """Post the sign-in form as a browser on the /login page does: its pre-session token and cookie,
    from this origin."""
    page = client.get("/login")
    found = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert found is not None, page.text
    headers = {"Origin": str(client.base_url).rstrip("/"), **kwargs.pop("headers", {})}
    return client.post("/auth/login", data={**data, "login_token": found.group(1)}, headers=headers, **kwargs)
