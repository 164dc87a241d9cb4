"""The library API: recording in every form, reading, proving and verifying through a Trail."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

import graven
from graven.core import canonical, merkle
from graven.core.note import Checkpoint, note_signatures
from graven.errors import IdempotencyConflict
from graven.testing.store_contract import make_event
from graven.trail import Trail, _safe_numbers


class TestRecord:
    def test_dict_model_and_keywords_are_equivalent(self, trail: Trail) -> None:
        """An event as a dict, as an Event object or as keyword arguments is stored the same way."""
        when = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
        common = {"action": "file.delete", "occurred_at": when}
        a = trail.record(
            {"id": "a", "actor": {"type": "user", "id": "u-1"}, "targets": [{"type": "file", "id": "f-9"}], **common}
        )
        b = trail.record(
            graven.Event(id="b", actor=graven.Actor(id="u-1"), targets=[graven.Target("file", "f-9")], **common)
        )
        c = trail.record(id="c", actor="u-1", targets=[("file", "f-9")], **common)
        docs = [{k: v for k, v in trail.get(i).data.items() if k not in ("id", "recorded_at")} for i in (a, b, c)]
        assert docs[0] == docs[1] == docs[2]
        assert [0, 1, 2] == [a, b, c]

    def test_record_returns_gapless_indices(self, trail: Trail) -> None:
        """Indices start at 0 and grow by one per entry."""
        assert [0, 1, 2] == [trail.record(make_event(n)) for n in range(3)]
        assert [3, 4] == trail.record_many([make_event(3), make_event(4)])

    def test_batch_is_all_or_nothing(self, trail: Trail) -> None:
        """One invalid event in a batch rejects the batch, naming its position; nothing is written."""
        events = [make_event(0), make_event(1, outcome="maybe"), make_event(2)]
        with pytest.raises(
            graven.ValidationError, match=r"events\[1\]\.outcome: must be one of success, denied, failure; got 'maybe'"
        ):
            trail.record_many(events)
        assert 0 == trail.size

    def test_idempotent_by_event_id(self, trail: Trail) -> None:
        """A repeated event id returns the original index and appends nothing; other content with
        the same id is refused (see tests/test_idempotency.py)."""
        first = trail.record(make_event(5))
        assert first == trail.record(make_event(5))
        assert [first, 1] == trail.record_many([make_event(5), make_event(6)])
        assert 2 == trail.size
        with pytest.raises(IdempotencyConflict):
            trail.record(make_event(5, reason="retried"))

    def test_defaults_are_filled(self, trail: Trail) -> None:
        """Without id or occurred_at an entry gets a UUIDv7 and the time it was recorded."""
        entry = trail.get(trail.record(action="session.login", actor="u-1"))
        assert "7" == entry.id[14]
        assert entry.data["occurred_at"] == entry.data["recorded_at"]
        assert "success" == entry.outcome

    def test_every_stored_field_is_in_the_leaf(self, trail: Trail) -> None:
        """The RFC 8785 encoding of the JSON form without index is exactly the stored leaf."""
        index = trail.record(make_event(1, metadata={"amount": 12.5, "tags": ["a", "b"], "n": 1.0}))
        as_json = trail.get(index).to_json()
        leaf = canonical.encode_reference({k: v for k, v in as_json.items() if k != "index"})
        assert trail.store.entry(index) == leaf

    def test_record_names_a_target_as_action_does(self, trail: Trail) -> None:
        """record(target=("file", id)) and record(target="type:id") store the target as action() does."""
        first = trail.record(action="file.delete", actor="u-1", target=("file", 42))
        with trail.action("file.delete", actor="u-1", target=("file", 42)):
            pass
        with trail.action("file.delete", actor="u-1", target="file:42"):
            pass
        second = trail.record(action="file.delete", actor="u-1", target="file:42", reason="cleanup", tenant="t-1")
        assert [[{"type": "file", "id": "42"}]] * 4 == [
            trail.get(i).targets for i in (first, first + 1, first + 2, second)
        ]
        with (
            pytest.raises(graven.ValidationError, match=r"targets\[0\]: must be type:id"),
            trail.action("file.delete", actor="u-1", target="file"),
        ):
            pass
        entry = trail.get(second)
        assert ("cleanup", "t-1", None, 1) == (entry.reason, entry.tenant, entry.metadata, entry.v)


class TestRead:
    @pytest.fixture
    def filled(self, trail: Trail) -> Trail:
        trail.record_many(make_event(n) for n in range(30))
        return trail

    def test_get_unknown_index(self, filled: Trail) -> None:
        """Asking for an index past the end says how many entries there are."""
        with pytest.raises(graven.NotFoundError, match="no entry 30: the log has 30 entries"):
            filled.get(30)

    def test_query_pages_with_cursor(self, filled: Trail) -> None:
        """Cursor pagination walks every match exactly once."""
        seen: list[int] = []
        after = None
        while True:
            page = filled.query(actor="u-1", limit=4, after=after)
            seen += [e.index for e in page]
            if page.next_cursor is None:
                break
            after = page.next_cursor
        assert list(range(1, 30, 3)) == seen

    def test_query_time_range_accepts_datetimes(self, filled: Trail) -> None:
        """since/until accept datetimes in any timezone."""
        t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        tz = datetime(2026, 1, 2, 5, 4, 5, tzinfo=UTC).astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
        page = filled.query(since=t0 + timedelta(minutes=10), until=tz)
        assert list(range(10, 30)) == [e.index for e in page]

    def test_history_of_a_target(self, filled: Trail) -> None:
        """history() returns everything done to one target, oldest first."""
        assert list(range(3, 30, 4)) == [e.index for e in filled.history("customer:c-3")]
        assert list(range(3, 30, 4)) == [e.index for e in filled.history(("customer", "c-3"))]

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"limit": 0}, "limit: must be between 1 and 10000; got 0"),
            ({"outcome": "ok"}, "outcome: must be one of success, denied, failure; got 'ok'"),
            ({"target": "customer"}, "target: must be type:id"),
            ({"since": "yesterday"}, "since: must be an ISO 8601 timestamp"),
            ({"after": -5}, "after: must be an entry index"),
        ],
    )
    def test_bad_filters(self, filled: Trail, kwargs: dict[str, object], message: str) -> None:
        """A bad filter is refused naming the field, the rule and what was given."""
        with pytest.raises(graven.ValidationError, match=message.replace("(", r"\(")):
            filled.query(**kwargs)  # type: ignore[arg-type]


class TestProve:
    def test_bundle_verifies_offline(self, trail: Trail) -> None:
        """A bundle checks with the public key alone and fails once any part is altered."""
        trail.record_many(make_event(n) for n in range(11))
        bundle = trail.prove(6)
        verifier = graven.trail.load_verifier(trail.verifier_key)
        assert graven.verify_bundle(bundle, [verifier]).ok
        text, _ = note_signatures(bundle["checkpoint"])
        checkpoint = Checkpoint.parse(text)
        assert 11 == bundle["tree_size"] == checkpoint.size
        proof = [base64.b64decode(h) for h in bundle["inclusion_proof"]]
        leaf = canonical.encode_reference({k: v for k, v in bundle["entry"].items() if k != "index"})
        assert merkle.verify_inclusion(merkle.leaf_hash(leaf), 6, 11, proof, checkpoint.root_hash)
        altered = orjson.loads(orjson.dumps(bundle))
        altered["entry"]["actor"]["id"] = "u-2"
        assert not graven.verify_bundle(altered, [verifier]).ok
        other = graven.trail.load_verifier(graven.core.note.Signer.generate("x.example/y").verifier().to_text())
        assert "not signed by the trusted key" in graven.verify_bundle(bundle, [other]).message

    def test_consistency_between_sizes(self, trail: Trail) -> None:
        """Consistency proofs from the log verify against roots of the two sizes."""
        trail.record_many(make_event(n) for n in range(9))
        leaves = [merkle.leaf_hash(trail.store.entry(i) or b"") for i in range(9)]
        proof = trail.consistency(3, 9)
        assert merkle.verify_consistency(3, 9, merkle.root_of(leaves[:3]), merkle.root_of(leaves), proof)


class TestOpen:
    def test_open_creates_log_and_key(self, tmp_path: Path) -> None:
        """graven.open on a new path creates the log and a 0600 key file, then reopens it."""
        db, key = tmp_path / "new.db", tmp_path / "new.key"
        with graven.open(db, signing_key=key) as trail:
            trail.record(make_event(0))
        assert 0o600 == os.stat(key).st_mode & 0o777
        with graven.open(f"sqlite:///{db}", signing_key=key) as again:
            assert 1 == again.size
            assert again.verify().ok

    def test_wrong_key_for_log(self, tmp_path: Path) -> None:
        """Opening a log with another log's signing key is refused."""
        graven.init(tmp_path / "a.db", signing_key=tmp_path / "a.key").close()
        graven.init(tmp_path / "b.db", signing_key=tmp_path / "b.key").close()
        with pytest.raises(graven.ConfigError, match="does not belong"):
            graven.open(tmp_path / "a.db", signing_key=tmp_path / "b.key")

    def test_no_create(self, tmp_path: Path) -> None:
        """create=False refuses a path that is not a log yet."""
        with pytest.raises(graven.ConfigError, match="graven init"):
            graven.open(tmp_path / "none.db", create=False)

    def test_close_signs_the_tail(self, tmp_path: Path) -> None:
        """Closing a trail signs a checkpoint covering entries recorded since the last one."""
        db, key = tmp_path / "t.db", tmp_path / "t.key"
        with graven.open(db, signing_key=key, checkpoint_interval=3600) as trail:
            trail.record_many(make_event(n) for n in range(3))
            trail.record(make_event(3))
        with graven.open(db, signing_key=key) as trail:
            latest = trail.store.latest_checkpoint()
            assert latest is not None
            assert 4 == latest.size

    def test_engine_refuses_delete(self, trail: Trail) -> None:
        """DELETE FROM entries through the application's own connection is refused."""
        trail.record(make_event(0))
        import sqlite3

        conn = sqlite3.connect(trail.store.path)  # type: ignore[attr-defined]
        with pytest.raises(sqlite3.DatabaseError, match="entries is append-only; DELETE is refused"):
            conn.execute("DELETE FROM entries")
        conn.close()


def test_verify_reports_progress(trail: Trail) -> None:
    """verify() calls its progress callback with the running count of entries hashed."""
    trail.record_many(make_event(n) for n in range(7))
    seen: list[int] = []
    assert trail.verify(progress=seen.append).ok
    assert 7 == seen[-1]


class TestDefaultKey:
    def test_default_key_of_another_log_reads_but_refuses_to_write(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A default key that does not match the log: reads work, writes are refused with a way out."""
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("GRAVEN_SIGNING_KEY", raising=False)
        graven.init(".graven/trail.db").close()
        graven.init("other.db", signing_key="other.key").close()
        with graven.open("other.db") as trail:
            assert 0 == trail.size
            with pytest.raises(graven.ConfigError, match=r"does not match the log at other\.db"):
                trail.record(make_event(0))

    def test_replaced_log_is_a_fork_under_the_default_key(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A log file swapped for one signed by another key verifies as forked with the default key."""
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("GRAVEN_SIGNING_KEY", raising=False)
        with graven.init(".graven/trail.db") as trail:
            trail.record(make_event(0))
        with graven.init("forged.db", signing_key="forged.key") as forged:
            forged.record(make_event(0, reason="forged"))
        Path(".graven/trail.db").unlink()
        Path("forged.db").rename(".graven/trail.db")
        with graven.open() as trail:
            report = trail.verify()
        assert (0, "forked") == (report.first_bad_index, report.kind)


class TestCapturedNumbers:
    """Captured events: integers beyond +-(2**53 - 1) become text anywhere; other events pass as they are."""

    @pytest.mark.parametrize("big", [2**53, -(2**53), 2**63, 2**64, -(10**30)])
    def test_big_integers_become_text_at_any_depth(self, big: int) -> None:
        event = {"targets": [{"type": "t", "id": big}], "changes": [{"field": "n", "new": {"deep": [1, big]}}]}
        assert _safe_numbers(event) == {
            "targets": [{"type": "t", "id": str(big)}],
            "changes": [{"field": "n", "new": {"deep": [1, str(big)]}}],
        }

    def test_an_event_without_them_is_not_copied(self) -> None:
        edge = 2**53 - 1
        event = {"id": "9007199254740993", "changes": [{"field": "n", "old": -edge, "new": edge, "f": 1e300}]}
        assert _safe_numbers(event) is event
        assert event["changes"][0]["new"] == edge


def test_record_leaves_the_callers_dict_as_it_was(trail: Trail) -> None:
    """record() of a plain dict works on its own copy: redaction and the context never reach the
    caller's dict, nor its nested values."""
    import copy

    with trail.context(request_id="r-1"):
        event = {
            "actor": "u-1",
            "action": "user.update",
            "changes": [{"field": "password", "old": "a", "new": "b"}],
            "context": {"api_key": "k-1"},
        }
        before = copy.deepcopy(event)
        index = trail.record(event)
        assert before == event
        stored = trail.get(index)
        assert "r-1" == stored.context["request_id"]
        assert stored.changes[0].get("redacted") is True
