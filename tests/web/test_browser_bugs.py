"""The demo's bugs of issue 16, each pinned in a real browser (Chromium driven by Playwright).

Every test here failed before its fix: Grant/Revoke with JavaScript on, the sign-in that did not
change who acts next, the log path that Reset made stale, the README that promised a denied grant
on Ada's timeline, words broken mid-word, "Intact." said twice, an actor's role and type repeated
beside the name, HEAD refused, and the third wrong password that never said "locked".
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from graven.web import Sandbox
from tests.web.conftest import PAGES, LiveServer, Visit
from tests.web.test_browser import be_at_keyboard, counter

README = Path(__file__).resolve().parents[2] / "README.md"

# A script that lists every word (letters, up to 20 of them) that the layout split across two lines.
SPLIT_WORDS = """() => {
  const split = [];
  const walker = document.createTreeWalker(document.querySelector("main"), NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest("pre, .hashes, .hash, [hidden], details:not([open]) > :not(summary)")) continue;
    if (!node.parentElement.getClientRects().length) continue;
    for (const match of node.data.matchAll(/[A-Za-z]{2,20}/g)) {
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (lines.size > 1) split.push(match[0] + " in " + node.parentElement.tagName.toLowerCase());
    }
  }
  return split;
}"""


def form_of(page: Page, heading: str):  # type: ignore[no-untyped-def]
    return page.locator("form", has=page.get_by_role("heading", name=heading, exact=True))


class TestTryIt:
    def test_grant_and_revoke_work_with_javascript(self, visit: Visit) -> None:
        """Priya grants Sam the support role, then revokes it: both recorded as successes, no 400."""
        page = visit.page
        page.goto("/try")
        be_at_keyboard(page, "Priya Shah")
        form = form_of(page, "Grant or revoke a role")
        form.get_by_label("Person").select_option("u-23")
        form.get_by_label("Role").select_option("support")
        form.get_by_role("button", name="Grant").click()
        expect(form.locator(".form-result")).to_contain_text("Sam Okafor now has the support role.")
        expect(page.locator("#try-log li").first).to_contain_text("role.grant")
        form.get_by_role("button", name="Revoke").click()
        expect(form.locator(".form-result")).to_contain_text("Sam Okafor no longer has the support role.")
        expect(page.locator("#try-log li").first).to_contain_text("role.revoke")
        assert "2" == counter(page, "success")

    def test_signing_in_as_someone_makes_them_the_one_at_the_keyboard(self, visit: Visit) -> None:
        """As Sam, sign in as Priya: the persona becomes Priya, and her next action is hers (allowed)."""
        page = visit.page
        page.goto("/try")
        be_at_keyboard(page, "Sam Okafor")
        sign_in = form_of(page, "Sign in")
        expect(sign_in.get_by_label("Account")).to_have_value("u-23")  # the account list follows the persona
        sign_in.get_by_label("Account").select_option("u-1")
        sign_in.get_by_label("Password").fill("orchid-priya-26")
        sign_in.get_by_role("button", name="Sign in").click()
        expect(sign_in.locator(".form-result")).to_contain_text("Priya Shah signed in")
        expect(page.get_by_role("radio", name=re.compile("Priya Shah"))).to_be_checked()
        expect(page.locator("#persona")).to_contain_text("Priya Shah, administrator")
        form_of(page, "Delete a file").get_by_role("button").click()
        expect(page.locator("#try-log li").first).to_contain_text("file.delete")
        expect(page.locator("#try-log li").first.locator(".badge").first).to_have_text("Success")
        page.reload()  # the server remembers it too
        expect(page.get_by_role("radio", name=re.compile("Priya Shah"))).to_be_checked()

    def test_the_third_wrong_password_says_locked_and_the_lock_is_automatic(self, visit: Visit) -> None:
        page = visit.page
        page.goto("/try")
        sign_in = form_of(page, "Sign in")
        sign_in.get_by_label("Account").select_option("c-1043")
        for attempt in range(1, 4):
            sign_in.get_by_label("Password").fill("wrong-guess")
            sign_in.get_by_role("button", name="Sign in").click()
            expect(page.locator('[data-counter="failure"]').first).to_have_text(str(attempt))
        expect(sign_in.locator(".form-result")).to_contain_text("Grace Hopper's account is now locked")
        assert "0" == counter(page, "success")  # the lock is not the visitor's success
        assert "1" == counter(page, "automatic")
        expect(page.locator("#try-log li").first).to_contain_text("automatic")


class TestConsole:
    def test_the_console_names_the_current_log_and_its_key(self, visit: Visit, sandbox: Sandbox) -> None:
        """The log's path and verifier key are beside the bundle link, and follow a Reset."""
        page = visit.page
        page.goto("/console")
        expect(page.locator("#log-path")).to_have_text(str(sandbox.folder / "trail.db"))
        expect(page.locator("#log-key")).to_have_text(sandbox.trail.verifier_key)
        page.goto("/try")
        form_of(page, "View a customer").get_by_role("button").click()
        expect(page.locator('[data-counter="total"]').first).to_have_text("1")
        page.get_by_role("button", name="Reset: start a fresh demo log").click()
        expect(page.locator('[data-counter="total"]').first).to_have_text("0")
        page.goto("/console")
        shown = page.locator("#log-path").inner_text()
        assert str(sandbox.folder / "trail.db") == shown
        assert Path(shown).is_file()
        expect(page.locator("#log-key")).to_have_text(sandbox.trail.verifier_key)

    def test_verification_says_intact_once(self, visit: Visit) -> None:
        page = visit.page
        page.goto("/console")
        page.get_by_role("button", name="Verify the whole log").click()
        result = page.locator("#verify-result")
        expect(result).to_contain_text("The log is intact: 10 entries")
        assert "Intact. The log is intact" not in result.inner_text()


class TestReading:
    def test_an_actor_is_named_once_with_the_id_on_hover(self, visit: Visit) -> None:
        page = visit.page
        page.goto("/entry/4")
        who = page.locator("#who-h + dl dd").first
        expect(who).to_have_text("Dana Reyes")
        expect(who.locator("[title]").first).to_have_attribute("title", re.compile("u-17"))

    def test_the_readme_tells_what_adas_timeline_holds(self, visit: Visit) -> None:
        """The README's account of the customer's timeline matches the timeline page."""
        page = visit.page
        page.goto("/timeline?target=customer:c-1042")
        actions = page.locator("ol.timeline .moment-head code").all_inner_texts()
        text = README.read_text()
        told = re.search(r"- the customer's timeline \(`graven log --target customer:c-1042`\):(.*?);\n", text, re.S)
        assert told is not None
        assert ("role" in told.group(1)) == ("role.grant" in actions), (told.group(1), actions)

    @pytest.mark.parametrize("width", ["wide", "phone"])
    def test_no_word_is_broken_across_lines(self, visit: Visit, phone: Visit, width: str) -> None:
        v = visit if width == "wide" else phone
        for path in PAGES:
            v.page.goto("/" + path)
            v.page.locator("details").evaluate_all("all => all.forEach(d => d.open = true)")
            assert [] == v.page.evaluate(SPLIT_WORDS), path

    def test_head_is_answered_like_get(self, live_server: LiveServer) -> None:
        for path in ("/try", "/console", "/entry/4", "/how", "/tail", "/timeline?target=customer:c-1042"):
            answer = httpx.head(live_server.url + path, timeout=10)
            assert 200 == answer.status_code, path
            assert answer.headers["content-type"].startswith("text/html")
