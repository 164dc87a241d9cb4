"""The HTTP API on SQLite and PostgreSQL: ingest, query, proofs, checkpoint, export, tail, jobs, limits."""

from __future__ import annotations

import base64
import csv
import io
import threading
import time
from typing import Any

import jsonschema_rs
import orjson
import pytest

from graven.core import merkle, schema
from graven.core.bundle import verify_bundle
from graven.core.note import Checkpoint, Verifier, open_checkpoint
from tests.server.server_harness import Served


def event(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"evt-{i}", "action": "invoice.pay", "actor": {"type": "service", "id": "svc-billing"},
            "targets": [{"type": "invoice", "id": f"inv-{i % 3}"}], "outcome": "success", **extra}  # fmt: skip


def sse(text: str) -> list[dict[str, str]]:
    """Parse server-sent events into dicts of their fields."""
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            out.append(fields)
    return out


class TestIngest:
    def test_one_event_is_recorded_with_who_sent_it(self, served: Served) -> None:
        """A single event gets 201 and its index; the key's name is kept in context.ingested_by."""
        before = served.trail.size
        response = served.client.post("/api/v1/events", json={"action": "user.login", "actor": "u-1"},
                                      headers=served.auth("writer"))  # fmt: skip
        assert 201 == response.status_code
        assert {"indices": [before]} == response.json()
        entry = served.trail.get(before)
        assert ("user.login", "u-1", "api", "writer-key") == (
            entry.action,
            entry.actor["id"],
            entry.get("source"),
            entry.get("context")["ingested_by"],
        )

    def test_event_without_actor_is_the_keys_service(self, served: Served) -> None:
        """An event that names no actor is attributed to the service whose key sent it."""
        index = served.client.post("/api/v1/events", json={"action": "job.run"},
                                   headers=served.auth("writer")).json()["indices"][0]  # fmt: skip
        assert {"type": "service", "id": "writer-key", "user_agent": "testclient"} == served.trail.get(index).actor

    def test_batch_is_idempotent_by_event_id(self, served: Served) -> None:
        """Sending a batch twice returns the same indices and appends nothing the second time."""
        batch = [event(i) for i in range(5)]
        first = served.client.post("/api/v1/events", json=batch, headers=served.auth("writer"))
        size = served.trail.size
        again = served.client.post("/api/v1/events", json=batch, headers=served.auth("writer"))
        assert (201, 201) == (first.status_code, again.status_code)
        assert first.json() == again.json()
        assert size == served.trail.size
        assert 5 == len(set(first.json()["indices"]))

    def test_invalid_event_in_batch_writes_nothing(self, served: Served) -> None:
        """One bad event rejects the batch with 422 naming the event and field; the log is unchanged."""
        size = served.trail.size
        batch = [event(1), event(2, actor={"type": "user", "id": "u", "ip": "not-an-ip"}), event(3)]
        response = served.client.post("/api/v1/events", json=batch, headers=served.auth("writer"))
        assert 422 == response.status_code
        body = response.json()
        assert ("invalid", "events[1].actor.ip", "'not-an-ip'") == (body["error"], body["field"], body["given"])
        assert size == served.trail.size

    @pytest.mark.parametrize(("body", "field"), [
        (b"{not json", "body"), (b"42", "body"), (b"[]", "body"), (b"[1]", "events[0].event"),
    ])  # fmt: skip
    def test_malformed_bodies_are_422(self, served: Served, body: bytes, field: str) -> None:
        """Bodies that are not events are refused with 422 naming the field."""
        response = served.client.post("/api/v1/events", content=body, headers={
            **served.auth("writer"), "content-type": "application/json"})  # fmt: skip
        assert 422 == response.status_code
        assert field == response.json()["field"]

    def test_batch_size_limit(self, serve_log: Any) -> None:
        """More events than max_batch is 422 naming the limit and the count given."""
        served = serve_log(max_batch=3)
        response = served.client.post("/api/v1/events", json=[event(i) for i in range(4)],
                                      headers=served.auth("writer"))  # fmt: skip
        assert 422 == response.status_code
        assert "must hold from 1 to 3 events" == response.json()["rule"]
        assert "<4 events>" == response.json()["given"]

    def test_body_size_limit_is_413(self, serve_log: Any) -> None:
        """A body over the limit is refused with 413 naming the limit and the size given; nothing written."""
        served = serve_log(max_body=2048)
        size = served.trail.size
        response = served.client.post("/api/v1/events", json=[event(i) for i in range(40)],
                                      headers=served.auth("writer"))  # fmt: skip
        assert 413 == response.status_code
        body = response.json()
        assert (2048, "body") == (body["limit"], body["field"])
        assert "Content-Length" in body["given"]
        assert size == served.trail.size

    def test_chunked_body_over_limit_is_413(self, serve_log: Any) -> None:
        """A body sent without Content-Length is cut off at the limit."""
        served = serve_log(max_body=2048)

        def chunks() -> Any:
            for _ in range(10):
                yield b" " * 500

        response = served.client.post("/api/v1/events", content=chunks(), headers={
            **served.auth("writer"), "content-type": "application/json"})  # fmt: skip
        assert 413 == response.status_code
        assert 2048 == response.json()["limit"]

    def test_json_depth_limit_is_422(self, serve_log: Any) -> None:
        """JSON nested deeper than the limit is refused with 422 naming the limit."""
        served = serve_log(max_depth=10)
        deep: Any = "x"
        for _ in range(12):
            deep = {"a": deep}
        response = served.client.post("/api/v1/events", json={"action": "a.b", "metadata": deep},
                                      headers=served.auth("writer"))  # fmt: skip
        assert 422 == response.status_code
        assert "must nest JSON objects and arrays at most 10 levels deep" == response.json()["rule"]


class TestReading:
    def test_query_filters_pages_and_records_who_looked(self, served: Served) -> None:
        """Filters and cursors work as in the library; each query is an audit.read entry with its filter."""
        served.client.post("/api/v1/events", json=[event(i) for i in range(7)], headers=served.auth("writer"))
        seen: list[int] = []
        after = None
        while True:
            params: dict[str, Any] = {"action": "invoice.*", "target": "invoice:inv-1", "limit": 2}
            if after is not None:
                params["after"] = after
            page = served.client.get("/api/v1/entries", params=params, headers=served.auth("reader")).json()
            seen += [e["index"] for e in page["entries"]]
            if page["next_cursor"] is None:
                break
            after = page["next_cursor"]
        expected = [e.index for e in served.entries(action="invoice.pay", target="invoice:inv-1")]
        assert expected == seen
        reads = served.entries(action="audit.read")
        assert reads, "queries are recorded"
        assert ("service", "reader-key") == (reads[0].actor["type"], reads[0].actor["id"])
        assert {"action": "invoice.*", "target": "invoice:inv-1", "limit": 2} == reads[0].get("metadata")["filter"]

    def test_bad_filter_is_422(self, served: Served) -> None:
        """A malformed time filter is refused naming the field."""
        response = served.client.get("/api/v1/entries", params={"since": "yesterday"}, headers=served.auth("reader"))
        assert 422 == response.status_code
        assert "since" == response.json()["field"]

    def test_entry_with_proof_verifies_offline(self, served: Served) -> None:
        """GET /entries/{i} is a bundle that checks with only the log's verifier key."""
        index = served.client.post("/api/v1/events", json=event(1), headers=served.auth("writer")).json()["indices"][0]
        bundle = served.client.get(f"/api/v1/entries/{index}", headers=served.auth("reader")).json()
        check = verify_bundle(bundle, [Verifier.from_text(served.trail.verifier_key)])
        assert check.ok, check.message
        assert "evt-1" == bundle["entry"]["id"]
        assert [{"type": "entry", "id": str(index)}] == served.entries(action="audit.read")[-1].targets

    def test_missing_entry_is_404(self, served: Served) -> None:
        response = served.client.get("/api/v1/entries/999999", headers=served.auth("reader"))
        assert 404 == response.status_code
        assert "no entry 999999" in response.json()["message"]

    def test_history_of_a_target_is_recorded_against_that_target(self, served: Served) -> None:
        """A target's history lists what was done to it, and who looked: the read names the target."""
        served.client.post("/api/v1/events", json=[event(i) for i in range(6)], headers=served.auth("writer"))
        page = served.client.get("/api/v1/history", params={"target": "invoice:inv-2"},
                                 headers=served.auth("reader")).json()  # fmt: skip
        looked = served.entries(target="invoice:inv-2", action="audit.read")
        assert 1 == len(looked)
        # The read is recorded before reading, so the history shows it too: who looked is part of it.
        assert ["evt-2", "evt-5", looked[0].id] == [e["id"] for e in page["entries"]]

    def test_checkpoint_and_consistency(self, served: Served) -> None:
        """The checkpoint is a signed note of the current tree; consistency proofs between sizes verify."""
        verifier = Verifier.from_text(served.trail.verifier_key)
        first = served.client.get("/api/v1/checkpoint", headers=served.auth("reader"))
        assert first.headers["content-type"].startswith("text/plain")
        old, _ = open_checkpoint(first.text, [verifier])
        served.client.post("/api/v1/events", json=[event(i) for i in range(9)], headers=served.auth("writer"))
        new, _ = open_checkpoint(served.client.get("/api/v1/checkpoint", headers=served.auth("reader")).text,
                                 [verifier])  # fmt: skip
        assert isinstance(new, Checkpoint)
        assert new.size == served.trail.size
        proof = served.client.get("/api/v1/consistency", params={"old": old.size, "new": new.size},
                                  headers=served.auth("reader")).json()  # fmt: skip
        hashes = [base64.b64decode(h) for h in proof["proof"]]
        assert merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, hashes)

    def test_bad_consistency_sizes_are_422(self, served: Served) -> None:
        response = served.client.get("/api/v1/consistency", params={"old": 5, "new": 10**6},
                                     headers=served.auth("reader"))  # fmt: skip
        assert 422 == response.status_code

    def test_no_route_changes_or_removes_an_entry(self, served: Served) -> None:
        """PUT, PATCH and DELETE on entries do not exist; each attempt is recorded as denied, naming the caller."""
        for method in ("PUT", "PATCH", "DELETE"):
            response = served.client.request(method, "/api/v1/entries/0", headers=served.auth("admin"))
            assert 405 == response.status_code
            assert "method_not_allowed" == response.json()["error"]
        attempts = served.entries(action="audit.access", outcome="denied")
        assert ["PUT", "PATCH", "DELETE"] == [e.get("context")["method"] for e in attempts]
        assert {"/api/v1/entries/{index}"} == {e.get("context")["route"] for e in attempts}
        assert all("/api/v1/entries/0" in str(e.get("reason")) for e in attempts)
        assert all(e.actor["type"] != "anonymous" for e in attempts)  # the admin's key is named
        anonymous = served.client.delete("/api/v1/entries/0")
        assert 405 == anonymous.status_code
        assert "anonymous" == served.entries(action="audit.access", outcome="denied")[-1].actor["type"]
        paths = served.client.get("/api/v1/openapi.json").json()["paths"]
        assert not [p for p, ops in paths.items() if p.startswith("/api/v1/entries") and set(ops) - {"get"}]


class TestExport:
    def test_jsonl_is_the_stored_entries(self, served: Served) -> None:
        """JSON Lines export gives every matching entry as stored, plus index; it is recorded with its filter."""
        served.client.post("/api/v1/events", json=[event(i) for i in range(25)], headers=served.auth("writer"))
        response = served.client.get("/api/v1/export", params={"action": "invoice.pay"},
                                     headers=served.auth("auditor"))  # fmt: skip
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [orjson.loads(line) for line in response.content.splitlines()]
        assert [e.to_json() for e in served.entries(action="invoice.pay")] == lines
        exported = served.entries(action="audit.export")
        assert [{"action": "invoice.pay"}] == [e.get("metadata")["filter"] for e in exported]

    def test_export_reads_page_by_page(self, serve_log: Any) -> None:
        """An export larger than one read step is complete and in order (newest first too)."""
        served = serve_log(export_page=4)
        served.client.post("/api/v1/events", json=[event(i) for i in range(11)], headers=served.auth("writer"))
        response = served.client.get("/api/v1/export", params={"action": "invoice.pay", "newest_first": "true"},
                                     headers=served.auth("auditor"))  # fmt: skip
        ids = [orjson.loads(line)["id"] for line in response.content.splitlines()]
        assert [f"evt-{i}" for i in reversed(range(11))] == ids

    def test_csv(self, served: Served) -> None:
        """CSV export has a header and one row per entry; formula-like cells are defused."""
        served.client.post("/api/v1/events", json=[event(1, reason="=HYPERLINK(\"http://x\")")],
                           headers=served.auth("writer"))  # fmt: skip
        response = served.client.get("/api/v1/export", params={"format": "csv", "action": "invoice.pay"},
                                     headers=served.auth("auditor"))  # fmt: skip
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert 1 == len(rows)
        assert ("evt-1", "invoice:inv-1", "'=HYPERLINK(\"http://x\")") == (rows[0]["id"], rows[0]["targets"],
                                                                          rows[0]["reason"])  # fmt: skip


class TestTail:
    def test_from_index_and_last_event_id(self, served: Served) -> None:
        """`from` starts at an index; Last-Event-ID resumes after the index it names."""
        served.client.post("/api/v1/events", json=[event(i) for i in range(3)], headers=served.auth("writer"))
        first = sse(served.client.get("/api/v1/tail", params={"from": 0, "limit": 3},
                                      headers=served.auth("reader")).text)  # fmt: skip
        assert [("0", "entry"), ("1", "entry"), ("2", "entry")] == [(e["id"], e["event"]) for e in first]
        assert 0 == orjson.loads(first[0]["data"])["index"]
        resumed = sse(served.client.get("/api/v1/tail", params={"from": 0, "limit": 2},
                                        headers={**served.auth("reader"), "Last-Event-ID": "4"}).text)  # fmt: skip
        assert ["5", "6"] == [e["id"] for e in resumed]

    def test_new_entries_arrive_live(self, served: Served) -> None:
        """A tail opened before an event is appended receives it."""
        received: list[dict[str, str]] = []

        def listen() -> None:
            with served.client.stream("GET", "/api/v1/tail", params={"limit": 2}, headers=served.auth("reader")) as r:
                received.extend(sse(r.read().decode()))

        listener = threading.Thread(target=listen)
        listener.start()
        deadline = time.monotonic() + 10
        while not served.entries(action="audit.read") and time.monotonic() < deadline:
            time.sleep(0.02)  # the tail is open once its read is recorded
        served.client.post("/api/v1/events", json=[event(1), event(2)], headers=served.auth("writer"))
        listener.join(20)
        assert not listener.is_alive()
        assert ["evt-1", "evt-2"] == [orjson.loads(e["data"])["id"] for e in received]

    def test_bad_last_event_id_is_422(self, served: Served) -> None:
        response = served.client.get("/api/v1/tail", headers={**served.auth("reader"), "Last-Event-ID": "abc"})
        assert 422 == response.status_code
        assert "Last-Event-ID" == response.json()["field"]


class TestVerification:
    def test_job_runs_in_background_and_keeps_its_result(self, served: Served) -> None:
        """POST starts a job (202); GET shows progress, then the report; the result is recorded too."""
        served.client.post("/api/v1/events", json=[event(i) for i in range(30)], headers=served.auth("writer"))
        job = served.client.post("/api/v1/verifications", headers=served.auth("auditor"))
        assert 202 == job.status_code
        job_id = job.json()["id"]
        deadline = time.monotonic() + 30
        while True:
            state = served.client.get(f"/api/v1/verifications/{job_id}", headers=served.auth("auditor")).json()
            if state["status"] != "running" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert "done" == state["status"]
        assert state["result"]["ok"] is True
        assert state["total"] <= state["done"]
        recorded = served.entries(action="audit.verify")
        assert [("success", job_id)] == [(e.outcome, e.get("metadata")["job"]) for e in recorded]

    def test_a_deep_job_names_a_dropped_trigger(self, served: Served) -> None:
        """?deep=true runs `verify --deep`: the entries verify, the dropped trigger is named."""
        import sqlite3

        import psycopg
        from psycopg import sql

        served.client.post("/api/v1/events", json=[event(i) for i in range(5)], headers=served.auth("writer"))
        store: Any = served.trail.store
        if store.backend == "sqlite":
            with sqlite3.connect(store.location()) as conn:
                conn.execute("DROP TRIGGER entries_no_update")
        else:
            with psycopg.connect(store.target.conninfo, autocommit=True) as pg:
                pg.execute(sql.SQL("DROP TRIGGER entries_append_only ON {}").format(
                    sql.Identifier(store.schema, "entries")))  # fmt: skip
        job = served.client.post("/api/v1/verifications?deep=true", headers=served.auth("auditor")).json()
        assert job["deep"] is True
        deadline = time.monotonic() + 30
        while job["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
            job = served.client.get(f"/api/v1/verifications/{job['id']}", headers=served.auth("auditor")).json()
        assert ("done", False, "structure") == (job["status"], job["result"]["ok"], job["result"]["kind"])
        assert ("entries_no_update" if store.backend == "sqlite" else "entries_append_only") in job["result"]["message"]

    def test_unknown_job_is_404(self, served: Served) -> None:
        assert 404 == served.client.get("/api/v1/verifications/nope", headers=served.auth("auditor")).status_code


def test_openapi_describes_the_api(served: Served) -> None:
    """The OpenAPI document lists every route with response models and the event schema."""
    document = served.client.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/events", "/api/v1/entries", "/api/v1/entries/{index}", "/api/v1/history",
                 "/api/v1/checkpoint", "/api/v1/consistency", "/api/v1/export", "/api/v1/tail",
                 "/api/v1/verifications", "/api/v1/keys", "/api/v1/users", "/auth/login"):  # fmt: skip
        assert path in document["paths"], path
    assert {"Event", "Actor", "Target", "Change"} <= set(document["components"]["schemas"])
    page = document["paths"]["/api/v1/entries"]["get"]["responses"]["200"]["content"]["application/json"]
    assert {"$ref": "#/components/schemas/Page"} == page["schema"]


def test_entry_schema_is_served_without_credentials(served: Served) -> None:
    """GET /api/v1/schema/entry-v1.json needs no key and gives the published schema, which the
    entries the API returns (less their index) satisfy."""
    served.client.post("/api/v1/events", json=[event(i) for i in range(3)], headers=served.auth("writer"))
    response = served.client.get("/api/v1/schema/entry-v1.json")
    assert (200, "application/schema+json") == (response.status_code, response.headers["content-type"])
    assert schema.entry_json_schema() == response.json()
    validator = jsonschema_rs.validator_for(response.json())
    entries = served.client.get("/api/v1/entries", headers=served.auth("reader")).json()["entries"]
    assert 3 <= len(entries)
    for entry in entries:
        entry.pop("index")
        assert validator.is_valid(entry), entry


def test_checkpoint_hook_gets_each_new_checkpoint(serve_log: Any) -> None:
    """Callables in config.on_checkpoint receive the note of every newly signed checkpoint (the witness hook)."""
    pushed: list[str] = []
    served: Served = serve_log(on_checkpoint=[pushed.append])
    served.client.post("/api/v1/events", json=[event(i) for i in range(3)], headers=served.auth("writer"))
    note = served.client.get("/api/v1/checkpoint", headers=served.auth("reader")).text
    deadline = time.monotonic() + 10
    while note not in pushed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert note in pushed
    sizes = [open_checkpoint(n, [Verifier.from_text(served.trail.verifier_key)])[0].size for n in pushed]
    assert sizes == sorted(set(sizes))
