"""Checkpoint signing: every entry covered by a kept checkpoint within a bound, a failure after the
commit never reported as a failed write, and every unusable key refused in one clear line."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

import graven
from graven.checkpoint_file import CheckpointFile, kept_size
from graven.core import merkle
from graven.errors import ConfigError, ValidationError
from graven.keys import load_signing_key, load_verifier
from graven.server import ServerConfig, create_app
from graven.server.accounts.service import By
from graven.server.health import failing_checks
from graven.store import open_store
from graven.subject_keys import SubjectKeys
from graven.testing.store_contract import make_event
from graven.trail import Trail
from graven.witnessing.keys import load_cosigner_key, load_cosigner_verifier, load_log_verifier

EXE = Path(sys.executable).with_name("graven")
INTERVAL = 0.3


def eventually(check: Callable[[], bool], timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    """A fresh log (and its key, with its kept checkpoint beside it)."""
    db, key = tmp_path / "trail.db", tmp_path / "signing.key"
    graven.init(db, signing_key=key).close()
    return db, key


def kept(key: Path) -> int:
    return kept_size(CheckpointFile(key.with_name(key.name + ".checkpoint")).read())


def latest_size(trail: Trail) -> int:
    latest = trail.store.latest_checkpoint()
    return -1 if latest is None else latest.size


# --- item: every entry covered by a kept checkpoint within the interval -------------------------------


def test_quiet_tail_gets_a_kept_checkpoint_without_witnesses_or_writes(paths: tuple[Path, Path]) -> None:
    """A burst, then silence: the tail is signed and kept within about the interval, no witnesses
    configured and nothing written after it."""
    db, key = paths
    with graven.open(db, signing_key=key, checkpoint_interval=INTERVAL) as trail:
        trail.record(make_event(0))  # the first write signs in its transaction
        started = time.monotonic()
        trail.record_many([make_event(n) for n in range(1, 6)])  # too soon to be signed inline
        assert 6 == trail.size
        assert eventually(lambda: latest_size(trail) == 6 and kept(key) == 6), (latest_size(trail), kept(key))
        assert time.monotonic() - started < INTERVAL + 3
        status = trail.signing_status()
        assert (False, 6, 6, None) == (status.degraded, status.signed, status.kept, status.unsigned_for)


def attacker(db: Path) -> sqlite3.Connection:
    """The database operator: a raw connection with the append-only triggers dropped."""
    conn = sqlite3.connect(db, isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    return conn


def rewrite_last_entry(db: Path) -> int:
    """Change the last entry's body, recompute every tree hash, and drop the checkpoints that
    covered it so the writer signs on; returns the rewritten index."""
    conn = attacker(db)
    (last,) = conn.execute("SELECT max(idx) FROM entries").fetchone()
    conn.execute("UPDATE entries SET body = replace(body, '@example.com', '@example.org') WHERE idx = ?", (last,))
    bodies = [
        bytes(b) if isinstance(b, bytes) else b.encode()
        for (b,) in conn.execute("SELECT body FROM entries ORDER BY idx")
    ]
    rows = merkle.append(0, [], [merkle.leaf_hash(b) for b in bodies]).rows
    conn.execute("DELETE FROM tiles")
    for (level, idx), _, hashes in merkle.tile_deltas(0, rows):
        conn.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (level, idx, len(hashes) // 32, hashes))
    conn.execute("DELETE FROM checkpoints WHERE size > ?", (last,))
    conn.close()
    return int(last)


def test_operator_rewriting_the_tail_after_the_bound_is_caught(paths: tuple[Path, Path]) -> None:
    """The attack: entries written in a burst; once the bound has passed the operator rewrites the
    last one and its tree hashes (and drops the checkpoints covering it). The next write would be
    signed over the forged tree: the writer refuses it, as the checkpoint kept beside the key signed
    the original; verify fails. Closing the trail refuses to sign its tail over the forged tree too."""
    db, key = paths
    trail = graven.open(db, signing_key=key, checkpoint_interval=INTERVAL)
    try:
        trail.record(make_event(0))
        trail.record_many([make_event(n) for n in range(1, 4)])
        time.sleep(INTERVAL + 1.0)  # the bound passes with no further write
        last = rewrite_last_entry(db)  # while the application runs
        assert 3 == last
        # The writer appends from the frontier it remembers, so the forged tree surfaces when it
        # signs: refused either as a rollback of the kept checkpoint or as an inconsistent tree.
        refused = r"first 4 do not match the kept checkpoint|tree of size 5 is not consistent"
        with pytest.raises((graven.RollbackRefused, graven.IntegrityError), match=refused):
            trail.record(make_event(9))  # nothing is signed over the forged tree, nor appended to it
        report = trail.verify()
        assert not report.ok
        assert report.kind in ("forked", "modified")
        assert f"between index 0 and {last}" in report.message
        assert 4 == kept(key)  # the reference was not replaced by the forged history
        assert 4 == trail.size
    finally:
        with pytest.raises(graven.RollbackRefused, match="refusing to sign"):
            trail.close()


def test_durable_signed_returns_once_a_kept_checkpoint_covers_the_entry(paths: tuple[Path, Path]) -> None:
    """durable="signed" waits for a signed, kept checkpoint (at once, not after the interval)."""
    db, key = paths
    with graven.open(db, signing_key=key, checkpoint_interval=3600) as trail:
        trail.record(make_event(0))
        trail.record(make_event(1))  # committed, not yet signed: the interval is an hour
        assert eventually(lambda: kept(key) == 1)
        assert 1 == latest_size(trail)
        started = time.monotonic()
        index = trail.record(make_event(2), durable="signed")
        assert time.monotonic() - started < 5
        assert (2, 3, 3) == (index, latest_size(trail), kept(key))
        indices = trail.record_many([make_event(3), make_event(4)], durable="signed")
        assert ([3, 4], 5) == (indices, kept(key))
        assert 5 == asyncio.run(trail.arecord(make_event(5), durable="signed"))
        assert 6 == kept(key)
        assert [6] == asyncio.run(trail.arecord_many([make_event(6)], durable="signed"))
        assert 7 == kept(key)


def test_durable_is_checked_before_anything_is_written(paths: tuple[Path, Path]) -> None:
    db, key = paths
    with graven.open(db, signing_key=key) as trail:
        with pytest.raises(ValidationError, match="durable: must be committed or signed; got 'fsync'"):
            trail.record(make_event(0), durable="fsync")  # type: ignore[arg-type]
        assert 0 == trail.size


def test_close_signs_and_keeps_the_tail(paths: tuple[Path, Path]) -> None:
    db, key = paths
    with graven.open(db, signing_key=key, checkpoint_interval=3600) as trail:
        trail.record(make_event(0))
        trail.record_many([make_event(n) for n in range(1, 5)])
        assert eventually(lambda: kept(key) == 1)
        assert 1 == latest_size(trail)
    assert 5 == kept(key)


# --- item: a failure after the commit is not a failed write --------------------------------------------


def blocked_kept(tmp_path: Path) -> tuple[Path, Path]:
    """A kept-checkpoint path that cannot be written, even by root: its parent is a regular file."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the kept checkpoint's directory should be\n")
    return blocker, blocker / "kept.checkpoint"


def test_kept_file_failure_returns_the_index_degrades_and_recovers(
    paths: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """record() returns the index although the checkpoint cannot be kept; the status says why
    (logged once, one line, no traceback); once the path works again, the retry catches up."""
    db, key = paths
    blocker, path = blocked_kept(tmp_path)
    caplog.set_level(logging.INFO, logger="graven.signing")
    with graven.open(db, signing_key=key, witness=path, checkpoint_interval=0) as trail:
        assert 0 == trail.record(make_event(0))
        assert 1 == trail.record(make_event(1))
        assert eventually(lambda: trail.signing_status().degraded)
        status = trail.signing_status()
        assert (True, 2, -1) == (status.since is not None, status.signed, status.kept)
        reason = status.reason or ""
        assert (True, True) == (str(path) in reason, "Not a directory" in reason), reason
        time.sleep(1.0)  # a few retries, all failing
        degraded = [r for r in caplog.records if "degraded" in r.getMessage()]
        assert [(None, False)] == [(r.exc_info, "\n" in r.getMessage()) for r in degraded]
        blocker.unlink()
        assert eventually(lambda: not trail.signing_status().degraded)
        assert 2 == kept_size(CheckpointFile(path).read())
        assert any("recovered" in r.getMessage() for r in caplog.records)
        assert 2 == trail.record(make_event(2))
    assert 3 == kept_size(CheckpointFile(path).read())


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A tiny tmpfs filled up to the last byte (needs the right to mount: skipped otherwise)."""
    mount = tmp_path / "small"
    mount.mkdir()
    mount_exe, umount_exe = shutil.which("mount"), shutil.which("umount")
    if mount_exe is None or umount_exe is None:
        pytest.skip("no mount command here")
    done = subprocess.run(
        [mount_exe, "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run([umount_exe, str(mount)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 512)
        except OSError:
            pass
    return filler


def test_full_disk_fails_the_kept_write_and_leaves_no_temporary_file(paths: tuple[Path, Path], full_disk: Path) -> None:
    db, key = paths
    with graven.open(db, signing_key=key) as trail:
        note = trail.latest_checkpoint()
    assert note is not None
    path = full_disk / "kept.checkpoint"
    filler = fill(full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        CheckpointFile(path).push(note)
    assert [] == list(full_disk.glob("*.tmp"))
    with graven.open(db, signing_key=key, witness=path, checkpoint_interval=0) as trail:
        assert 0 == trail.record(make_event(0))  # the entry is committed; keeping it waits for space
        assert eventually(lambda: trail.signing_status().degraded)
        assert "No space left on device" in (trail.signing_status().reason or "")
        assert [] == list(full_disk.glob("*.tmp"))
        filler.unlink()
        assert eventually(lambda: not trail.signing_status().degraded)
    assert 1 == kept_size(CheckpointFile(path).read())
    assert [] == list(full_disk.glob("*.tmp"))


def test_service_answers_201_while_signing_is_degraded_and_readyz_says_so(
    paths: tuple[Path, Path], tmp_path: Path
) -> None:
    """Over HTTP: the write is 201 with its index; /readyz is 503 naming the failing check (and
    nothing else) until the kept checkpoint catches up; /healthz needs no credentials."""
    db, key = paths
    blocker, path = blocked_kept(tmp_path)
    trail = graven.open(db, signing_key=key, witness=path, checkpoint_interval=0)
    app = create_app(trail, ServerConfig(secret=b"test-server-secret-0123456789abcdef", tail_poll=0.05))
    try:
        with TestClient(app) as client:
            writer = app.state.graven.accounts.create_key("w", "writer", by=By({"type": "system", "id": "t"}, "cli"))[1]
            assert {"status": "ok"} == client.get("/healthz").json()
            response = client.post("/api/v1/events", json={"action": "user.login", "actor": "u-1"},
                                   headers={"Authorization": f"Bearer {writer}"})  # fmt: skip
            assert 201 == response.status_code, response.text
            index = response.json()["indices"][0]
            assert index == trail.size - 1
            assert eventually(lambda: client.get("/readyz").status_code == 503)
            ready = client.get("/readyz")
            assert {"status": "not ready", "failing": ["signing"]} == ready.json()
            assert "blocker" not in ready.text
            assert 200 == client.get("/healthz").status_code
            blocker.unlink()
            assert eventually(lambda: client.get("/readyz").status_code == 200)
            assert kept_size(CheckpointFile(path).read()) >= index + 1
    finally:
        trail.close()


def test_readyz_fails_when_the_newest_checkpoint_lags_beyond_its_bound(paths: tuple[Path, Path]) -> None:
    """Entries no checkpoint covered for longer than the bound (here written long ago by a writer
    without the key) make the service not ready, until a checkpoint covers them."""
    db, key = paths
    unsigned = Trail(open_store(db), clock=lambda: datetime(2020, 1, 1, tzinfo=UTC))
    unsigned.record(make_event(0))
    unsigned.close()
    with graven.open(db, signing_key=key) as trail:
        assert ["checkpoint"] == failing_checks(trail)
        trail.checkpoint()
        assert [] == failing_checks(trail)


# --- verify reports the kept checkpoint -----------------------------------------------------------------


def run(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_")}
    done = subprocess.run(
        [EXE, *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    assert ("Traceback" in done.stderr, "internal error" in done.stderr) == (False, False), done.stderr
    return done


def test_verify_warns_when_the_kept_checkpoint_is_missing_or_behind(tmp_path: Path) -> None:
    assert 0 == run(tmp_path, "init").returncode
    kept_file = tmp_path / ".graven" / "signing.key.checkpoint"
    old = kept_file.read_text()
    assert 0 == run(tmp_path, "record", "--action", "a.b", "--actor", "u-1").returncode
    clean = run(tmp_path, "verify")
    assert (0, "") == (clean.returncode, clean.stderr)
    kept_file.write_text(old)
    behind = run(tmp_path, "verify")
    assert 0 == behind.returncode
    kept_path = ".graven/signing.key.checkpoint"
    assert (
        f"warning: the checkpoint kept in {kept_path} (size 0) is behind the newest signed one (size 1)"
        in behind.stderr
    )
    kept_file.unlink()
    missing = run(tmp_path, "verify", "--json")
    assert 0 == missing.returncode
    report = orjson.loads(missing.stdout)
    assert report["ok"]
    assert f"no checkpoint is kept in {kept_path}" in report["warnings"][0]


# --- item: unreadable keys, and a missing default key ----------------------------------------------------


def bad_key(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.key"
    if kind == "random":
        path.write_bytes(bytes([0xD8, 0x00, 0xFF, 0x80]) + os.urandom(60))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "garbage":
        path.write_text("hello\nworld\n")
    return path


KINDS = ("random", "empty", "directory", "garbage")
WHAT = {"random": "binary data", "empty": "is empty", "directory": "is a directory", "garbage": "not a"}


@pytest.mark.parametrize("kind", KINDS)
def test_every_unusable_key_is_one_clear_line_through_the_cli(tmp_path: Path, kind: str) -> None:
    assert 0 == run(tmp_path, "init").returncode
    path = bad_key(tmp_path, kind)
    for args in (
        ("record", "--signing-key", path.name, "--action", "a.b", "--actor", "u-1"),
        ("verify", "--key", path.name),
        ("witness", "serve", "--key", path.name, "--state", "ws", "--log", run(tmp_path, "key").stdout.strip()),
        ("verify", "--witness-key", path.name),
    ):
        done = run(tmp_path, *args)
        assert 2 == done.returncode, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert [(True, True)] == [(path.name in line, WHAT[kind] in line) for line in lines], (args, lines)
    assert "" == run(tmp_path, "log", "--json").stdout  # nothing was written


@pytest.mark.parametrize("kind", KINDS)
def test_every_unusable_key_is_a_config_error_in_the_library(tmp_path: Path, kind: str) -> None:
    path = bad_key(tmp_path, kind)
    loaders: list[Callable[[], object]] = [
        lambda: load_signing_key(path),
        lambda: load_verifier(path),
        lambda: load_cosigner_key(path),
        lambda: load_cosigner_verifier(str(path)),
        lambda: load_log_verifier(str(path)),
    ]
    for load in loaders:
        with pytest.raises(ConfigError) as error:
            load()
        message = str(error.value)
        assert (True, False, True) == (str(path) in message, "\n" in message, WHAT[kind] in message), message
    db = tmp_path / "trail.db"
    graven.init(db, signing_key=tmp_path / "good.key").close()
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        graven.open(db, signing_key=path)


def test_garbage_subject_key_store_and_fingerprint_key_are_one_line(tmp_path: Path) -> None:
    path = bad_key(tmp_path, "random")
    with pytest.raises(ConfigError, match=re.escape(f"cannot open the subject key store {path}")):
        SubjectKeys(path)
    directory = bad_key(tmp_path, "directory")
    db = tmp_path / "trail.db"
    graven.init(db, signing_key=tmp_path / "good.key").close()
    with pytest.raises(ConfigError, match=re.escape(f"cannot read fingerprint key {directory}")):
        graven.open(db, signing_key=tmp_path / "good.key", fingerprint_key=directory)


def test_a_signing_key_given_as_verifier_is_refused_without_showing_it(tmp_path: Path) -> None:
    key = tmp_path / "signing.key"
    graven.init(tmp_path / "trail.db", signing_key=key).close()
    with pytest.raises(ConfigError, match="private signing key, not a verifier key") as error:
        load_verifier(key)
    assert "PRIVATE" not in str(error.value)


def test_missing_default_key_refuses_writes_but_not_reads_or_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the default key gone, `record` must not write entries no checkpoint will ever cover."""
    assert 0 == run(tmp_path, "init").returncode
    assert 0 == run(tmp_path, "record", "--action", "a.b", "--actor", "u-1").returncode
    vkey = run(tmp_path, "key").stdout.strip()
    shutil.move(tmp_path / ".graven" / "signing.key", tmp_path / "elsewhere.key")
    refused = run(tmp_path, "record", "--action", "a.b", "--actor", "u-2")
    assert 2 == refused.returncode
    lines = refused.stderr.strip().splitlines()
    assert [(True, True)] == [("signing key" in line, "missing" in line) for line in lines], lines
    refused = run(tmp_path, "record", "-", stdin='{"action": "a.b", "actor": "u-3"}')
    assert 2 == refused.returncode
    assert 1 == len(run(tmp_path, "log", "--json").stdout.splitlines())
    assert 0 == run(tmp_path, "verify", "--key", vkey).returncode
    assert (
        0 == run(tmp_path, "--signing-key", "elsewhere.key", "record", "--action", "a.b", "--actor", "u-4").returncode
    )
    monkeypatch.chdir(tmp_path)
    for name in ("GRAVEN_DB", "GRAVEN_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    with graven.open() as trail:
        with pytest.raises(ConfigError, match="refusing to write: the signing key"):
            trail.record(make_event(0))
        assert 2 == trail.size
        assert "u-1" == trail.get(0).data["actor"]["id"]


def test_cli_record_prints_the_index_when_the_checkpoint_cannot_be_kept(tmp_path: Path) -> None:
    """The CLI does not fail a committed write: it prints the index (exit 0) and says why the
    checkpoint could not be kept; verify then warns that the kept checkpoint is behind."""
    assert 0 == run(tmp_path, "init").returncode
    lock = tmp_path / ".graven" / "signing.key.checkpoint.lock"
    lock.unlink()
    lock.mkdir()  # the kept checkpoint's lock cannot be opened: keeping fails (root included)
    done = run(tmp_path, "record", "--action", "a.b", "--actor", "u-1")
    assert (0, "0") == (done.returncode, done.stdout.strip()), done.stderr
    assert "checkpoint signing degraded: cannot keep the newest checkpoint" in done.stderr
    assert "Is a directory" in done.stderr
    behind = run(tmp_path, "verify")
    assert 0 == behind.returncode
    assert "warning: the checkpoint kept in" in behind.stderr
    lock.rmdir()
    assert 0 == run(tmp_path, "record", "--action", "a.b", "--actor", "u-2").returncode
    assert (0, "") == (run(tmp_path, "verify").returncode, run(tmp_path, "verify").stderr)
