"""Archives and pruning on real SQLite files and PostgreSQL: proofs survive, archives check offline,
every refusal leaves everything as it was, and retention rules prune only what is archived."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

import graven
from graven.archive import archive, tile_path, verify_archive
from graven.core import merkle
from graven.core.note import Verifier
from graven.core.shredding import PersonalData
from graven.errors import ConfigError, ImmutableError, NotFoundError
from graven.opening import open_trail
from graven.retention import retention_rules, run_retention, set_retention
from graven.sequencer import Sequencer
from graven.sourcing import EventStore, NewEvent
from graven.testing.store_contract import make_event
from graven.trail import Trail
from tests.pgserver import Server

SIZE = 600


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "trail.db")
    server: Server = request.getfixturevalue("pg")
    return server.schema_url("arc")


@pytest.fixture
def trail(url: str, tmp_path: Path) -> Iterator[Trail]:
    """A signed log of 600 entries, every one covered by a checkpoint."""
    key = tmp_path / "signing.key"
    graven.init(url, signing_key=key).close()
    with open_trail(url, signing_key=key, checkpoint_interval=0) as opened:
        opened.record_many(make_event(n) for n in range(SIZE))
        yield opened


def raw_proof(trail: Trail, index: int) -> list[bytes]:
    """The inclusion proof of ``index`` in the first SIZE entries, from the stored tiles."""
    _, hashes = trail.store.tree_hashes(merkle.inclusion_nodes(index, SIZE))
    return merkle.inclusion_proof(index, SIZE, hashes)


def verifier(trail: Trail) -> Verifier:
    return Verifier.from_text(trail.verifier_key)


class TestArchive:
    def test_archive_prunes_and_proofs_stay(self, trail: Trail, tmp_path: Path) -> None:
        """Archiving 0..299 prunes their bodies; kept entries prove as before, the log and archive verify."""
        before = raw_proof(trail, 450)
        consistency = trail.consistency(100, 500)
        done = archive(trail, tmp_path / "a1", below=300)
        assert (0, 300, 300, SIZE) == (done.first, done.below, done.pruned, done.entry)
        assert trail.store.entry(299) is None
        assert trail.store.entry(300) is not None
        assert before == raw_proof(trail, 450)
        assert graven.verify_bundle(trail.prove(450), [verifier(trail)]).ok
        assert consistency == trail.consistency(100, 500)
        report = trail.verify(archives=[tmp_path / "a1"])
        assert report.ok, report.message
        assert "300 entries below index 300 were pruned" in report.message
        assert verify_archive(tmp_path / "a1", [verifier(trail)]).ok
        with pytest.raises(NotFoundError, match="entry 12 was archived and pruned"):
            trail.get(12)
        recorded = trail.get(done.entry)
        assert ("log.archive", 300) == (recorded.action, recorded.get("metadata")["below"])

    def test_archived_aggregate_streams_still_verify(self, url: str, tmp_path: Path) -> None:
        """Pruning the entries of an aggregate stream leaves its version index checked, not alarmed
        at; the stream goes on at the next version."""
        key = tmp_path / "signing.key"
        graven.init(url, signing_key=key).close()
        with open_trail(url, signing_key=key, checkpoint_interval=0) as opened:
            events = EventStore(opened)
            actor = {"type": "user", "id": "u-1"}
            events.append("account:a-1", [NewEvent("Opened", entry={"actor": actor})] * 5, expected_version=0)
            opened.record_many(make_event(n) for n in range(20))
            archive(opened, tmp_path / "a1", below=10)
            events.append("account:a-1", [NewEvent("Credited", entry={"actor": actor})], expected_version=5)
            report = opened.verify()
            assert report.ok, report.message
            assert 6 == events.version("account:a-1")

    def test_archive_layout_is_c2sp_tiles_and_json_lines(self, trail: Trail, tmp_path: Path) -> None:
        """Entries are JSON Lines of the stored leaves; the tree is tile files, partial at the edge."""
        archive(trail, tmp_path / "a1", below=300, prune=False)
        folder = tmp_path / "a1"
        lines = (folder / "entries.jsonl").read_bytes().splitlines()
        assert 300 == len(lines)
        assert trail.store.entry(7) == lines[7]
        assert 256 * 32 == len((folder / "tile/0/000").read_bytes())
        assert 44 * 32 == len((folder / "tile/0/001.p/44").read_bytes())
        assert (folder / "tile/1/000.p/1").exists()
        assert "tile/0/x001/x234/067.p/8" == tile_path(0, 1_234_067, 8)
        assert trail.verify().ok

    def test_second_archive_continues_the_first(self, trail: Trail, tmp_path: Path) -> None:
        """A second archive starts where the first ended; both verify beside the live log."""
        archive(trail, tmp_path / "all" / "a1", below=100)
        second = archive(trail, tmp_path / "all" / "a2", below=400)
        assert (100, 400, 300) == (second.first, second.below, second.pruned)
        report = trail.verify(archives=[tmp_path / "all"])
        assert report.ok, report.message

    def test_before_a_time(self, trail: Trail, tmp_path: Path) -> None:
        """--before archives exactly the entries recorded before the moment."""
        time.sleep(0.01)
        moment = datetime.now(UTC)
        time.sleep(0.01)
        trail.record_many(make_event(n) for n in range(SIZE, SIZE + 5))
        done = archive(trail, tmp_path / "a1", before=moment)
        assert (0, SIZE) == (done.first, done.below)
        assert trail.verify().ok


class TestRefusals:
    def test_range_not_covered_by_a_checkpoint(self, url: str, tmp_path: Path) -> None:
        """Entries past the newest signed checkpoint cannot be archived: one line, nothing written or pruned."""
        key = tmp_path / "signing.key"
        graven.init(url, signing_key=key).close()
        with open_trail(url, signing_key=key, checkpoint_interval=0) as trail:
            trail.record_many(make_event(n) for n in range(20))
            unsigned = Sequencer(trail.store, trail.origin)  # appends that no checkpoint covers yet
            unsigned.append([trail.prepare(make_event(n)) for n in range(20, 30)])
            with pytest.raises(ConfigError, match=r"not all covered by a signed checkpoint \(the newest covers 20"):
                archive(trail, tmp_path / "a1", below=30)
            assert not (tmp_path / "a1").exists()
            assert 0 == trail.store.archived_below()
            assert trail.store.entry(0) is not None

    def test_existing_folder_is_never_overwritten(self, trail: Trail, tmp_path: Path) -> None:
        (tmp_path / "a1").mkdir()
        (tmp_path / "a1" / "x").write_text("mine")
        with pytest.raises(ConfigError, match="not an empty folder"):
            archive(trail, tmp_path / "a1", below=10)
        assert trail.store.entry(0) is not None

    def test_engine_refuses_pruning_unarchived_entries(self, trail: Trail, tmp_path: Path) -> None:
        """Without a written archive the store itself refuses to remove a body."""
        with pytest.raises(ImmutableError, match="append-only"), trail.store.write() as tx:
            tx.prune(0, 10)
        archive(trail, tmp_path / "a1", below=10, prune=False)
        with pytest.raises(ImmutableError, match="append-only"), trail.store.write() as tx:
            tx.prune(0, 11)
        assert trail.store.entry(10) is not None


class TestTampering:
    def test_edited_archive_pinpointed(self, trail: Trail, tmp_path: Path) -> None:
        """An edited line of entries.jsonl is reported at its index, offline and beside the live log."""
        archive(trail, tmp_path / "a1", below=300)
        path = tmp_path / "a1" / "entries.jsonl"
        lines = path.read_bytes().splitlines()
        lines[42] = lines[42].replace(b'"u-', b'"v-', 1)
        path.write_bytes(b"\n".join(lines) + b"\n")
        check = verify_archive(tmp_path / "a1", [verifier(trail)])
        assert (False, 42) == (check.ok, check.index)
        report = trail.verify(archives=[tmp_path / "a1"])
        assert (42, "modified") == (report.first_bad_index, report.kind)

    def test_archive_of_another_log_is_forked(self, trail: Trail, tmp_path: Path) -> None:
        """An archive signed by the right key but of another history does not pass beside this log."""
        (tmp_path / "other").mkdir()
        other, key = tmp_path / "other" / "other.db", tmp_path / "other" / "signing.key"
        shutil.copy(tmp_path / "signing.key", key)  # the same key, another history
        graven.init(other, signing_key=key).close()
        with open_trail(other, signing_key=key, checkpoint_interval=0) as forged:
            forged.record_many(make_event(n, reason="forged") for n in range(50))
            archive(forged, tmp_path / "alien", below=50, prune=False)
        report = trail.verify(archives=[tmp_path / "alien"])
        assert ("forked", 0) == (report.kind, report.first_bad_index)

    def test_entries_removed_without_an_archive_entry_are_missing(self, tmp_path: Path) -> None:
        """Rows deleted behind the library's back (with a forged archives row) are still reported."""
        db, key = tmp_path / "t.db", tmp_path / "signing.key"
        graven.init(db, signing_key=key).close()
        with open_trail(db, signing_key=key, checkpoint_interval=0) as trail:
            trail.record_many(make_event(n) for n in range(20))
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("INSERT INTO archives VALUES (5, 'fake', 'x')")
        conn.execute("DELETE FROM entries WHERE idx < 5")
        conn.close()
        with open_trail(db, signing_key=key) as trail:
            report = trail.verify()
        assert (0, "missing") == (report.first_bad_index, report.kind)


class TestRetention:
    def test_rules_prune_only_archived_matching_entries(self, url: str, tmp_path: Path) -> None:
        """session.* kept 30 days: refused until archived, then only old session entries are pruned."""
        key = tmp_path / "signing.key"
        graven.init(url, signing_key=key).close()
        old = datetime.now(UTC) - timedelta(days=90)
        with open_trail(url, signing_key=key, checkpoint_interval=0) as trail:
            for n in range(40):
                action = "session.login" if n % 2 else "user.update"
                trail.record(make_event(n, action=action, occurred_at=old))
            set_retention(trail, "session.*", "30d")
            set_retention(trail, "user.*", "forever")
            assert ["'session.*' kept 30d"] == [r.describe() for r in retention_rules(trail)]
            with pytest.raises(ConfigError, match=r"would prune 20 entries not archived yet \(the first at index 1\)"):
                run_retention(trail)
            assert trail.store.entry(1) is not None
            archive(trail, tmp_path / "a1", below=40, prune=False)
            done = run_retention(trail)
            assert 20 == done.pruned
            assert trail.store.entry(1) is None
            assert trail.store.entry(2) is not None
            ran = trail.get(done.entry or 0)
            assert ("log.retention.run", 20) == (ran.action, ran.get("metadata")["entries"])
            report = trail.verify(archives=[tmp_path / "a1"])
            assert report.ok, report.message
            assert 0 == run_retention(trail).pruned

    def test_bad_rules_refused(self, trail: Trail) -> None:
        with pytest.raises(ConfigError, match="retention age must be like 90d"):
            set_retention(trail, "session.*", "90 days")
        with pytest.raises(ConfigError, match="retention pattern must be"):
            set_retention(trail, "log.*", "1d")


def test_forgotten_subject_stays_forgotten_in_the_archive(tmp_path: Path) -> None:
    """Sealed personal values are archived sealed: after forgetting, the archive holds no plaintext."""
    db, key = tmp_path / "t.db", tmp_path / "signing.key"
    graven.init(db, signing_key=key).close()
    with open_trail(
        db, signing_key=key, personal=PersonalData(), subject_keys=tmp_path / "keys.db", checkpoint_interval=0
    ) as trail:
        trail.record(
            actor={"type": "user", "id": "u-1"}, action="customer.update",
            targets=[{"type": "customer", "id": "c-1042", "name": "Ada Lovelace"}],
            changes=[{"field": "email", "old": "ada@old.example", "new": "ada@new.example"}],
        )  # fmt: skip
        trail.forget("customer:c-1042", actor="u-dpo")
        archive(trail, tmp_path / "a1", below=trail.size)
    data = (tmp_path / "a1" / "entries.jsonl").read_bytes()
    for secret in (b"Ada Lovelace", b"ada@old.example", b"ada@new.example"):
        assert secret not in data
    assert b"c-1042" in data


def test_cli_archive_and_offline_verify(tmp_path: Path) -> None:
    """`graven archive` prints one line; `graven verify --archive DIR --key KEY` checks it with no log."""

    def graven_cli(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).with_name("graven")), *args], cwd=cwd, capture_output=True, text=True, timeout=120
        )

    assert 0 == graven_cli("init").returncode
    for n in range(5):
        graven_cli("record", "--action", "user.login", "--actor", f"u-{n}")
    key = graven_cli("key").stdout.strip()
    refused = graven_cli("archive", "--below", "9", "--to", "a1")
    assert (2, "graven: --below 9 is past the end of the log (5 entries)\n") == (refused.returncode, refused.stderr)
    done = graven_cli("archive", "--below", "3", "--to", "a1")
    assert 0 == done.returncode, done.stderr
    assert done.stdout.startswith("archived entries 0..2 to a1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    checked = graven_cli("verify", "--archive", str(tmp_path / "a1"), "--key", key, cwd=elsewhere)
    assert 0 == checked.returncode, checked.stderr
    assert "entries 0..2 match its tiles" in checked.stdout
    lines = (tmp_path / "a1" / "entries.jsonl").read_bytes().splitlines()
    doc = orjson.loads(lines[1])
    doc["action"] = "user.logout"
    lines[1] = orjson.dumps(doc)
    (tmp_path / "a1" / "entries.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    tampered = graven_cli("verify", "--archive", str(tmp_path / "a1"), "--key", key, cwd=elsewhere)
    assert 1 == tampered.returncode
    assert "entry 1 does not match" in tampered.stderr
