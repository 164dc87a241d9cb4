"""The "verified" mark of one entry: its inclusion proof checked against the signed checkpoint.

The mark is earned, never assumed: the leaf is recomputed from the entry as stored (RFC 8785 of
every field but the index), the checkpoint's signature is checked with the trusted key, and the
RFC 9162 inclusion proof must lead from that leaf to the checkpoint's root. Blocking: run it in a
worker thread.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from graven.core import canonical, merkle
from graven.core.bundle import verify_bundle
from graven.core.note import NoteError, Verifier, open_checkpoint
from graven.errors import ConfigError
from graven.trail import Trail


@dataclass(frozen=True)
class EntryCheck:
    """Whether an entry is provably in the signed log, with the numbers that show it."""

    ok: bool
    message: str
    leaf_hash: str = ""
    tree_size: int = 0
    root: str = ""
    proof: list[str] = field(default_factory=list)
    checkpoint: str = ""
    bundle: dict[str, Any] | None = None


def check_entry(trail: Trail, index: int, key: str | None = None) -> EntryCheck:
    """Prove entry ``index`` from the store and check the proof as an outsider would."""
    try:
        bundle = trail.prove(index)
    except ConfigError as exc:  # no checkpoint covers it yet and this log cannot sign one
        return EntryCheck(False, f"Not yet provable: {exc}")
    trusted = Verifier.from_text(key or trail.verifier_key)
    verdict = verify_bundle(bundle, [trusted])
    entry = {k: v for k, v in bundle["entry"].items() if k != "index"}
    leaf = merkle.leaf_hash(canonical.canonical(entry))
    try:
        checkpoint, _ = open_checkpoint(bundle["checkpoint"], [trusted])
        root = checkpoint.root_hash.hex()
    except NoteError:
        root = ""
    proof = [base64.b64decode(h).hex() for h in bundle["inclusion_proof"]]
    message = verdict.message[:1].upper() + verdict.message[1:] + "."
    return EntryCheck(verdict.ok, message, leaf.hex(), bundle["tree_size"], root, proof, bundle["checkpoint"], bundle)
