"""Server-sent events from the real server: new entries arrive at once, resume, and resets are announced."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx

from graven.web import Sandbox
from tests.web.conftest import JSON, LiveServer

STORY = 10


def events(response: httpx.Response) -> Iterator[tuple[str, str, dict[str, object]]]:
    """(id, event, data) for each server-sent event of a streamed response."""
    ident, kind = "", ""
    for line in response.iter_lines():
        if line.startswith("id: "):
            ident = line[4:]
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield ident, kind, json.loads(line[6:])
            ident, kind = "", ""


class TestEvents:
    def test_an_attempt_reaches_an_open_stream_at_once(self, live_server: LiveServer) -> None:
        """An attempt made while a page listens arrives as an entry event with its row and the counters."""
        with httpx.Client(base_url=live_server.url, timeout=15) as http, http.stream(
            "GET", "/events", params={"after": STORY - 1, "generation": 1}
        ) as stream:  # fmt: skip
            assert stream.headers["content-type"].startswith("text/event-stream")
            later = threading.Timer(0.3, lambda: http.post(
                "/try/attempt", data={"operation": "delete_file", "document": "d-3"}, headers=JSON
            ))  # fmt: skip
            later.start()
            ident, kind, data = next(events(stream))
            later.join()
        assert (str(STORY), "entry", STORY) == (ident, kind, data["index"])
        assert data["visitor"] is True
        assert "file.delete" in str(data["html"])
        assert "Denied" in str(data["html"])
        assert {"total": 1, "success": 0, "denied": 1, "failure": 0, "automatic": 0} == data["counters"]

    def test_a_reconnecting_browser_resumes_from_its_last_event(self, live_server: LiveServer) -> None:
        """Last-Event-ID wins over the page's cursor: nothing is missed, nothing repeated."""
        with httpx.Client(base_url=live_server.url, timeout=15) as http, http.stream(
            "GET", "/events", params={"after": 0}, headers={"last-event-id": "7"}
        ) as stream:  # fmt: skip
            received = events(stream)
            assert [8, 9] == [next(received)[2]["index"] for _ in range(2)]

    def test_a_reset_is_announced(self, live_server: LiveServer, sandbox: Sandbox) -> None:
        """A page drawn before a reset is told to reload."""
        sandbox.reset()
        with httpx.Client(base_url=live_server.url, timeout=15) as http, http.stream(
            "GET", "/events", params={"after": STORY - 1, "generation": 1}
        ) as stream:  # fmt: skip
            _, kind, data = next(events(stream))
        assert ("reset", {"generation": 2}) == (kind, data)
