"""The delivery loop: order, at least once, retries with backoff, dead letters, proofs."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import orjson
import pytest

import graven
from graven.errors import ConfigError
from graven.forward.cursor import Cursors
from graven.forward.proofs import StreamCheck
from graven.forward.runner import Forwarder, backoff, guarded, status
from graven.forward.sinks import Batch, Refused
from graven.trail import Trail
from tests.forward.helpers import Collecting, config, fill


def check(trail: Trail, lines: list[bytes]) -> StreamCheck:
    verifier = trail.signer.verifier() if trail.signer else None
    assert verifier is not None
    stream = StreamCheck([verifier])
    for number, line in enumerate(lines):
        stream.feed_line(line, f"line {number}")
    return stream


def test_delivers_in_order_in_batches_and_moves_the_cursor(trail: Trail) -> None:
    fill(trail, 23)
    sink = Collecting()
    cursors = Cursors(trail.store)
    forwarder = Forwarder(trail, config(batch=10), cursors, sink=sink)
    while forwarder.step():
        pass
    assert [(0, 10), (10, 20), (20, 23)] == sink.batches
    assert list(range(23)) == sink.indices()
    assert 23 == cursors.get("test").position
    report = check(trail, sink.lines).report()
    assert report.ok, report.message
    assert 3 == report.proofs


def test_a_receiver_that_fails_gets_the_same_batch_again_and_nothing_moves(trail: Trail) -> None:
    fill(trail, 5)
    sink = Collecting()
    sink.fail_next = 2
    cursors = Cursors(trail.store)
    forwarder = Forwarder(trail, config(batch=3, retry_max_seconds=0.05), cursors, sink=sink)
    stop = threading.Event()
    thread = threading.Thread(target=forwarder.run, args=(stop,), kwargs={"poll": 0.01})
    thread.start()
    try:
        for _ in range(500):
            if cursors.get("test").position == 5:
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join(5)
    assert list(range(5)) == sink.indices()  # nothing lost, nothing twice, order kept
    assert [(0, 3), (3, 5)] == sink.batches


def test_the_last_error_is_kept_until_a_batch_gets_through(trail: Trail) -> None:
    fill(trail, 2)
    sink = Collecting()
    sink.fail_next = 1
    cursors = Cursors(trail.store)
    forwarder = Forwarder(trail, config(), cursors, sink=sink)
    with pytest.raises(graven.errors.GravenError, match="receiver down"):
        forwarder.step()
    cursors.fail("test", "receiver down")
    assert "receiver down" == cursors.get("test").last_error
    assert 0 == cursors.get("test").position
    forwarder.step()
    assert cursors.get("test").last_error is None
    assert 2 == cursors.get("test").position


def test_permanent_refusals_become_dead_letters_and_delivery_goes_on(trail: Trail) -> None:
    fill(trail, 6)
    sink = Collecting()
    sink.refuse = {2, 4}
    cursors = Cursors(trail.store)
    forwarder = Forwarder(trail, config(batch=4), cursors, sink=sink)
    while forwarder.step():
        pass
    assert [0, 1, 3, 5] == sink.indices()
    dead = cursors.dead_letters("test")
    assert [2, 4] == [d.index for d in dead]
    assert all(d.reason == "refused by the receiver" and d.entry_id for d in dead)
    assert trail.get(2).id == dead[0].entry_id
    assert 2 == cursors.get("test").dead
    assert 6 == cursors.get("test").position


def test_proofs_chain_from_one_checkpoint_to_the_next_as_the_log_grows(trail: Trail) -> None:
    sink = Collecting()
    forwarder = Forwarder(trail, config(batch=7), Cursors(trail.store), sink=sink)
    for grow in (3, 9, 1, 16):
        fill(trail, grow)
        while forwarder.step():
            pass
    proofs = [orjson.loads(line)["proof"] for line in sink.lines if b'"proof"' in line[:10]]
    assert len(proofs) >= 4
    assert all(p["previous_size"] == q["tree_size"] for q, p in itertools.pairwise(proofs))
    report = check(trail, sink.lines).report()
    assert report.ok, report.message
    assert trail.size == report.end


def test_without_the_signing_key_only_signed_entries_go_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with graven.init(tmp_path / "t.db", signing_key=tmp_path / "k") as writer:
        fill(writer, 4)  # closing signs a checkpoint of size 4
    writer = graven.open(tmp_path / "t.db", signing_key=tmp_path / "k", checkpoint_interval=3600)
    try:
        fill(writer, 1)  # this write signs (size 5) ...
        fill(writer, 3)  # ... these wait: the writer signs at most once an hour (or when closed)
        latest = writer.store.latest_checkpoint()
        assert latest is not None
        assert (5, 8) == (latest.size, writer.size)
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("GRAVEN_SIGNING_KEY", raising=False)
        with graven.open(tmp_path / "t.db") as reader:  # the forwarder has no key: it cannot sign
            assert reader.signer is None
            sink = Collecting()
            forwarder = Forwarder(reader, config(), Cursors(reader.store), sink=sink)
            while forwarder.step():
                pass
            assert [0, 1, 2, 3, 4] == sink.indices()
    finally:
        writer.close()


def test_without_proofs_every_entry_goes_out_with_no_proof_line(trail: Trail) -> None:
    fill(trail, 3)
    sink = Collecting()
    Forwarder(trail, config(proofs=False), Cursors(trail.store), sink=sink).step()
    assert [0, 1, 2] == sink.indices()
    assert 3 == len(sink.lines)


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    assert 0.05 == backoff(1, 60, rand=lambda: 0.0)
    assert 0.1 == backoff(1, 60, rand=lambda: 1.0)
    assert 0.8 == backoff(4, 60, rand=lambda: 1.0)
    assert 30 == backoff(40, 60, rand=lambda: 0.0)
    assert 60 == backoff(10_000, 60, rand=lambda: 1.0)
    assert len({backoff(5, 60) for _ in range(50)}) > 1


def test_status_reports_cursor_lag_and_errors(trail: Trail) -> None:
    fill(trail, 4)
    cursors = Cursors(trail.store)
    configs = {"test": config(batch=2)}
    forwarder = Forwarder(trail, configs["test"], cursors, sink=Collecting())
    forwarder.step()
    cursors.fail("test", "connection refused")
    (row,) = status(trail, cursors, configs)
    assert 2 == row["position"]
    assert 2 == row["lag_entries"]
    assert row["lag_seconds"] >= 0
    assert "connection refused" == row["last_error"]


class Flaky(Collecting):
    """A receiver whose client code breaks in unforeseen ways, then works."""

    def __init__(self, error: Exception, times: int) -> None:
        super().__init__()
        self.error = error
        self.times = times

    def send(self, batch: Batch) -> Refused:
        if self.times:
            self.times -= 1
            raise self.error
        return super().send(batch)


def test_an_unexpected_error_in_a_sink_is_retried_and_kept_as_the_last_error(trail: Trail) -> None:
    fill(trail, 3)
    sink = Flaky(ValueError("bad frame"), times=2)
    cursors = Cursors(trail.store)
    errors: list[str] = []
    forwarder = Forwarder(trail, config(retry_max_seconds=0.02), cursors, sink=sink, on_error=errors.append)
    stop = threading.Event()
    thread = threading.Thread(target=forwarder.run, args=(stop,), kwargs={"poll": 0.01})
    thread.start()
    deadline = time.monotonic() + 10
    while cursors.get("test").position < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(5)
    assert [0, 1, 2] == sink.indices()
    assert [
        "forwarder test: ValueError: bad frame (retry 1)",
        "forwarder test: ValueError: bad frame (retry 2)",
    ] == errors


def test_a_damaged_log_or_broken_configuration_stops_every_forwarder_with_one_line(trail: Trail) -> None:
    fill(trail, 3)
    broken = Forwarder(trail, config("a"), Cursors(trail.store), sink=Flaky(ConfigError("the token was revoked"), 1))
    healthy = Forwarder(trail, config("b"), Cursors(trail.store), sink=Collecting())
    stop = threading.Event()
    failures: list[str] = []
    reported: list[str] = []
    threads = [threading.Thread(target=guarded, args=(f, stop, failures, 0.01, reported.append))
               for f in (broken, healthy)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads)
    assert ["forwarder a stopped: the token was revoked"] == failures == reported
    assert stop.is_set()
