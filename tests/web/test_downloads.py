"""Download names (``Content-Disposition``): any search text gives a header that can be sent and read back.

RFC 6266: an ASCII ``filename`` for old clients and ``filename*`` (RFC 8187, UTF-8) with the real
name. Checked on the demo's export and bundle routes, on ``graven serve``'s UI export and on its API.
"""

from __future__ import annotations

from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from graven.web.http import attachment
from tests.server.server_harness import SETUP, Served

PASSWORD = "correct horse"
NASTY = ["Иван", 'say "hi"', "a\r\nSet-Cookie: x=1", "semi;colon", "back\\slash", "100%", "Zoë/../etc", "\u2028x"]


def parsed(value: str) -> tuple[str, str | None]:
    """The disposition type and the file name a browser takes: ``filename*`` (decoded by the standard
    library's RFC 2231 parser) over ``filename``, as RFC 6266 section 4.3 asks."""
    message = Message()
    message["content-disposition"] = value
    names = [v for k, v in message.get_params(header="content-disposition") or [] if k == "filename"]
    extended = [collapse_rfc2231_value(v) for v in names if isinstance(v, tuple)]
    return message.get_content_disposition() or "", (extended or [message.get_filename()])[0]


def ascii_fallback(value: str) -> str:
    """The plain ``filename="..."`` parameter."""
    start = value.index('filename="') + len('filename="')
    return value[start : value.index('"', start)]


@given(st.text())
def test_any_name_gives_a_sendable_header_that_reads_back(name: str) -> None:
    """ASCII only, no control characters, one quoted fallback, and filename* decodes to the cleaned name."""
    value = attachment(name)
    assert value.isascii()
    assert all(" " <= c <= "~" for c in value)
    kind, read = parsed(value)
    assert "attachment" == kind
    assert read is not None
    assert not any(c in read for c in "\r\n\0/\\")
    fallback = ascii_fallback(value)
    assert not any(c in fallback for c in '"\\;%')


@given(st.text(st.characters(categories=["L", "N", "M", "P", "S"], exclude_characters="/\\."), min_size=1))
def test_printable_names_read_back_exactly(name: str) -> None:
    """Letters of any script, digits, marks, punctuation and symbols arrive as they were sent."""
    assert name == parsed(attachment(name))[1]


@pytest.mark.parametrize("name", NASTY)
def test_nasty_names_read_back(name: str) -> None:
    kind, read = parsed(attachment(f"graven-{name}.csv"))
    assert "attachment" == kind
    assert read is not None
    assert read.startswith("graven-")
    assert read.endswith(".csv")
    if name == "Иван":
        assert "graven-Иван.csv" == read


class TestDemo:
    @pytest.mark.parametrize("actor", NASTY)
    def test_export_named_after_any_actor(self, client: TestClient, actor: str) -> None:
        """``/console/export?actor=Иван`` answered 500: the name could not be encoded as a header."""
        for kind in ("csv", "jsonl"):
            response = client.get("/console/export", params={"actor": actor, "format": kind})
            assert 200 == response.status_code, response.text
            disposition, read = parsed(response.headers["content-disposition"])
            assert "attachment" == disposition
            assert read is not None
            assert read.endswith(f".{kind}")
        response = client.get("/console/export", params={"actor": "Иван"})
        assert "graven-actor-Иван.jsonl" == parsed(response.headers["content-disposition"])[1]

    def test_bundle_download(self, client: TestClient) -> None:
        response = client.get("/entry/4/bundle")
        assert 200 == response.status_code
        assert ("attachment", "graven-entry-4.bundle.json") == parsed(response.headers["content-disposition"])


@pytest.mark.parametrize("serve_log", ["sqlite"], indirect=True)
class TestServe:
    def test_ui_export_named_after_any_actor(self, serve_log: Any) -> None:
        served: Served = serve_log(auth_failure_limit=10_000)
        served.accounts.add_user("auditor-1", "auditor", PASSWORD, by=SETUP)
        served.trail.record({"action": "user.login", "actor": {"type": "user", "id": "Иван", "name": "Иван"}})
        signed = served.client.post("/auth/login", json={"username": "auditor-1", "password": PASSWORD})
        assert 200 == signed.status_code
        for actor in NASTY:
            response = served.client.get("/console/export", params={"actor": actor, "format": "csv"})
            assert 200 == response.status_code, response.text
            assert parsed(response.headers["content-disposition"])[1] is not None
        response = served.client.get("/console/export", params={"actor": "Иван", "format": "jsonl"})
        assert "graven-actor-Иван.jsonl" == parsed(response.headers["content-disposition"])[1]
        assert "Иван" in response.text

    def test_api_export_and_bundle_names(self, serve_log: Any) -> None:
        served: Served = serve_log()
        response = served.client.get("/api/v1/export", params={"actor": "Иван"}, headers=served.auth("auditor"))
        assert 200 == response.status_code, response.text
        assert ("attachment", "graven-export.jsonl") == parsed(response.headers["content-disposition"])
