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
from graven.core.state import replay


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
    """Check a bundle (of one entry, or of a target's state: see :func:`verify_state_bundle`)
    against trusted verifier keys or a key history, without any database.

    With a history the checkpoint MUST carry a signature by a key valid at its size: a bundle
    signed before a rotation still checks; one signed by a key after its revocation does not.
    """
    if not isinstance(bundle, Mapping):
        return BundleCheck(False, "a bundle must be a JSON object")
    if bundle.get("kind") == "state":
        return verify_state_bundle(bundle, verifiers)
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


# --- state bundles ---------------------------------------------------------------------------------
#
# A state bundle proves a target's state at a moment: ``kind: "state"``, ``target``, ``as_of``,
# ``at_index``, ``state`` (as :meth:`graven.core.state.TargetState.to_json` gives it), one signed
# ``checkpoint`` with its ``tree_size``, and ``entries``: each replayed entry as stored (with
# ``index``) and its ``inclusion_proof`` in that tree. A verifier MUST check the checkpoint's
# signature, every entry's inclusion, and that replaying the entries gives exactly ``state``.
# It proves that the state follows from entries of the signed log; it cannot prove that no other
# entry of the log changed the target (the bundle holds those the prover replayed).


def make_state_bundle(
    state: Mapping[str, Any], entries: Sequence[tuple[Mapping[str, Any], Sequence[bytes]]], tree_size: int,
    checkpoint: str,
) -> dict[str, Any]:  # fmt: skip
    """Assemble a state bundle from the state, the replayed entries (JSON form) with their proofs, and a note."""
    return {
        "kind": "state",
        "target": state["target"],
        "as_of": state["as_of"],
        "at_index": state["at_index"],
        "state": dict(state),
        "tree_size": tree_size,
        "checkpoint": checkpoint,
        "entries": [
            {"entry": dict(entry), "inclusion_proof": [base64.b64encode(h).decode() for h in proof]}
            for entry, proof in entries
        ],
    }


def verify_state_bundle(bundle: Mapping[str, Any], verifiers: Trust) -> BundleCheck:
    """Check a state bundle: signature, each entry's inclusion, and the state replayed from them."""
    missing = [k for k in ("target", "state", "entries", "tree_size", "checkpoint") if k not in bundle]
    if missing:
        return BundleCheck(False, f"the state bundle lacks {', '.join(missing)}")
    target, items, size, note = bundle["target"], bundle["entries"], bundle["tree_size"], bundle["checkpoint"]
    if not isinstance(target, Mapping) or not all(isinstance(target.get(k), str) for k in ("type", "id")):
        return BundleCheck(False, "target must be an object with a type and an id")
    if not isinstance(items, list) or not isinstance(note, str) or not isinstance(size, int) or isinstance(size, bool):
        return BundleCheck(False, "entries must be a list, checkpoint text and tree_size an integer")
    docs: list[tuple[int, dict[str, Any]]] = []
    for n, item in enumerate(items):
        if not isinstance(item, Mapping):
            return BundleCheck(False, f"entries[{n}] must be an object")
        check = verify_bundle(
            {"entry": item.get("entry"), "inclusion_proof": item.get("inclusion_proof"), "tree_size": size,
             "checkpoint": note},
            verifiers,
        )  # fmt: skip
        if not check.ok:
            return BundleCheck(False, f"entries[{n}]: {check.message}", check.index)
        entry = dict(item["entry"])
        docs.append((entry.pop("index"), entry))
    as_of, at_index = bundle.get("as_of"), bundle.get("at_index")
    try:
        replayed = replay((target["type"], target["id"]), docs, as_of=as_of, at_index=at_index).to_json()
    except (ValueError, TypeError) as exc:
        return BundleCheck(False, f"the entries cannot be replayed: {exc}")
    if len(replayed["entries"]) != len(docs):
        return BundleCheck(False, "the bundle holds entries that do not change this target by then")
    if replayed != bundle["state"]:
        return BundleCheck(False, "the state in the bundle is not what its entries replay to")
    name = f"{target['type']}:{target['id']}"
    return BundleCheck(True, f"the state of {name} follows from {len(docs)} entries of the log of size {size}, "
                             "each proven included in the signed checkpoint")  # fmt: skip
