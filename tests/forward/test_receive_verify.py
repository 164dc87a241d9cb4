"""``graven receive verify``: a receiver's copy checked with nothing but the public key; the first
missing, altered or reordered index is named."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import graven
from graven.core.note import Verifier
from graven.forward.cursor import Cursors
from graven.forward.proofs import StreamReport, check_lines
from graven.forward.runner import Forwarder
from graven.trail import Trail
from tests.forward.helpers import Collecting, config, fill


def stream(trail: Trail, count: int = 12, batch: int = 5) -> list[bytes]:
    fill(trail, count)
    sink = Collecting()
    forwarder = Forwarder(trail, config(batch=batch), Cursors(trail.store), sink=sink)
    while forwarder.step():
        pass
    return sink.lines


def verify(trail: Trail, lines: list[bytes]) -> StreamReport:
    assert trail.signer is not None
    return check_lines(((line, f"line {n + 1}") for n, line in enumerate(lines)), [trail.signer.verifier()])


def entry_at(lines: list[bytes], index: int) -> int:
    return next(n for n, line in enumerate(lines) if orjson.loads(line).get("index") == index)


def test_an_intact_stream_verifies(trail: Trail) -> None:
    report = verify(trail, stream(trail))
    assert report.ok, report.message
    assert (0, 12, 12, 3) == (report.first, report.end, report.entries, report.proofs)


def test_a_resent_batch_is_an_explained_duplicate(trail: Trail) -> None:
    lines = stream(trail)
    resent = lines[:6] + lines[:6] + lines[6:]  # the first batch and its proof, delivered twice
    report = verify(trail, resent)
    assert report.ok, report.message
    assert 5 == report.duplicates


def test_a_missing_entry_is_named(trail: Trail) -> None:
    lines = stream(trail)
    del lines[entry_at(lines, 7)]
    report = verify(trail, lines)
    assert (7, "missing") == (report.problem.index, report.problem.kind) if report.problem else None


def test_a_missing_tail_before_its_proof_is_named(trail: Trail) -> None:
    lines = stream(trail)
    cut = entry_at(lines, 4)
    del lines[cut]  # entry 4 is the last of the first batch: the proof comes right after it
    report = verify(trail, lines)
    assert report.problem is not None
    assert (4, "missing") == (report.problem.index, report.problem.kind)


def test_an_altered_entry_is_named(trail: Trail) -> None:
    lines = stream(trail)
    at = entry_at(lines, 8)
    entry = orjson.loads(lines[at])
    entry["outcome"] = "denied"
    lines[at] = orjson.dumps(entry)
    report = verify(trail, lines)
    assert report.problem is not None
    assert (8, "altered") == (report.problem.index, report.problem.kind)


def test_an_altered_entry_with_a_recomputed_leaf_hash_fails_its_batch(trail: Trail) -> None:
    from graven.core import merkle
    from graven.forward.proofs import leaf_of

    lines = stream(trail)
    at = entry_at(lines, 8)
    entry = orjson.loads(lines[at])
    entry["actor"]["id"] = "someone-else"
    entry["leaf_hash"] = merkle.leaf_hash(leaf_of(entry)).hex()
    lines[at] = orjson.dumps(entry)
    report = verify(trail, lines)
    assert report.problem is not None
    assert ("altered", 5) == (report.problem.kind, report.problem.index)  # the batch 5..9 holding it
    assert "signed tree" in report.problem.message


def test_reordered_entries_are_named(trail: Trail) -> None:
    lines = stream(trail)
    a, b = entry_at(lines, 2), entry_at(lines, 3)
    lines[a], lines[b] = lines[b], lines[a]
    report = verify(trail, lines)
    assert report.problem is not None
    assert (2, "reordered") == (report.problem.index, report.problem.kind)


def test_a_duplicate_with_other_content_is_altered(trail: Trail) -> None:
    lines = stream(trail)
    copy = orjson.loads(lines[entry_at(lines, 1)])
    copy["reason"] = "inserted later"
    lines.append(orjson.dumps(copy))
    report = verify(trail, lines)
    assert report.problem is not None
    assert (1, "altered") == (report.problem.index, report.problem.kind)


def test_entries_after_the_last_proof_are_unproven(trail: Trail) -> None:
    lines = stream(trail)
    report = verify(trail, lines[:-1])  # the last proof line lost
    assert report.problem is not None
    assert (10, "unproven") == (report.problem.index, report.problem.kind)


def test_another_key_or_another_log_is_refused(trail: Trail, tmp_path: Path) -> None:
    lines = stream(trail)
    with graven.init(tmp_path / "other.db", signing_key=tmp_path / "other.key") as other:
        other_key = other.signer.verifier() if other.signer else None
        assert other_key is not None
        report = check_lines(((line, "x") for line in lines), [other_key])
        assert report.problem is not None
        assert "signature" == report.problem.kind
        # a proof from another log's stream spliced in: the roots do not match
        other_lines = stream(other)
    assert isinstance(other_key, Verifier)
    mixed = [*lines[:6], other_lines[11]]
    report = verify(trail, mixed)
    assert report.problem is not None
    assert report.problem.kind in ("signature", "missing")


def test_a_rewritten_history_is_a_fork(trail: Trail, tmp_path: Path) -> None:
    """Two logs with the same key: a proof from the rewritten one does not extend the first."""
    lines = stream(trail, count=6, batch=6)
    stolen = tmp_path / "elsewhere"  # the key copied away from the checkpoint kept beside it
    stolen.mkdir()
    key_file = stolen / "signing.key"
    key_file.write_bytes(Path(trail.store.url.removeprefix("sqlite:///")).with_name("signing.key").read_bytes())
    with graven.init(stolen / "fork.db", signing_key=key_file, origin=trail.origin) as fork:
        fill(fork, 9, action="document.delete")
        sink = Collecting()
        f = Forwarder(fork, config(batch=20), Cursors(fork.store), sink=sink)
        while f.step():
            pass
    tail = [line for line in sink.lines if orjson.loads(line).get("index", 99) >= 6]
    report = verify(trail, lines + tail)
    assert report.problem is not None
    assert report.problem.kind in ("forked", "altered")


@pytest.mark.parametrize("garbage", [b"not json", b"[1, 2]", b'{"proof": {"first": "x"}}'])
def test_garbage_lines_are_malformed(trail: Trail, garbage: bytes) -> None:
    lines = stream(trail)
    report = verify(trail, [*lines[:3], garbage, *lines[3:]])
    assert report.problem is not None
    assert "malformed" == report.problem.kind
