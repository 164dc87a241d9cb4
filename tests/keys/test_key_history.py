"""The key history (pure): its text form round-trips, and a checkpoint is trusted only on a
signature by a key valid at its size."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graven.core import canonical, merkle
from graven.core.bundle import make_bundle, verify_bundle
from graven.core.key_history import HistoryKey, KeyHistory, OutOfRange, open_trusted
from graven.core.note import Checkpoint, NoteError, SignatureError, Signer, sign_note

ORIGIN = "example.com/log"
KEYS = [Signer.generate(ORIGIN) for _ in range(4)]


def note(size: int, *signers: Signer) -> str:
    return sign_note(Checkpoint(ORIGIN, size, b"\x07" * 32).to_text(), list(signers))


@st.composite
def histories(draw: st.DrawFn) -> KeyHistory:
    count = draw(st.integers(1, 4))
    starts = sorted(draw(st.lists(st.integers(0, 10**6), min_size=count, max_size=count, unique=True)))
    keys = []
    for signer, start in zip(KEYS, starts, strict=False):
        until = draw(st.none() | st.integers(start, 2 * 10**6))
        revoked = draw(st.none() | st.integers(start, 2 * 10**6))
        keys.append(HistoryKey(signer.verifier(), start, until, revoked))
    return KeyHistory(tuple(keys))


class TestText:
    @given(histories())
    def test_round_trip(self, history: KeyHistory) -> None:
        """Any history reads back from its text form unchanged."""
        assert history == KeyHistory.parse(history.to_text())

    @pytest.mark.parametrize(
        ("text", "says"),
        [
            ("", "names no key"),
            ("key abc from 1\n", "vkey"),
            (f"key {KEYS[0].verifier().to_text()} from x\n", "from must be a tree size"),
            (f"key {KEYS[0].verifier().to_text()} since 1\n", "line 1 must be"),
            (f"key {KEYS[0].verifier().to_text()} from 1 from 2\n", "repeated word 'from'"),
            (f"key {KEYS[0].verifier().to_text()} from 5\nkey {KEYS[1].verifier().to_text()} from 2\n", "increase"),
            (f"key {KEYS[0].verifier().to_text()} from 0\nkey {KEYS[0].verifier().to_text()} from 2\n", "twice"),
            (f"key {KEYS[0].verifier().to_text()} from 0\nkey {Signer.generate('x.org/o').verifier().to_text()} "
             "from 2\n", "share the log's name"),
        ],
    )  # fmt: skip
    def test_bad_text_names_the_problem(self, text: str, says: str) -> None:
        """A malformed history is refused with a message naming what is wrong."""
        with pytest.raises(NoteError, match=says):
            KeyHistory.parse(text)


class TestTrust:
    history = KeyHistory.single(KEYS[0].verifier()).rotated(KEYS[1].verifier(), 10, 5)

    def test_rotation_ranges(self) -> None:
        """The old key vouches for sizes below start + overlap, the new one from start on."""
        old, new = self.history.keys
        assert (0, 15, None) == (old.start, old.until, old.revoked)
        assert (10, None) == (new.start, new.end)
        assert [old.valid_at(s) for s in (0, 14, 15)] == [True, True, False]
        assert [new.valid_at(s) for s in (9, 10, 10**9)] == [False, True, True]

    def test_overlap_checkpoints_carry_both_and_either_vouches(self) -> None:
        """During the overlap a note signed by both keys opens on the good signatures only."""
        _, sigs = open_trusted(note(12, KEYS[0], KEYS[1]), self.history)
        assert {KEYS[0].key_id, KEYS[1].key_id} == {s.key_id for s in sigs}
        _, sigs = open_trusted(note(20, KEYS[0], KEYS[1]), self.history)
        assert [KEYS[1].key_id] == [s.key_id for s in sigs]

    def test_old_key_past_its_overlap_is_not_trusted(self) -> None:
        """The old key alone beyond its overlap, or the new key before its start, vouches for nothing."""
        with pytest.raises(OutOfRange, match=r"valid for sizes 0\.\.14"):
            open_trusted(note(15, KEYS[0]), self.history)
        with pytest.raises(OutOfRange, match="valid from size 10"):
            open_trusted(note(3, KEYS[1]), self.history)

    def test_revoked_key_is_not_trusted_from_its_revocation_point(self) -> None:
        """A revoked key still vouches below the point and nowhere from it on."""
        history = self.history.revoked_from(f"{KEYS[0].key_id:08x}", 4)
        assert open_trusted(note(3, KEYS[0]), history)[0].size == 3
        with pytest.raises(OutOfRange, match="revoked from size 4"):
            open_trusted(note(4, KEYS[0]), history)

    def test_revocation_point_before_the_key_is_refused(self) -> None:
        """A key cannot be revoked from before its first size; an unknown key is named as such."""
        with pytest.raises(NoteError, match="from 10"):
            self.history.revoked_from(KEYS[1].verifier().to_text(), 9)
        with pytest.raises(NoteError, match="not in the key history"):
            self.history.revoked_from("0badc0de", 9)

    def test_a_key_outside_the_history_is_a_signature_error(self) -> None:
        """A note by no key of the history is refused as before (not as out of range)."""
        with pytest.raises(SignatureError) as caught:
            open_trusted(note(3, KEYS[3]), self.history)
        assert not isinstance(caught.value, OutOfRange)

    def test_a_new_key_must_keep_the_name(self) -> None:
        """A rotation keeps the log's name (the checkpoint origin witnesses key on)."""
        with pytest.raises(NoteError, match="keep the log's name"):
            self.history.rotated(Signer.generate("other.org/log").verifier(), 20, 1)


class TestBundle:
    history = KeyHistory.single(KEYS[0].verifier()).rotated(KEYS[1].verifier(), 10, 1)

    @staticmethod
    def bundle(signer: Signer) -> dict[str, object]:
        root = merkle.leaf_hash(canonical.canonical({"action": "a"}))
        signed = sign_note(Checkpoint(ORIGIN, 1, root).to_text(), [signer])
        return make_bundle({"index": 0, "action": "a"}, 1, [], signed)

    def test_a_bundle_signed_before_a_rotation_still_checks(self) -> None:
        """A bundle under the old key checks against the history that rotated away from it."""
        check = verify_bundle(self.bundle(KEYS[0]), self.history)
        assert check.ok, check.message

    def test_a_bundle_under_a_revoked_key_does_not(self) -> None:
        """Revoked from size 0, the old key's bundle is refused, saying why."""
        revoked = self.history.revoked_from(f"{KEYS[0].key_id:08x}", 0)
        check = verify_bundle(self.bundle(KEYS[0]), revoked)
        assert not check.ok
        assert "revoked from size 0" in check.message

    def test_the_new_key_does_not_vouch_for_sizes_before_it(self) -> None:
        """A bundle the new key signed for a size before its start is refused."""
        assert not verify_bundle(self.bundle(KEYS[1]), self.history).ok
