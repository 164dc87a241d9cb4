"""Files that hold a log, its keys, its accounts or a witness's state are the owner's alone.

Created under the common umask 022 (which left them 0644 in 0755 folders): folders 0700, files
0600, the SQLite ``-wal``, ``-shm`` and ``-journal`` files included. Existing ones keep their mode
and ``graven verify`` warns about them.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import graven
from graven.server.accounts.sqlite import SQLiteAccounts
from graven.server.credentials import load_secret
from graven.subject_keys import SubjectKeys
from graven.web import Sandbox
from graven.witnessing import WitnessState
from graven.witnessing.keys import create_cosigner_key

GRAVEN = Path(sys.executable).parent / "graven"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def assert_private(*paths: Path) -> None:
    for path in paths:
        assert path.exists(), path
        wanted = 0o700 if path.is_dir() else 0o600
        assert wanted == mode(path), f"{path}: {mode(path):04o}"


def test_new_log_its_folders_and_its_key(tmp_path: Path) -> None:
    """Every folder made on the way (not only the last), the database, its -wal and -shm, the key."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    db = shared / "a" / "b" / "trail.db"
    key = shared / "keys" / "signing.key"
    with graven.init(db, signing_key=key) as trail:
        trail.record({"action": "file.delete", "actor": "u-1"})
        trail.checkpoint()
        assert_private(shared / "a", db.parent, db, db.with_name("trail.db-wal"), db.with_name("trail.db-shm"))
        assert_private(key.parent, key, key.with_name("signing.key.checkpoint"))
        assert_private(key.with_name("signing.key.checkpoint.lock"))
    assert 0o755 == mode(shared)  # what existed is not touched


def test_default_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``.graven/`` made by a bare ``graven init``."""
    monkeypatch.chdir(tmp_path)
    for name in ("GRAVEN_DB", "GRAVEN_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    graven.init().close()
    folder = tmp_path / ".graven"
    assert_private(folder, folder / "trail.db", folder / "signing.key")


def test_subject_keys_and_their_journal(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "subject-keys.db"
    keys = SubjectKeys(path)
    try:
        keys.key_for("customer:c-1")
        keys.destroy("customer:c-1")
        journal = path.with_name("subject-keys.db-journal")
        assert_private(path.parent, path, *([journal] if journal.exists() else []))
    finally:
        keys.close()


def test_accounts_database(tmp_path: Path) -> None:
    """The accounts' tables (password hashes) live in the log's file; on their own they are 0600 too."""
    path = tmp_path / "accounts.db"
    accounts = SQLiteAccounts(path)
    accounts.close()
    assert_private(path)


def test_server_secret(tmp_path: Path) -> None:
    path = tmp_path / "srv" / "secret"
    load_secret(path)
    assert_private(path.parent, path)


def test_witness_state_and_key(tmp_path: Path) -> None:
    folder = tmp_path / "witness" / "state"
    state = WitnessState(folder)
    with state.transaction("example.com/log"):
        state.write("example.com/log", "note\n")
    assert state.keep_evidence("a-fork", b"body", max_files=10, max_bytes=1000)
    evidence = state.evidence_folder / "a-fork.txt"
    (tmp_path / "wkeys").mkdir(mode=0o700)
    create_cosigner_key(tmp_path / "wkeys" / "witness.key", "witness.example/w1")
    assert_private(tmp_path / "witness", folder, state.path("example.com/log"), evidence.parent, evidence)
    assert_private(*[p for p in folder.iterdir() if p.is_file()])
    assert_private(tmp_path / "wkeys", tmp_path / "wkeys" / "witness.key")


def test_demo_log(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "demo")
    try:
        folder = box.folder
        assert_private(tmp_path / "demo", folder, folder / "trail.db", folder / "trail.db-wal", folder / "signing.key")
    finally:
        box.close()


def test_existing_files_keep_their_mode_and_verify_warns(tmp_path: Path) -> None:
    """Nothing is chmod-ed behind the owner's back; ``graven verify`` names each loose file, still exits 0."""
    folder = tmp_path / "old"
    folder.mkdir(mode=0o755)
    db, key = folder / "trail.db", folder / "signing.key"
    graven.init(db, signing_key=key).close()
    assert 0o755 == mode(folder)
    db.chmod(0o644)
    done = subprocess.run(
        [GRAVEN, "--db", str(db), "--signing-key", str(key), "verify"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    assert 0o644 == mode(db)
    assert [f"warning: {db} has mode 0644: other users of this machine can read it; chmod 600 {db}"] == [
        line for line in done.stderr.splitlines() if line.startswith("warning:")
    ]
    db.chmod(0o600)
    quiet = subprocess.run([GRAVEN, "--db", str(db), "--signing-key", str(key), "verify"],
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert "warning" not in quiet.stderr
