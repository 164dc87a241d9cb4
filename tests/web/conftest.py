"""Fixtures for the web UI: a demo sandbox on a real SQLite file, a test client, a real server, Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from graven.web import Sandbox, create_web_app

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
JSON = {"accept": "application/json"}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A fresh demo log (seeded with the story) in a temporary folder."""
    box = Sandbox(tmp_path / "demo")
    yield box
    box.close()


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[TestClient]:
    """The demo app over the sandbox."""
    with TestClient(create_web_app(demo=True, sandbox=sandbox)) as c:
        yield c


class LiveServer:
    """An ASGI app served by uvicorn on a free port, in a thread of this process."""

    def __init__(self, app: Any) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.sock = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@pytest.fixture
def live_server(sandbox: Sandbox) -> Iterator[LiveServer]:
    """The real server on a free port."""
    with LiveServer(create_web_app(demo=True, sandbox=sandbox)) as server:
        yield server


def chromium_path() -> str:
    """Debian's chromium, installed with apt-get when missing (as root); a failure on CI, else a skip."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    apt = shutil.which("apt-get")
    if hasattr(os, "geteuid") and os.geteuid() == 0 and apt:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([apt, "update"], check=False, env=env, capture_output=True)
        done = subprocess.run([apt, "install", "-y", "chromium"], check=False, env=env, capture_output=True)
        found = shutil.which("chromium")
        if found:
            return found
        reason = f"apt-get install chromium failed: {done.stderr.decode(errors='replace')[-300:]}"
    else:
        reason = "no chromium on the PATH, and apt-get as root is not available to install it"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    return chromium_path()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """One Playwright for every browser test of the session (it cannot be started twice in a thread)."""
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright, chromium: str) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("GRAVEN_SCREENSHOTS") or ROOT / ".graven" / "screenshots")
AXE_VERSION = "4.14.1"  # the same version ./dev installs
AXE = Path(os.environ.get("GRAVEN_AXE") or ROOT / ".graven" / "node" / "node_modules" / "axe-core" / "axe.min.js")
SERIOUS = ("serious", "critical")


@pytest.fixture(scope="session")
def shots() -> Path:
    """Where the browser tests save screenshots (the folder is printed at the end of the run)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SHOTS.is_dir() and any(SHOTS.glob("*.png")):
        terminalreporter.write_line(f"browser screenshots: {SHOTS}")


def axe_source() -> str:
    """axe-core's script, from npm (./dev installs it into .graven/node); a failure on CI, else a skip."""
    if not AXE.is_file():
        npm = shutil.which("npm")
        if npm:
            folder = str(AXE.parents[2])
            command = [npm, "install", "--prefix", folder, "--no-save", "--no-audit", "--no-fund"]
            command.append(f"axe-core@{AXE_VERSION}")
            subprocess.run(command, check=False, capture_output=True, timeout=300)
    if AXE.is_file():
        return AXE.read_text()
    reason = f"axe-core is missing ({AXE}): ./dev test installs it with npm (set GRAVEN_AXE to use another copy)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def axe() -> str:
    return axe_source()


def serious_violations(page: Page, source: str) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now, one line each."""
    if not page.evaluate("() => Boolean(window.axe)"):
        page.evaluate(source)  # through the DevTools protocol: the page's content policy still holds for it
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ")),
        }))"""
    )
    return [f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(v['nodes'])}" for v in found
            if v["impact"] in SERIOUS]  # fmt: skip


WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PAGES = ("try", "console", "timeline?target=customer:c-1042", "entry/4", "tail", "how")


class Visit:
    """A page of the demo in a fresh browser context, collecting script errors."""

    def __init__(self, browser: Browser, server: LiveServer, viewport: dict[str, int], shots: Path) -> None:
        touch = viewport["width"] < 600  # a phone: touch screen, mobile viewport
        self.context = browser.new_context(
            viewport=viewport,
            base_url=server.url,
            has_touch=touch,
            is_mobile=touch,  # type: ignore[arg-type]
        )
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", self._console)
        self.shots = shots
        self.width = viewport["width"]

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=self.shots / f"{name}-{self.width}.png", full_page=True)


@pytest.fixture
def visit(browser: Browser, live_server: LiveServer, shots: Path) -> Iterator[Visit]:
    v = Visit(browser, live_server, WIDE, shots)
    yield v
    v.context.close()
    assert [] == v.errors, "the page raised script errors or broke its content policy"


@pytest.fixture
def phone(browser: Browser, live_server: LiveServer, shots: Path) -> Iterator[Visit]:
    v = Visit(browser, live_server, PHONE, shots)
    yield v
    v.context.close()
    assert [] == v.errors
