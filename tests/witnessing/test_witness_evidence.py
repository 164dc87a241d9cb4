"""The witness's evidence folder cannot be filled anonymously: only refusals of checkpoints the log
really signed are kept, each signed checkpoint once and stripped of what the client added, within
per-client and total limits. Driven over HTTP against a real `graven witness serve` process."""

from __future__ import annotations

import base64
import http.client
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from graven.core import merkle
from graven.core.note import Checkpoint, CosignerKey, Signer, open_checkpoint, sign_checkpoint
from graven.witnessing import WitnessService, WitnessState, encode_request, parse_request
from graven.witnessing.service import EvidenceLimits
from tests.witnessing.test_witness import EXE, LOG, ORIGIN, leaves, note_for, request_for

HONEST = leaves(30)


class Witness:
    """A `graven witness serve` process on a free port, its state folder and its log files."""

    def __init__(self, folder: Path, *options: str) -> None:
        self.folder = folder
        self.state = folder / "wstate"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        key = subprocess.run([EXE, "witness", "key", "--out", "w.key", "--name", "witness.test/w1"], cwd=folder,
                             capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
        assert key.stdout.startswith("witness.test/w1+")
        self.log = folder / "witness.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [EXE, "witness", "serve", "--key", "w.key", "--state", str(self.state), "--log",
                 LOG.verifier().to_text(), "--port", str(self.port), *options],
                cwd=folder, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def wait(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.post(b"", method="GET", path="/logs")[0] == 200:
                    return
            except OSError:
                assert self.process.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, "the witness did not start"
                time.sleep(0.1)

    def post(self, body: bytes, *, source: str = "127.0.0.1", method: str = "POST",
             path: str = "/add-checkpoint") -> tuple[int, bytes]:  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10, source_address=(source, 0))
        try:
            conn.request(method, path, body=body if method == "POST" else None)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def evidence(self) -> list[Path]:
        folder = self.state / "evidence"
        return sorted(folder.glob("*.txt")) if folder.exists() else []

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        return self.log.read_text(errors="replace")


@contextmanager
def witness(tmp_path: Path, *options: str) -> Iterator[Witness]:
    served = Witness(tmp_path, *options)
    try:
        served.wait()
        assert 200 == served.post(request_for(HONEST, 0, 10))[0]
        yield served
    finally:
        served.stop()


def garbage(n: int) -> bytes:
    """Request number ``n`` of an anonymous flood: junk, malformed, unsigned or wrongly signed."""
    stranger = Signer.generate(ORIGIN)  # the log's origin, another key
    forged = leaves(30, b"forged%d" % n)
    match n % 6:
        case 0:
            return secrets.token_bytes(1000 + n * 250)
        case 1:
            return b"old 10\n" + b"A" * 60_000 + b"\n\n" + note_for(forged, 10).encode()
        case 2:
            return request_for(forged, 10, 10, stranger)  # a "fork" signed by someone else
        case 3:
            return request_for(forged, 10, 20, Signer.generate("other.example/log"))
        case 4:
            text, _, sig = note_for(forged, 10).rpartition("— ")
            raw = bytearray(base64.b64decode(sig.split(" ")[1]))
            raw[-1] ^= 1  # the log's key id, a signature that does not verify
            return encode_request(10, [], f"{text}— {sig.split(' ')[0]} {base64.b64encode(bytes(raw)).decode()}\n")
        case _:
            lines = [base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(63)]
            return ("old 10\n" + "\n".join(lines) + "\n\n").encode() + note_for(forged, 20, stranger).encode()


def test_an_anonymous_flood_stores_nothing(tmp_path: Path) -> None:
    """200 requests that no key of the log signed are refused, and not one byte of them is kept."""
    with witness(tmp_path) as served:
        statuses = {served.post(garbage(n))[0] for n in range(200)}
        assert statuses <= {400, 403, 404, 413}, statuses
        assert [] == served.evidence()
        assert 200 == served.post(request_for(HONEST, 10, 12))[0]  # the witness still serves the log


def test_a_replayed_signed_checkpoint_is_kept_once_without_padding(tmp_path: Path) -> None:
    """One log-signed checkpoint sent 40 times with varying proofs and junk signature lines is kept
    as one small file: the checkpoint, the log's signature, the old size and a proof."""
    forged = leaves(30, b"forged")
    note = note_for(forged, 20)
    strangers = [Signer.generate(f"junk{i}.example/k") for i in range(90)]
    with witness(tmp_path) as served:
        for n in range(40):
            junk = "".join(sign_checkpoint(Checkpoint(ORIGIN, 20, merkle.root_of(forged[:20])), s).rpartition("\n\n")[2]
                           for s in strangers[: 30 + n])  # fmt: skip
            proof = [secrets.token_bytes(32) for _ in range(1 + n)]
            assert 422 == served.post(encode_request(10, proof, note + junk))[0]
        kept = served.evidence()
        assert 1 == len(kept)
        body = kept[0].read_bytes()
        assert len(body) < 4096
        request = parse_request(body)
        assert 20 == open_checkpoint(request.note, [LOG.verifier()])[0].size
        assert 1 == request.note.count("\n— ")  # only the log's own signature line


def test_signed_forks_are_kept_up_to_the_caps(tmp_path: Path) -> None:
    """Distinct forks signed by the log are evidence, kept up to the per-client cap for each address
    and up to the folder's cap in all; the rest is counted and logged once, not stored."""
    options = ("--evidence-per-client", "5", "--evidence-files", "8")
    with witness(tmp_path, *options) as served:
        for n in range(20):
            assert 409 == served.post(request_for(leaves(30, b"a%d" % n), 10, 10))[0]
        assert 5 == len(served.evidence())
        for n in range(20):
            assert 409 == served.post(request_for(leaves(30, b"b%d" % n), 10, 10), source="127.0.0.2")[0]
        kept = served.evidence()
        assert 8 == len(kept)
        for path in kept:
            assert 10 == open_checkpoint(parse_request(path.read_bytes()).note, [LOG.verifier()])[0].size
        assert 200 == served.post(request_for(HONEST, 10, 15))[0]
    logged = [line for line in served.log.read_text().splitlines() if "not kept" in line]
    assert 1 == len(logged), logged
    assert "limit of 5 files" in logged[0]


def test_client_window_and_byte_cap(tmp_path: Path) -> None:
    """A client's allowance comes back as its window passes; the folder's byte cap holds for all."""
    now = [1_700_000_000.0]
    limits = EvidenceLimits(client_files=2, window=3600, max_files=100, max_bytes=1500)
    service = WitnessService(CosignerKey.generate("witness.example/w1"), [LOG.verifier()], WitnessState(tmp_path),
                             clock=lambda: now[0], evidence=limits)  # fmt: skip
    folder = tmp_path / "evidence"
    assert 200 == service.add_checkpoint(request_for(HONEST, 0, 10), client="a").status
    for n in range(4):
        assert 409 == service.add_checkpoint(request_for(leaves(30, b"c%d" % n), 10, 10), client="a").status
    assert (2, 2) == (len(list(folder.glob("*.txt"))), service.evidence_dropped)
    now[0] += 3601
    for n in range(4, 6):
        assert 409 == service.add_checkpoint(request_for(leaves(30, b"c%d" % n), 10, 10), client="a").status
    assert 4 == len(list(folder.glob("*.txt")))
    for n in range(6, 14):
        assert 409 == service.add_checkpoint(request_for(leaves(30, b"c%d" % n), 10, 10), client=f"c{n}").status
    sizes = [p.stat().st_size for p in folder.glob("*.txt")]
    assert len(sizes) == min(12, 1500 // sizes[0]) < 12
    assert sum(sizes) <= 1500
    assert 2 + 12 - len(sizes) == service.evidence_dropped


def test_evidence_folder_holds_only_evidence(tmp_path: Path) -> None:
    """Evidence files are the only files in evidence/ (its lock lives beside it)."""
    service = WitnessService(CosignerKey.generate("witness.example/w1"), [LOG.verifier()], WitnessState(tmp_path))
    assert 200 == service.add_checkpoint(request_for(HONEST, 0, 10)).status
    assert 409 == service.add_checkpoint(request_for(leaves(30, b"d"), 10, 10)).status
    assert [".txt"] == [p.suffix for p in (tmp_path / "evidence").iterdir()]


def test_unwritable_evidence_still_answers_the_refusal(tmp_path: Path) -> None:
    """When evidence cannot be written (here evidence/ is a file), the fork is still a 409, and counted."""
    service = WitnessService(CosignerKey.generate("witness.example/w1"), [LOG.verifier()], WitnessState(tmp_path))
    (tmp_path / "evidence").write_text("not a folder")
    assert 200 == service.add_checkpoint(request_for(HONEST, 0, 10)).status
    reply = service.add_checkpoint(request_for(leaves(30, b"e"), 10, 10))
    assert (409, "forked") == (reply.status, reply.verdict.kind)
    assert 1 == service.evidence_dropped
