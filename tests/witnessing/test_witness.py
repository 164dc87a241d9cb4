"""Witnesses: the add-checkpoint decision, the witness's durable state, its HTTP interface, the
log's pusher, and the scenario they exist for (a history rewritten with the log's own key)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import graven
from graven.core import merkle
from graven.core.note import (
    Checkpoint,
    CosignerKey,
    Signer,
    note_signatures,
    open_checkpoint,
    sign_checkpoint,
    verify_cosignature,
)
from graven.errors import ConfigError, ValidationError
from graven.keys import load_signing_key
from graven.testing.store_contract import make_event
from graven.witnessing import (
    Known,
    WitnessError,
    WitnessRefused,
    WitnessService,
    WitnessState,
    decide,
    encode_request,
    parse_request,
    push_checkpoint,
    witness_evidence,
)
from graven.witnessing.app import create_app
from graven.witnessing.client import cosigned_file
from graven.witnessing.protocol import MAX_BODY, MalformedRequest, parse_size_body

ORIGIN = "example.com/log"
LOG = Signer.generate(ORIGIN)
WITNESS = CosignerKey.generate("witness.example/w1")
EXE = Path(sys.executable).with_name("graven")


def leaves(count: int, seed: bytes = b"") -> list[bytes]:
    return [merkle.leaf_hash(seed + i.to_bytes(4, "big")) for i in range(count)]


def note_for(tree: list[bytes], size: int, signer: Signer = LOG) -> str:
    return sign_checkpoint(Checkpoint(signer.name, size, merkle.root_of(tree[:size])), signer)


def request_for(tree: list[bytes], old: int, size: int, signer: Signer = LOG) -> bytes:
    proof = merkle.consistency_proof_from_leaves(old, tree[:size])
    return encode_request(old, proof, note_for(tree, size, signer))


def known_at(tree: list[bytes], size: int) -> Known:
    return Known(size, merkle.root_of(tree[:size]))


def judge(body: bytes, known: Known | None) -> int:
    return decide(parse_request(body), [LOG.verifier()], known).status


# --- the pure decision --------------------------------------------------------------------------


class TestParse:
    @given(st.integers(0, 2**64 - 1), st.lists(st.binary(min_size=32, max_size=32), max_size=63))
    def test_round_trip(self, old: int, proof: list[bytes]) -> None:
        """Any old size and proof of up to 63 hashes survive encoding and parsing unchanged."""
        note = note_for(leaves(3), 3)
        parsed = parse_request(encode_request(old, proof, note))
        assert (old, tuple(proof), note) == (parsed.old_size, parsed.proof, parsed.note)

    @pytest.mark.parametrize(
        ("body", "says"),
        [
            (b"old 0\n", "an empty line"),
            (b"new 0\n\n", "'old <size>'"),
            (b"old 01\n\n", "leading zeros"),
            (b"old -1\n\n", "decimal"),
            (b"old 18446744073709551616\n\n", "2**64 - 1"),
            (b"old 0\nnot base64!\n\n", "line 2"),
            (b"old 0\n" + base64.b64encode(bytes(31)) + b"\n\n", "32-byte hash"),
            (b"old 0\n" + (base64.b64encode(bytes(32)) + b"\n") * 64 + b"\n", "at most 63"),
            (b"old 0\n\nexample.com/log\n3\n", "checkpoint is malformed"),
            (b"old 0\n\n\xff\xfe", "UTF-8"),
            (b"old 0\n\n" + b"x" * MAX_BODY, f"at most {MAX_BODY} bytes"),
        ],
    )
    def test_malformed_bodies_name_the_problem(self, body: bytes, says: str) -> None:
        """Each malformed body is refused with a message naming the rule it broke."""
        with pytest.raises(MalformedRequest, match=r".*") as error:
            parse_request(body)
        assert says in str(error.value)

    def test_size_body(self) -> None:
        """A 409 size body is a decimal and a newline, nothing else."""
        assert 42 == parse_size_body(b"42\n")
        with pytest.raises(MalformedRequest):
            parse_size_body(b"42")


class TestDecide:
    tree = leaves(20)

    def test_first_checkpoint_is_cosigned_from_zero(self) -> None:
        """A log never seen is cosigned from old size 0 with an empty proof."""
        assert 200 == judge(request_for(self.tree, 0, 7), None)

    def test_extension_with_a_valid_proof_is_cosigned(self) -> None:
        """A checkpoint that extends the cosigned one, with its proof, is cosigned."""
        assert 200 == judge(request_for(self.tree, 7, 20), known_at(self.tree, 7))

    def test_same_checkpoint_again_is_cosigned(self) -> None:
        """Repeating the cosigned checkpoint is cosigned again (a fresh timestamp)."""
        assert 200 == judge(request_for(self.tree, 7, 7), known_at(self.tree, 7))

    def test_unknown_origin_is_404(self) -> None:
        """A log the witness does not serve gets 404, as the spec says."""
        verdict = decide(parse_request(request_for(self.tree, 0, 3)), None, None)
        assert (404, "unknown-log") == (verdict.status, verdict.kind)

    def test_signature_by_another_key_is_403(self) -> None:
        """A checkpoint signed by a different key of the same name gets 403."""
        impostor = Signer.generate(ORIGIN)
        verdict = decide(parse_request(request_for(self.tree, 0, 3, impostor)), [LOG.verifier()], None)
        assert (403, "bad-signature") == (verdict.status, verdict.kind)

    def test_old_size_beyond_the_checkpoint_is_400(self) -> None:
        """An old size larger than the checkpoint's size is a bad request."""
        body = encode_request(9, [], note_for(self.tree, 5))
        assert 400 == judge(body, known_at(self.tree, 9))

    def test_stale_old_size_is_409_with_the_known_size(self) -> None:
        """An old size that is not the cosigned size gets 409 carrying the cosigned size."""
        verdict = decide(parse_request(request_for(self.tree, 3, 20)), [LOG.verifier()], known_at(self.tree, 7))
        assert (409, "stale", 7) == (verdict.status, verdict.kind, verdict.known_size)

    def test_same_size_other_root_is_409_fork(self) -> None:
        """A checkpoint of the cosigned size with another root is a fork: 409."""
        other = leaves(20, b"other")
        verdict = decide(parse_request(request_for(other, 7, 7)), [LOG.verifier()], known_at(self.tree, 7))
        assert (409, "forked") == (verdict.status, verdict.kind)

    def test_bad_proof_is_422(self) -> None:
        """A proof that does not link the cosigned tree to the new one gets 422."""
        other = leaves(20, b"other")
        assert 422 == judge(request_for(other, 7, 20), known_at(self.tree, 7))

    def test_proof_with_equal_sizes_must_be_empty(self) -> None:
        """When old size and checkpoint size are equal, any proof line is a bad proof."""
        body = encode_request(7, [bytes(32)], note_for(self.tree, 7))
        assert 422 == judge(body, known_at(self.tree, 7))

    def test_proof_from_zero_must_be_empty(self) -> None:
        """From old size 0 the proof must be empty."""
        body = encode_request(0, [bytes(32)], note_for(self.tree, 7))
        assert 422 == judge(body, None)

    @settings(max_examples=60, deadline=None)
    @given(st.integers(1, 64).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.integers(1, n), min_size=1))))
    def test_honest_log_is_always_cosigned(self, case: tuple[int, list[int]]) -> None:
        """A log pushing ever larger checkpoints with honest proofs is cosigned every time."""
        n, sizes = case
        tree = leaves(n, b"honest")
        known: Known | None = None
        for size in sorted(set(sizes)):
            old = 0 if known is None else known.size
            assert 200 == judge(request_for(tree, old, size), known)
            known = known_at(tree, size)

    @settings(max_examples=80, deadline=None)
    @given(st.data())
    def test_fork_is_never_cosigned(self, data: st.DataObject) -> None:
        """A history that changes a leaf the witness already covered is never cosigned, whatever
        its size and old size; one that changes only later leaves is (the check is exact)."""
        n = data.draw(st.integers(2, 64))
        tree = leaves(n, b"a")
        changed = data.draw(st.integers(0, n - 1))
        forked = [*tree[:changed], hashlib.sha256(b"forged").digest(), *tree[changed + 1 :]]
        m = data.draw(st.integers(1, n))
        size = data.draw(st.integers(m, n))
        old = data.draw(st.sampled_from([m, 0, max(0, m - 1)]))
        proof = merkle.consistency_proof_from_leaves(min(old, size), forked[:size])
        status = judge(encode_request(old, proof, note_for(forked, size)), known_at(tree, m))
        if old == m:
            assert (200 if changed >= m else 409 if size == m else 422) == status
        else:
            assert 200 != status

    @settings(max_examples=60, deadline=None)
    @given(st.data())
    def test_rollback_is_never_cosigned(self, data: st.DataObject) -> None:
        """A checkpoint smaller than the cosigned one is refused for every old size."""
        tree = leaves(40, b"r")
        m = data.draw(st.integers(1, 40))
        size = data.draw(st.integers(0, m - 1))
        old = data.draw(st.integers(0, 40))
        proof = merkle.consistency_proof_from_leaves(min(old, size), tree[:size])
        assert judge(encode_request(old, proof, note_for(tree, size)), known_at(tree, m)) in (400, 409)

    @settings(max_examples=60, deadline=None)
    @given(st.data())
    def test_any_altered_proof_hash_is_422(self, data: st.DataObject) -> None:
        """Flipping one bit of any proof hash turns a cosign into a 422."""
        tree = leaves(50, b"p")
        m = data.draw(st.integers(1, 48))
        size = data.draw(st.integers(m + 1, 50))
        proof = merkle.consistency_proof_from_leaves(m, tree[:size])
        if not proof:
            return
        at = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = bytearray(proof[at])
        bad[bit // 8] ^= 1 << (bit % 8)
        proof[at] = bytes(bad)
        assert 422 == judge(encode_request(m, proof, note_for(tree, size)), known_at(tree, m))


# --- the witness's state on disk ------------------------------------------------------------------


def service(state: Path, clock: Callable[[], float] = lambda: 1_700_000_000) -> WitnessService:
    return WitnessService(WITNESS, [LOG.verifier()], WitnessState(state), clock=clock)


class TestService:
    tree = leaves(30)

    def test_cosignature_verifies_and_state_is_the_cosigned_note(self, tmp_path: Path) -> None:
        """A 200 carries a cosignature/v1 line by the witness; the state file is the cosigned note."""
        reply = service(tmp_path).add_checkpoint(request_for(self.tree, 0, 10))
        assert (200, "text/plain; charset=utf-8") == (reply.status, reply.content_type)
        text = Checkpoint(ORIGIN, 10, merkle.root_of(self.tree[:10])).to_text()
        (sig,) = note_signatures(text + "\n" + reply.body.decode())[1]
        assert 1_700_000_000 == verify_cosignature(text, sig, WITNESS.verifier())
        kept = service(tmp_path).latest(ORIGIN)
        assert kept is not None
        assert 10 == open_checkpoint(kept, [LOG.verifier()])[0].size
        _, cosigs = note_signatures(kept)
        assert any(verify_cosignature(text, s, WITNESS.verifier()) for s in cosigs)

    def test_state_survives_a_restart(self, tmp_path: Path) -> None:
        """A new witness process on the same directory knows the size cosigned before."""
        assert 200 == service(tmp_path).add_checkpoint(request_for(self.tree, 0, 10)).status
        again = service(tmp_path)
        stale = again.add_checkpoint(request_for(self.tree, 0, 20))
        assert (409, "text/x.tlog.size", b"10\n") == (stale.status, stale.content_type, stale.body)
        assert 200 == again.add_checkpoint(request_for(self.tree, 10, 20)).status
        assert [{"origin": ORIGIN, "size": 20}] == service(tmp_path).known_logs()

    def test_no_temporary_files_and_crash_leftovers_are_ignored(self, tmp_path: Path) -> None:
        """Writes leave no temporary file; one left by a crash never replaces the state."""
        witness = service(tmp_path)
        assert 200 == witness.add_checkpoint(request_for(self.tree, 0, 10)).status
        assert [] == [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        state = witness.state.path(ORIGIN)
        (tmp_path / f".{state.name}.999.1.tmp").write_text("half a note")
        assert 10 == (service(tmp_path).state.known(ORIGIN) or Known.nothing()).size

    def test_damaged_state_is_an_error_not_a_fresh_start(self, tmp_path: Path) -> None:
        """A damaged state file refuses every request (500) instead of accepting size 0 again."""
        witness = service(tmp_path)
        assert 200 == witness.add_checkpoint(request_for(self.tree, 0, 10)).status
        witness.state.path(ORIGIN).write_text("garbage")
        reply = witness.add_checkpoint(request_for(self.tree, 0, 5))
        assert (500, "state-error") == (reply.status, reply.verdict.kind)

    def test_refused_fork_is_kept_as_evidence(self, tmp_path: Path) -> None:
        """A log-signed checkpoint refused as a fork is kept in evidence/ for the operator."""
        witness = service(tmp_path)
        assert 200 == witness.add_checkpoint(request_for(self.tree, 0, 10)).status
        body = request_for(leaves(30, b"forged"), 10, 20)
        assert 422 == witness.add_checkpoint(body).status
        assert [body] == [p.read_bytes() for p in (tmp_path / "evidence").iterdir()]

    def test_concurrent_requests_for_one_log_are_serialised(self, tmp_path: Path) -> None:
        """Many requests from the same old size, through two witness instances sharing the state,
        yield exactly one cosignature; the others see 409 with the winner's size."""
        tree = leaves(80)
        witnesses = [service(tmp_path), service(tmp_path)]
        assert 200 == witnesses[0].add_checkpoint(request_for(tree, 0, 10)).status
        sizes = list(range(11, 80, 2))
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda s: (s, witnesses[s % 2].add_checkpoint(request_for(tree, 10, s))), sizes))
        winners = [size for size, reply in replies if reply.status == 200]
        assert 1 == len(winners)
        assert {b"%d\n" % winners[0]} == {reply.body for _, reply in replies if reply.status != 200}
        assert winners[0] == (witnesses[1].state.known(ORIGIN) or Known.nothing()).size

    def test_a_witness_needs_a_log(self, tmp_path: Path) -> None:
        """A witness configured with no log is refused, naming --log."""
        with pytest.raises(ConfigError, match="--log"):
            WitnessService(WITNESS, [], WitnessState(tmp_path))


# --- HTTP -----------------------------------------------------------------------------------------


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """Run ``app`` in a real uvicorn on a free port; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 (our own test server)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read()


@pytest.fixture
def witness_url(tmp_path: Path) -> Iterator[str]:
    with serving(create_app(service(tmp_path / "state"))) as url:
        yield url


class TestHTTP:
    tree = leaves(30)

    def post(self, url: str, body: bytes) -> tuple[int, str, bytes]:
        return http("POST", url + "/add-checkpoint", body)

    def test_status_codes(self, witness_url: str) -> None:
        """200, 409 (with the size), 422, 403, 404 and 400 over real HTTP, in the spec's forms."""
        status, kind, body = self.post(witness_url, request_for(self.tree, 0, 10))
        assert (200, "text/plain; charset=utf-8") == (status, kind)
        assert body.startswith("\u2014 witness.example/w1 ".encode())
        assert body.endswith(b"\n")
        assert (409, "text/x.tlog.size", b"10\n") == self.post(witness_url, request_for(self.tree, 0, 20))
        status, kind, body = self.post(witness_url, request_for(leaves(30, b"x"), 10, 20))
        assert (422, "application/json", "bad-proof") == (status, kind, orjson.loads(body)["kind"])
        status, _, body = self.post(witness_url, request_for(self.tree, 10, 17, Signer.generate(ORIGIN)))
        assert (403, "bad-signature") == (status, orjson.loads(body)["kind"])
        status, _, body = self.post(witness_url, request_for(self.tree, 0, 7, Signer.generate("other.example/log")))
        assert (404, "unknown-log") == (status, orjson.loads(body)["kind"])
        status, _, body = self.post(witness_url, b"old 0\n")
        assert (400, "malformed") == (status, orjson.loads(body)["kind"])
        assert 200 == self.post(witness_url, request_for(self.tree, 10, 30))[0]

    def test_fork_of_the_same_size_is_409_with_a_reason(self, witness_url: str) -> None:
        """Another root at the cosigned size is a 409 whose JSON says forked (no size to retry with)."""
        assert 200 == self.post(witness_url, request_for(self.tree, 0, 10))[0]
        status, kind, body = self.post(witness_url, request_for(leaves(30, b"y"), 10, 10))
        assert (409, "application/json", "forked") == (status, kind, orjson.loads(body)["kind"])

    def test_oversized_body_is_413_and_wrong_method_is_json(self, witness_url: str) -> None:
        """A body over the limit is refused before it is read whole; other errors are JSON too."""
        status, _, body = self.post(witness_url, b"old 0\n\n" + b"x" * (MAX_BODY + 1))
        assert (413, "too-large") == (status, orjson.loads(body)["kind"])
        status, kind, _ = http("GET", witness_url + "/add-checkpoint")
        assert (405, "application/json") == (status, kind)

    def test_read_extension(self, witness_url: str) -> None:
        """GET /checkpoint returns the newest cosigned note; GET /logs lists sizes and the key."""
        assert 404 == http("GET", witness_url + "/checkpoint?origin=" + ORIGIN)[0]
        assert 400 == http("GET", witness_url + "/checkpoint")[0]
        assert 200 == self.post(witness_url, request_for(self.tree, 0, 12))[0]
        status, _, body = http("GET", witness_url + "/checkpoint?origin=" + ORIGIN)
        assert 200 == status
        assert 12 == open_checkpoint(body.decode(), [LOG.verifier()])[0].size
        listing = orjson.loads(http("GET", witness_url + "/logs")[2])
        assert {"witness": WITNESS.verifier().to_text(), "logs": [{"origin": ORIGIN, "size": 12}]} == listing


# --- the log's side -----------------------------------------------------------------------------


@pytest.fixture
def log_witness(tmp_path: Path, trail: graven.Trail) -> Iterator[str]:
    """A witness serving the ``trail`` fixture's log."""
    signer = trail.signer
    assert signer is not None
    witness = WitnessService(WITNESS, [signer.verifier()], WitnessState(tmp_path / "wstate"))
    with serving(create_app(witness)) as url:
        yield url


def grow(trail: graven.Trail, start: int, stop: int) -> None:
    trail.record_many(make_event(n) for n in range(start, stop))
    trail.checkpoint()


class TestPush:
    def test_push_keeps_the_cosigned_checkpoint_beside_the_key(self, trail: graven.Trail, log_witness: str) -> None:
        """Each push sends a proof from the last cosigned size and keeps the newest cosigned note."""
        grow(trail, 0, 5)
        first = push_checkpoint(trail, log_witness, keys=[WITNESS.verifier()])
        grow(trail, 5, 13)
        second = push_checkpoint(trail, log_witness, keys=[WITNESS.verifier()])
        assert (5, 13, True) == (first.size, second.size, second.fresh)
        kept = cosigned_file(trail)
        assert kept is not None
        assert kept.path.name == "signing.key.cosigned"
        assert {log_witness: second.note} == kept.read()
        again = push_checkpoint(trail, log_witness, keys=[WITNESS.verifier()])
        assert (13, False) == (again.size, again.fresh)

    def test_lost_copy_is_recovered_through_409(self, trail: graven.Trail, log_witness: str) -> None:
        """Without the kept copy the client starts from 0, reads the witness's size and retries."""
        grow(trail, 0, 6)
        push_checkpoint(trail, log_witness)
        kept = cosigned_file(trail)
        assert kept is not None
        kept.path.unlink()
        grow(trail, 6, 9)
        assert 9 == push_checkpoint(trail, log_witness).size

    def test_cosignature_by_an_unknown_key_is_rejected(self, trail: graven.Trail, log_witness: str) -> None:
        """With witness keys given, a cosignature by another key is not accepted nor kept."""
        grow(trail, 0, 3)
        stranger = CosignerKey.generate("witness.example/w1").verifier()
        with pytest.raises(WitnessError, match=r"without a valid cosignature by witness\.example"):
            push_checkpoint(trail, log_witness, keys=[stranger])
        kept = cosigned_file(trail)
        assert kept is not None
        assert {} == kept.read()

    def test_unreachable_witness(self, trail: graven.Trail) -> None:
        """A witness that cannot be reached is a WitnessError naming the URL."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with pytest.raises(WitnessError, match=f"cannot reach the witness at http://127.0.0.1:{port}"):
            push_checkpoint(trail, f"http://127.0.0.1:{port}", timeout=2)

    def test_witness_urls_are_checked(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A URL that is not http(s) is refused, naming where it came from."""
        with pytest.raises(ValidationError, match="--witness"):
            push_checkpoint(None, "ftp://example.com")  # type: ignore[arg-type]
        monkeypatch.setenv("GRAVEN_WITNESSES", "http://ok.example, file:///etc/passwd")
        with pytest.raises(ValidationError, match="GRAVEN_WITNESSES"):
            graven.open(tmp_path / "t.db", signing_key=tmp_path / "k")

    def test_background_push_never_blocks_recording(self, tmp_path: Path) -> None:
        """With witnesses configured, recording returns while a push is stuck, and the push lands."""
        key = tmp_path / "signing.key"
        graven.init(tmp_path / "t.db", signing_key=key).close()
        signer = load_signing_key(key)
        witness = WitnessService(WITNESS, [signer.verifier()], WitnessState(tmp_path / "w"))
        gate = threading.Event()
        real = create_app(witness)

        async def gated(request: Request) -> Response:
            await run_in_threadpool(gate.wait, 30)
            reply = await run_in_threadpool(witness.add_checkpoint, await request.body())
            return Response(reply.body, status_code=reply.status, media_type=reply.content_type)

        app = Starlette(routes=[Route("/add-checkpoint", gated, methods=["POST"]), *real.routes[1:]])
        with serving(app) as url:
            trail = graven.open(tmp_path / "t.db", signing_key=key, checkpoint_interval=0, witnesses=[url])
            try:
                trail.record(make_event(1))  # signs a checkpoint: the pusher is now waiting on the gate
                assert trail.pusher is not None
                assert not trail.pusher.wait(0.2)  # still pushing, yet record() has returned
                trail.record(make_event(2))
                gate.set()
                assert trail.pusher.wait(20)
            finally:
                trail.close()
            result = trail.pusher.results[url]
            assert not isinstance(result, Exception), result
            assert 2 == (witness.state.known(signer.name) or Known.nothing()).size


# --- verification against witnesses, and the scenario -------------------------------------------


def fixed_clock() -> datetime:
    return datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def rewrite(db: Path, key: Path, origin: str, changed: int, size: int) -> None:
    """Replace the log at ``db`` by another history signed with its own key and origin: the
    entries before ``changed`` are the same as those recorded with :func:`fixed_clock`."""
    forged_dir = db.parent / "forged"
    forged_dir.mkdir()
    shutil.copy(key, forged_dir / "k")
    graven.init(forged_dir / "t.db", signing_key=forged_dir / "k", origin=origin).close()
    with graven.open(forged_dir / "t.db", signing_key=forged_dir / "k", clock=fixed_clock) as forged:
        forged.record_many(make_event(n, reason="rewritten" if n == changed else None) for n in range(size))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copy(forged_dir / "t.db", db)


@contextmanager
def witnessed_log(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    """A fresh log (database, key) and a witness serving it at a URL."""
    db, key = tmp_path / "log" / "trail.db", tmp_path / "log" / "signing.key"
    graven.init(db, signing_key=key).close()
    witness = WitnessService(WITNESS, [load_signing_key(key).verifier()], WitnessState(tmp_path / "w"))
    with serving(create_app(witness)) as url:
        yield db, key, url


class TestVerify:
    def test_pins_the_fork_after_the_last_matching_witnessed_checkpoint(self, tmp_path: Path) -> None:
        """A cosigned size-4 checkpoint that still matches bounds the fork: first bad index 4."""
        with witnessed_log(tmp_path) as (db, key, url):
            with graven.open(db, signing_key=key, clock=fixed_clock) as trail:
                grow(trail, 0, 4)
                push_checkpoint(trail, url)
                grow(trail, 4, 10)  # kept beside the key at size 10, never pushed
                origin = trail.origin
            rewrite(db, key, origin, changed=6, size=12)
            with graven.open(db, signing_key=key) as reopened:
                report = reopened.verify()
        assert (False, 4, "forked") == (report.ok, report.first_bad_index, report.kind)

    def test_rewritten_history_is_refused_and_the_kept_copy_stays(self, tmp_path: Path) -> None:
        """A log rewritten before the size the witness cosigned is refused as forked (422); the
        cosigned copy beside the key keeps the witnessed history."""
        with witnessed_log(tmp_path) as (db, key, url):
            with graven.open(db, signing_key=key, clock=fixed_clock) as trail:
                grow(trail, 0, 6)
                cosigned = push_checkpoint(trail, url)
                origin = trail.origin
            rewrite(db, key, origin, changed=2, size=9)
            with graven.open(db, signing_key=key) as reopened:
                with pytest.raises(WitnessRefused) as refused:
                    push_checkpoint(reopened, url)
                kept = cosigned_file(reopened)
        assert ("forked", 422) == (refused.value.kind, refused.value.status)
        assert kept is not None
        assert {url: cosigned.note} == kept.read()

    def test_witness_key_must_have_cosigned_something(self, trail: graven.Trail, log_witness: str) -> None:
        """A witness key that cosigned nothing found is an error naming the key."""
        grow(trail, 0, 3)
        push_checkpoint(trail, log_witness)
        assert 1 == len(witness_evidence(trail, keys=[WITNESS.verifier()], urls=[log_witness]))
        stranger = CosignerKey.generate("w.example/2").verifier()
        with pytest.raises(WitnessError, match="no checkpoint cosigned by this key"):
            witness_evidence(trail, keys=[stranger])
        with pytest.raises(WitnessError, match="is not cosigned by"):
            witness_evidence(trail, keys=[stranger], urls=[log_witness])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_")}
    done = subprocess.run([EXE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in done.stderr
    return done


@pytest.mark.slow
def test_rewritten_history_is_refused_by_the_witness_and_reported_by_verify(tmp_path: Path) -> None:
    """The scenario witnesses exist for, through the real CLI and a real witness process: the log
    pushes checkpoints; its database is replaced by a history rewritten and signed with its own
    key; the witness refuses the next checkpoint and `graven verify` reports the fork, even after
    the copies kept beside the key are deleted too."""
    assert 0 == run(tmp_path, "init").returncode
    log_key = run(tmp_path, "key").stdout.strip()
    origin = log_key.split("+")[0]
    witness_key = run(tmp_path, "witness", "key", "--out", "w.key", "--name", "witness.test/w1").stdout.strip()
    assert 0o600 == (tmp_path / "w.key").stat().st_mode & 0o777
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [EXE, "witness", "serve", "--key", "w.key", "--state", "wstate", "--log", log_key, "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if http("GET", url + "/logs")[0] == 200:
                    break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else "the witness exited"
                assert time.monotonic() < deadline, "the witness did not start"
                time.sleep(0.1)
        for batch in range(3):
            events = "\n".join(orjson.dumps(make_event(n)).decode() for n in range(batch * 5, batch * 5 + 5))
            done = subprocess.run([EXE, "record", "-"], cwd=tmp_path, input=events, capture_output=True, text=True,
                                  env={k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_")},
                                  check=True)  # fmt: skip
            assert done.stdout
            pushed = run(tmp_path, "witness", "push", url, "--witness-key", witness_key)
            assert 0 == pushed.returncode, pushed.stderr
            assert pushed.stdout.startswith("\u2014 witness.test/w1 ")
        ok = run(tmp_path, "verify", "--json", "--witness-key", witness_key, "--witness", url)
        assert (0, True) == (ok.returncode, orjson.loads(ok.stdout)["ok"]), ok.stdout + ok.stderr

        rewrite(tmp_path / ".graven" / "trail.db", tmp_path / ".graven" / "signing.key", origin, changed=7, size=20)

        refused = run(tmp_path, "witness", "push", url, "--witness-key", witness_key)
        assert 1 == refused.returncode
        assert "forked" in refused.stderr
        # One line for the refusal, besides the signer's own alarm: it will not keep the rewritten checkpoint.
        lines = refused.stderr.strip().splitlines()
        assert 1 == len([line for line in lines if "checkpoint signing degraded" not in line]), lines
        assert 1 == len(list((tmp_path / "wstate" / "evidence").iterdir()))

        bad = run(tmp_path, "verify", "--json", "--witness-key", witness_key, "--witness", url)
        report = orjson.loads(bad.stdout)
        assert (1, False, "forked", 0) == (bad.returncode, report["ok"], report["kind"], report["first_bad_index"])

        for kept in ("signing.key.checkpoint", "signing.key.cosigned"):
            (tmp_path / ".graven" / kept).unlink()
        blind = run(tmp_path, "verify", "--json")
        assert (0, True) == (blind.returncode, orjson.loads(blind.stdout)["ok"])  # nothing left to compare with
        seen = run(tmp_path, "verify", "--witness-key", witness_key, "--witness", url)
        assert 1 == seen.returncode
        assert "first bad index 0 (forked)" in seen.stderr
    finally:
        server.terminate()
        server.wait(20)


class TestCLI:
    def test_key_refuses_to_overwrite(self, tmp_path: Path) -> None:
        """`graven witness key` never overwrites a key file; the error is one line, exit 2."""
        assert 0 == run(tmp_path, "witness", "key", "--out", "w.key").returncode
        again = run(tmp_path, "witness", "key", "--out", "w.key")
        assert (2, 1) == (again.returncode, len(again.stderr.strip().splitlines()))
        assert "refusing to overwrite" in again.stderr

    def test_serve_rejects_a_bad_log_key(self, tmp_path: Path) -> None:
        """A --log value that is no verifier key is a one-line error naming --log."""
        assert 0 == run(tmp_path, "witness", "key", "--out", "w.key").returncode
        bad = run(tmp_path, "witness", "serve", "--key", "w.key", "--state", "s", "--log", "nope+1+2")
        assert (2, True) == (bad.returncode, bad.stderr.startswith("graven: --log"))

    def test_global_witness_option_pushes_every_new_checkpoint(self, tmp_path: Path) -> None:
        """`graven --witness URL record ...` pushes the new checkpoint before the command ends."""
        assert 0 == run(tmp_path, "init").returncode
        signer = load_signing_key(tmp_path / ".graven" / "signing.key")
        witness = WitnessService(WITNESS, [signer.verifier()], WitnessState(tmp_path / "w"))
        with serving(create_app(witness)) as url:
            for n in range(3):
                done = run(tmp_path, "--witness", url, "record", "--action", "a.b", "--actor", f"u-{n}")
                assert 0 == done.returncode, done.stderr
        assert 3 == (witness.state.known(signer.name) or Known.nothing()).size
        kept = orjson.loads((tmp_path / ".graven" / "signing.key.cosigned").read_bytes())
        assert [url] == list(kept)
        bad = run(tmp_path, "--witness", "mailto:x@example.com", "log")
        assert (2, True) == (bad.returncode, bad.stderr.startswith("graven: --witness"))

    def test_push_and_verify_errors_are_one_line(self, tmp_path: Path) -> None:
        """An unreachable witness or a bad URL is one line and exit 2."""
        assert 0 == run(tmp_path, "init").returncode
        gone = run(tmp_path, "witness", "push", f"http://127.0.0.1:{free_port()}", "--timeout", "2")
        assert (2, 1) == (gone.returncode, len(gone.stderr.strip().splitlines()))
        assert "cannot reach the witness" in gone.stderr
        bad = run(tmp_path, "verify", "--witness", "gopher://x")
        assert (2, True) == (bad.returncode, "--witness" in bad.stderr)
