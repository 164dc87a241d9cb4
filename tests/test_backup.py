"""A rolled-back database never gets a fork signed; backups, restores and the lineage after a loss.

The attack: the database is replaced by an older copy (3 entries) while the checkpoint kept beside
the signing key says 6. The writer must refuse to append or sign, naming both sizes and the way out.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

import graven
from graven import RollbackRefused
from graven.backup import Manifest, backup, restore
from graven.checkpoint_file import CheckpointFile
from graven.core.note import Checkpoint, open_checkpoint, sign_checkpoint
from graven.errors import IntegrityError
from graven.keys import load_signing_key
from graven.store import open_store
from graven.trail import Trail
from tests.pgserver import Server
from tests.server.server_harness import Factory
from tests.test_cli import graven as graven_cli  # noqa: F401 (the CLI fixture)


def _event(n: int, **extra: Any) -> dict[str, Any]:
    return {"action": "invoice.pay", "actor": "u-1", "targets": [{"type": "invoice", "id": str(n)}], **extra}


def _copy(source: Path, target: Path) -> None:
    """A byte-for-byte older copy of a SQLite file, as an operator's `cp` of a closed log makes."""
    target.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    src.backup(dst)
    src.close()
    dst.close()


def _overwrite(source: Path, live: Path) -> None:
    """Copy ``source`` over a live SQLite file through SQLite's backup API (open connections see it)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(live)
    src.backup(dst)
    src.close()
    dst.close()


class Log:
    def __init__(self, folder: Path) -> None:
        self.db = folder / "trail.db"
        self.key = folder / "signing.key"
        self.kept = folder / "signing.key.checkpoint"
        graven.init(self.db, signing_key=self.key).close()

    def open(self, **options: Any) -> Trail:
        return graven.open(self.db, signing_key=self.key, **options)

    def record(self, first: int, count: int) -> None:
        with self.open() as trail:
            trail.record_many([_event(n) for n in range(first, first + count)])

    def size(self) -> int:
        store = open_store(self.db)
        try:
            return store.size()
        finally:
            store.close()

    def kept_size(self) -> int:
        note = CheckpointFile(self.kept).read()
        assert note is not None
        return open_checkpoint(note, [load_signing_key(self.key).verifier()])[0].size


@pytest.fixture
def log(tmp_path: Path) -> Log:
    return Log(tmp_path)


@pytest.fixture
def rolled_back(log: Log, tmp_path: Path) -> Log:
    """Six entries recorded and checkpointed; then the database replaced by its copy at three."""
    log.record(0, 3)
    _copy(log.db, tmp_path / "old.db")
    log.record(3, 3)
    assert (6, 6) == (log.size(), log.kept_size())
    _copy(tmp_path / "old.db", log.db)
    assert 3 == log.size()
    return log


class TestRollbackIsRefused:
    def test_record_after_a_rollback_is_refused_naming_both_sizes(self, rolled_back: Log) -> None:
        with rolled_back.open() as trail, pytest.raises(RollbackRefused) as caught:
            trail.record(_event(99))
        message = str(caught.value)
        assert "refusing to append: the log has 3 entries" in message
        assert f"kept checkpoint ({rolled_back.kept}) was signed at size 6" in message
        assert "graven restore BACKUP --accept-loss" in message
        assert 3 == rolled_back.size()  # nothing appended
        with rolled_back.open() as trail:
            trail.checkpoint()  # the tree did not grow: nothing new is signed
            assert [0, 3] == [c.size for c in trail.store.checkpoints()]
        assert 6 == rolled_back.kept_size()

    def test_a_fork_of_equal_or_larger_size_is_refused(self, log: Log, tmp_path: Path) -> None:
        """A history rewritten past the kept size (entries appended elsewhere) is a fork."""
        log.record(0, 3)
        _copy(log.db, tmp_path / "old.db")
        log.record(3, 3)
        with graven.open(tmp_path / "old.db", signing_key=log.key, witness=tmp_path / "elsewhere") as other:
            other.record_many([_event(n, reason="forged") for n in range(3, 8)])
        _copy(tmp_path / "old.db", log.db)
        with log.open() as trail, pytest.raises(RollbackRefused, match=r"first 6 do not match .*\(forked\)"):
            trail.record(_event(99))
        assert 8 == log.size()

    def test_a_witness_cosigned_checkpoint_holds_the_writer_too(self, rolled_back: Log) -> None:
        """With the kept copy gone, the cosigned checkpoint kept beside the key still counts."""
        note = CheckpointFile(rolled_back.kept).read()
        assert note is not None
        cosigned = rolled_back.kept.with_name("signing.key.cosigned")
        cosigned.write_bytes(orjson.dumps({"https://witness.example": note}))
        rolled_back.kept.unlink()
        with rolled_back.open() as trail, pytest.raises(RollbackRefused, match="cosigned by the witness"):
            trail.record(_event(99))

    def test_the_service_answers_409_with_the_message(self, serve_log: Factory, tmp_path: Path) -> None:
        served = serve_log()
        if served.backend != "sqlite":
            pytest.skip("the rollback is made by copying the SQLite file")
        folder = tmp_path / "bk"
        backup(served.trail, folder)
        for n in range(3):
            answer = served.client.post("/api/v1/events", json=_event(n), headers=served.auth("writer"))
            assert 201 == answer.status_code
        served.trail.checkpoint()
        backup(served.trail, tmp_path / "newer")
        live = Path(served.trail.store.url.removeprefix("sqlite:///"))
        _overwrite(folder / "trail.db", live)  # the live file rolled back under the running service
        answer = served.client.post("/api/v1/events", json=_event(9), headers=served.auth("writer"))
        assert 409 == answer.status_code
        assert ("log_damaged", True) == (answer.json()["error"], "refusing to append" in answer.json()["message"])
        assert "was signed at size" in answer.json()["message"]
        _overwrite(tmp_path / "newer" / "trail.db", live)  # put back, so the service closes cleanly


class TestBackup:
    def test_a_backup_taken_while_a_writer_writes_is_consistent(self, log: Log, tmp_path: Path) -> None:
        stop = threading.Event()
        with log.open(checkpoint_interval=0.01) as trail:

            def write() -> None:
                n = 0
                while not stop.is_set():
                    trail.record_many([_event(n + i) for i in range(20)])
                    n += 20

            writer = threading.Thread(target=write)
            writer.start()
            try:
                while trail.size < 200:
                    stop.wait(0.01)
                manifest = backup(trail, tmp_path / "bk")
            finally:
                stop.set()
                writer.join()
            assert 0 < manifest.size < trail.size or manifest.size == trail.size
        assert manifest == Manifest.read(tmp_path / "bk")
        assert (tmp_path / "bk" / "checkpoint").exists()
        copy = Trail(open_store(tmp_path / "bk" / "trail.db"))
        try:
            assert manifest.size == copy.size
            report = copy.verify(load_signing_key(log.key).verifier())
            assert report.ok, report.message
        finally:
            copy.close()

    def test_a_destination_in_use_is_refused(self, log: Log, tmp_path: Path) -> None:
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("x")
        with log.open() as trail, pytest.raises(graven.ConfigError, match="not an empty folder"):
            backup(trail, tmp_path / "full")


class TestRestore:
    def test_an_older_backup_is_refused_naming_both_sizes(self, log: Log, tmp_path: Path) -> None:
        log.record(0, 3)
        with log.open() as trail:
            backup(trail, tmp_path / "bk")
        log.record(3, 3)
        with pytest.raises(IntegrityError, match=r"backup holds 3 entries but the kept checkpoint .* size 6"):
            restore(log.db, tmp_path / "bk", log.key)
        assert 6 == log.size()

    def test_a_backup_of_the_same_history_restores_without_loss(self, log: Log, tmp_path: Path) -> None:
        log.record(0, 3)
        with log.open() as trail:
            backup(trail, tmp_path / "bk")
        _copy(tmp_path / "bk" / "trail.db", log.db)  # the damage: an older copy put in place
        log.db.with_name("trail.db-wal").unlink(missing_ok=True)
        done = restore(log.db, tmp_path / "bk", log.key)
        assert (3, 3, 3) == (done.size, done.lost_from, done.entry)
        with log.open() as trail:
            assert "log.restore" == trail.get(3).action
            assert trail.verify().ok

    def test_accepting_the_loss_records_it_and_starts_a_lineage_verify_follows(
        self, rolled_back: Log, tmp_path: Path
    ) -> None:
        old_note = CheckpointFile(rolled_back.kept).read()
        assert old_note is not None
        _copy(rolled_back.db, tmp_path / "three.db")
        with graven.open(tmp_path / "three.db", signing_key=rolled_back.key, witness=tmp_path / "w") as trail:
            backup(trail, tmp_path / "bk")
        done = restore(rolled_back.db, tmp_path / "bk", rolled_back.key, accept_loss=True, reason="INC-7",
                       actor={"type": "user", "id": "ops-1"})  # fmt: skip
        assert (3, 3, 6, 3, 1) == (done.size, done.lost_from, done.lost_to, done.entry, done.lineage)
        assert old_note == rolled_back.kept.with_name("signing.key.checkpoint.lineage-1").read_text()
        assert 4 == rolled_back.kept_size()
        with rolled_back.open() as trail:
            entry = trail.get(3)
            assert ("log.restore", "INC-7", "ops-1") == (entry.action, entry.data["reason"], entry.data["actor"]["id"])
            assert {"from": 3, "to": 6} == entry.data["metadata"]["lost"]
            assert 6 == entry.data["metadata"]["superseded"]["size"]
            report = trail.verify()
            assert report.ok, report.message
            assert "Lineage 2: entries 3..5 were lost" in report.message
            assert "log.restore entry at index 3" in report.message
            # The log goes on in the new lineage, past the old size; the old checkpoint still
            # counts as evidence of the loss, not as a fork.
            trail.record_many([_event(n) for n in range(10, 15)])
            report = trail.verify(witnessed=[old_note])
            assert report.ok, report.message

    def test_a_checkpoint_beyond_the_superseded_one_is_still_a_fork(self, rolled_back: Log, tmp_path: Path) -> None:
        _copy(rolled_back.db, tmp_path / "three.db")
        with graven.open(tmp_path / "three.db", signing_key=rolled_back.key, witness=tmp_path / "w") as trail:
            backup(trail, tmp_path / "bk")
        restore(rolled_back.db, tmp_path / "bk", rolled_back.key, accept_loss=True)
        signer = load_signing_key(rolled_back.key)
        with rolled_back.open() as trail:
            trail.record_many([_event(n) for n in range(10, 15)])
            forged = sign_checkpoint(Checkpoint(trail.origin, 7, b"\x07" * 32), signer)
            report = trail.verify(witnessed=[forged])
        assert "forked" == report.kind

    def test_postgres_backup_and_restore_into_a_new_schema(self, pg: Server, tmp_path: Path) -> None:
        url = pg.schema_url("bk")
        key = tmp_path / "signing.key"
        with graven.init(url, signing_key=key) as trail:
            trail.record_many([_event(n) for n in range(5)])
            manifest = backup(trail, tmp_path / "bk")
            trail.record_many([_event(n) for n in range(5, 8)])
        assert 5 == manifest.size
        with pytest.raises(graven.ConfigError, match="restored into a new schema"):
            restore(url, tmp_path / "bk", key, accept_loss=True)
        target = pg.schema_url("restored")
        with pytest.raises(IntegrityError, match="backup holds 5 entries"):
            restore(target, tmp_path / "bk", key)
        done = restore(target, tmp_path / "bk", key, accept_loss=True)
        assert (5, 8, 5) == (done.lost_from, done.lost_to, done.entry)
        with graven.open(target, signing_key=key) as trail:
            report = trail.verify()
            assert report.ok, report.message
            assert "entries 5..7 were lost" in report.message


def test_the_cli_backs_up_refuses_and_restores_with_loss(graven_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    assert 0 == graven_cli("init").code
    for n in range(3):
        assert 0 == graven_cli("record", "--action", "invoice.pay", "--actor", "u-1", "--target", f"invoice:{n}").code
    done = graven_cli("backup", "bk")
    assert 0 == done.code
    assert "backed up 3 entries" in done.out
    for n in range(3, 6):
        assert 0 == graven_cli("record", "--action", "invoice.pay", "--actor", "u-1", "--target", f"invoice:{n}").code
    refused = graven_cli("restore", "bk")
    assert 2 == refused.code
    assert "backup holds 3 entries" in refused.err
    assert "size 6" in refused.err
    shutil.copy(tmp_path / "bk" / "trail.db", tmp_path / ".graven" / "trail.db")  # the rollback
    for suffix in ("-wal", "-shm"):
        (tmp_path / ".graven" / f"trail.db{suffix}").unlink(missing_ok=True)
    blocked = graven_cli("record", "--action", "invoice.pay", "--actor", "u-1")
    assert 2 == blocked.code
    assert "the log has 3 entries" in blocked.err
    restored = graven_cli("restore", "bk", "--accept-loss", "--reason", "disk lost")
    assert 0 == restored.code, restored.err
    assert "entries 3..5 are lost" in restored.out
    verified = graven_cli("verify")
    assert 0 == verified.code, verified.err
    assert "Lineage 2" in verified.out
    assert 0 == graven_cli("record", "--action", "invoice.pay", "--actor", "u-1").code
