"""What makes the UI a daily investigation tool (issue 16, items 8-12), in a real browser.

Integrity in sight (header badge, a mark per row, a banner on a failing entry), pivots on every fact,
saved searches, relative times with the exact time on hover, the viewers' own activity hidden by
default under ``graven serve``, feedback where the visitor is (with and without JavaScript), and the
diagram's explanation beside the drawing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

import graven
from graven.server import ServerConfig, create_app
from tests.server.server_harness import SECRET, SETUP
from tests.web.conftest import PHONE, WIDE, LiveServer, Visit

PASSWORD = "correct horse"


def form_of(page: Page, heading: str):  # type: ignore[no-untyped-def]
    return page.locator("form", has=page.get_by_role("heading", name=heading, exact=True))


class TestIntegrityInSight:
    def test_badge_marks_and_banner_follow_verification(self, visit: Visit) -> None:
        page = visit.page
        page.goto("/console")
        expect(page.locator("#integrity")).to_have_text("Integrity: not verified yet")
        expect(page.locator("tr .mark")).to_have_count(0)  # nothing is marked before anything is known
        page.get_by_role("button", name="Verify the whole log").click()
        expect(page.locator("#integrity")).to_contain_text("Intact: 10 entries, verified just now")
        page.reload()
        expect(page.locator("tr .mark.ok")).to_have_count(10)
        page.get_by_role("button", name="Tamper with the database").click()
        expect(page.locator("#verify-result")).to_contain_text("Now verify the log")
        page.reload()
        expect(page.locator("#integrity")).to_have_text("Integrity: not verified yet")  # an old "intact" is dropped
        page.get_by_role("button", name="Verify the whole log").click()
        expect(page.locator("#integrity")).to_contain_text("Tampering found at entry #4 (modified)")
        page.reload()
        row = page.locator('tr[data-index="4"]')
        expect(row).to_have_class(re.compile("tampered"))
        expect(row.locator(".mark.bad")).to_contain_text("tampered")
        expect(page.locator("tr .mark.ok")).to_have_count(9)
        visit.shot("daily-console-tampered-rows")
        page.locator("#integrity").click()
        expect(page).to_have_url(re.compile(r"/entry/4$"))
        expect(page.locator("#tamper-banner")).to_contain_text("This entry fails its proof")
        page.goto("/timeline?target=customer:c-1042")
        expect(page.locator('li.moment[data-index="4"]')).to_have_class(re.compile("tampered"))


class TestPivots:
    def test_every_fact_filters_and_names_show_ids_on_hover(self, visit: Visit) -> None:
        page = visit.page
        page.goto("/entry/4")
        actor = page.locator("#who-h + dl").get_by_role("link", name="Dana Reyes")
        expect(actor).to_have_attribute("title", re.compile("u-17"))
        actor.click()
        expect(page).to_have_url(re.compile(r"/console\?actor=u-17$"))
        expect(page.locator("table.entries-table tbody tr")).to_have_count(5)  # the story's five
        page.locator("tbody tr").first.get_by_role("link", name="198.51.100.23").click()
        expect(page.get_by_label("Free text")).to_have_value("198.51.100.23")
        page.locator("tbody tr").first.get_by_role("link", name="customer.update").click()
        expect(page.get_by_label("Action")).to_have_value("customer.update")
        expect(page.locator("table.entries-table tbody tr")).to_have_count(1)
        when = page.locator("tbody tr time").first
        expect(when).to_have_text(re.compile(r"ago$"))
        expect(when).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
        page.locator("tbody tr").first.get_by_role("link", name="Ada Lovelace").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Timeline of Ada Lovelace (customer:c-1042)")

    def test_saved_searches_stay_in_the_browser(self, visit: Visit) -> None:
        page = visit.page
        page.goto("/console?outcome=failure")
        expect(page.locator("#saved")).to_be_hidden()
        page.get_by_role("button", name="Save this search").click()
        page.goto("/console")
        saved = page.locator("#saved-list").get_by_role("link", name="outcome=failure")
        saved.click()
        expect(page.locator("table.entries-table tbody tr")).to_have_count(3)
        page.get_by_role("button", name="Remove the saved search outcome=failure").click()
        expect(page.locator("#saved")).to_be_hidden()


class TestFeedbackWhereTheVisitorIs:
    def test_phones_keep_the_counters_in_sight(self, phone: Visit) -> None:
        """The log is far below the forms on a phone: a sticky strip shows the counters as they change."""
        page = phone.page
        page.goto("/try")
        form = form_of(page, "Delete a file")
        form.get_by_role("button").click()
        expect(form.locator(".form-result")).to_contain_text("Denied")
        strip = page.locator("#strip")
        expect(strip.locator('[data-counter="denied"]')).to_have_text("1")
        box = strip.bounding_box()
        assert box is not None
        assert 0 <= box["y"] <= 1, "the strip sticks to the top of the screen"
        phone.shot("daily-try-strip")

    def test_without_javascript_results_tail_and_diagram_still_work(self, browser: Browser,
                                                                    live_server: LiveServer) -> None:  # fmt: skip
        context = browser.new_context(viewport=WIDE, base_url=live_server.url, java_script_enabled=False)
        page = context.new_page()
        try:
            page.goto("/try")
            form = form_of(page, "Delete a file")
            form.get_by_role("button").click()
            expect(page).to_have_url(re.compile(r"/try\?did=10&op=delete_file#result-delete_file$"))
            expect(form_of(page, "Delete a file").locator(".form-result")).to_contain_text(
                "Entry #10: denied, file.delete on contract-c-1042.pdf (file:d-1), Ada Lovelace (customer:c-1042): "
                "permission files.delete required."
            )
            page.goto("/tail")
            page.get_by_role("link", name="Refresh").click()
            expect(page.locator("#tail-log li").first).to_contain_text("file.delete")
            page.goto("/how")
            page.locator("#node-merkle").click()
            expect(page).to_have_url(re.compile(r"/how#part-merkle$"))
            expect(page.locator("#part-merkle")).to_contain_text("What it does")
        finally:
            context.close()


class TestHowItWorks:
    def test_the_explanation_is_beside_the_part_without_scrolling(self, browser: Browser,
                                                                  live_server: LiveServer) -> None:  # fmt: skip
        context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=live_server.url)
        page = context.new_page()
        try:
            page.goto("/how")
            for part in ("app", "witnesses", "siem"):
                page.locator(f"#node-{part}").hover()
                explain = page.locator("#explain")
                expect(explain).to_contain_text("Why it is needed")
                box, node = explain.bounding_box(), page.locator(f"#node-{part}").bounding_box()
                assert box is not None
                assert node is not None
                assert box["y"] >= 0, f"{part}: the explanation is above the screen"
                assert box["y"] + box["height"] <= 800, f"{part}: the explanation is below the screen"
                assert box["x"] > node["x"] + node["width"], f"{part}: the explanation is not beside the drawing"
        finally:
            context.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[LiveServer]:
    with graven.init(tmp_path / "trail.db", signing_key=tmp_path / "signing.key") as trail:
        trail.record({"action": "file.delete", "actor": "u-7", "targets": [{"type": "file", "id": "budget.xlsx"}]})
        trail.checkpoint()
        app = create_app(trail, ServerConfig(secret=SECRET))
        with LiveServer(app) as server:
            app.state.graven.accounts.add_user("ines", "auditor", PASSWORD, by=SETUP)
            yield server


def test_the_viewers_own_activity_is_one_toggle_away(browser: Browser, served: LiveServer, shots: Path) -> None:
    """Under graven serve, the console leaves out its viewers' reads (audit.*) until asked for them."""
    visit = Visit(browser, served, PHONE, shots)
    page = visit.page
    try:
        page.goto("/login")
        page.get_by_label("User name").fill("ines")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.reload()  # the first search is recorded by now
        actions = page.locator("tbody td[data-label=Action]")
        expect(actions).to_have_text(["session.login", "user.create", "file.delete"])
        expect(page.locator("#hidden-own")).to_contain_text("1 entry of the viewers' own activity hidden")
        page.get_by_label("Include the viewers' own activity").check()
        page.get_by_role("button", name="Search", exact=True).click()
        expect(actions.first).to_have_text("audit.search")
        expect(actions).to_have_count(5)
        visit.shot("daily-serve-console-everything")
    finally:
        visit.context.close()
    assert [] == visit.errors
