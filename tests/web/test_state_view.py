"""The "state at this moment" page, from the timeline and the entry page (test client and Chromium)."""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, expect

from graven.core.bundle import verify_bundle
from graven.core.note import Verifier
from graven.web import Sandbox
from tests.web.conftest import LiveServer

TARGET = "customer:c-1042"


def changed_entries(sandbox: Sandbox) -> list[int]:
    with sandbox.using() as trail:
        return trail.state(TARGET).indices


class TestStatePage:
    def test_timeline_and_entry_link_to_the_state_then(self, client: TestClient, sandbox: Sandbox) -> None:
        """Each change on the timeline, and the entry page, link to the state at that entry."""
        first = changed_entries(sandbox)[0]
        link = f"/state?target=customer%3Ac-1042&amp;at_index={first}"
        assert link in client.get("/timeline", params={"target": TARGET}).text
        assert link in client.get(f"/entry/{first}").text

    def test_state_lists_fields_with_the_entry_that_set_them(self, client: TestClient, sandbox: Sandbox) -> None:
        """The page shows every field then, redacted ones as never stored, and a proof to download."""
        indices = changed_entries(sandbox)
        page = client.get("/state", params={"target": TARGET, "at_index": str(indices[0])})
        assert 200 == page.status_code, page.text
        with sandbox.using() as trail:
            state = trail.state(TARGET, at_index=indices[0])
            key = trail.verifier_key
        for name in state.fields:
            assert f'data-field="{name}"' in page.text
        now = client.get("/state", params={"target": TARGET}).text
        assert "value never stored (redacted)" in now
        bundle = client.get("/state/bundle", params={"target": TARGET, "at_index": str(indices[-1])})
        assert verify_bundle(orjson.loads(bundle.content), [Verifier.from_text(key)]).ok

    def test_bad_input_is_a_4xx(self, client: TestClient) -> None:
        """A missing target, a bad index or a bad moment is refused, naming it."""
        assert 400 <= client.get("/state").status_code < 500
        bad = client.get("/state", params={"target": TARGET, "at_index": "x"})
        assert 400 <= bad.status_code < 500
        assert "index" in bad.text
        when = client.get("/state", params={"target": TARGET, "as_of": "soon"})
        assert 400 <= when.status_code < 500
        assert "as_of" in when.text


def test_state_page_in_a_browser(browser: Browser, live_server: LiveServer, sandbox: Sandbox) -> None:
    """In Chromium: from the timeline to the state at a moment, then one step on."""
    page = browser.new_page()
    try:
        page.goto(f"{live_server.url}/timeline?target={TARGET}")
        page.locator("a.state-link").first.click()
        expect(page.locator("h1")).to_contain_text("State of customer:c-1042 after entry")
        expect(page.locator("#state tbody tr").first).to_be_visible()
        steps = page.locator("nav.steps a")
        if steps.count() > 1:
            steps.nth(0).click()
            expect(page.locator("#state")).to_be_visible()
    finally:
        page.close()
