"""The graven command, run as a user would: output, exit codes and one-line errors."""

from __future__ import annotations

import base64
import io
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import orjson
import pytest

from graven import cli
from graven.core import canonical, merkle
from graven.core.note import Checkpoint, Signer, Verifier, open_checkpoint


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


@pytest.fixture
def graven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run `graven ARGS` in-process in a fresh folder; returns code, stdout and stderr."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRAVEN_DB", raising=False)
    monkeypatch.delenv("GRAVEN_SIGNING_KEY", raising=False)
    monkeypatch.delenv("GRAVEN_ACTOR", raising=False)

    def run(*args: str, stdin: str = "") -> Result:
        monkeypatch.setattr(sys, "argv", ["graven", *args])
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return Result(int(exit_info.value.code or 0), captured.out, captured.err)

    return run


def record_story(graven) -> None:  # type: ignore[no-untyped-def]
    assert 0 == graven("init").code
    assert (
        0
        == graven(
            "record",
            "--action",
            "session.login",
            "--actor",
            "c-1042",
            "--target",
            "customer:c-1042",
            "--ip",
            "203.0.113.45",
        ).code
    )
    events = [
        {
            "actor": {"type": "user", "id": "u-17", "name": "Dana"},
            "action": "user.password.change",
            "targets": [{"type": "customer", "id": "c-1042"}],
            "reason": "ticket SUP-2231",
            "changes": [{"field": "password", "redacted": True}],
            "source": "web",
        },
        {
            "actor": {"type": "user", "id": "u-17"},
            "action": "customer.update",
            "targets": [{"type": "customer", "id": "c-1042"}],
            "changes": [{"field": "email", "old": "ada@example.com", "new": "ada@evil.example"}],
        },
    ]
    result = graven("record", "-", stdin="\n".join(orjson.dumps(e).decode() for e in events))
    assert (0, ["1", "2"]) == (result.code, result.lines)


class TestInitAndRecord:
    def test_init_creates_log_and_private_key(self, graven, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        """init creates .graven/trail.db and a 0600 key file apart from it, and prints the verifier key."""
        result = graven("init")
        assert 0 == result.code
        assert 0o600 == os.stat(tmp_path / ".graven" / "signing.key").st_mode & 0o777
        verifier = result.lines[-1].split()[-1]
        Verifier.from_text(verifier)
        assert 0 == graven("init").code  # idempotent

    def test_record_from_flags(self, graven) -> None:  # type: ignore[no-untyped-def]
        """Flags become one event; the assigned index is printed."""
        graven("init")
        result = graven(
            "record",
            "--action",
            "file.delete",
            "--actor",
            "service:billing",
            "--target",
            "file:f-1",
            "--change",
            "size",
            "10",
            "0",
            "--redacted",
            "token",
            "--context",
            "request_id=r-1",
            "--metadata",
            '{"n": 1}',
            "--outcome",
            "denied",
            "--reason",
            "no permission",
        )
        assert (0, ["0"]) == (result.code, result.lines)
        shown = orjson.loads(graven("show", "0", "--json").out)
        assert {"type": "service", "id": "billing"} == shown["actor"]
        assert [{"field": "size", "old": "10", "new": "0"}, {"field": "token", "redacted": True}] == shown["changes"]
        assert ("denied", "cli", {"request_id": "r-1"}) == (shown["outcome"], shown["source"], shown["context"])

    def test_actor_from_environment(self, graven, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
        """GRAVEN_ACTOR names the actor when --actor is not given."""
        graven("init")
        monkeypatch.setenv("GRAVEN_ACTOR", "system:nightly-job")
        graven("record", "--action", "report.export")
        assert {"type": "system", "id": "nightly-job"} == orjson.loads(graven("show", "0", "--json").out)["actor"]

    def test_record_json_array_and_object(self, graven) -> None:  # type: ignore[no-untyped-def]
        """stdin may hold one object or an array of them."""
        graven("init")
        one = {"actor": "u-1", "action": "a.b"}
        assert ["0"] == graven("record", "-", stdin=orjson.dumps(one).decode()).lines
        assert ["1", "2"] == graven(
            "record", "-", stdin=orjson.dumps([one | {"id": "x"}, one | {"id": "y"}]).decode()
        ).lines
        assert ["1"] == graven("record", "-", stdin=orjson.dumps(one | {"id": "x"}).decode()).lines  # idempotent

    def test_bad_line_writes_nothing(self, graven) -> None:  # type: ignore[no-untyped-def]
        """One invalid event in JSON Lines rejects the whole batch with one line naming it."""
        graven("init")
        lines = '{"actor": "u-1", "action": "a.b"}\n{"actor": "u-1", "action": "a.b", "outcome": "meh"}\n'
        result = graven("record", "-", stdin=lines)
        assert 2 == result.code
        assert [
            "graven: events[1].outcome: must be one of success, denied, failure; got 'meh'"
        ] == result.err.splitlines()
        assert "" == graven("log", "--json").out

    @pytest.mark.parametrize(
        ("args", "stdin", "message"),
        [
            (("record",), "", "--action is required"),
            (("record", "--action", "a.b"), "", "--actor is required"),
            (("record", "--action", "a.b", "--actor", "u", "--target", "nocolon"), "", "--target: must be TYPE:ID"),
            (("record", "--action", "nodot", "--actor", "u"), "", "action: must be dotted words"),
            (
                ("record", "--action", "a.b", "--actor", "u", "--ip", "1.2.3"),
                "",
                "actor.ip: must be an IPv4 or IPv6 address; got '1.2.3'",
            ),
            (
                ("record", "--action", "a.b", "--actor", "u", "--metadata", "{nope"),
                "",
                "--metadata: must be a JSON object",
            ),
            (
                ("record", "--action", "a.b", "--actor", "u", "--occurred-at", "2026-01-01T00:00:00"),
                "",
                "occurred_at: must be timezone-aware",
            ),
            (("record", "-"), "{not json", "stdin line 1: must be one JSON object per line"),
            (("record", "-"), "   ", "stdin: must hold a JSON object"),
            (("record", "--action", "a.b", "--actor", "u", "--outcome", "meh"), "", "Invalid value for '--outcome'"),
            (("show", "7"), "", "no entry 7: the log has 0 entries"),
            (("show", "-1"), "", "-1"),
            (("log", "--since", "last week"), "", "since: must be an ISO 8601 timestamp"),
            (("verify", "--key", "garbage"), "", "neither a verifier key"),
            (("verify", "--bundle", "nothing.json"), "", "--bundle needs --key"),
            (("--db", "sqlite://x/y.db", "log"), "", "malformed SQLite URL"),
            (("--db", "nowhere/x.db", "log"), "", "folder nowhere does not exist"),
            (("nosuchcommand",), "", "No such command"),
            (("show", "99999999999999999999999"), "", "is not in the range"),
            (("log", "--after", "99999999999999999999999"), "", "is not in the range"),
            (("--db", ".", "log"), "", "cannot open the log file"),
        ],
    )
    def test_bad_input_is_one_line(self, graven, args: tuple[str, ...], stdin: str, message: str) -> None:  # type: ignore[no-untyped-def]
        """Bad input gets one clear line on stderr, exit code 2, and no traceback."""
        graven("init")
        result = graven(*args, stdin=stdin)
        assert 2 == result.code
        assert 1 == len(result.err.strip().splitlines()), result.err
        assert message in result.err

    def test_uninitialised_log(self, graven) -> None:  # type: ignore[no-untyped-def]
        """Reading a log that was never created says how to create it."""
        result = graven("log")
        assert 2 == result.code
        assert "graven init" in result.err


class TestReadAndVerify:
    def test_log_table_and_show_diff(self, graven) -> None:  # type: ignore[no-untyped-def]
        """log prints a table; show prints the change as a diff with the secret hidden."""
        record_story(graven)
        table = graven("log", "--target", "customer:c-1042").out
        assert "user.password.change" in table
        assert "hidden" in table
        shown = graven("show", "2").out
        assert "- ada@example.com" in shown
        assert "+ ada@evil.example" in shown
        assert "changed (value redacted)" in graven("show", "1").out

    def test_log_json_is_enough_to_verify_independently(self, graven, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        """From `log --json` and `checkpoint` alone a stranger rebuilds the leaves and the signed root."""
        record_story(graven)
        lines = [orjson.loads(line) for line in graven("log", "--json").lines]
        assert [0, 1, 2] == [e["index"] for e in lines]
        leaves = [canonical.encode_reference({k: v for k, v in e.items() if k != "index"}) for e in lines]
        conn = sqlite3.connect(tmp_path / ".graven" / "trail.db")
        assert [r[0].encode() for r in conn.execute("SELECT body FROM entries ORDER BY idx")] == leaves
        note = graven("checkpoint").out
        verifier = Verifier.from_text(graven("key").out.strip())
        checkpoint, _ = open_checkpoint(note, [verifier])
        assert 3 == checkpoint.size
        assert merkle.root_of([merkle.leaf_hash(leaf) for leaf in leaves]) == checkpoint.root_hash

    def test_log_filters_and_limit(self, graven) -> None:  # type: ignore[no-untyped-def]
        """Filters and --limit narrow the JSON Lines output."""
        record_story(graven)
        assert [1, 2] == [orjson.loads(x)["index"] for x in graven("log", "--json", "--actor", "u-17").lines]
        assert [2] == [
            orjson.loads(x)["index"] for x in graven("log", "--json", "--newest-first", "--limit", "1").lines
        ]
        assert [1] == [orjson.loads(x)["index"] for x in graven("log", "--json", "--action", "user.*").lines]

    def test_verify_exit_codes(self, graven, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        """verify exits 0 when intact and 1 with the first bad index and kind when tampered."""
        record_story(graven)
        ok = graven("verify", "--json")
        assert 0 == ok.code
        assert {"ok": True, "first_bad_index": None, "kind": None} == {
            k: orjson.loads(ok.out)[k] for k in ("ok", "first_bad_index", "kind")
        }
        conn = sqlite3.connect(tmp_path / ".graven" / "trail.db", isolation_level=None)
        conn.execute("DROP TRIGGER entries_no_update")
        conn.execute("UPDATE entries SET body = replace(body, 'ticket SUP-2231', 'customer request') WHERE idx = 1")
        bad = graven("verify", "--json")
        assert 1 == bad.code
        report = orjson.loads(bad.out)
        assert (False, 1, "modified") == (report["ok"], report["first_bad_index"], report["kind"])
        assert "Entry 1 was modified" in report["message"]
        human = graven("verify")
        assert 1 == human.code
        assert "first bad index 1 (modified)" in human.err

    def test_verify_with_pinned_key(self, graven) -> None:  # type: ignore[no-untyped-def]
        """A pinned key that did not sign the log makes verify report a fork."""
        record_story(graven)
        key = graven("key").out.strip()
        assert 0 == graven("verify", "--key", key).code
        stranger = Signer.generate("x.example/log").verifier().to_text()
        result = graven("verify", "--json", "--key", stranger)
        assert (1, "forked") == (result.code, orjson.loads(result.out)["kind"])

    def test_prove_and_check_bundle_offline(self, graven, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        """prove writes a bundle that verify --bundle checks with the public key alone."""
        record_story(graven)
        assert 0 == graven("prove", "1", "-o", "b.json").code
        bundle = orjson.loads((tmp_path / "b.json").read_bytes())
        assert {"entry", "tree_size", "inclusion_proof", "checkpoint"} == set(bundle)
        assert all(len(base64.b64decode(h)) == 32 for h in bundle["inclusion_proof"])
        Checkpoint.parse(bundle["checkpoint"].split("\n\n")[0] + "\n")
        key = graven("key").out.strip()
        (tmp_path / "key.pub").write_text(key)
        (tmp_path / ".graven" / "trail.db").rename(tmp_path / "gone.db")  # no database needed
        good = graven("verify", "--bundle", "b.json", "--key", "key.pub")
        assert (0, True) == (good.code, good.out.startswith("OK"))
        bundle["entry"]["reason"] = "nothing to see"
        (tmp_path / "bad.json").write_bytes(orjson.dumps(bundle))
        bad = graven("verify", "--bundle", "bad.json", "--key", key)
        assert 1 == bad.code
        assert "proof fails" in bad.err

    def test_every_command_has_help(self) -> None:
        """Every command documents itself."""
        for name, command in cli.cli.commands.items():
            assert command.help, name
            assert isinstance(command, click.Command)


@pytest.mark.slow
def test_demo_walkthrough_end_to_end(tmp_path: Path) -> None:
    """The README's story runs through the real CLI (demo --story): timeline, answer, proof, verification."""
    exe = Path(sys.executable).with_name("graven")
    demo = subprocess.run(
        [exe, "demo", "--story", "--dir", "d"], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert 0 == demo.returncode, demo.stderr
    for phrase in (
        "user.password.change",
        "Dana Reyes",
        "198.51.100.23",
        "ticket SUP-2231",
        "admin password reset",
        "OK  The log is intact",
    ):
        assert phrase in demo.stdout
    base = [exe, "--db", "d/trail.db", "--signing-key", "d/signing.key"]
    history = subprocess.run(
        [*base, "log", "--json", "--target", "customer:c-1042", "--action", "user.password.change"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    entry = orjson.loads(history.stdout)
    assert ("u-17", "198.51.100.23", "web") == (entry["actor"]["id"], entry["actor"]["ip"], entry["source"])
    assert [{"field": "password", "redacted": True}] == entry["changes"]
    verify = subprocess.run([*base, "verify"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert 0 == verify.returncode
