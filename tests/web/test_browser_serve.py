"""The web UI under the HTTP service, in a real browser: sign in through /login, search, prove, verify, sign out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

import graven
from graven.server import ServerConfig, create_app
from graven.trail import Trail
from tests.server.server_harness import SECRET, SETUP
from tests.web.conftest import WIDE, LiveServer, Visit

PASSWORD = "correct horse"


class ServedLog(LiveServer):
    """``create_app`` over a real SQLite log, served by uvicorn on a free port in a thread."""

    def __init__(self, trail: Trail) -> None:
        self.trail = trail
        self.app = create_app(trail, ServerConfig(secret=SECRET))
        super().__init__(self.app)


@pytest.fixture
def served_log(tmp_path: Path) -> Iterator[ServedLog]:
    """A log with a few entries, an auditor (ines) and a reader (rhea), behind the real service."""
    with graven.init(tmp_path / "trail.db", signing_key=tmp_path / "signing.key") as trail:
        trail.record_many([
            {"action": "file.delete", "actor": "u-7", "targets": [{"type": "file", "id": "budget.xlsx"}],
             "reason": "clean-up ticket OPS-12"},
            {"action": "user.email.change", "actor": "u-2", "targets": [{"type": "user", "id": "u-2"}],
             "changes": [{"field": "email", "old": "a@x.example", "new": "b@x.example"}]},
        ])  # fmt: skip
        trail.checkpoint()
        with ServedLog(trail) as served:
            accounts = served.app.state.graven.accounts
            accounts.add_user("ines", "auditor", PASSWORD, by=SETUP)
            accounts.add_user("rhea", "reader", PASSWORD, by=SETUP)
            yield served


def sign_in(page: Page, name: str) -> None:
    """Open the console, get sent to the sign-in form, sign in, and land back on the console."""
    page.goto("/console")
    expect(page).to_have_url(re.compile(r"/login\?next=/console$"))
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console$"))


def test_auditor_investigates_and_verifies(browser: Browser, served_log: ServedLog, shots: Path) -> None:
    """Sign in as an auditor, search, open an entry with its "Verified" mark, verify the log, sign out."""
    visit = Visit(browser, served_log, WIDE, shots)  # type: ignore[arg-type]
    page = visit.page
    try:
        page.goto("/login")
        visit.shot("serve-login")
        sign_in(page, "ines")
        expect(page.locator(".viewer")).to_contain_text("Signed in as ines (auditor)")
        page.get_by_label("Action").fill("file.delete")
        page.get_by_role("button", name="Search", exact=True).click()
        rows = page.locator("table.entries-table tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("file:budget.xlsx")
        visit.shot("serve-console")
        rows.first.get_by_role("link", name="0", exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("Entry #0")
        expect(page.locator("#proof .proof-mark")).to_have_text(re.compile("Verified"))
        page.get_by_role("button", name="Verify the whole log").click()
        expect(page.locator("#verify-result")).to_contain_text("The log is intact")
        visit.shot("serve-entry-verified")
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(r"/login$"))
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.goto("/console")
        expect(page).to_have_url(re.compile(r"/login\?next=/console$"))
    finally:
        visit.context.close()
    assert [] == visit.errors, "the pages raised script errors or broke their content policy"
    trail = served_log.trail
    assert ["audit.search", "audit.search", "audit.view", "audit.verify"] == [
        e.action for e in trail.query(action="audit.*", actor="ines", limit=100).entries
    ]
    assert ["success", "success"] == [e.outcome for e in trail.query(action="session.*", actor="ines").entries]


def test_reader_has_no_verify_button(browser: Browser, served_log: ServedLog, shots: Path) -> None:
    visit = Visit(browser, served_log, WIDE, shots)  # type: ignore[arg-type]
    page = visit.page
    try:
        sign_in(page, "rhea")
        expect(page.locator(".viewer")).to_contain_text("Signed in as rhea (reader)")
        expect(page.locator("table.entries-table tbody tr")).not_to_have_count(0)
        expect(page.get_by_role("button", name="Verify the whole log")).to_have_count(0)
        expect(page.get_by_role("link", name="CSV")).to_have_count(0)
        page.goto("/entry/1")
        expect(page.locator("#proof .proof-mark")).to_have_text(re.compile("Verified"))
        expect(page.get_by_role("button", name="Verify the whole log")).to_have_count(0)
        visit.shot("serve-reader-entry")
    finally:
        visit.context.close()
    assert [] == visit.errors


@pytest.fixture
def throttled_log(tmp_path: Path) -> Iterator[ServedLog]:
    """The service with a sign-in limit of two failures, a reader (rhea) and a writer (wes)."""
    with graven.init(tmp_path / "trail.db", signing_key=tmp_path / "signing.key") as trail:
        trail.record({"action": "file.delete", "actor": "u-7", "targets": [{"type": "file", "id": "a.txt"}]})
        trail.checkpoint()
        served = ServedLog.__new__(ServedLog)
        served.trail = trail
        served.app = create_app(trail, ServerConfig(secret=SECRET, auth_failure_limit=2))
        LiveServer.__init__(served, served.app)
        with served:
            accounts = served.app.state.graven.accounts
            accounts.add_user("rhea", "reader", PASSWORD, by=SETUP)
            accounts.add_user("wes", "writer", PASSWORD, by=SETUP)
            yield served


class TestBrowsersGetPages:
    def test_throttled_sign_in_gets_the_form(self, browser: Browser, throttled_log: ServedLog, shots: Path) -> None:
        visit = Visit(browser, throttled_log, WIDE, shots)  # type: ignore[arg-type]
        page = visit.page
        try:
            page.goto("/login")
            for _ in range(3):
                page.get_by_label("User name").fill("rhea")
                page.get_by_label("Password").fill("not the password")
                page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_contain_text("too many failed authentications")
            expect(page.get_by_label("User name")).to_be_visible()  # the form, not raw JSON
            visit.shot("serve-login-throttled")
        finally:
            visit.context.close()
        visit.errors = [e for e in visit.errors if "status of 401" not in e and "status of 429" not in e]
        assert [] == visit.errors
        answer = httpx.post(f"{throttled_log.url}/auth/login", json={"username": "rhea", "password": "x"}, timeout=10)
        assert (429, "too_many_failures") == (answer.status_code, answer.json()["error"])  # API clients: JSON

    def test_refused_export_and_unknown_path_are_pages(
        self, browser: Browser, throttled_log: ServedLog, shots: Path
    ) -> None:
        visit = Visit(browser, throttled_log, WIDE, shots)  # type: ignore[arg-type]
        page = visit.page
        try:
            sign_in(page, "rhea")
            answer = page.goto("/console/export?format=csv")
            assert answer is not None
            assert 403 == answer.status
            expect(page.get_by_role("heading", level=1)).to_have_text("Refused")
            expect(page.get_by_role("alert")).to_contain_text("may not verify the whole log or export")
            visit.shot("serve-reader-export-refused")
            answer = page.goto("/no/such/page")
            assert answer is not None
            assert 404 == answer.status
            expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
            visit.shot("serve-not-found")
        finally:
            visit.context.close()
        assert 404 == httpx.get(f"{throttled_log.url}/no/such/page", timeout=10).json().get("status", 404)
        assert "not_found" == httpx.get(f"{throttled_log.url}/no/such/page", timeout=10).json()["error"]

    def test_writer_gets_a_way_out_not_a_loop(self, browser: Browser, throttled_log: ServedLog, shots: Path) -> None:
        visit = Visit(browser, throttled_log, WIDE, shots)  # type: ignore[arg-type]
        page = visit.page
        try:
            page.goto("/login")
            page.get_by_label("User name").fill("wes")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.goto("/console")
            expect(page.get_by_role("heading", level=1)).to_have_text("Refused")
            expect(page.get_by_role("link", name="Back to the start")).to_have_count(0)
            page.get_by_role("button", name="Sign out, to sign in as someone else").click()
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        finally:
            visit.context.close()

    def test_head_is_answered(self, throttled_log: ServedLog) -> None:
        for path in ("/login", "/static/app.css"):
            assert 200 == httpx.head(throttled_log.url + path, timeout=10).status_code, path
        assert 303 == httpx.head(throttled_log.url + "/console", timeout=10).status_code
