"""Rotating a log's signing key, and revoking a compromised one.

``rotate_key`` hands the log over from the current key to a new one with the same name (the
log's origin):

1. everything is checked first (the current key readable and the log's own, the overlap in range,
   no rotation left half done): a refusal changes nothing;
2. the new key is written to ``<key>.next`` (0600, never overwriting);
3. a ``key.rotate`` entry naming both verifier keys is recorded at index N, and the checkpoint that
   covers it is signed by both keys; the new key vouches for sizes from N + 1 on, the old one for
   ``overlap`` sizes more (its checkpoints meanwhile carry both signatures, so verifiers and
   witnesses that only know the old key keep accepting while they are updated);
4. the key history beside the key (``<key>.history``) is replaced atomically, the log's settings gain
   ``verifier_key.K`` (settings are only added), the old key moves to ``<key>.<old key id>`` (kept
   for the overlap) and the new one takes the key's place.

``revoke_key`` marks a previous key as not trusted from a tree size on: checkpoints it signed from
there are reported by ``graven verify``, not believed; the revocation is recorded as a
``key.revoke`` entry. The current key cannot be revoked: rotate first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graven.core.key_history import ROTATE_ACTION, KeyHistory
from graven.core.note import NoteError, Signer
from graven.errors import ConfigError, ValidationError
from graven.keys import (
    DEFAULT_DB,
    DEFAULT_KEY,
    history_path,
    load_signing_key,
    one_line,
    retired_path,
    stored_keys,
    write_history,
    write_key_file,
)
from graven.opening import open_trail
from graven.store.logs import path_for, select_log
from graven.trail import Trail

DEFAULT_OVERLAP = 1000
"""Tree sizes after a rotation for which the old key still co-signs (and is still trusted)."""
MAX_OVERLAP = 10**12
REVOKE_ACTION = "key.revoke"
_SYSTEM = {"type": "system", "id": "graven"}


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a rotation did: the keys, the rotation entry's index and the tree sizes each vouches for."""

    old_key: str
    new_key: str
    index: int
    start: int
    until: int

    def to_json(self) -> dict[str, Any]:
        return {"old_key": self.old_key, "new_key": self.new_key, "index": self.index,
                "new_key_from": self.start, "old_key_until": self.until}  # fmt: skip


def rotate_key(
    url: str | Path | None = None,
    *,
    signing_key: str | Path | None = None,
    overlap: int = DEFAULT_OVERLAP,
    reason: str | None = None,
    log: str | None = None,
) -> Rotation:
    """Hand the log over to a new signing key (see the module doc); nothing changes on a refusal."""
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 1 <= overlap <= MAX_OVERLAP:
        raise ValidationError("overlap", f"must be an integer from 1 to {MAX_OVERLAP} (tree sizes)", overlap)
    base, key_path = _key_path(signing_key, url, log)
    try:
        old = load_signing_key(key_path)
    except ConfigError as exc:
        raise ConfigError(f"cannot rotate: {exc}; nothing was changed") from None
    pending = key_path.with_name(key_path.name + ".next")
    retired = retired_path(key_path, old.key_id)
    for path in (pending, retired):
        if path.exists():
            raise ConfigError(f"cannot rotate: {path} exists (a rotation left half done?); nothing was changed")
    trail = open_trail(url, signing_key=base, create=False, log=log)
    try:
        history = _history(trail, old)
        new = Signer.generate(old.name)
        write_key_file(pending, new.to_text(), "signing key", "")
        trail.set_co_signers([*trail.co_signers, (new, 2**63)])
        try:
            event = {"action": ROTATE_ACTION, "actor": _SYSTEM, "targets": [{"type": "signing_key", "id": _id(new)}],
                     "metadata": {"old_key": old.verifier().to_text(), "new_key": new.verifier().to_text(),
                                  "overlap": overlap}}  # fmt: skip
            if reason is not None:
                event["reason"] = reason
            index = trail.record(event, durable="signed")
        except BaseException:
            pending.unlink(missing_ok=True)  # nothing was recorded: leave no key behind
            raise
        rotated = history.rotated(new.verifier(), index + 1, overlap)
        write_history(history_path(key_path), rotated)
        number = len(stored_keys(trail.store.settings()))
        trail.store.initialize({f"verifier_key.{number}": new.verifier().to_text()})
    finally:
        trail.close()
    os.link(key_path, retired)  # link, then unlink: never overwrites, never leaves the key nowhere
    key_path.unlink()
    os.link(pending, key_path)
    pending.unlink()
    return Rotation(old.verifier().to_text(), new.verifier().to_text(), index, index + 1, index + 1 + overlap)


def revoke_key(
    key: str,
    url: str | Path | None = None,
    *,
    signing_key: str | Path | None = None,
    start: int,
    reason: str | None = None,
    log: str | None = None,
) -> int:
    """Stop trusting the previous key ``key`` (its verifier text or key id) for checkpoints of tree
    size ``start`` and above; returns the index of the ``key.revoke`` entry."""
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValidationError("from", "must be a tree size (an integer from 0)", start)
    base, key_path = _key_path(signing_key, url, log)
    trail = open_trail(url, signing_key=base, create=False, log=log)
    try:
        if trail.signer is None:
            raise ConfigError(f"cannot revoke: the signing key {key_path} is needed to record the revocation")
        history = _history(trail, trail.signer)
        try:
            target = history.find(key)
        except NoteError as exc:
            raise ValidationError("key", one_line(exc), key) from None
        if target is history.current:
            raise ConfigError(
                "cannot revoke the key the log signs with now: rotate first (`graven key rotate`), then revoke it"
            )
        try:
            revoked = history.revoked_from(key, start)
        except NoteError as exc:
            raise ValidationError("from", one_line(exc), start) from None
        trail.set_co_signers([(s, u) for s, u in trail.co_signers if s.key_id != target.verifier.key_id])
        event = {"action": REVOKE_ACTION, "actor": _SYSTEM, "targets": [{"type": "signing_key", "id": _id(target)}],
                 "metadata": {"key": target.verifier.to_text(), "from": start}}  # fmt: skip
        if reason is not None:
            event["reason"] = reason
        index = trail.record(event, durable="signed")
        write_history(history_path(key_path), revoked)
    finally:
        trail.close()
    return index


def _key_path(signing_key: str | Path | None, url: str | Path | None, log: str | None) -> tuple[Path, Path]:
    """The key file as given (or the default) and the selected log's own (see :mod:`graven.store.logs`)."""
    db = str(url or os.environ.get("GRAVEN_DB") or DEFAULT_DB)
    _, log = select_log(db, log if log is not None else os.environ.get("GRAVEN_LOG") or None)
    base = Path(signing_key or os.environ.get("GRAVEN_SIGNING_KEY") or DEFAULT_KEY)
    return base, path_for(base, log)


def _history(trail: Trail, current: Signer) -> KeyHistory:
    """The log's key history (one key valid from the start if it never rotated); refused unless
    ``current`` is its newest key and the log is writable."""
    if trail.write_refusal is not None:
        raise ConfigError(f"cannot change the log's keys: {trail.write_refusal}; nothing was changed")
    history = trail.key_history or KeyHistory.single(current.verifier())
    if history.current.verifier.to_text() != current.verifier().to_text():
        raise ConfigError("the signing key is not the newest key of the key history beside it; nothing was changed")
    return history


def _id(key: Any) -> str:
    verifier = key.verifier() if isinstance(key, Signer) else key.verifier
    return f"{verifier.key_id:08x}"


__all__ = ["DEFAULT_OVERLAP", "REVOKE_ACTION", "ROTATE_ACTION", "Rotation", "revoke_key", "rotate_key"]
