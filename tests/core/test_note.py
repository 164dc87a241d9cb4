"""Tests for graven.core.note: C2SP signed notes, checkpoints and cosignatures.

Fixed vectors come from public sources, quoted below where used:
- golang.org/x/mod/sumdb/note note_test.go: the PeterNeumann and EnochRoot keys and notes.
- c2sp.org/signed-note, c2sp.org/tlog-checkpoint, c2sp.org/tlog-cosignature: the example
  notes. The tlog-checkpoint example's signature line is a real sum.golang.org signature
  (key id 033de0ae) over the same tree with origin "go.sum database tree"; the
  sum.golang.org vkey is the one built into the go command (cmd/go/internal/modfetch).
- github.com/transparency-dev/formats note/note_cosigv1_test.go: a cosignature timestamp.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import assume, given
from hypothesis import strategies as st

from graven.core.note import (
    MAX_SIGNATURES,
    MAX_TREE_SIZE,
    SIG_TYPE_COSIGNATURE_V1,
    SIG_TYPE_ED25519,
    Checkpoint,
    CosignerKey,
    CosignerVerifier,
    NoteError,
    NoteSignature,
    SignatureError,
    Signer,
    Verifier,
    add_signatures,
    compute_key_id,
    cosign,
    cosignature_timestamp,
    note_signatures,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
    verify_cosignature,
)

# --- vectors from golang.org/x/mod/sumdb/note/note_test.go ---------------------------------

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SEED_B64 = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+" + PETER_SEED_B64
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG_B64 = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
PETER_LINE = "\u2014 PeterNeumann " + PETER_SIG_B64 + "\n"
ENOCH_LINE = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
GO_NOTE = GO_TEXT + "\n" + PETER_LINE

# --- vectors from the C2SP specifications --------------------------------------------------

C2SP_NOTE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed è subito sera.\n"
    "\n"
    "\u2014 quasimodo.example/salvatore "
    "NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)
C2SP_ROOT_B64 = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
C2SP_CHECKPOINT = f"example.com/behind-the-sofa\n20852163\n{C2SP_ROOT_B64}\n"
SUMDB_SIG_B64 = "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8="
WITNESS_SIG_B64 = (
    "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)
C2SP_COSIGNED = (
    C2SP_CHECKPOINT
    + "\n\u2014 example.com/behind-the-sofa "
    + SUMDB_SIG_B64
    + "\n\u2014 witness.example.com/w1 "
    + WITNESS_SIG_B64
    + "\n"
)
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTE = f"go.sum database tree\n20852163\n{C2SP_ROOT_B64}\n\n\u2014 sum.golang.org {SUMDB_SIG_B64}\n"

# --- vector from transparency-dev/formats note/note_cosigv1_test.go ------------------------

TDEV_COSIG_B64 = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA=="
)
TDEV_PLAIN_SIG_B64 = "eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY="

# --- self-generated regression vector (seed = SHA-256("graven note test witness")) ---------

WITNESS_SKEY = "PRIVATE+KEY+witness.example.com/w1+7f0b8e36+BP8QhCqZvFtV0RnBSH4lPu549yVA+/q9beOKgP8CqQCx"
WITNESS_VKEY = "witness.example.com/w1+7f0b8e36+BMS/rf1WKLJ9wN3RntL1hxrTP0tCUW/+ZpJhpVLqq9py"
WITNESS_LINE = (
    "\u2014 witness.example.com/w1 fwuONgAAAABkGFDLV4rnmwyxLLJmnVf+3Dpn5ygTu3+AkICMR984dcSXPiLz"
    "FpRa103G+N89zNIWgSAU2Cyk+gdh7awgVhq97gDyBQ==\n"
)


def _raw_key(vkey: str) -> bytes:
    return base64.b64decode(vkey.split("+", 2)[2])


def _sig(line: str) -> NoteSignature:
    _, sigs = note_signatures(GO_TEXT + "\n" + line)
    return sigs[0]


# --- hypothesis strategies -----------------------------------------------------------------

_LINE_CHARS = st.characters(exclude_categories=("Cs", "Cc"))
_NAME_CHARS = st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), exclude_characters="+")
names = st.text(_NAME_CHARS, min_size=1, max_size=16).filter(lambda s: not any(c.isspace() for c in s))
texts = st.lists(st.text(_LINE_CHARS, max_size=24), min_size=1, max_size=5).map(lambda lines: "\n".join(lines) + "\n")
seeds = st.binary(min_size=32, max_size=32)
nonempty_lines = st.text(_LINE_CHARS, min_size=1, max_size=24)
checkpoints = st.builds(
    Checkpoint,
    origin=nonempty_lines,
    size=st.integers(0, MAX_TREE_SIZE),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(nonempty_lines, max_size=3).map(tuple),
)


def _signer(name: str, seed: bytes) -> Signer:
    return Signer(name, Ed25519PrivateKey.from_private_bytes(seed))


def _cosigner(name: str, seed: bytes) -> CosignerKey:
    return CosignerKey(name, Ed25519PrivateKey.from_private_bytes(seed))


def _seed_public(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


# --- known vectors -------------------------------------------------------------------------


def test_go_skey_parses_and_round_trips() -> None:
    """The Go note package's PeterNeumann skey parses to its name and key id and prints back."""
    signer = Signer.from_text(PETER_SKEY)
    assert (signer.name, signer.key_id) == ("PeterNeumann", 0xC74F20A3)
    assert signer.to_text() == PETER_SKEY


def test_go_vkey_matches_skey() -> None:
    """The PeterNeumann vkey is exactly the verifier derived from the PeterNeumann skey."""
    verifier = Verifier.from_text(PETER_VKEY)
    assert Signer.from_text(PETER_SKEY).verifier() == verifier
    assert verifier.to_text() == PETER_VKEY
    assert repr(verifier) == f"Verifier({PETER_VKEY!r})"


def test_go_signed_note_reproduced_exactly() -> None:
    """Signing the Go test text with PeterNeumann reproduces the Go package's note byte for byte."""
    assert sign_note(GO_TEXT, [Signer.from_text(PETER_SKEY)]) == GO_NOTE


def test_go_signed_note_opens() -> None:
    """The Go test note opens with the PeterNeumann vkey and yields its text and signature."""
    text, sigs = open_note(GO_NOTE, [Verifier.from_text(PETER_VKEY)])
    assert text == GO_TEXT
    assert sigs == [NoteSignature("PeterNeumann", 0xC74F20A3, base64.b64decode(PETER_SIG_B64)[4:])]
    assert sigs[0].to_line() == PETER_LINE


def test_key_id_is_truncated_sha256_of_name_type_and_key() -> None:
    """Key ids are the first 4 bytes of SHA-256(name || 0x0A || type || key), as in Go and sumdb."""
    for vkey, name, key_id in [
        (PETER_VKEY, "PeterNeumann", 0xC74F20A3),
        (ENOCH_VKEY, "EnochRoot", 0xAF0CFE78),
        (SUMDB_VKEY, "sum.golang.org", 0x033DE0AE),
    ]:
        raw = _raw_key(vkey)
        assert raw[0] == SIG_TYPE_ED25519
        assert compute_key_id(name, SIG_TYPE_ED25519, raw[1:]) == key_id
        assert Verifier.from_text(vkey).key_id == key_id
    cosigner_key = _raw_key(WITNESS_VKEY)[1:]
    expected = hashlib.sha256(b"witness.example.com/w1\n\x04" + cosigner_key).digest()[:4]
    assert compute_key_id("witness.example.com/w1", SIG_TYPE_COSIGNATURE_V1, cosigner_key) == (
        int.from_bytes(expected, "big")
    )


def test_go_vkey_manglings_rejected() -> None:
    """Every proper substring and every single-character increment of the Go vkey is rejected."""
    manglings = [
        PETER_VKEY[i:j]
        for i in range(len(PETER_VKEY) + 1)
        for j in range(i + 1, len(PETER_VKEY) + 1)
        if (i, j) != (0, len(PETER_VKEY))
    ]
    manglings += [PETER_VKEY[:i] + chr(ord(c) + 1) + PETER_VKEY[i + 1 :] for i, c in enumerate(PETER_VKEY)]
    manglings += [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ]
    for text in manglings:
        with pytest.raises(NoteError):
            Verifier.from_text(text)


def test_go_skey_manglings_rejected_without_echoing_the_seed() -> None:
    """Every substring and increment of the Go skey is rejected by a message that hides the seed."""
    manglings = [
        PETER_SKEY[i:j]
        for i in range(len(PETER_SKEY) + 1)
        for j in range(i + 1, len(PETER_SKEY) + 1)
        if (i, j) != (0, len(PETER_SKEY))
    ]
    manglings += [PETER_SKEY[:i] + chr(ord(c) + 1) + PETER_SKEY[i + 1 :] for i, c in enumerate(PETER_SKEY)]
    windows = {PETER_SEED_B64[i : i + 6] for i in range(len(PETER_SEED_B64) - 5)}
    for text in manglings:
        with pytest.raises(NoteError) as caught:
            Signer.from_text(text)
        message = str(caught.value)
        assert not any(window in message for window in windows), message


def test_go_open_verifies_only_trusted_keys() -> None:
    """As in Go's TestOpen, a note signed by Peter and Enoch yields only the trusted signatures."""
    note = GO_TEXT + "\n" + PETER_LINE + ENOCH_LINE
    peter, enoch = Verifier.from_text(PETER_VKEY), Verifier.from_text(ENOCH_VKEY)
    assert open_note(note, [peter])[1] == [_sig(PETER_LINE)]
    assert open_note(note, [peter, enoch])[1] == [_sig(PETER_LINE), _sig(ENOCH_LINE)]
    with pytest.raises(SignatureError, match="no signature by a trusted key"):
        open_note(note, [])


def test_go_open_rejects_bad_signature_by_known_key() -> None:
    """A PeterNeumann line whose signature was spliced with 'ABCD' fails with SignatureError."""
    at = len("\u2014 PeterNeumann ") + 43  # Go's byte offset 60, counted in characters
    bad_line = PETER_LINE[:at] + "ABCD" + PETER_LINE[at:]
    with pytest.raises(SignatureError, match=r"invalid signature for key PeterNeumann\+c74f20a3"):
        open_note(GO_TEXT + "\n" + bad_line, [Verifier.from_text(PETER_VKEY)])


def test_repeated_signatures_reported_once() -> None:
    """Repeated identical lines by trusted and untrusted keys yield each trusted signature once."""
    note = GO_TEXT + "\n" + PETER_LINE + PETER_LINE + ENOCH_LINE + ENOCH_LINE
    assert open_note(note, [Verifier.from_text(PETER_VKEY)])[1] == [_sig(PETER_LINE)]


def test_c2sp_signed_note_example_splits_at_last_blank_line() -> None:
    """The signed-note spec example splits at its last blank line; its key id is 367ba04b."""
    text, sigs = note_signatures(C2SP_NOTE)
    assert text == ("Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n")
    assert [(s.name, s.key_id, len(s.signature)) for s in sigs] == [("quasimodo.example/salvatore", 0x367BA04B, 64)]
    assert text + "\n" + "".join(s.to_line() for s in sigs) == C2SP_NOTE


def test_c2sp_checkpoint_example_round_trips() -> None:
    """The tlog-checkpoint spec example parses to its fields and prints back identically."""
    checkpoint = Checkpoint.parse(C2SP_CHECKPOINT)
    assert checkpoint == Checkpoint("example.com/behind-the-sofa", 20852163, base64.b64decode(C2SP_ROOT_B64))
    assert checkpoint.to_text() == C2SP_CHECKPOINT


def test_c2sp_checkpoint_signature_is_a_real_sumdb_signature() -> None:
    """The spec example's signature verifies as sum.golang.org's over 'go.sum database tree'."""
    checkpoint, sigs = open_checkpoint(SUMDB_NOTE, [Verifier.from_text(SUMDB_VKEY)])
    assert (checkpoint.origin, checkpoint.size) == ("go.sum database tree", 20852163)
    assert checkpoint.root_hash == base64.b64decode(C2SP_ROOT_B64)
    assert [(s.name, s.key_id) for s in sigs] == [("sum.golang.org", 0x033DE0AE)]


def test_c2sp_cosigned_example_lines_need_matching_name_and_id() -> None:
    """The spec's cosigned example parses, but sumdb's key id under another name is ignored."""
    text, sigs = note_signatures(C2SP_COSIGNED)
    assert text == C2SP_CHECKPOINT
    assert [(s.name, s.key_id) for s in sigs] == [
        ("example.com/behind-the-sofa", 0x033DE0AE),
        ("witness.example.com/w1", 0x8D66CF3F),
    ]
    with pytest.raises(SignatureError, match="no signature by a trusted key"):
        open_note(C2SP_COSIGNED, [Verifier.from_text(SUMDB_VKEY)])


def test_c2sp_cosignature_example_timestamp() -> None:
    """The spec example cosignature carries timestamp 1679315147, the one in its message example."""
    _, sigs = note_signatures(C2SP_COSIGNED)
    assert cosignature_timestamp(sigs[1]) == 1679315147


def test_transparency_dev_cosignature_timestamp() -> None:
    """The transparency-dev cosignature vector reads as 1727964367; a plain signature is refused."""
    raw = base64.b64decode(TDEV_COSIG_B64)
    sig = NoteSignature("w", int.from_bytes(raw[:4], "big"), raw[4:])
    assert cosignature_timestamp(sig) == 1727964367
    plain = base64.b64decode(TDEV_PLAIN_SIG_B64)
    with pytest.raises(NoteError, match="has 64 signature bytes, expected 72"):
        cosignature_timestamp(NoteSignature("w", 1, plain[4:]))


def test_cosignature_fixed_key_vector() -> None:
    """A fixed witness key cosigns the spec checkpoint to a fixed line over the spec's message."""
    key = CosignerKey.from_text(WITNESS_SKEY)
    assert key.to_text() == WITNESS_SKEY
    assert key.verifier() == CosignerVerifier.from_text(WITNESS_VKEY)
    sig = cosign(C2SP_CHECKPOINT, key, 1679315147)
    assert sig.to_line() == WITNESS_LINE
    message = b"cosignature/v1\ntime 1679315147\n" + C2SP_CHECKPOINT.encode()
    assert sig.signature[:8] == (1679315147).to_bytes(8, "big")
    Ed25519PublicKey.from_public_bytes(_raw_key(WITNESS_VKEY)[1:]).verify(sig.signature[8:], message)
    assert verify_cosignature(C2SP_CHECKPOINT, sig, key.verifier()) == 1679315147


# --- properties ----------------------------------------------------------------------------


@given(text=texts, keys=st.lists(st.tuples(names, seeds), min_size=1, max_size=3))
def test_sign_then_open_round_trip(text: str, keys: list[tuple[str, bytes]]) -> None:
    """Any valid text signed by any signers opens to the same text with each distinct signature."""
    signers = [_signer(name, seed) for name, seed in keys]
    note = sign_note(text, signers)
    opened, sigs = open_note(note, [s.verifier() for s in signers])
    assert opened == text
    assert {(s.name, s.key_id) for s in sigs} == {(s.name, s.key_id) for s in signers}
    assert note_signatures(note.encode()) == (text, sigs)


@given(text=texts, name=names, seed=seeds, data=st.data())
def test_altered_text_character_fails(text: str, name: str, seed: bytes, data: st.DataObject) -> None:
    """Changing any character of the signed text makes open_note raise SignatureError."""
    assume(len(text) >= 2)
    signer = _signer(name, seed)
    note = sign_note(text, [signer])
    index = data.draw(st.integers(0, len(text) - 2))
    char = data.draw(_LINE_CHARS.filter(lambda c: c != text[index]))
    forged = text[:index] + char + text[index + 1 :] + note[len(text) :]
    with pytest.raises(SignatureError):
        open_note(forged, [signer.verifier()])


@given(text=texts, name=names, seed=seeds, data=st.data())
def test_altered_signature_byte_fails(text: str, name: str, seed: bytes, data: st.DataObject) -> None:
    """Changing any byte of the key id or signature makes open_note raise SignatureError."""
    signer = _signer(name, seed)
    sig = NoteSignature(name, signer.key_id, signer.sign(text.encode()))
    raw = bytearray(signer.key_id.to_bytes(4, "big") + sig.signature)
    raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    forged = f"{text}\n\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(SignatureError):
        open_note(forged, [signer.verifier()])


@given(text=texts, name=names, seed=seeds, data=st.data())
def test_any_flipped_byte_is_rejected(text: str, name: str, seed: bytes, data: st.DataObject) -> None:
    """Flipping bits of any one byte of an encoded signed note makes open_note raise NoteError."""
    signer = _signer(name, seed)
    encoded = bytearray(sign_note(text, [signer]).encode())
    encoded[data.draw(st.integers(0, len(encoded) - 1))] ^= data.draw(st.integers(1, 255))
    with pytest.raises(NoteError):
        open_note(bytes(encoded), [signer.verifier()])


@given(text=texts, name=names, seed=seeds, other=seeds)
def test_unknown_key_rejected(text: str, name: str, seed: bytes, other: bytes) -> None:
    """A note signed only by a key other than the trusted one raises SignatureError."""
    assume(seed != other)
    note = sign_note(text, [_signer(name, seed)])
    with pytest.raises(SignatureError):
        open_note(note, [_signer(name, other).verifier()])


@given(
    text=texts,
    trusted=st.tuples(names, seeds),
    others=st.lists(st.tuples(names, seeds), min_size=1, max_size=4),
    data=st.data(),
)
def test_extra_unknown_signatures_ignored(
    text: str,
    trusted: tuple[str, bytes],
    others: list[tuple[str, bytes]],
    data: st.DataObject,
) -> None:
    """Signatures by untrusted keys, in any order around the trusted one, are ignored."""
    assume(all(seed != trusted[1] for _, seed in others))
    signer = _signer(*trusted)
    signers = data.draw(st.permutations([signer, *(_signer(n, s) for n, s in others)]))
    _, sigs = open_note(sign_note(text, signers), [signer.verifier()])
    assert [(s.name, s.key_id) for s in sigs] == [(signer.name, signer.key_id)]


@given(checkpoint=checkpoints)
def test_checkpoint_text_round_trip(checkpoint: Checkpoint) -> None:
    """Any checkpoint prints to text that parses back to an equal checkpoint."""
    assert Checkpoint.parse(checkpoint.to_text()) == checkpoint


@given(checkpoint=checkpoints, name=names, seed=seeds)
def test_signed_checkpoint_round_trip(checkpoint: Checkpoint, name: str, seed: bytes) -> None:
    """A checkpoint signed by a log key opens back to the same checkpoint."""
    signer = _signer(name, seed)
    opened, sigs = open_checkpoint(sign_checkpoint(checkpoint, signer), [signer.verifier()])
    assert opened == checkpoint
    assert [(s.name, s.key_id) for s in sigs] == [(name, signer.key_id)]


@given(
    checkpoint=checkpoints,
    name=names,
    seed=seeds,
    timestamp=st.integers(0, 2**63 - 1),
    other=checkpoints,
)
def test_cosignature_round_trip(
    checkpoint: Checkpoint, name: str, seed: bytes, timestamp: int, other: Checkpoint
) -> None:
    """A cosignature verifies to its timestamp for its checkpoint only, and only with its key."""
    key = _cosigner(name, seed)
    sig = cosign(checkpoint.to_text(), key, timestamp)
    assert verify_cosignature(checkpoint.to_text(), sig, key.verifier()) == timestamp
    assert cosignature_timestamp(sig) == timestamp
    assume(other != checkpoint)
    assert verify_cosignature(other.to_text(), sig, key.verifier()) is None


@given(name=names, seed=seeds)
def test_key_texts_round_trip(name: str, seed: bytes) -> None:
    """Signer, verifier and cosigner key texts for any valid name parse back to the same keys."""
    signer, cosigner = _signer(name, seed), _cosigner(name, seed)
    assert Signer.from_text(signer.to_text()).to_text() == signer.to_text()
    assert Verifier.from_text(signer.verifier().to_text()) == signer.verifier()
    assert CosignerKey.from_text(cosigner.to_text()).to_text() == cosigner.to_text()
    assert CosignerVerifier.from_text(cosigner.verifier().to_text()) == cosigner.verifier()
    assert signer.key_id == compute_key_id(name, SIG_TYPE_ED25519, _seed_public(seed))
    assert cosigner.key_id == compute_key_id(name, SIG_TYPE_COSIGNATURE_V1, _seed_public(seed))


# --- witness workflow ----------------------------------------------------------------------


def test_witness_workflow_adds_and_replaces_cosignatures() -> None:
    """A cosignature added to a log-signed checkpoint verifies and a newer one replaces it."""
    log = Signer.generate("example.com/log")
    witness = CosignerKey.from_text(WITNESS_SKEY)
    checkpoint = Checkpoint("example.com/log", 7, bytes(range(32)), ("ext line",))
    note = sign_checkpoint(checkpoint, log)
    cosigned = add_signatures(note, [cosign(checkpoint.to_text(), witness, 100)])
    recosigned = add_signatures(cosigned, [cosign(checkpoint.to_text(), witness, 200)])
    assert open_checkpoint(recosigned, [log.verifier()])[0] == checkpoint
    text, sigs = note_signatures(recosigned)
    assert [s.name for s in sigs] == ["example.com/log", "witness.example.com/w1"]
    assert verify_cosignature(text, sigs[1], witness.verifier()) == 200
    assert verify_cosignature(text, sigs[0], witness.verifier()) is None
    _, verified = open_note(recosigned, [witness.verifier()])
    assert verified == [sigs[1]]


def test_cosigner_and_log_keys_are_not_interchangeable() -> None:
    """The same Ed25519 key has different key ids as a log key and as a cosigner key."""
    seed = hashlib.sha256(b"shared").digest()
    signer, cosigner = _signer("k", seed), _cosigner("k", seed)
    assert signer.key_id != cosigner.key_id
    with pytest.raises(NoteError, match="signature type 0x04, expected 0x01"):
        Verifier.from_text(cosigner.verifier().to_text())
    with pytest.raises(NoteError, match="signature type 0x01, expected 0x04"):
        CosignerVerifier.from_text(signer.verifier().to_text())
    note = sign_note(C2SP_CHECKPOINT, [signer])
    with pytest.raises(SignatureError):
        open_note(note, [cosigner.verifier()])
    sig = cosign(C2SP_CHECKPOINT, cosigner, 5)
    assert verify_cosignature(C2SP_CHECKPOINT, sig, cosigner.verifier()) == 5
    renamed = NoteSignature("k2", sig.key_id, sig.signature)
    assert verify_cosignature(C2SP_CHECKPOINT, renamed, cosigner.verifier()) is None


def test_signature_limit() -> None:
    """A note with MAX_SIGNATURES lines is accepted and one with a line more is rejected."""
    peter = Verifier.from_text(PETER_VKEY)
    assert open_note(GO_TEXT + "\n" + PETER_LINE * MAX_SIGNATURES, [peter])[0] == GO_TEXT
    with pytest.raises(NoteError, match="101 signature lines, at most 100"):
        open_note(GO_TEXT + "\n" + PETER_LINE * (MAX_SIGNATURES + 1), [peter])


@dataclass(frozen=True)
class _FakeVerifier:
    name: str
    key_id: int

    def verify(self, message: bytes, signature: bytes) -> bool:
        return True


def test_conflicting_verifiers_rejected() -> None:
    """Two different trusted keys with the same name and key id are refused as ambiguous."""
    fake = _FakeVerifier("PeterNeumann", 0xC74F20A3)
    with pytest.raises(NoteError, match=r"two different verifiers share key PeterNeumann\+c74f20a3"):
        open_note(GO_NOTE, [Verifier.from_text(PETER_VKEY), fake])
    assert open_note(GO_NOTE, [Verifier.from_text(PETER_VKEY)] * 2)[0] == GO_TEXT


# --- malformed inputs ----------------------------------------------------------------------

_GO_BAD_B64 = "\u2014 Bad Name " + PETER_SIG_B64 + "\n"


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (GO_TEXT, "note has no blank line before its signature lines"),
        (GO_TEXT + "\n", "note has no signature lines after its last blank line"),
        (GO_TEXT + "\n" + PETER_LINE[:-1], "note does not end with a newline"),
        ("\x01" + GO_NOTE, r"note contains control character U\+0001 at index 0"),
        (GO_NOTE.replace("\n", "\r\n", 1), r"note contains control character U\+000D at index 56"),
        (b"\xff" + GO_NOTE.encode(), r"note is not valid UTF-8 \(byte 0xff at offset 0\)"),
        ("\ud800" + GO_NOTE, r"note is not valid UTF-8 \(unpaired surrogate at index 0\)"),
        (GO_NOTE + "Unexpected line.\n", "signature line 2 does not start with an em dash"),
        (GO_TEXT + "\n" + _GO_BAD_B64, "signature line 1 signature is not valid base64"),
        (GO_TEXT + "\n\u2014  AAAAAAAA\n", "signature line 1 key name must be a non-empty"),
        (GO_TEXT + "\n\u2014 a+b AAAAAAAA\n", r"key name must not contain spaces, '\+'"),
        (GO_NOTE.replace("nAM=", "nAN="), "signature line 1 signature is not canonical base64"),
        (GO_TEXT + "\n\u2014 P AAAA\n", "signature line 1 has 3 signature bytes, need a 4-byte"),
        (GO_TEXT + "\n\u2014 P\n", "signature line 1 has 0 signature bytes"),
    ],
)
def test_open_note_rejects_malformed(note: str | bytes, message: str) -> None:
    """Each malformed note is refused with a NoteError naming the problem."""
    with pytest.raises(NoteError, match=message) as caught:
        open_note(note, [Verifier.from_text(PETER_VKEY)])
    assert not isinstance(caught.value, SignatureError)


def test_error_messages_truncate_long_input() -> None:
    """Error messages quote at most a short prefix of a long input and give its length."""
    with pytest.raises(NoteError, match=r"'xxxx.*'… \(5000 chars\)") as caught:
        open_note("x" * 5000, [])
    assert len(str(caught.value)) < 200


def _vkey_with(name: str, raw: bytes) -> str:
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex()
    return f"{name}+{key_id}+{base64.b64encode(raw).decode()}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PeterNeumann+c74f20a3", r"vkey must be <name>\+<hex8 key id>\+<base64 key>"),
        ("+c74f20a3+" + PETER_VKEY[22:], "vkey name must be a non-empty string"),
        ("Peter Neumann" + PETER_VKEY[12:], "vkey name must not contain spaces"),
        (PETER_VKEY.replace("c74f20a3", "C74F20A3"), "vkey key id must be 8 lowercase hex"),
        (PETER_VKEY.replace("c74f20a3", "c74f20a"), "vkey key id must be 8 lowercase hex"),
        (PETER_VKEY.replace("c74f20a3", "c74f20a4"), "key id c74f20a4 does not match the key"),
        ("PeterNeumann+c74f20a3+!!!!", "vkey public key is not valid base64"),
        (
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "vkey public key has signature type 0x65, expected 0x01",
        ),
        (
            _vkey_with("PeterNeumann", _raw_key(PETER_VKEY) + b"\0"),
            "vkey public key has 33 key bytes after the type byte, expected 32",
        ),
        (_vkey_with("PeterNeumann", b""), "vkey public key is empty"),
    ],
)
def test_verifier_from_text_rejects_malformed(text: str, message: str) -> None:
    """Each malformed vkey is refused with a NoteError naming the problem."""
    with pytest.raises(NoteError, match=message):
        Verifier.from_text(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PRIVATE+KEY+PeterNeumann+c74f20a3", r"skey must be PRIVATE\+KEY\+<name>"),
        (PETER_SKEY.lower(), r"skey must be PRIVATE\+KEY\+<name>"),
        (PETER_SKEY.replace("Peter", "Pe ter"), "skey name must not contain spaces"),
        (PETER_SKEY.replace("c74f20a3", "xyz"), "skey key id must be 8 lowercase hex digits$"),
        (PETER_SKEY.replace("c74f20a3", "c74f20a4"), "key id c74f20a4 does not match the key"),
        (PETER_SKEY[:-4] + "!!!!", "skey seed is not valid base64$"),
        (WITNESS_SKEY, "skey seed has signature type 0x04, expected 0x01"),
    ],
)
def test_signer_from_text_rejects_malformed(text: str, message: str) -> None:
    """Each malformed skey is refused with a NoteError naming the problem, not the secret."""
    with pytest.raises(NoteError, match=message):
        Signer.from_text(text)


_ROOT = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"o\n1\n{_ROOT}", "checkpoint must end with a newline"),
        ("o\n1\n", r"checkpoint has 2 line\(s\), needs origin, tree size and root hash"),
        (f"\n1\n{_ROOT}\n", "checkpoint origin line is empty"),
        (f"o\n01\n{_ROOT}\n", "tree size must be decimal digits without leading zeros: '01'"),
        (f"o\n-1\n{_ROOT}\n", "tree size must be decimal digits without leading zeros"),
        (f"o\n+1\n{_ROOT}\n", "tree size must be decimal digits without leading zeros"),
        (f"o\n1_0\n{_ROOT}\n", "tree size must be decimal digits without leading zeros"),
        (f"o\n\u0661\n{_ROOT}\n", "tree size must be decimal digits without leading zeros"),
        (f"o\n\n{_ROOT}\n", "tree size must be decimal digits without leading zeros: ''"),
        (f"o\n{2**64}\n{_ROOT}\n", r"tree size 18446744073709551616 exceeds 2\*\*64 - 1"),
        (f"o\n{'9' * 21}\n{_ROOT}\n", "tree size must be decimal digits"),
        ("o\n1\nAAAA\n", "checkpoint root hash must be 32 bytes, got 3"),
        ("o\n1\n!!!!\n", "checkpoint root hash is not valid base64"),
        (f"o\n1\n{_ROOT[:-2]}B=\n", "checkpoint root hash is not canonical base64"),
        (f"o\n1\n{_ROOT}\n\n", r"checkpoint line 4 \(an extension line\) is empty"),
        (f"o\n1\n{_ROOT}\next\n\nmore\n", r"checkpoint line 5 \(an extension line\) is empty"),
        (f"o\t\n1\n{_ROOT}\n", "checkpoint contains control character U\\+0009 at index 1"),
    ],
)
def test_checkpoint_parse_rejects_malformed(text: str, message: str) -> None:
    """Each malformed checkpoint text is refused with a NoteError naming the problem."""
    with pytest.raises(NoteError, match=message):
        Checkpoint.parse(text)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (("", 1, bytes(32), ()), "checkpoint origin must not be empty"),
        (("a\nb", 1, bytes(32), ()), "checkpoint origin must be a single line"),
        (("o", -1, bytes(32), ()), r"tree size must be from 0 to 2\*\*64 - 1, got -1"),
        (("o", 2**64, bytes(32), ()), r"tree size must be from 0 to 2\*\*64 - 1"),
        (("o", True, bytes(32), ()), "tree size must be an int, got bool"),
        (("o", 1, bytes(31), ()), "root hash must be 32 bytes, got 31"),
        (("o", 1, "x" * 32, ()), "root hash must be bytes, got str"),
        (("o", 1, bytes(32), ("",)), "checkpoint extension line 1 must not be empty"),
        (("o", 1, bytes(32), ("a", "b\nc")), "checkpoint extension line 2 must be a single"),
        (("o", 1, bytes(32), "abc"), "extensions must be a sequence of lines, not one str"),
    ],
)
def test_checkpoint_rejects_invalid_fields(fields: tuple[object, ...], message: str) -> None:
    """A Checkpoint cannot be built from fields that would not print as a valid checkpoint."""
    with pytest.raises(NoteError, match=message):
        Checkpoint(*fields)  # type: ignore[arg-type]


def test_sign_note_rejects_bad_text_and_signers() -> None:
    """sign_note refuses text without final newline or with control characters, and no signers."""
    signer = Signer.from_text(PETER_SKEY)
    with pytest.raises(NoteError, match="note text must end with a newline: 'abc'"):
        sign_note("abc", [signer])
    with pytest.raises(NoteError, match="note text contains control character U\\+0000"):
        sign_note("a\0b\n", [signer])
    with pytest.raises(NoteError, match="sign_note needs at least one signer"):
        sign_note(GO_TEXT, [])


@pytest.mark.parametrize(
    ("timestamp", "message"),
    [
        (-1, r"timestamp must be from 0 to 2\*\*63 - 1, got -1"),
        (2**63, r"timestamp must be from 0 to 2\*\*63 - 1, got 9223372036854775808"),
        (True, "timestamp must be an int, got bool"),
        ("1", "timestamp must be an int, got str"),
    ],
)
def test_cosign_rejects_bad_timestamp(timestamp: int, message: str) -> None:
    """cosign refuses timestamps that are not ints in 0..2^63 - 1."""
    with pytest.raises(NoteError, match=message):
        cosign(C2SP_CHECKPOINT, CosignerKey.from_text(WITNESS_SKEY), timestamp)


def test_cosign_rejects_non_checkpoint() -> None:
    """cosign refuses to sign text that is not a checkpoint body."""
    with pytest.raises(NoteError, match="checkpoint has 2 line"):
        cosign(GO_TEXT, CosignerKey.from_text(WITNESS_SKEY), 1)


def test_cosignature_with_overlarge_timestamp_rejected() -> None:
    """A cosignature claiming a timestamp above 2^63 - 1 neither reads nor verifies."""
    sig = NoteSignature("witness.example.com/w1", 0x7F0B8E36, b"\xff" * 8 + bytes(64))
    with pytest.raises(NoteError, match=r"timestamp 18446744073709551615 exceeds 2\*\*63 - 1"):
        cosignature_timestamp(sig)
    verifier = CosignerVerifier.from_text(WITNESS_VKEY)
    assert verify_cosignature(C2SP_CHECKPOINT, sig, verifier) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (("a b", 1, b"s"), "signature key name must not contain spaces"),
        (("a", 2**32, b"s"), "signature key id must be a uint32, got 4294967296"),
        (("a", -1, b"s"), "signature key id must be a uint32, got -1"),
        (("a", 1, b""), "signature must be non-empty bytes"),
    ],
)
def test_note_signature_rejects_invalid_fields(fields: tuple[object, ...], message: str) -> None:
    """A NoteSignature cannot be built from fields that would not print as a valid line."""
    with pytest.raises(NoteError, match=message):
        NoteSignature(*fields)  # type: ignore[arg-type]


def test_add_signatures_keeps_limit() -> None:
    """add_signatures refuses to grow a note past MAX_SIGNATURES lines."""
    sigs = [NoteSignature(f"k{i}", i, b"s") for i in range(MAX_SIGNATURES)]
    with pytest.raises(NoteError, match="note would have 101 signature lines"):
        add_signatures(GO_NOTE, sigs)


def test_reprs_hide_private_keys() -> None:
    """Signer and CosignerKey reprs show name and key id but no key material."""
    assert repr(Signer.from_text(PETER_SKEY)) == "Signer(name='PeterNeumann', key_id=0xc74f20a3)"
    assert "BP8Q" not in repr(CosignerKey.from_text(WITNESS_SKEY))
    assert re.fullmatch(
        r"CosignerVerifier\('witness\.example\.com/w1\+7f0b8e36\+.*'\)",
        repr(CosignerVerifier.from_text(WITNESS_VKEY)),
    )
