"""Every route of the web UI through a test client: status, content, and 4xx for bad input."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

import graven
from graven.core.bundle import verify_bundle
from graven.core.canonical import canonical
from graven.core.merkle import leaf_hash
from graven.core.note import Verifier
from graven.errors import ConfigError
from graven.forward.formats import native
from graven.trail import Trail
from graven.web import Sandbox, Viewer, create_web_app
from tests.web.conftest import JSON

STORY = 10  # entries the demo is seeded with
PASSWORD_CHANGE = 4  # the story's decisive entry


def attempt(client: TestClient, **form: str) -> dict[str, object]:
    response = client.post("/try/attempt", data=form, headers=JSON)
    assert 200 == response.status_code, response.text
    body: dict[str, object] = response.json()
    return body


def persona(client: TestClient, who: str) -> None:
    assert 200 == client.post("/try/persona", data={"persona": who}, headers=JSON).status_code


class TestTryIt:
    def test_home_leads_to_the_demo(self, client: TestClient) -> None:
        """The demo's front page is "try it yourself"."""
        response = client.get("/", follow_redirects=False)
        assert (303, "/try") == (response.status_code, response.headers["location"])

    def test_page_starts_empty_and_inviting(self, client: TestClient) -> None:
        """A fresh demo shows zero counters, an invitation, every persona, and sets the visitor's cookie."""
        response = client.get("/try")
        assert 200 == response.status_code
        html = response.text
        assert "Nothing recorded yet" in html
        assert 'data-counter="total">0<' in html
        for name in ("Priya Shah", "Dana Reyes", "Sam Okafor", "Anonymous visitor"):
            assert name in html
        assert "graven_demo" in response.cookies

    def test_denial_is_recorded_with_its_context(self, client: TestClient, sandbox: Sandbox) -> None:
        """The analyst may not delete a file: denied, counted, and recorded with who, where, how and why."""
        persona(client, "u-23")
        body = attempt(client, operation="delete_file", document="d-1", reason="cleaning up")
        assert ("denied", {"total": 1, "success": 0, "denied": 1, "failure": 0, "automatic": 0}) == (
            body["outcome"],
            body["counters"],
        )
        assert [STORY] == body["indices"]
        entry = sandbox.trail.get(STORY)
        assert ("file.delete", "denied", "permission files.delete required") == (
            entry.action, entry.outcome, entry.get("reason"),
        )  # fmt: skip
        assert {"type": "user", "id": "u-23", "name": "Sam Okafor", "ip": "192.0.2.77"}.items() <= entry.actor.items()
        assert "Safari" in entry.actor["user_agent"]
        assert entry.actor["session"].startswith("s-")
        assert "web" == entry.get("source")
        assert {"route": "/admin/documents/d-1", "form": "documents"}.items() <= entry.get("context").items()
        assert {"stated_reason": "cleaning up"} == entry.get("metadata")
        assert [{"type": "file", "id": "d-1", "name": "contract-c-1042.pdf"},
                {"type": "customer", "id": "c-1042", "name": "Ada Lovelace"}] == entry.targets  # fmt: skip
        items = body["entries"]
        assert isinstance(items, list)
        assert "Denied" in items[0]["html"]
        assert items[0]["visitor"]
        assert not sandbox.world.documents["d-1"].deleted

    def test_success_changes_the_application_and_records_old_and_new(
        self, client: TestClient, sandbox: Sandbox
    ) -> None:
        """The support agent updates an email: success, the change old → new, the state panel updated."""
        body = attempt(client, operation="email", customer="c-1043", email="grace@navy.example", reason="SUP-2301")
        assert "success" == body["outcome"]
        entry = sandbox.trail.get(STORY)
        assert [{"field": "email", "old": "grace@example.com", "new": "grace@navy.example"}] == entry.changes
        assert "SUP-2301" == entry.get("reason")
        assert "grace@navy.example" in str(body["state_html"])

    def test_three_wrong_passwords_three_failures_then_a_lock(self, client: TestClient, sandbox: Sandbox) -> None:
        """Three wrong passwords: three failed sign-ins, then the lockout policy's entry."""
        persona(client, "anonymous")
        for _ in range(3):
            body = attempt(client, operation="login", account="c-1044", password="letmein")
            assert "failure" == body["outcome"]
        assert {"total": 4, "success": 0, "denied": 0, "failure": 3, "automatic": 1} == body["counters"]
        entries = sandbox.trail.query(after=STORY - 1).entries
        assert ["session.login"] * 3 + ["account.lock"] == [e.action for e in entries]
        assert {"c-1044"} == {e.actor["id"] for e in entries[:3]}
        assert {"203.0.113.250"} == {e.actor["ip"] for e in entries[:3]}
        assert ("system", "job") == (entries[3].actor["type"], entries[3].get("source"))

    def test_password_change_is_redacted(self, client: TestClient, sandbox: Sandbox) -> None:
        """The new password never reaches the log: the change is recorded as redacted."""
        persona(client, "u-1")
        attempt(client, operation="password", customer="c-1042", new_password="correct-horse-9", reason="SUP-2400")
        entry = sandbox.trail.get(STORY)
        assert {"field": "password", "redacted": True} == entry.changes[0]
        assert "correct-horse-9" not in json.dumps(entry.data)

    def test_form_post_without_javascript_redirects_back(self, client: TestClient, sandbox: Sandbox) -> None:
        """A plain form post records the attempt and sends the browser back to the page, under the form,
        which then says what was recorded."""
        response = client.post("/try/attempt", data={"operation": "view_customer", "customer": "c-1042"},
                               follow_redirects=False)  # fmt: skip
        where = f"/try?did={STORY}&op=view_customer#result-view_customer"
        assert (303, where) == (response.status_code, response.headers["location"])
        assert "customer.view" == sandbox.trail.get(STORY).action
        page = client.get(where.partition("#")[0]).text
        assert f"Entry #{STORY}: success, customer.view on Ada Lovelace (customer:c-1042)." in page

    @pytest.mark.parametrize(
        ("form", "field"),
        [
            ({"operation": "fly"}, "operation"),
            ({"operation": "view_customer", "customer": "c-9"}, "customer"),
            ({"operation": "view_customer", "customer": "c-1042", "reason": "x" * 1001}, "reason"),
        ],
    )
    def test_malformed_attempt_is_refused_and_not_recorded(
        self, client: TestClient, sandbox: Sandbox, form: dict[str, str], field: str
    ) -> None:
        """A request no form sends gets 400 naming the field, and nothing is written."""
        response = client.post("/try/attempt", data=form, headers=JSON)
        assert 400 == response.status_code
        assert field == response.json()["field"]
        assert STORY == sandbox.trail.size

    def test_oversized_body_is_refused(self, client: TestClient) -> None:
        """Bodies over 16 KiB are refused with the limit named."""
        response = client.post("/try/attempt", data={"operation": "x" * 20_000}, headers=JSON)
        assert 400 == response.status_code
        assert "body" == response.json()["field"]

    def test_json_body_must_hold_text(self, client: TestClient) -> None:
        """A JSON body is accepted when it is an object of text fields, refused otherwise."""
        ok = client.post("/try/attempt", json={"operation": "view_customer", "customer": "c-1042"}, headers=JSON)
        assert 200 == ok.status_code
        bad = client.post("/try/attempt", json={"operation": 5}, headers=JSON)
        assert (400, "operation") == (bad.status_code, bad.json()["field"])

    def test_cross_site_post_is_refused(self, client: TestClient, sandbox: Sandbox) -> None:
        """A post from another site's page gets 403 and records nothing."""
        headers = {**JSON, "origin": "https://evil.example"}
        response = client.post("/try/attempt", data={"operation": "view_customer", "customer": "c-1042"},
                               headers=headers)  # fmt: skip
        assert 403 == response.status_code
        assert STORY == sandbox.trail.size

    def test_persona_switch(self, client: TestClient) -> None:
        """Switching persona answers with the persona's card and remembers it in the cookie."""
        response = client.post("/try/persona", data={"persona": "u-1"}, headers=JSON)
        assert "Priya Shah" == response.json()["name"]
        assert "roles.manage" in response.json()["html"]
        assert "Priya Shah</strong>, administrator" in client.get("/try").text
        plain = client.post("/try/persona", data={"persona": "u-23"}, follow_redirects=False)
        assert 303 == plain.status_code
        bad = client.post("/try/persona", data={"persona": "mallory"}, headers=JSON)
        assert (400, "persona") == (bad.status_code, bad.json()["field"])

    def test_reset_starts_a_fresh_log(self, client: TestClient, sandbox: Sandbox) -> None:
        """Reset: a new log with only the story, counters back to zero, the old log's folder gone."""
        persona(client, "u-23")
        attempt(client, operation="delete_file", document="d-1")
        old_folder = sandbox.folder
        response = client.post("/try/reset", headers=JSON)
        assert {"generation": 2, "size": STORY} == response.json()
        assert not old_folder.exists()
        assert 'data-counter="total">0<' in client.get("/try").text


class TestConsole:
    def test_search_by_actor_and_outcome(self, client: TestClient) -> None:
        """Filters narrow the results: Dana's denied attempt only."""
        html = client.get("/console", params={"actor": "u-17", "outcome": "denied"}).text
        assert 'data-index="3"' in html
        assert html.count("<tr data-index=") == 1

    def test_search_by_text_time_source_and_action(self, client: TestClient) -> None:
        """Free text, a time range, the source and an action prefix all reach the query."""
        html = client.get("/console", params={"text": "SUP-2231"}).text
        assert ["4", "5"] == sorted(_indices(html))
        assert [] == _indices(
            client.get("/console", params={"since": "2000-01-01T00:00", "until": "2000-01-02T00:00"}).text
        )
        assert ["9"] == _indices(client.get("/console", params={"source": "job"}).text)
        assert ["4"] == _indices(client.get("/console", params={"action": "user.*"}).text)
        assert ["9", "8", "7", "6", "5", "4", "2", "0"] == _indices(
            client.get("/console", params={"target": "customer:c-1042"}).text
        )

    def test_pages_newest_first_with_a_cursor(self, client: TestClient) -> None:
        """Three a page, newest first; the "older" link carries the cursor."""
        html = client.get("/console", params={"limit": "3"}).text
        assert ["9", "8", "7"] == _indices(html)
        assert "before=7" in html
        assert ["6", "5", "4"] == _indices(client.get("/console", params={"limit": "3", "before": "7"}).text)

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"outcome": "maybe"}, "outcome"),
            ({"since": "yesterday"}, "since"),
            ({"target": "c-1042"}, "target"),
            ({"limit": "0"}, "limit"),
            ({"limit": "501"}, "limit"),
            ({"before": "-3"}, "before"),
            ({"action": "user*"}, "action"),
            ({"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"}, "until"),
            ({"actor": "u" * 201}, "actor"),
        ],
    )
    def test_bad_filters_get_400(self, client: TestClient, params: dict[str, str], field: str) -> None:
        """A bad filter is a 400 page naming the field; as JSON when asked."""
        page = client.get("/console", params=params)
        assert 400 == page.status_code
        assert field in page.text
        exported = client.get("/console/export", params={**params, "format": "csv"})
        assert (400, field) == (exported.status_code, exported.json()["field"])

    def test_export_json_lines(self, client: TestClient, sandbox: Sandbox) -> None:
        """JSON Lines: every matching entry, oldest first, exactly as stored plus its index."""
        response = client.get("/console/export", params={"format": "jsonl", "actor": "u-17"})
        assert response.headers["content-type"].startswith("application/x-ndjson")
        assert "graven-actor-u-17.jsonl" in response.headers["content-disposition"]
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert [1, 2, 3, 4, 5] == [line["index"] for line in lines]
        assert sandbox.trail.get(4).to_json() == lines[3]

    def test_export_csv(self, client: TestClient) -> None:
        """CSV: a header and one row per entry, changes written out, redacted values hidden."""
        response = client.get("/console/export", params={"format": "csv", "target": "customer:c-1042"})
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert ["0", "2", "4", "5", "6", "7", "8", "9"] == [r["index"] for r in rows]
        by_index = {r["index"]: r for r in rows}
        assert "password: changed (value hidden)" == by_index["4"]["changes"]
        assert "198.51.100.23" == by_index["4"]["ip"]

    def test_export_format_must_be_known(self, client: TestClient) -> None:
        response = client.get("/console/export", params={"format": "xml"})
        assert (400, "format") == (response.status_code, response.json()["field"])

    def test_timeline_answers_who_when_where(self, client: TestClient) -> None:
        """The customer's timeline shows yesterday's reset: by whom, when, from where, through which form, why."""
        response = client.get("/timeline", params={"target": "customer:c-1042"})
        html = response.text
        assert 200 == response.status_code
        assert "Timeline of Ada Lovelace (customer:c-1042)" in html
        reset = html[html.index('data-index="4"') : html.index('data-index="5"')]
        for shown in ("user.password.change", "Dana Reyes", "198.51.100.23", "Firefox on Windows",
                      "admin password reset", "ticket SUP-2231", "password: changed (value hidden)"):  # fmt: skip
            assert shown in reset

    @pytest.mark.parametrize("target", ["", "customer", ":x"])
    def test_timeline_needs_a_target(self, client: TestClient, target: str) -> None:
        response = client.get("/timeline", params={"target": target}, headers=JSON)
        assert (400, "target") == (response.status_code, response.json()["field"])

    def test_entry_page(self, client: TestClient) -> None:
        """An entry's page: verified by its proof, every field, the redacted change shown without its value."""
        html = client.get(f"/entry/{PASSWORD_CHANGE}").text
        assert "✓</span> Verified" in html
        assert "is included in the log of size" in html
        assert "changed; value hidden" in html
        for shown in ("198.51.100.23", "req-7f19", "/admin/customers/c-1042/reset-password", "s-5f2a"):
            assert shown in html

    def test_entry_page_shows_old_and_new(self, client: TestClient) -> None:
        html = client.get("/entry/5").text
        assert '<td class="old"><code>ada@example.com</code></td>' in html
        assert '<td class="new"><code>ada.lovelace@mailbox.example</code></td>' in html

    @pytest.mark.parametrize(("index", "status"), [("99", 404), ("abc", 400), ("-1", 400), ("1" * 30, 400)])
    def test_entry_bad_index(self, client: TestClient, index: str, status: int) -> None:
        assert status == client.get(f"/entry/{index}").status_code
        assert status == client.get(f"/entry/{index}/bundle").status_code

    def test_bundle_verifies_offline(self, client: TestClient, sandbox: Sandbox) -> None:
        """The downloadable bundle holds with nothing but the log's public key."""
        bundle = client.get(f"/entry/{PASSWORD_CHANGE}/bundle").json()
        assert verify_bundle(bundle, [Verifier.from_text(sandbox.trail.verifier_key)]).ok

    def test_verify(self, client: TestClient) -> None:
        """Verification of the whole log: JSON for scripts, a page for a plain form."""
        report = client.post("/verify", headers=JSON).json()
        assert (True, STORY) == (report["ok"], report["entries"])
        page = client.post("/verify")
        assert "The log is intact" in page.text

    def test_tamper_is_caught_and_named(self, client: TestClient) -> None:
        """After tampering, verification names the entry, whose page loses its verified mark."""
        done = client.post("/try/tamper", headers=JSON).json()
        assert (PASSWORD_CHANGE, f"/entry/{PASSWORD_CHANGE}") == (done["index"], done["entry_url"])
        assert "Ada Lovelace changed the password herself" in done["message"]
        report = client.post("/verify", headers=JSON).json()
        assert (False, PASSWORD_CHANGE, "modified") == (report["ok"], report["first_bad_index"], report["kind"])
        assert f"Entry {PASSWORD_CHANGE} was modified" in report["message"]
        assert "✗</span> Not verified" in client.get(f"/entry/{PASSWORD_CHANGE}").text
        assert "✓</span> Verified" in client.get("/entry/5").text
        timeline = client.get("/timeline", params={"target": "customer:c-1042"}).text
        assert "reset by the customer through the emailed link" in timeline  # what the insider wanted it to say

    def test_tamper_a_chosen_entry(self, client: TestClient) -> None:
        """Tampering with Dana's denied attempt makes it read as a success; verification names it."""
        done = client.post("/try/tamper", data={"index": "3"}, headers=JSON).json()
        assert 3 == done["index"]
        assert "now says the attempt succeeded" in done["message"]
        assert 3 == client.post("/verify", headers=JSON).json()["first_bad_index"]
        plain = client.post("/try/tamper", data={"index": "1"}, follow_redirects=False)
        assert (303, "/entry/1") == (plain.status_code, plain.headers["location"])

    @pytest.mark.parametrize(("index", "status"), [("x", 400), ("77", 404)])
    def test_tamper_bad_index(self, client: TestClient, index: str, status: int) -> None:
        assert status == client.post("/try/tamper", data={"index": index}, headers=JSON).status_code

    def test_tail(self, client: TestClient) -> None:
        """The live tail page lists the newest entries and knows where the stream resumes."""
        html = client.get("/tail").text
        assert ["9", "8", "7"] == _list_indices(html)[:3]
        assert f'data-after="{STORY - 1}"' in html

    def test_events_need_a_valid_cursor(self, client: TestClient) -> None:
        for params in ({"after": "x"}, {"generation": "-5"}):
            response = client.get("/events", params=params)
            assert (400, "application/json") == (response.status_code, response.headers["content-type"])


class TestHowItWorks:
    def test_diagram_has_every_part_reachable_by_keyboard(self, client: TestClient) -> None:
        """Eight parts, each focusable and described; animated connections."""
        html = client.get("/how").text
        for part in ("Application", "Capture", "Sequencer", "Append-only store", "Merkle tree", "Signed checkpoint",
                     "Witnesses", "SIEM"):  # fmt: skip
            assert 2 == html.count(f'aria-label="{part}"')
        assert 16 == html.count('<a class="node"')  # links: a wide drawing and a narrow one for phones
        assert 14 == html.count('class="link-flow"')

    def test_approaches_use_the_demo_data(self, client: TestClient, sandbox: Sandbox) -> None:
        """The three approaches show the log's own entries: rows, a replayed state, the leaf as shipped."""
        page = html.unescape(client.get("/how").text)
        assert "email = ada.lovelace@mailbox.example" in page
        assert "locked = true" in page
        body = sandbox.trail.store.entry(PASSWORD_CHANGE)
        assert body == canonical(sandbox.trail.get(PASSWORD_CHANGE).data)
        assert native(PASSWORD_CHANGE, body, leaf_hash(body)).decode() in page  # as graven forward sends it
        assert (sandbox.trail.latest_checkpoint() or "").splitlines()[2] in page


class TestPlumbing:
    def test_assets_are_served_by_the_package(self, client: TestClient) -> None:
        """CSS, JavaScript and the icon come from the package, with a strict content policy."""
        for path, kind in (("/static/app.css", "text/css"), ("/static/app.js", "javascript"),
                           ("/static/favicon.svg", "image/svg+xml")):  # fmt: skip
            response = client.get(path)
            assert 200 == response.status_code
            assert kind in response.headers["content-type"]
        page = client.get("/console")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "//" not in "".join(line for line in page.text.splitlines() if "src=" in line or "href=" in line
                                   if "http" in line)  # fmt: skip

    def test_unknown_route(self, client: TestClient) -> None:
        assert 404 == client.get("/nowhere").status_code
        assert "error" in client.get("/nowhere", headers=JSON).json()


class TestOwnLog:
    """The UI over an application's own log, with its own sign-in."""

    @pytest.fixture
    def log(self, trail: Trail) -> Trail:
        trail.record(action="customer.update", actor="u-5", targets=[("customer", "c-1")], reason="=HYPERLINK(1)",
                     changes=[{"field": "email", "old": "a@x.example", "new": "b@x.example"}])  # fmt: skip
        return trail

    def test_needs_a_viewer_function(self, log: Trail) -> None:
        with pytest.raises(ConfigError, match="viewer"):
            create_web_app(log)
        with pytest.raises(ConfigError, match="sandbox"):
            create_web_app(log, demo=True)

    def test_not_signed_in_gets_401(self, log: Trail) -> None:
        with TestClient(create_web_app(log, viewer=lambda request: None)) as c:
            assert 401 == c.get("/console").status_code
            assert 401 == c.get("/entry/0", headers=JSON).status_code

    def test_reads_are_recorded_with_the_viewer(self, log: Trail) -> None:
        """Every search and view is an entry naming who looked; the demo-only pages do not exist."""

        async def signed_in(request: Request) -> Viewer:
            return Viewer("auditor-3", "Ines the auditor")

        with TestClient(create_web_app(log, viewer=signed_in)) as c:
            assert "/console" == c.get("/", follow_redirects=False).headers["location"]
            assert 200 == c.get("/console", params={"actor": "u-5"}).status_code
            assert 200 == c.get("/entry/0").status_code
            assert 404 == c.get("/try").status_code
            assert 404 == c.post("/try/tamper", headers=JSON).status_code
            assert "Ines the auditor" in c.get("/console").text
        looked = log.query(action="audit.*").entries
        assert ["audit.search", "audit.view", "audit.search"] == [e.action for e in looked]
        assert {"auditor-3"} == {e.actor["id"] for e in looked}
        assert {"filters": {"actor": "u-5"}} == looked[0].get("metadata")

    def test_csv_cells_cannot_become_formulas(self, log: Trail) -> None:
        with TestClient(create_web_app(log, viewer=lambda r: Viewer("a", "A"), record_reads=False)) as c:
            rows = list(csv.DictReader(io.StringIO(c.get("/console/export", params={"format": "csv"}).text)))
        assert "'=HYPERLINK(1)" == rows[0]["reason"]

    def test_approaches_on_an_own_log(self, log: Trail) -> None:
        """Outside the demo, "how it works" explains with the newest changed target."""
        with TestClient(create_web_app(log, viewer=lambda r: Viewer("a", "A"), record_reads=False)) as c:
            html = c.get("/how").text
        assert "email = b@x.example" in html

    def test_viewer_type_is_an_actor_type(self) -> None:
        with pytest.raises(ConfigError, match=r"Viewer\.type"):
            Viewer("a", "A", "robot")

    def test_mounted_under_a_prefix(self, log: Trail) -> None:
        """Mounted inside another application, every link, asset and redirect keeps the prefix."""
        parent = FastAPI()
        parent.mount("/audit", create_web_app(log, viewer=lambda r: Viewer("a", "A"), record_reads=False))
        with TestClient(parent) as c:
            assert "/audit/console" == c.get("/audit/", follow_redirects=False).headers["location"]
            html = c.get("/audit/console").text
            assert 'href="/audit/entry/0"' in html
            assert 'src="/audit/static/app.js' in html
            assert 200 == c.get("/audit/static/app.css").status_code
            assert 200 == c.get("/audit/entry/0").status_code

    def test_empty_log(self, tmp_path: Path) -> None:
        with graven.init(tmp_path / "t.db", signing_key=tmp_path / "k") as empty, TestClient(
            create_web_app(empty, viewer=lambda r: Viewer("a", "A"), record_reads=False)
        ) as c:  # fmt: skip
            assert "No entry matches" in c.get("/console").text
            assert "has no entry with field changes yet" in c.get("/how").text
            assert "The log is empty" in c.get("/tail").text


def _indices(html: str) -> list[str]:
    """The entry indices of a results table, in page order."""
    return [part.split('"')[0] for part in html.split('<tr data-index="')[1:]]


def _list_indices(html: str) -> list[str]:
    return [part.split('"')[0] for part in html.split('<li class="entry outcome-')[1:] for part in
            [part.split('data-index="')[1]]]  # fmt: skip
