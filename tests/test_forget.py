"""Forgetting a data subject: its personal values read as erased, the log still verifies."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import graven
from graven.core.bundle import verify_bundle
from graven.core.note import Verifier
from graven.core.shredding import ERASED, PersonalData
from graven.errors import ConfigError, ValidationError
from graven.opening import open_trail
from graven.subject_keys import SubjectKeys
from graven.trail import Trail
from tests.pgserver import Server

ADA = ("customer", "c-1042")


def personal_trail(url: str | Path, tmp_path: Path) -> Trail:
    graven.init(url, signing_key=tmp_path / "signing.key").close()
    return open_trail(
        url, signing_key=tmp_path / "signing.key", personal=PersonalData(), subject_keys=tmp_path / "keys.db"
    )


def record_ada(trail: Trail) -> int:
    return trail.record(
        actor={"type": "user", "id": "u-17", "name": "Dana Reyes"},
        action="customer.update",
        targets=[{"type": "customer", "id": "c-1042", "name": "Ada Lovelace"}],
        changes=[
            {"field": "email", "old": "ada@old.example", "new": "ada@new.example"},
            {"field": "password", "old": "hunter2", "new": "s3cret!"},
            {"field": "credit_limit", "old": 100, "new": 500},
        ],
        reason="ticket 311",
    )


def check_forgetting(trail: Trail) -> None:
    index = record_ada(trail)
    stored = trail.store.entry(index)
    assert stored is not None
    for secret in (b"ada@old.example", b"ada@new.example", b"Ada Lovelace", b"hunter2"):
        assert secret not in stored
    entry = trail.get(index)
    assert {"field": "email", "old": "ada@old.example", "new": "ada@new.example"} == entry.changes[0]
    assert {"field": "password", "redacted": True} == entry.changes[1]
    assert "Ada Lovelace" == entry.targets[0]["name"]

    forget_index = trail.forget("customer:c-1042", reason="erasure request 7", actor="u-dpo")
    entry = trail.get(index)
    assert {"field": "email", "old": ERASED, "new": ERASED, "erased": True} == entry.changes[0]
    assert {"field": "credit_limit", "old": 100, "new": 500} == entry.changes[2]
    assert ERASED == entry.targets[0]["name"]
    assert "Dana Reyes" == entry.actor["name"]  # not a data subject of this entry's forgetting
    forgot = trail.get(forget_index)
    assert ("subject.forget", "success", "erasure request 7") == (forgot.action, forgot.outcome, forgot.get("reason"))
    assert "u-dpo" == forgot.actor["id"]
    assert [{"type": "customer", "id": "c-1042"}] == forgot.targets
    assert {"keys_destroyed": 1} == forgot.get("metadata")
    assert trail.store.entry(index) == stored  # the stored bytes never changed
    report = trail.verify()
    assert report.ok, report.problems
    assert [forget_index] == [e.index for e in trail.query(action="subject.forget")]

    # The bundle carries the entry as stored (sealed), so it still proves against the checkpoint.
    trail.checkpoint()
    bundle = trail.prove(index)
    verify_bundle(bundle, [Verifier.from_text(trail.verifier_key)])
    assert b"ada@new.example" not in orjson.dumps(bundle)

    # The customer comes back: new values get a new key, old ones stay erased.
    later = trail.record(action="customer.update", actor="u-17", targets=[ADA],
                         changes=[{"field": "email", "old": None, "new": "ada@back.example"}])  # fmt: skip
    assert "ada@back.example" == trail.get(later).changes[0]["new"]
    assert ERASED == trail.get(index).changes[0]["new"]


def test_forget_on_sqlite(tmp_path: Path) -> None:
    with personal_trail(tmp_path / "trail.db", tmp_path) as trail:
        check_forgetting(trail)


def test_forget_on_postgres(pg: Server, tmp_path: Path) -> None:
    with personal_trail(pg.schema_url("forget"), tmp_path) as trail:
        check_forgetting(trail)


def test_the_destroyed_key_is_gone_from_the_key_file(tmp_path: Path) -> None:
    keys = SubjectKeys(tmp_path / "keys.db")
    key = keys.key_for("customer:c-9")
    assert key == keys.key_for("customer:c-9")
    assert 1 == keys.destroy("customer:c-9")
    assert keys.lookup("customer:c-9", key.key_id) is None
    assert keys.is_forgotten("customer:c-9")
    keys.close()
    assert key.key not in (tmp_path / "keys.db").read_bytes()
    assert 0o600 == (tmp_path / "keys.db").stat().st_mode & 0o777
    with sqlite3.connect(tmp_path / "keys.db") as conn:
        assert [("customer:c-9", 1)] == conn.execute("SELECT subject, key_count FROM forgotten").fetchall()


def test_personal_data_without_a_subject_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with personal_trail(tmp_path / "trail.db", tmp_path) as trail:
        before = trail.size
        with pytest.raises(ValidationError, match=r"changes\[0\]\.new"):
            trail.record(action="file.rename", actor={"type": "service", "id": "billing"}, targets=[("file", "f-1")],
                         changes=[{"field": "email", "old": None, "new": "x@example.org"}])  # fmt: skip
        assert before == trail.size


def test_a_forgetting_that_cannot_be_recorded_destroys_nothing(tmp_path: Path) -> None:
    with personal_trail(tmp_path / "trail.db", tmp_path) as trail:
        index = record_ada(trail)
        with pytest.raises(ValidationError, match="actor"):
            trail.forget("customer:c-1042")  # no actor given, none in the context
        assert "ada@new.example" == trail.get(index).changes[0]["new"]


def test_bad_subjects_and_missing_key_store(trail: Trail) -> None:
    with pytest.raises(ConfigError, match="subject key store"):
        trail.forget("customer:c-1", actor="u-dpo")
    with pytest.raises(ValidationError, match="type:id"):
        trail.forget("c-1", actor="u-dpo")


def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    graven_bin = str(Path(sys.executable).with_name("graven"))
    full_env = {**os.environ, "GRAVEN_ACTOR": "u-dpo", **(env or {})}
    full_env.pop("GRAVEN_DB", None)
    full_env.pop("GRAVEN_SIGNING_KEY", None)
    return subprocess.run([graven_bin, *args], cwd=tmp_path, env=full_env, capture_output=True, text=True, check=False)


def test_cli_forget_end_to_end(tmp_path: Path) -> None:
    personal = {"GRAVEN_PERSONAL_FIELDS": "email,name", "GRAVEN_SUBJECT_TYPES": "customer"}
    assert 0 == cli(tmp_path, "init").returncode
    event = {"action": "customer.update", "actor": "u-17", "targets": [["customer", "c-1042", "Ada Lovelace"]],
             "changes": [{"field": "email", "old": "a@x.example", "new": "b@x.example"}]}  # fmt: skip
    recorded = subprocess.run(
        [str(Path(sys.executable).with_name("graven")), "record", "-"], input=orjson.dumps(event).decode(),
        cwd=tmp_path, env={**os.environ, **personal}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert 0 == recorded.returncode, recorded.stderr
    assert (tmp_path / ".graven" / "subject-keys.db").exists()
    assert b"b@x.example" not in (tmp_path / ".graven" / "trail.db").read_bytes()
    shown = cli(tmp_path, "show", "0", "--json")
    assert "b@x.example" in shown.stdout

    forgot = cli(tmp_path, "forget", "customer:c-1042", "--reason", "erasure request 7")
    assert 0 == forgot.returncode, forgot.stderr
    assert "forgot customer:c-1042 (1 key destroyed)" in forgot.stdout
    assert "recorded as entry 1" in forgot.stdout
    shown = orjson.loads(cli(tmp_path, "show", "0", "--json").stdout)
    assert {"field": "email", "old": ERASED, "new": ERASED, "erased": True} == shown["changes"][0]
    assert ERASED == shown["targets"][0]["name"]
    verify = cli(tmp_path, "verify")
    assert 0 == verify.returncode, verify.stdout + verify.stderr
    log = cli(tmp_path, "log", "--json", "--action", "subject.forget")
    logged = [orjson.loads(line) for line in log.stdout.splitlines()]
    assert [("u-dpo", "erasure request 7")] == [(e["actor"]["id"], e["reason"]) for e in logged]

    bad = cli(tmp_path, "forget", "c-1042")
    assert 2 == bad.returncode
    assert 1 == len(bad.stderr.strip().splitlines())
    assert "subject" in bad.stderr
    assert "type:id" in bad.stderr
    again = cli(tmp_path, "forget", "customer:c-1042")
    assert "(it had no key)" in again.stdout
