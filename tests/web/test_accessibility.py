"""Accessibility in a real browser: axe-core on every page, at desktop and phone width, before and after
the page is used; and what axe cannot see (focus rings, focus after a submit, arrowing through radios).

axe-core comes from npm (``./dev test`` installs it); without it these tests fail under CI=true.
Every page is saved as a screenshot at both widths, before and after interaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

import graven
from graven.forward import config as fc
from graven.forward.cursor import Cursors
from graven.forward.runner import Forwarder
from graven.server import ServerConfig, create_app
from tests.server.server_harness import SECRET, SETUP
from tests.web.conftest import PHONE, WIDE, LiveServer, Visit, serious_violations

PASSWORD = "correct horse"

# The relative luminance contrast of two CSS colours (rgb() or rgba() as getComputedStyle gives them).
CONTRAST = """([a, b]) => {
  const lum = (css) => {
    const [r, g, bl] = css.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}"""


# The elements that reach past the right edge of the screen (innermost first), to say what overflows.
WIDEST = """(width) => [...document.querySelectorAll("body *")]
  .filter(e => e.getBoundingClientRect().right > width + 1 || e.scrollWidth > width + 1)
  .slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + " " + e.textContent.slice(0, 40))"""


def open_details(page: Page) -> None:
    page.locator("details").evaluate_all("all => all.forEach(d => d.open = true)")


def use_try(page: Page) -> None:
    open_details(page)
    page.get_by_role("radio", name=re.compile("Sam Okafor")).check()
    expect(page.locator("#status")).to_contain_text("You are now Sam Okafor")
    form = page.locator("form", has=page.get_by_role("heading", name="Delete a file"))
    form.get_by_role("button").click()
    expect(form.locator(".form-result")).to_contain_text("Denied")


def use_console(page: Page) -> None:
    page.get_by_label("Outcome").select_option("failure")
    page.get_by_role("button", name="Search", exact=True).click()
    page.get_by_role("button", name="Save this search").click()
    expect(page.locator("#saved-list li")).to_have_count(1)
    if page.get_by_role("button", name="Tamper with the database").count():
        page.get_by_role("button", name="Tamper with the database").click()
        expect(page.locator("#verify-result")).to_contain_text("Now verify the log")
    page.get_by_role("button", name="Verify the whole log").click()
    expect(page.locator("#verify-result")).not_to_contain_text("Verifying")


def use_forwarders(page: Page) -> None:
    row = page.locator('tr[data-forwarder="siem"]')
    expect(row.locator(".badge")).to_have_text("Erroring")
    expect(row).to_contain_text("connection refused by siem.example:6514")


def use_how(page: Page) -> None:
    node = page.locator(".node:visible").nth(4)
    node.focus()
    expect(page.locator("#explain")).to_contain_text("What it does")


USES: dict[str, Callable[[Page], None]] = {
    "try": use_try,
    "console": use_console,
    "how": use_how,
    "forwarders": use_forwarders,
}
DEMO_PAGES = ("try", "console", "timeline?target=customer:c-1042", "entry/4", "tail", "how")


def audit(visit: Visit, axe: str, path: str, prefix: str = "a11y") -> None:
    """axe on the page as loaded, then after using it; screenshots of both."""
    page = visit.page
    response = page.goto("/" + path)
    assert response is not None
    name = re.sub(r"\W+", "-", path.split("?")[0]).strip("-") or "root"
    assert [] == serious_violations(page, axe), f"/{path} at {visit.width} px, as loaded"
    visit.shot(f"{prefix}-{name}")
    USES.get(path.split("?")[0], open_details)(page)
    assert [] == serious_violations(page, axe), f"/{path} at {visit.width} px, after use"
    overflow = page.evaluate("document.documentElement.scrollWidth") - visit.width
    wide = page.evaluate(WIDEST, visit.width)
    assert overflow <= 0, f"/{path} is {overflow}px wider than the screen after use: {wide}"
    visit.shot(f"{prefix}-{name}-used")


@pytest.mark.parametrize("width", ["wide", "phone"])
def test_every_demo_page_passes_axe(visit: Visit, phone: Visit, axe: str, width: str) -> None:
    """No serious or critical violation on any page of the demo, before and after interaction."""
    v = visit if width == "wide" else phone
    for path in DEMO_PAGES:
        audit(v, axe, path)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """The service over a small log with an auditor (ines) and a forwarder that delivered, then failed."""
    with graven.init(tmp_path / "trail.db", signing_key=tmp_path / "signing.key") as trail:
        trail.record_many([
            {"action": "file.delete", "actor": {"type": "user", "id": "u-7", "name": "Noor"},
             "targets": [{"type": "file", "id": "budget.xlsx"}], "reason": "clean-up ticket OPS-12",
             "metadata": {"ticket": "OPS-12"}},
            {"action": "user.email.change", "actor": "u-2", "targets": [{"type": "user", "id": "u-2"}],
             "changes": [{"field": "email", "old": "a@x.example", "new": "b@x.example"}]},
        ])  # fmt: skip
        trail.checkpoint()
        config = fc.parse_sink("siem", {"sink": "jsonl", "path": str(tmp_path / "out"), "batch": 1})
        fc.write_sink(tmp_path / "graven.toml", config, "siem")
        monkeypatch.setenv(fc.CONFIG_ENV, str(tmp_path / "graven.toml"))
        cursors = Cursors(trail.store)
        forwarder = Forwarder(trail, config, cursors)
        forwarder.open()
        forwarder.step()
        forwarder.close()
        cursors.fail("siem", "connection refused by siem.example:6514 after 3 attempts")
        cursors.close()
        app = create_app(trail, ServerConfig(secret=SECRET))
        with LiveServer(app) as server:
            app.state.graven.accounts.add_user("ines", "auditor", PASSWORD, by=SETUP)
            yield server


@pytest.mark.parametrize("width", ["wide", "phone"])
def test_every_page_of_graven_serve_passes_axe(browser: Browser, served: LiveServer, shots: Path, axe: str,
                                               width: str) -> None:  # fmt: skip
    """The sign-in page, the UI behind it, the forwarders' page and an error page, at both widths."""
    visit = Visit(browser, served, WIDE if width == "wide" else PHONE, shots)
    page = visit.page
    try:
        page.goto("/login")
        assert [] == serious_violations(page, axe), "/login"
        visit.shot("a11y-serve-login")
        page.get_by_label("User name").fill("ines")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/console$"))
        for path in ("console", "entry/0", "timeline?target=file:budget.xlsx", "tail", "how", "forwarders"):
            audit(visit, axe, path, "a11y-serve")
        page.goto("/no/such/page")
        assert [] == serious_violations(page, axe), "404 page"
        visit.shot("a11y-serve-not-found")
    finally:
        visit.context.close()
    assert ["Failed to load resource: the server responded with a status of 404 (Not Found)"] == visit.errors


class TestWhatAxeCannotSee:
    def test_the_focus_ring_stands_out_from_the_page(self, visit: Visit) -> None:
        """The keyboard focus ring has at least 3:1 contrast with what is around it, in the page and the header."""
        page = visit.page
        page.goto("/console")
        for selector in ("main button[type=submit]", "header nav a"):
            page.locator(selector).first.focus()
            page.keyboard.press("Shift+Tab")
            page.keyboard.press("Tab")  # a keyboard focus, so that :focus-visible applies
            colours = page.locator(selector).first.evaluate(
                """el => {
                  let around = el.parentElement;
                  while (around && getComputedStyle(around).backgroundColor === "rgba(0, 0, 0, 0)") {
                    around = around.parentElement;
                  }
                  return [getComputedStyle(el).outlineColor, getComputedStyle(around || document.body).backgroundColor];
                }"""
            )
            assert page.evaluate(CONTRAST, colours) >= 3, (selector, colours)

    def test_arrowing_through_people_does_not_switch_until_confirmed(self, visit: Visit) -> None:
        page = visit.page
        page.goto("/try")
        page.get_by_role("radio", name=re.compile("Priya Shah")).focus()
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        page.wait_for_timeout(300)  # nothing may happen: there is nothing to wait for
        expect(page.locator("#status")).to_be_empty()
        expect(page.locator("#persona")).to_contain_text("Dana Reyes, support agent")
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_contain_text("You are now Sam Okafor")
        expect(page.locator("#persona")).to_contain_text("Sam Okafor, read-only analyst")

    def test_focus_stays_in_the_form_after_a_submit(self, visit: Visit) -> None:
        page = visit.page
        page.goto("/try")
        form = page.locator("form", has=page.get_by_role("heading", name="Sign in", exact=True))
        form.get_by_label("Password").focus()
        page.keyboard.type("wrong")
        page.keyboard.press("Enter")
        expect(form.locator(".form-result")).to_contain_text("wrong password")
        expect(form.get_by_label("Password")).to_be_focused()
        form.get_by_role("button", name="Sign in").click()
        expect(form.locator(".form-result")).to_contain_text("2 in a row")
        expect(form.get_by_role("button", name="Sign in")).to_be_focused()

    def test_the_explanation_adds_no_heading(self, visit: Visit) -> None:
        """Choosing a part puts its explanation in a paragraph, not a heading that breaks the outline."""
        page = visit.page
        page.goto("/how")
        page.locator("#node-merkle").hover()
        expect(page.locator("#explain")).to_contain_text("Merkle tree")
        assert 0 == page.locator("#explain").locator("h1, h2, h3, h4, h5, h6").count()

    def test_scrollable_blocks_take_the_keyboard(self, visit: Visit) -> None:
        page = visit.page
        page.goto("/entry/4")
        open_details(page)
        for block in page.locator("pre").all():
            assert "0" == block.get_attribute("tabindex")
