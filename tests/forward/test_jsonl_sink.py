"""The JSON Lines file sink: fsynced batches, rotation by size and by time, each closed file ending
with the signed checkpoint that covers it, a torn last line cut on restart."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from graven.errors import ConfigError
from graven.forward.config import SinkConfig
from graven.forward.cursor import Cursors
from graven.forward.proofs import check_lines
from graven.forward.runner import Forwarder
from graven.forward.sinks.jsonl import JsonlSink
from graven.trail import Trail
from tests.forward.helpers import config, fill


def jsonl(path: Path, **options: object) -> SinkConfig:
    return config(sink="jsonl", path=str(path), **options)


def deliver(trail: Trail, sink_config: SinkConfig) -> JsonlSink:
    sink = JsonlSink(sink_config)
    sink.open()
    forwarder = Forwarder(trail, sink_config, Cursors(trail.store), sink=sink)
    while forwarder.step():
        pass
    return sink


def lines_of(files: list[Path]) -> list[tuple[bytes, str]]:
    return [(line, f"{f.name}:{n}") for f in files for n, line in enumerate(f.read_bytes().splitlines(), 1)]


def test_rotation_by_size_closes_files_that_each_end_with_their_checkpoint(trail: Trail, tmp_path: Path) -> None:
    fill(trail, 40)
    out = tmp_path / "out"
    sink = deliver(trail, jsonl(out, batch=7, max_bytes=3000))
    sink.close()
    closed = sorted(out.glob("graven-*.jsonl"))
    assert len(closed) >= 3
    assert trail.signer is not None
    key = [trail.signer.verifier()]
    for file in closed:
        last = orjson.loads(file.read_bytes().splitlines()[-1])
        assert "proof" in last  # the checkpoint covering the file is its last line
        first_index, last_index = (int(part) for part in file.stem.split("-")[1:])
        assert last["proof"]["end"] == last_index + 1
        alone = check_lines(lines_of([file]), key)  # each closed file checks on its own
        assert alone.ok, alone.message
        assert (first_index, last_index + 1) == (alone.first, alone.end)
    everything = check_lines(lines_of([*closed, out / "graven.jsonl"]), key)
    assert everything.ok, everything.message
    assert (0, 40) == (everything.first, everything.end)


def test_rotation_by_time(trail: Trail, tmp_path: Path) -> None:
    fill(trail, 3)
    out = tmp_path / "out"
    sink = deliver(trail, jsonl(out, max_seconds=1.0))
    assert not list(out.glob("graven-*.jsonl"))
    time.sleep(1.05)
    sink.tick()
    (closed,) = out.glob("graven-*.jsonl")
    assert closed.name == f"graven-{0:020d}-{2:020d}.jsonl"
    assert b"" == (out / "graven.jsonl").read_bytes()
    sink.tick()  # an empty active file is not rotated
    assert 1 == len(list(out.glob("graven-*.jsonl")))


def test_a_torn_last_line_is_cut_and_its_batch_sent_again(trail: Trail, tmp_path: Path) -> None:
    fill(trail, 10)
    out = tmp_path / "out"
    cfg = jsonl(out, batch=4)
    sink = JsonlSink(cfg)
    sink.open()
    cursors = Cursors(trail.store)
    Forwarder(trail, cfg, cursors, sink=sink).step()
    sink.close()
    active = out / "graven.jsonl"
    whole = active.read_bytes()
    # a crash in the middle of writing the second batch: half a line, never acknowledged
    active.write_bytes(whole + b'{"index":4,"action":"docu')
    sink = deliver(trail, cfg)
    sink.close()
    data = active.read_bytes()
    assert b'"docu\n' not in data
    assert data.endswith(b"}\n")
    assert trail.signer is not None
    report = check_lines(lines_of([active]), [trail.signer.verifier()])
    assert report.ok, report.message
    assert (0, 10, 0) == (report.first, report.end, report.duplicates)


def test_an_unwritable_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    sink = JsonlSink(jsonl(blocker / "out"))
    with pytest.raises(ConfigError, match=r"^forwarder test: cannot write .*out/graven.jsonl"):
        sink.open()


def test_rotation_by_time_while_entries_keep_coming(trail: Trail, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = jsonl(out, max_seconds=0.3, batch=2)
    sink = JsonlSink(cfg)
    sink.open()
    forwarder = Forwarder(trail, cfg, Cursors(trail.store), sink=sink)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # never idle: a batch every 50 ms
        fill(trail, 2)
        assert forwarder.step() == 2
        time.sleep(0.05)
    sink.close()
    assert len(list(out.glob("graven-*.jsonl"))) >= 2
