"""Key rotation and revocation on real logs (SQLite files and the real PostgreSQL server): a log
rotated twice verifies from scratch, old bundles keep checking, witnesses keep cosigning, a
revoked key's later checkpoints are reported and not trusted, and every refusal changes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import graven
from graven.core import merkle
from graven.core.key_history import KeyHistory
from graven.core.note import Checkpoint, CosignerKey, Signer, note_signatures, sign_note
from graven.errors import ConfigError, ValidationError
from graven.keys import load_history, load_signing_key, load_verifier
from graven.rotation import REVOKE_ACTION, ROTATE_ACTION, revoke_key, rotate_key
from graven.store import StoredCheckpoint, open_store
from graven.testing.store_contract import make_event
from graven.witnessing import WitnessService, WitnessState, encode_request
from graven.witnessing.keys import load_log_trust
from graven.witnessing.protocol import parse_request

EXE = Path(sys.executable).with_name("graven")


@pytest.fixture(params=["sqlite", "postgres"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """A new log (its URL) with its signing key in ``tmp_path/keys``, on each backend."""
    url = str(tmp_path / "trail.db") if request.param == "sqlite" else request.getfixturevalue("pg").schema_url("rot")
    key = tmp_path / "keys" / "signing.key"
    graven.init(url, signing_key=key).close()
    return url, key


def record(url: str, key: Path, count: int) -> None:
    """``count`` new entries (ids never seen before in this log)."""
    with graven.open(url, signing_key=key) as trail:
        trail.record_many(make_event(n) for n in range(trail.size * 100, trail.size * 100 + count))


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def snapshot(url: str, folder: Path) -> tuple[int, int, dict[str, str], dict[str, bytes]]:
    """What a refusal must leave alone: the log's size, checkpoints and settings, and every key file."""
    store = open_store(url)
    try:
        state = (store.size(), len(store.checkpoints()), store.settings())
    finally:
        store.close()
    files = {
        p.name: p.read_bytes() if p.is_file() else b"<dir>" for p in folder.iterdir() if not p.name.endswith(".lock")
    }
    return (*state, files)


class TestRotatedTwice:
    def test_verifies_from_scratch_with_the_history(self, log: tuple[str, Path]) -> None:
        """Two rotations, entries between them: a fresh open verifies intact with the history
        beside the key, and a verifier handed only the history file agrees."""
        url, key = log
        record(url, key, 5)
        first = rotate_key(url, signing_key=key, overlap=3)
        record(url, key, 7)
        second = rotate_key(url, signing_key=key, overlap=2)
        record(url, key, 4)
        history = load_history(key.with_name("signing.key.history"))
        assert [first.old_key, first.new_key, second.new_key] == [k.verifier.to_text() for k in history.keys]
        assert [(0, first.until), (first.start, second.until), (second.start, None)] == [
            (k.start, k.until) for k in history.keys
        ]
        with graven.open(url, signing_key=key) as trail:
            assert second.new_key == trail.verifier_key
            report = trail.verify()
            assert report.ok, report.message
            assert 3 == len(report.trusted_keys)
        with graven.Trail(open_store(url)) as reader:  # nothing but the database and the history file
            assert reader.verify(key=key.with_name("signing.key.history")).ok
            only_new = reader.verify(key=second.new_key)
            assert not only_new.ok  # the checkpoints before the second rotation are not the new key's
            assert "forked" == only_new.kind

    def test_rotation_entries_name_both_keys_and_overlap_checkpoints_carry_both(self, log: tuple[str, Path]) -> None:
        """The key.rotate entry names the old and new verifier keys; the checkpoint covering it has
        both signatures; after the overlap only the new key signs."""
        url, key = log
        record(url, key, 2)
        rotation = rotate_key(url, signing_key=key, overlap=2, reason="yearly rotation")
        with graven.open(url, signing_key=key) as trail:
            entry = trail.get(rotation.index)
            assert (ROTATE_ACTION, "yearly rotation") == (entry.data["action"], entry.data["reason"])
            assert {"old_key": rotation.old_key, "new_key": rotation.new_key, "overlap": 2} == entry.data["metadata"]
            covering = next(c for c in trail.store.checkpoints() if c.size == rotation.start)
            assert 2 == len(note_signatures(covering.note)[1])
            trail.record(make_event(100))
            trail.checkpoint()
            trail.record_many(make_event(n) for n in range(200, 203))
            trail.checkpoint()
            latest = trail.store.latest_checkpoint()
            assert latest is not None
            assert latest.size >= rotation.until
            assert 1 == len(note_signatures(latest.note)[1])

    def test_an_old_bundle_still_checks(self, log: tuple[str, Path], tmp_path: Path) -> None:
        """A bundle proved before both rotations checks with the history (and with the old key it
        was signed by); the CLI agrees."""
        url, key = log
        record(url, key, 4)
        with graven.open(url, signing_key=key) as trail:
            bundle = trail.prove(2)
            old_key = trail.verifier_key
        rotate_key(url, signing_key=key, overlap=1)
        record(url, key, 3)
        rotate_key(url, signing_key=key, overlap=1)
        history = load_history(key.with_name("signing.key.history"))
        assert graven.verify_bundle(bundle, history).ok
        assert graven.verify_bundle(bundle, [load_verifier(old_key)]).ok
        (tmp_path / "bundle.json").write_bytes(orjson.dumps(bundle))
        done = run("verify", "--bundle", "bundle.json", "--key", str(key) + ".history", cwd=tmp_path)
        assert (0, "") == (done.returncode, done.stderr)
        assert done.stdout.startswith("OK: entry 2 is included")


class TestWitness:
    def test_witness_keeps_cosigning_across_a_rotation(self, log: tuple[str, Path], tmp_path: Path) -> None:
        """A witness that knows only the old key cosigns during the overlap (both signatures), and
        refuses after it; given the history file it cosigns the new key's checkpoints."""
        url, key = log
        record(url, key, 3)
        with graven.open(url, signing_key=key) as trail:
            old = load_signing_key(key).verifier()
            first = trail.store.latest_checkpoint()
            assert first is not None
        only_old = WitnessService(_COSIGNER, [old], WitnessState(tmp_path / "w-old"))
        assert 200 == only_old.add_checkpoint(_request(0, first.note, [])).status
        rotation = rotate_key(url, signing_key=key, overlap=2)
        with graven.open(url, signing_key=key) as trail:
            during = next(c for c in trail.store.checkpoints() if c.size == rotation.start)
            reply = only_old.add_checkpoint(
                _request(first.size, during.note, trail.consistency(first.size, during.size))
            )
            assert 200 == reply.status, reply.body
            trail.record_many(make_event(n) for n in range(100, 104))
            trail.checkpoint()
            after = trail.store.latest_checkpoint()
            assert after is not None
            proof = trail.consistency(during.size, after.size)
        assert 403 == only_old.add_checkpoint(_request(during.size, after.note, proof)).status
        history_file = str(key) + ".history"
        updated = WitnessService(_COSIGNER, [load_log_trust(history_file)], WitnessState(tmp_path / "w-old"))
        assert 200 == updated.add_checkpoint(_request(during.size, after.note, proof)).status


_COSIGNER = CosignerKey.generate("witness.example/w")


def _request(old: int, note: str, proof: list[bytes]) -> bytes:
    body = encode_request(old, proof, note)
    parse_request(body)
    return body


class TestRevoke:
    def test_checkpoints_signed_after_the_revocation_point_are_reported(self, log: tuple[str, Path]) -> None:
        """After a revocation, a checkpoint the compromised key signs beyond the point (written into
        the database by whoever holds it) is reported and not trusted; bundles on it fail."""
        url, key = log
        record(url, key, 4)
        stolen = load_signing_key(key)
        rotation = rotate_key(url, signing_key=key, overlap=1)
        record(url, key, 3)
        index = revoke_key(f"{stolen.key_id:08x}", url, signing_key=key, start=rotation.start, reason="key leaked")
        with graven.open(url, signing_key=key, checkpoint_interval=3600) as trail:
            assert REVOKE_ACTION == trail.get(index).data["action"]
            trail.record(make_event(900))  # signed at once (the first write of this trail)
            trail.record(make_event(901))  # left for the background signer, an hour away
            size = trail.size
            forged = _signed_now(trail, stolen)
            with trail.store.write() as tx:
                tx.insert_checkpoint(StoredCheckpoint(size, forged))
            report = trail.verify()
            assert report.ok, report.message
            assert any(f"size {size}" in n and "not trusted" in n for n in report.notices)
            bundle = trail.prove(1)
        forged_bundle = {**bundle, "tree_size": size, "checkpoint": forged}
        history = load_history(key.with_name("signing.key.history"))
        assert "revoked from size" in graven.verify_bundle(forged_bundle, history).message

    def test_revoking_the_current_key_or_an_unknown_one_is_refused(self, log: tuple[str, Path]) -> None:
        """The key in use cannot be revoked (rotate first); an unknown key or a point before the
        key's first size is refused naming the field; nothing is recorded."""
        url, key = log
        record(url, key, 2)
        old = load_signing_key(key)
        rotation = rotate_key(url, signing_key=key, overlap=1)
        before = snapshot(url, key.parent)
        new_id = rotation.new_key.split("+")[1]
        with pytest.raises(ConfigError, match="rotate first"):
            revoke_key(new_id, url, signing_key=key, start=rotation.start)
        with pytest.raises(ValidationError, match=r"key: .*not in the key history"):
            revoke_key("0badc0de", url, signing_key=key, start=1)
        with pytest.raises(ValidationError, match="from: must be a tree size"):
            revoke_key(f"{old.key_id:08x}", url, signing_key=key, start=-1)
        assert before == snapshot(url, key.parent)


def _signed_now(trail: graven.Trail, signer: Signer) -> str:
    """A checkpoint of the current tree signed by ``signer`` alone (what a key thief could make)."""
    size = trail.size
    _, hashes = trail.store.tree_hashes(merkle.root_nodes(size))
    root = merkle.root_from(size, hashes)
    return sign_note(Checkpoint(trail.origin, size, root).to_text(), [signer])


class TestRefusals:
    @pytest.mark.parametrize("damage", ["binary", "missing", "directory", "other key"])
    def test_rotating_with_the_old_key_unreadable_changes_nothing(
        self, log: tuple[str, Path], tmp_path: Path, damage: str
    ) -> None:
        """`graven key rotate` without a usable current key: one line, exit 2, nothing changed."""
        url, key = log
        record(url, key, 2)
        key.rename(key.with_name("kept-aside"))
        if damage == "binary":
            key.write_bytes(b"\xff\xfe\x00garbage")
        elif damage == "directory":
            key.mkdir()
        elif damage == "other key":
            key.write_text(Signer.generate("graven.local/other").to_text() + "\n")
        before = snapshot(url, key.parent)
        done = run("--db", url, "--signing-key", str(key), "key", "rotate", cwd=tmp_path)
        assert 2 == done.returncode
        assert "" == done.stdout
        assert 1 == len(done.stderr.strip().splitlines()), done.stderr
        assert done.stderr.startswith("graven: ")
        assert before == snapshot(url, key.parent)

    def test_bad_overlap_is_refused_before_anything(self, log: tuple[str, Path], tmp_path: Path) -> None:
        """An overlap of 0 (no checkpoint would carry both keys) is refused naming the option."""
        url, key = log
        before = snapshot(url, key.parent)
        done = run("--db", url, "--signing-key", str(key), "key", "rotate", "--overlap", "0", cwd=tmp_path)
        assert 2 == done.returncode
        assert "--overlap" in done.stderr
        with pytest.raises(ValidationError, match="overlap"):
            rotate_key(url, signing_key=key, overlap=0)
        assert before == snapshot(url, key.parent)


class TestCommand:
    def test_key_and_key_show_print_the_current_key(self, log: tuple[str, Path], tmp_path: Path) -> None:
        """`graven key` keeps printing the verifier key; `key show` is the same; after `key rotate`
        both print the new key and `key history` lists both."""
        url, key = log
        common = ("--db", url, "--signing-key", str(key))
        plain, shown = run(*common, "key", cwd=tmp_path), run(*common, "key", "show", cwd=tmp_path)
        assert (0, 0) == (plain.returncode, shown.returncode)
        assert plain.stdout == shown.stdout
        done = run(*common, "key", "rotate", "--overlap", "5", "--json", cwd=tmp_path)
        assert 0 == done.returncode, done.stderr
        rotation = orjson.loads(done.stdout)
        assert plain.stdout.strip() == rotation["old_key"]
        assert rotation["new_key"] == run(*common, "key", cwd=tmp_path).stdout.strip()
        history = KeyHistory.parse(run(*common, "key", "history", cwd=tmp_path).stdout)
        assert [rotation["old_key"], rotation["new_key"]] == [k.verifier.to_text() for k in history.keys]
        assert 0 == run(*common, "verify", cwd=tmp_path).returncode
        retired = key.with_name(f"signing.key.{rotation['old_key'].split('+')[1]}")
        assert rotation["old_key"] == load_signing_key(retired).verifier().to_text()  # kept for its overlap


class TestHistoryAgainstTheLog:
    def test_a_key_slipped_into_the_history_is_reported(self, log: tuple[str, Path]) -> None:
        """A history naming a key no key.rotate entry announced (a history file edited by someone
        who wants their own key trusted) makes verification fail at that index."""
        url, key = log
        record(url, key, 3)
        rotate_key(url, signing_key=key, overlap=1)
        record(url, key, 2)
        history = load_history(key.with_name("signing.key.history"))
        intruder = Signer.generate(history.current.verifier.name)
        forged = history.rotated(intruder.verifier(), 5, 1)
        with graven.Trail(open_store(url)) as reader:
            assert reader.verify(key=history).ok
            report = reader.verify(key=forged)
        assert (False, 4, "key-history") == (report.ok, report.first_bad_index, report.kind)
        assert f"{intruder.key_id:08x}" in report.message


class TestRevokeCommand:
    def test_revoke_refusals_are_one_line(self, log: tuple[str, Path], tmp_path: Path) -> None:
        """`graven key revoke` of the key in use, of an unknown key, or without --from: one line, exit 2."""
        url, key = log
        common = ("--db", url, "--signing-key", str(key))
        rotated = run(*common, "key", "rotate", "--json", cwd=tmp_path)
        assert 0 == rotated.returncode, rotated.stderr
        new_id = orjson.loads(rotated.stdout)["new_key"].split("+")[1]
        for args, says in (
            ((new_id, "--from", "1"), "rotate first"),
            (("0badc0de", "--from", "1"), "not in the key history"),
            ((new_id,), "--from"),
        ):
            done = run(*common, "key", "revoke", *args, cwd=tmp_path)
            assert 2 == done.returncode
            assert 1 == len(done.stderr.strip().splitlines()), done.stderr
            assert says in done.stderr


class TestWitnessKeys:
    def test_a_witness_takes_a_history_file_whole(self, tmp_path: Path) -> None:
        """`--log FILE` with a key history gives the witness the history (every key with its sizes);
        a plain key (text or file) stays one key."""
        keys = [Signer.generate("example.org/log") for _ in range(3)]
        history = KeyHistory.single(keys[0].verifier()).rotated(keys[1].verifier(), 5, 2)
        history = history.rotated(keys[2].verifier(), 9, 2).revoked_from(f"{keys[0].key_id:08x}", 3)
        path = tmp_path / "keys.txt"
        path.write_text(history.to_text())
        assert history == load_log_trust(str(path))
        assert keys[0].verifier() == load_log_trust(keys[0].verifier().to_text())
        (tmp_path / "one.vkey").write_text(keys[2].verifier().to_text() + "\n")
        assert keys[2].verifier() == load_log_trust(str(tmp_path / "one.vkey"))

    def test_a_witness_holds_each_key_to_its_sizes(self, tmp_path: Path) -> None:
        """Given the history, the witness cosigns a retired key's checkpoints only below the end of
        its overlap and a revoked key's only below the revocation point; beyond, whoever holds the
        old key gets a 403 ``key-out-of-range`` and the checkpoint is kept as evidence."""
        keys = [Signer.generate("example.org/log") for _ in range(3)]
        history = KeyHistory.single(keys[0].verifier()).rotated(keys[1].verifier(), 4, 2)  # key 0: sizes < 6
        history = history.rotated(keys[2].verifier(), 8, 1).revoked_from(f"{keys[1].key_id:08x}", 7)  # key 1: 4..6
        tree = [merkle.leaf_hash(bytes([i])) for i in range(12)]

        def note(size: int, *signers: Signer) -> str:
            return sign_note(Checkpoint("example.org/log", size, merkle.root_of(tree[:size])).to_text(), signers)

        def ask(witness: WitnessService, old: int, size: int, *signers: Signer) -> tuple[int, str]:
            proof = merkle.consistency_proof_from_leaves(old, tree[:size]) if old else []
            reply = witness.add_checkpoint(_request(old, note(size, *signers), proof))
            return reply.status, reply.verdict.kind

        witness = WitnessService(_COSIGNER, [history], WitnessState(tmp_path / "w"))
        assert (200, "cosign") == ask(witness, 0, 5, keys[0])  # within the old key's overlap
        assert (403, "key-out-of-range") == ask(witness, 5, 6, keys[0])  # retired at 6
        assert (200, "cosign") == ask(witness, 5, 6, keys[1])
        assert (403, "key-out-of-range") == ask(witness, 6, 9, keys[1])  # revoked from 7
        assert (200, "cosign") == ask(witness, 6, 9, keys[1], keys[2])  # a valid signature beside it counts
        assert 9 == witness.state.known("example.org/log").size
        assert 2 == len(list((tmp_path / "w" / "evidence").iterdir()))
        plain = WitnessService(_COSIGNER, [keys[0].verifier()], WitnessState(tmp_path / "plain"))
        assert (200, "cosign") == ask(plain, 0, 11, keys[0])  # a plain key knows no sizes
        with pytest.raises(ConfigError, match="given twice"):
            WitnessService(_COSIGNER, [history, keys[2].verifier()], WitnessState(tmp_path / "x"))
