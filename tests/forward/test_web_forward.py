"""The forwarders page of the served web UI (auditors and admins) and what "how it works" shows."""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from graven.forward import config as fc
from graven.forward.cursor import Cursors
from graven.forward.runner import Forwarder
from tests.server.server_harness import Served
from tests.server.test_server_ui import _people, _sign_in


@pytest.mark.parametrize("serve_log", ["sqlite"], indirect=True)
def test_forwarders_page_for_auditors(serve_log: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served: Served = serve_log()  # type: ignore[operator]
    _people(served)
    path = tmp_path / "graven.toml"
    config = fc.parse_sink("siem", {"sink": "jsonl", "path": str(tmp_path / "out"), "batch": 2})
    fc.write_sink(path, config, "siem")
    monkeypatch.setenv(fc.CONFIG_ENV, str(path))
    cursors = Cursors(served.trail.store)
    forwarder = Forwarder(served.trail, config, cursors)
    forwarder.open()
    forwarder.step()
    forwarder.close()
    cursors.fail("siem", "connection <refused>")
    client = served.client
    _sign_in(client, "reader")
    assert 403 == client.get("/forwarders").status_code
    assert 'href="/forwarders"' not in client.get("/console").text  # no link for who may not see it
    _sign_in(client, "auditor")
    before = served.trail.size
    page = client.get("/forwarders")
    assert 200 == page.status_code
    text = html.unescape(page.text)
    assert "siem" in text
    assert f"2 of {before}" in text
    assert "connection <refused>" in text  # escaped in the page, shown as written
    assert "connection <refused>" not in page.text
    assert ["audit.forwarders.read"] == [e.action for e in served.entries(after=before - 1)]
    assert 'href="/forwarders"' in client.get("/console").text


def test_how_it_works_shows_the_native_record_as_sent(served: Served) -> None:
    from tests.server.test_server_ui import _people as people

    people(served)
    _sign_in(served.client, "reader")
    served.trail.record({"action": "customer.update", "actor": "u-1", "targets": [{"type": "customer", "id": "c-1"}],
                         "changes": [{"field": "plan", "old": "free", "new": "pro"}]})  # fmt: skip
    page = html.unescape(served.client.get("/how").text)
    assert '"leaf_hash":"' in page
    assert "graven receive verify" in page
