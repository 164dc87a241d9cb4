"""GET /api/v1/state: a reader gets a target's state as of a moment, and the read is recorded."""

from __future__ import annotations

from graven.core.bundle import verify_bundle
from graven.core.note import Verifier
from tests.server.server_harness import Served

ACTOR = {"type": "user", "id": "u-17"}


def _events() -> list[dict[str, object]]:
    return [
        {"id": f"evt-{i}", "action": "customer.update", "actor": ACTOR, "targets": [{"type": "customer", "id": "c-1"}],
         "changes": [{"field": "email", "new": f"{i}@example.com"}], "occurred_at": f"2026-12-03T14:0{i}:00Z"}
        for i in range(3)
    ]  # fmt: skip


class TestStateRoute:
    def test_reader_gets_the_state_as_of_a_moment(self, served: Served) -> None:
        """The state as of 14:01 holds the change of 14:01; the read is recorded against the target."""
        served.client.post("/api/v1/events", json=_events(), headers=served.auth("writer"))
        response = served.client.get("/api/v1/state", params={"target": "customer:c-1", "as_of": "2026-12-03T14:01"},
                                     headers=served.auth("reader"))  # fmt: skip
        assert 200 == response.status_code, response.text
        assert "1@example.com" == response.json()["fields"]["email"]["value"]
        looked = served.entries(target="customer:c-1", action="audit.read")
        assert 1 == len(looked)
        again = served.client.get("/api/v1/state", params={"target": "customer:c-1"}, headers=served.auth("reader"))
        assert "2@example.com" == again.json()["fields"]["email"]["value"]  # reads are not changes

    def test_proof_is_an_offline_bundle(self, served: Served) -> None:
        """With proof=true the answer is a state bundle that verifies against the log's key."""
        served.client.post("/api/v1/events", json=_events(), headers=served.auth("writer"))
        bundle = served.client.get("/api/v1/state", params={"target": "customer:c-1", "proof": "true"},
                                   headers=served.auth("reader")).json()  # fmt: skip
        assert verify_bundle(bundle, [Verifier.from_text(served.trail.verifier_key)]).ok

    def test_bad_input_and_no_credentials(self, served: Served) -> None:
        """A bad target or moment is a 4xx JSON error naming it; without a key, 401."""
        bad = served.client.get("/api/v1/state", params={"target": "nocolon"}, headers=served.auth("reader"))
        assert 422 == bad.status_code
        assert "target" in bad.text
        when = served.client.get("/api/v1/state", params={"target": "customer:c-1", "as_of": "later"},
                                 headers=served.auth("reader"))  # fmt: skip
        assert 422 == when.status_code
        assert "as_of" in when.text
        assert 401 == served.client.get("/api/v1/state", params={"target": "customer:c-1"}).status_code
