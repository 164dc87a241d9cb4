"""Offline proof bundles: one entry, its inclusion proof and a signed checkpoint, checkable anywhere.

Format (JSON): ``entry`` (the stored fields plus ``index``), ``tree_size``, ``inclusion_proof``
(base64 hashes in RFC 9162 order) and ``checkpoint`` (the signed note's text). A verifier needs
nothing but the bundle and the log's verifier key: it MUST recompute the leaf from ``entry``
(RFC 8785 of every field but ``index``) and MUST check the checkpoint's signature before trusting
its root.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graven.core import canonical, merkle
from graven.core.key_history import Trust, open_trusted
from graven.core.note import NoteError


@dataclass(frozen=True, slots=True)
class BundleCheck:
    """Whether a bundle holds, and a sentence saying why (not)."""

    ok: bool
    message: str
    index: int | None = None


def make_bundle(entry: Mapping[str, Any], tree_size: int, proof: Sequence[bytes], checkpoint: str) -> dict[str, Any]:
    """Assemble a bundle from an entry's JSON form (with ``index``), its proof and a signed note."""
    return {
        "entry": dict(entry),
        "tree_size": tree_size,
        "inclusion_proof": [base64.b64encode(h).decode() for h in proof],
        "checkpoint": checkpoint,
    }


def verify_bundle(bundle: Any, verifiers: Trust) -> BundleCheck:
    """Check a bundle against trusted verifier keys or a key history, without any database.

    With a history the checkpoint MUST carry a signature by a key valid at its size: a bundle
    signed before a rotation still checks; one signed by a key after its revocation does not.
    """
    if not isinstance(bundle, Mapping):
        return BundleCheck(False, "a bundle must be a JSON object")
    missing = [k for k in ("entry", "tree_size", "inclusion_proof", "checkpoint") if k not in bundle]
    if missing:
        return BundleCheck(False, f"the bundle lacks {', '.join(missing)}")
    entry, size, proof_text, note = (
        bundle["entry"], bundle["tree_size"], bundle["inclusion_proof"], bundle["checkpoint"]
    )  # fmt: skip
    if not isinstance(entry, Mapping) or not isinstance(entry.get("index"), int):
        return BundleCheck(False, "entry must be an object with an integer index")
    index = entry["index"]
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= index < size:
        return BundleCheck(False, f"tree_size must be an integer above the entry's index {index}", index)
    if not isinstance(note, str) or not isinstance(proof_text, list):
        return BundleCheck(False, "checkpoint must be text and inclusion_proof a list", index)
    try:
        checkpoint, signatures = open_trusted(note, verifiers)
    except NoteError as exc:
        return BundleCheck(False, f"the checkpoint is not signed by the trusted key: {exc}", index)
    if checkpoint.size != size:
        return BundleCheck(False, f"tree_size {size} differs from the checkpoint's size {checkpoint.size}", index)
    try:
        proof = [base64.b64decode(h, validate=True) for h in proof_text]
    except (binascii.Error, TypeError, ValueError):
        return BundleCheck(False, "inclusion_proof must be a list of base64 hashes", index)
    try:
        leaf = canonical.canonical({k: v for k, v in entry.items() if k != "index"})
    except canonical.CanonicalError as exc:
        return BundleCheck(False, f"the entry is not canonical JSON: {exc}", index)
    if not merkle.verify_inclusion(merkle.leaf_hash(leaf), index, size, proof, checkpoint.root_hash):
        return BundleCheck(
            False, f"entry {index} is not in the log that signed this checkpoint (the proof fails)", index
        )
    names = ", ".join(dict.fromkeys(s.name for s in signatures))
    return BundleCheck(True, f"entry {index} is included in the log of size {size} signed by {names}", index)
