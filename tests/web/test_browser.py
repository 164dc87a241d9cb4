"""The demo in a real browser: Playwright driving the system's Chromium against the real server.

Clicks through what a visitor does (a denial, wrong passwords, an admin's password reset and the
customer's timeline, tampering caught by verification), by mouse and by keyboard, at desktop and
phone width, and saves a screenshot of every page (the folder is printed at the end of the run).
"""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import JSON, PAGES, LiveServer, Visit


def counter(page: Page, name: str) -> str:
    return page.locator(f'#counters [data-counter="{name}"]').inner_text()


def be_at_keyboard(page: Page, name: str) -> None:
    page.get_by_role("radio", name=re.compile(name)).check()
    expect(page.locator("#status")).to_contain_text(f"You are now {name}")


class TestTryIt:
    def test_denial_appears_with_the_counters(self, visit: Visit) -> None:
        """Sam (read-only) tries to delete a file: the denial shows at once, counted."""
        page = visit.page
        page.goto("/try")
        expect(page.locator("#empty-log")).to_be_visible()
        be_at_keyboard(page, "Sam Okafor")
        form = page.locator("form", has=page.get_by_role("heading", name="Delete a file"))
        form.get_by_role("button").click()
        first = page.locator("#try-log li").first
        expect(first.locator(".badge")).to_have_text("Denied")
        expect(first.get_by_role("link", name="Sam Okafor")).to_have_attribute("title", re.compile("u-23"))
        expect(first).to_contain_text("file.delete")
        expect(first).to_contain_text("permission files.delete required")
        expect(page.locator("#empty-log")).to_be_hidden()
        assert ("1", "0", "1", "0") == tuple(counter(page, k) for k in ("total", "success", "denied", "failure"))
        expect(form.locator(".form-result")).to_contain_text("Denied: Sam Okafor may not delete files")
        expect(form.get_by_role("button")).to_be_focused()  # focus stays where the visitor is
        visit.shot("try-denied")

    def test_three_wrong_passwords_by_keyboard(self, visit: Visit) -> None:
        """With the keyboard only: three wrong passwords, three failures, then the account locks."""
        page = visit.page
        page.goto("/try")
        page.get_by_role("radio", name=re.compile("Dana Reyes")).focus()
        page.keyboard.press("ArrowDown")  # radios move with the arrow keys, without switching at each step
        page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")  # Enter confirms the choice
        expect(page.locator("#status")).to_contain_text("You are now Anonymous visitor")
        sign_in = page.locator("form", has=page.get_by_role("heading", name="Sign in"))
        sign_in.get_by_label("Account").select_option("c-1044")
        for attempt in range(1, 4):
            sign_in.get_by_label("Password").focus()
            page.keyboard.type("tortoise")
            page.keyboard.press("Enter")
            expect(page.locator('#counters [data-counter="failure"]')).to_have_text(str(attempt))
        expect(page.locator("#try-log li .badge", has_text="Failure")).to_have_count(3)
        expect(page.locator("#try-log li").first).to_contain_text("account.lock")
        expect(page.locator("#state")).to_contain_text("locked")
        assert "4" == counter(page, "total")
        visit.shot("try-wrong-passwords")

    def test_admin_resets_a_password_and_the_timeline_answers(self, visit: Visit) -> None:
        """Priya resets Ada's password; Ada's timeline shows who, when and from where."""
        page = visit.page
        page.goto("/try")
        be_at_keyboard(page, "Priya Shah")
        form = page.locator("form", has=page.get_by_role("heading", name="Change a customer's password"))
        form.get_by_label("Customer").select_option("c-1042")
        form.get_by_label("New password").fill("a-much-better-one")
        form.get_by_label("Reason").fill("verified by video call, ticket SUP-2417")
        form.get_by_role("button", name="Change password").click()
        expect(form.locator(".form-result")).to_contain_text("Ada Lovelace's password was changed.")
        expect(page.locator("#try-log li").first).to_contain_text("password: changed (value hidden)")
        page.locator("#state").get_by_role("link", name="Ada Lovelace").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Timeline of Ada Lovelace (customer:c-1042)")
        latest = page.locator("ol.timeline > li").last
        expect(latest).to_contain_text("user.password.change")
        expect(latest.get_by_role("link", name="Priya Shah")).to_have_attribute("title", re.compile("u-1"))
        expect(latest).to_contain_text("192.0.2.10, Firefox on Linux")
        expect(latest).to_contain_text("the admin password reset form")
        expect(latest).to_contain_text("ticket SUP-2417")
        expect(latest.locator("time").first).to_contain_text(re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"))
        yesterday = page.locator("ol.timeline li", has_text="Dana Reyes").filter(has_text="user.password.change")
        expect(yesterday).to_contain_text("198.51.100.23, Firefox on Windows")
        visit.shot("timeline-after-reset")

    def test_reset_starts_afresh(self, visit: Visit) -> None:
        page = visit.page
        page.goto("/try")
        page.locator("form", has=page.get_by_role("heading", name="View a customer")).get_by_role("button").click()
        expect(page.locator('#counters [data-counter="total"]')).to_have_text("1")
        page.get_by_role("button", name="Reset: start a fresh demo log").click()
        expect(page.locator('#counters [data-counter="total"]')).to_have_text("0")
        expect(page.locator("#empty-log")).to_be_visible()


class TestConsole:
    def test_tampering_is_caught_and_the_entry_named(self, visit: Visit) -> None:
        """Verify (intact), tamper with the database, verify again: entry 4 is named and loses its mark."""
        page = visit.page
        page.goto("/console")
        page.get_by_role("button", name="Verify the whole log").click()
        expect(page.locator("#verify-result")).to_contain_text("The log is intact: 10 entries")
        page.get_by_role("button", name="Tamper with the database").click()
        expect(page.locator("#verify-result")).to_contain_text("Entry 4 now says Ada Lovelace changed the password")
        visit.shot("console-tampered")
        page.get_by_role("button", name="Verify the whole log").click()
        result = page.locator("#verify-result")
        expect(result).to_contain_text("Tampering found: modified at entry #4.")
        expect(result).to_contain_text("Entry 4 was modified")
        visit.shot("console-verify-caught")
        result.get_by_role("link", name="Open entry #4").click()
        expect(page.locator("#proof")).to_contain_text("Not verified")
        expect(page.locator("#proof")).to_contain_text("is not in the log that signed this checkpoint")
        visit.shot("entry-not-verified")

    def test_search_and_export(self, visit: Visit) -> None:
        """Search by outcome; the export links carry the search."""
        page = visit.page
        page.goto("/console")
        page.get_by_label("Outcome").select_option("failure")
        page.get_by_role("button", name="Search", exact=True).click()
        expect(page.locator("table.entries-table tbody tr")).to_have_count(3)
        href = page.get_by_role("link", name="CSV").get_attribute("href") or ""
        exported = httpx.get(visit.page.url.split("/console")[0] + href, timeout=10).text.splitlines()
        assert 4 == len(exported)
        bad = page.goto("/console?since=soon")
        assert bad is not None
        assert 400 == bad.status
        expect(page.get_by_role("alert")).to_contain_text("since: must be a date and time")
        visit.errors.remove("Failed to load resource: the server responded with a status of 400 (Bad Request)")

    def test_live_tail(self, visit: Visit, live_server: LiveServer) -> None:
        """An entry recorded elsewhere appears on the tail by itself."""
        page = visit.page
        page.goto("/tail")
        expect(page.locator("#live-state")).to_have_text("live")
        httpx.post(f"{live_server.url}/try/attempt", data={"operation": "view_customer", "customer": "c-1043"},
                   headers=JSON, timeout=10)  # fmt: skip
        first = page.locator("#tail-log li").first
        expect(first).to_contain_text("customer.view")
        expect(first).to_have_attribute("data-index", "10")


class TestHowItWorks:
    def test_parts_explain_themselves_on_hover_focus_and_tap(self, visit: Visit, phone: Visit) -> None:
        page = visit.page
        page.goto("/how")
        explain = page.locator("#explain")
        page.locator("#node-merkle").hover()
        expect(explain).to_contain_text("Merkle tree")
        expect(explain).to_contain_text("Why it is needed")
        page.locator("#node-witnesses").focus()
        expect(explain).to_contain_text("Witnesses")
        page.keyboard.press("Shift+Tab")
        expect(explain).to_contain_text("Signed checkpoint")
        animation = page.locator(".link-flow").first.evaluate("el => getComputedStyle(el).animationName")
        assert "flow" == animation
        phone.page.goto("/how")
        expect(phone.page.locator("#node-sequencer")).to_be_hidden()  # phones get the narrow drawing
        phone.page.locator("#node-sequencer-narrow").tap()
        expect(phone.page.locator("#explain")).to_contain_text("Sequencer")


class TestEveryPage:
    @pytest.mark.parametrize("width", ["wide", "phone"])
    def test_pages_render_fit_and_are_saved(self, visit: Visit, phone: Visit, width: str) -> None:
        """Every page loads without script errors, fits the screen's width, and is saved as a screenshot."""
        v = visit if width == "wide" else phone
        for path in PAGES:
            response = v.page.goto("/" + path)
            assert response is not None
            assert 200 == response.status, path
            overflow = v.page.evaluate("document.documentElement.scrollWidth") - v.width
            assert overflow <= 0, f"/{path} is {overflow}px wider than the screen"
            v.shot("page-" + re.sub(r"\W+", "-", path.split("?")[0]))
