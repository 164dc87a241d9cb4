"""RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing and proofs, pure and I/O-free.

Guarantees:

* Hashes follow RFC 9162 section 2.1 exactly: leaf = SHA-256(0x00 || data),
  node = SHA-256(0x01 || left || right), the empty tree is SHA-256(""), and a tree of
  ``n > 1`` leaves splits at the largest power of two below ``n``.
* Proofs are byte-for-byte the RFC 9162 ``PATH`` and ``PROOF`` lists, but are assembled
  from *perfect subtrees* only, so a store needs O(log n) stored hashes per proof.
  Each proof is two-phase: ``*_nodes`` names the subtrees to fetch (one query), then
  ``*_proof`` combines the fetched hashes.
* A ``Node`` ``(level, index)`` is the perfect subtree over leaves
  ``[index * 2**level, (index + 1) * 2**level)``. Appending leaf ``i`` completes exactly
  the nodes ``(l, i >> l)`` for ``l = 0..t``, ``t`` being the number of trailing one-bits
  of ``i``; their hashes, level 0 first, form the 32-byte-slotted *row* stored for ``i``,
  so node ``(l, j)`` is found in row ``(j + 1) * 2**l - 1`` at byte offset ``32 * l``.
* Tiles (C2SP ``tlog-tiles``): the tile ``(L, N)`` holds the hashes of the nodes
  ``(8 * L, 256 * N + k)`` for ``k`` below its width, the full width being 256; the tile at
  the right edge of a level is partial. Any other node is the root of a power-of-two run of
  one tile's hashes (``tile_of``), so a proof reads O(log n / 8) tiles.
* ``verify_*`` never raise: malformed input or a bad proof yields ``False``. Every other
  function raises ``ProofError`` for out-of-range arguments.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Appended",
    "Node",
    "ProofError",
    "append",
    "completed_nodes",
    "consistency_nodes",
    "consistency_proof",
    "consistency_proof_from_leaves",
    "frontier_after",
    "frontier_nodes",
    "inclusion_nodes",
    "inclusion_proof",
    "inclusion_proof_from_leaves",
    "leaf_hash",
    "node_hash",
    "node_row",
    "root_from",
    "root_nodes",
    "root_of",
    "roots_at",
    "tile_deltas",
    "tile_hashes",
    "tile_of",
    "tiles_for",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
Node = tuple[int, int]

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

# Copying a context already fed its domain-separation prefix is markedly cheaper than
# constructing a fresh one per hash (OpenSSL 3 looks the algorithm up on every
# construction), and the hot loops below hash a million nodes. The prefixed contexts
# are never updated, so sharing them between threads is safe.
_LEAF_CTX = hashlib.sha256(b"\x00")
_NODE_CTX = hashlib.sha256(b"\x01")


class ProofError(ValueError):
    """An argument is out of range (an index past the tree, sizes out of order, ...)."""


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 leaf hash SHA-256(0x00 || data)."""
    h = _LEAF_CTX.copy()
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash SHA-256(0x01 || left || right)."""
    h = _NODE_CTX.copy()
    h.update(left)
    h.update(right)
    return h.digest()


# --------------------------------------------------------------------------- checks


def _check_non_negative(name: str, value: int) -> None:
    if value < 0:
        raise ProofError(f"{name} must be >= 0, got {value}")


def _check_index(index: int, size: int) -> None:
    _check_non_negative("size", size)
    _check_non_negative("index", index)
    if index >= size:
        raise ProofError(f"index must be < size ({size}), got {index}")


def _check_sizes(old_size: int, new_size: int) -> None:
    _check_non_negative("new_size", new_size)
    _check_non_negative("old_size", old_size)
    if old_size > new_size:
        raise ProofError(f"old_size must be <= new_size ({new_size}), got {old_size}")


# ----------------------------------------------------------------- whole-tree hashing


def _parents(level: Sequence[bytes]) -> list[bytes]:
    """Hash adjacent pairs of ``level``; an odd last element is left out."""
    copy = _NODE_CTX.copy
    out: list[bytes] = []
    push = out.append
    pairs = iter(level)
    for left, right in zip(pairs, pairs, strict=False):
        h = copy()
        h.update(left)
        h.update(right)
        push(h.digest())
    return out


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Combine the perfect subtrees of a range, left to right, into its RFC 9162 hash."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the RFC 9162 tree head MTH of ``leaf_hashes`` in O(n), level by level.

    Pairing neighbours and carrying an odd last node up unchanged builds the same tree
    as the RFC's split at the largest power of two.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level: Sequence[bytes] = leaf_hashes
    while len(level) > 1:
        up = _parents(level)
        if len(level) & 1:
            up.append(level[-1])
        level = up
    return level[0]


def roots_at(leaf_hashes: Sequence[bytes], sizes: Iterable[int]) -> dict[int, bytes]:
    """Return ``{size: MTH(leaf_hashes[:size])}`` for every size, in one O(n) pass.

    Every perfect subtree is hashed once; each prefix root is then folded from the
    O(log n) perfect subtrees that cover the prefix.
    """
    limit = len(leaf_hashes)
    wanted: set[int] = set()
    for size in sizes:
        _check_non_negative("size", size)
        if size > limit:
            raise ProofError(f"size must be <= len(leaf_hashes) ({limit}), got {size}")
        wanted.add(size)
    if not wanted:
        return {}
    plan = {size: frontier_nodes(size) for size in wanted}
    needed: dict[int, list[int]] = {}
    for nodes in plan.values():
        for level_no, index in nodes:
            needed.setdefault(level_no, []).append(index)
    found: dict[Node, bytes] = {}
    top = max(wanted)
    level: Sequence[bytes] = leaf_hashes if top == limit else leaf_hashes[:top]
    level_no = 0
    while True:
        for index in needed.pop(level_no, ()):
            found[(level_no, index)] = level[index]
        if not needed:
            break
        level = _parents(level)
        level_no += 1
    return {size: _fold([found[node] for node in nodes]) for size, nodes in plan.items()}


# ------------------------------------------------------------------ perfect subtrees


def _split(size: int) -> int:
    """Return the largest power of two strictly below ``size`` (``size > 1``)."""
    return 1 << ((size - 1).bit_length() - 1)


def _perfect(start: int, width: int) -> Node:
    """Name the perfect subtree of ``width`` (a power of two) leaves starting at ``start``."""
    level_no = width.bit_length() - 1
    return (level_no, start >> level_no)


def _cover(start: int, end: int) -> list[Node]:
    """Return the perfect subtrees, left to right, whose fold is MTH(D[start:end]).

    ``start`` must be aligned as RFC 9162 subtrees are: a multiple of every power of
    two in the binary expansion of ``end - start``.
    """
    nodes: list[Node] = []
    width = end - start
    for level_no in range(width.bit_length() - 1, -1, -1):
        if width >> level_no & 1:
            nodes.append((level_no, start >> level_no))
            start += 1 << level_no
    return nodes


def frontier_nodes(size: int) -> list[Node]:
    """Return the perfect subtrees of a ``size``-leaf tree, left to right, one per set bit."""
    _check_non_negative("size", size)
    return _cover(0, size)


def root_nodes(size: int) -> list[Node]:
    """Return the perfect subtrees whose hashes ``root_from`` needs for a ``size``-leaf tree."""
    return frontier_nodes(size)


def completed_nodes(i: int) -> list[Node]:
    """Return the perfect subtrees completed by appending leaf ``i``, by level from 0.

    These are ``(l, i >> l)`` for ``l`` up to the number of trailing one-bits of ``i``:
    a node at level ``l`` is complete once its last leaf, ``(j + 1) * 2**l - 1``, exists.
    """
    _check_non_negative("i", i)
    trailing_ones = (i ^ (i + 1)).bit_length() - 1
    return [(level_no, i >> level_no) for level_no in range(trailing_ones + 1)]


def node_row(node: Node) -> tuple[int, int]:
    """Return ``(i, byte_offset)``: the row (leaf position) storing ``node`` and its offset.

    The hash is ``row[byte_offset : byte_offset + HASH_SIZE]`` of the row stored for ``i``.
    """
    level_no, index = node
    _check_non_negative("node level", level_no)
    _check_non_negative("node index", index)
    return ((index + 1) << level_no) - 1, HASH_SIZE * level_no


def _lookup(groups: list[list[Node]], hashes: Mapping[Node, bytes]) -> list[bytes]:
    """Fold each group of perfect-subtree hashes into one proof element."""
    proof: list[bytes] = []
    for group in groups:
        found: list[bytes] = []
        for node in group:
            h = hashes.get(node)
            if h is None:
                raise ProofError(f"hashes must hold every requested node, missing {node}")
            found.append(h)
        proof.append(_fold(found))
    return proof


def _flatten(groups: list[list[Node]]) -> list[Node]:
    return [node for group in groups for node in group]


# ------------------------------------------------------------------- inclusion proofs


def _inclusion_groups(index: int, size: int) -> list[list[Node]]:
    """Return, per RFC 9162 PATH element (bottom-up), the perfect subtrees it folds."""
    _check_index(index, size)
    groups: list[list[Node]] = []
    start, width = 0, size
    while width > 1:
        k = _split(width)
        if index - start < k:
            groups.append(_cover(start + k, start + width))
            width = k
        else:
            groups.append([_perfect(start, k)])
            start += k
            width -= k
    groups.reverse()
    return groups


def inclusion_nodes(index: int, size: int) -> list[Node]:
    """Return the perfect subtrees an inclusion proof of ``index`` in ``size`` leaves needs."""
    return _flatten(_inclusion_groups(index, size))


def inclusion_proof(index: int, size: int, hashes: Mapping[Node, bytes]) -> list[bytes]:
    """Return the RFC 9162 inclusion proof, given the hashes of ``inclusion_nodes``."""
    return _lookup(_inclusion_groups(index, size), hashes)


# ----------------------------------------------------------------- consistency proofs


def _consistency_groups(old_size: int, new_size: int) -> list[list[Node]]:
    """Return, per RFC 9162 PROOF element (bottom-up), the perfect subtrees it folds."""
    _check_sizes(old_size, new_size)
    if old_size in (0, new_size):
        return []
    groups: list[list[Node]] = []
    start, width, m = 0, new_size, old_size
    whole_old_tree = True  # SUBPROOF's flag b: still on the old tree's own root path
    while m != width:
        k = _split(width)
        if m <= k:
            groups.append(_cover(start + k, start + width))
            width = k
        else:
            groups.append([_perfect(start, k)])
            start += k
            width -= k
            m -= k
            whole_old_tree = False
    if not whole_old_tree:
        groups.append([_perfect(start, width)])
    groups.reverse()
    return groups


def consistency_nodes(old_size: int, new_size: int) -> list[Node]:
    """Return the perfect subtrees a consistency proof from ``old_size`` to ``new_size`` needs."""
    return _flatten(_consistency_groups(old_size, new_size))


def consistency_proof(old_size: int, new_size: int, hashes: Mapping[Node, bytes]) -> list[bytes]:
    """Return the RFC 9162 consistency proof, given the hashes of ``consistency_nodes``."""
    return _lookup(_consistency_groups(old_size, new_size), hashes)


def root_from(size: int, hashes: Mapping[Node, bytes]) -> bytes:
    """Return the tree head of ``size`` leaves, given the hashes of ``root_nodes``."""
    (root,) = _lookup([root_nodes(size)], hashes)
    return root


# -------------------------------------------------------------------------- appending


@dataclass(frozen=True)
class Appended:
    """The outcome of ``append``: rows to store, the new frontier and the new tree head."""

    rows: list[bytes]
    """Per appended leaf, its completed hashes (``completed_nodes``) concatenated, level 0 first."""
    frontier: list[bytes]
    """Hashes of ``frontier_nodes(size + len(leaf_hashes))``."""

    @functools.cached_property
    def root(self) -> bytes:
        """Tree head of the grown tree (folded from the frontier when first asked for: a writer
        needs it only when it signs, not on every append)."""
        return _fold(self.frontier)


def append(size: int, frontier: Sequence[bytes], leaf_hashes: Sequence[bytes]) -> Appended:
    """Append ``leaf_hashes`` to a ``size``-leaf tree whose frontier hashes are ``frontier``."""
    _check_non_negative("size", size)
    expected = size.bit_count()
    if len(frontier) != expected:
        raise ProofError(f"frontier must hold {expected} hashes (one per set bit of size {size}), got {len(frontier)}")
    for name, hashes in (("frontier", frontier), ("leaf_hashes", leaf_hashes)):
        for position, h in enumerate(hashes):
            if len(h) != HASH_SIZE:
                raise ProofError(f"{name}[{position}] must be {HASH_SIZE} bytes long, got {len(h)} bytes")
    stack = list(frontier)
    rows: list[bytes] = []
    push, pop, copy = stack.append, stack.pop, _NODE_CTX.copy
    i = size
    for h in leaf_hashes:
        if not i & 1:  # an even index completes no subtree: its row is its leaf hash
            push(h)
            rows.append(h)
            i += 1
            continue
        parts = [h]
        carry = i
        while carry & 1:
            node = copy()
            node.update(pop())
            node.update(h)
            h = node.digest()
            parts.append(h)
            carry >>= 1
        push(h)
        rows.append(b"".join(parts))
        i += 1
    return Appended(rows=rows, frontier=stack)


# --------------------------------------------------- reference proofs (RFC recursion)


def inclusion_proof_from_leaves(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return RFC 9162 PATH(index, D[n]) by its literal recursion: the reference oracle."""
    _check_index(index, len(leaf_hashes))
    return _path(index, leaf_hashes)


def _path(m: int, d: Sequence[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(m, d[:k]), root_of(d[k:])]
    return [*_path(m - k, d[k:]), root_of(d[:k])]


def consistency_proof_from_leaves(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return RFC 9162 PROOF(old_size, D[n]) by its literal recursion: the reference oracle."""
    _check_sizes(old_size, len(leaf_hashes))
    if old_size in (0, len(leaf_hashes)):
        return []
    return _subproof(old_size, leaf_hashes, True)


def _subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [root_of(d)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, d[:k], b), root_of(d[k:])]
    return [*_subproof(m - k, d[k:], False), root_of(d[:k])]


# ---------------------------------------------------------------------- verification


def _well_formed(*hashes: bytes, proof: Sequence[bytes]) -> bool:
    """Tell whether every hash given is exactly HASH_SIZE bytes long."""
    return all(len(h) == HASH_SIZE for h in hashes) and all(len(h) == HASH_SIZE for h in proof)


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Check an inclusion proof by the RFC 9162 section 2.1.3.2 algorithm; never raises."""
    if not 0 <= index < size or not _well_formed(leaf_hash, root, proof=proof):
        return False
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """Check a consistency proof by the RFC 9162 section 2.1.4.2 algorithm; never raises.

    Equal sizes need an empty proof and equal roots. The empty tree is consistent with
    every tree: from size 0 the proof must be empty and ``old_root`` must be EMPTY_ROOT.
    """
    if not 0 <= old_size <= new_size or not _well_formed(old_root, new_root, proof=proof):
        return False
    if old_size == 0 and old_root != EMPTY_ROOT:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


# ----------------------------------------------------------------------------- tiles

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
Tile = tuple[int, int]


def tile_of(node: Node) -> tuple[Tile, int, int]:
    """Return ``(tile, first, count)``: ``node`` is the root of ``count`` hashes of ``tile`` from slot ``first``."""
    level_no, index = node
    _check_non_negative("node level", level_no)
    _check_non_negative("node index", index)
    tile_level, height = divmod(level_no, TILE_HEIGHT)
    start = index << height
    return (tile_level, start >> TILE_HEIGHT), start & (TILE_WIDTH - 1), 1 << height


def tiles_for(nodes: Iterable[Node]) -> set[Tile]:
    """Return the tiles whose hashes ``tile_hashes`` needs for ``nodes``."""
    return {tile_of(node)[0] for node in nodes}


def tile_hashes(nodes: Iterable[Node], tiles: Mapping[Tile, bytes]) -> dict[Node, bytes]:
    """Return the hash of every node that ``tiles`` (concatenated hashes per tile) holds; others are left out."""
    out: dict[Node, bytes] = {}
    for node in nodes:
        tile, first, count = tile_of(node)
        blob = tiles.get(tile)
        if blob is None or len(blob) < HASH_SIZE * (first + count):
            continue
        level = [blob[HASH_SIZE * k : HASH_SIZE * (k + 1)] for k in range(first, first + count)]
        while len(level) > 1:
            level = _parents(level)
        out[node] = level[0]
    return out


def tile_deltas(first: int, rows: Sequence[bytes]) -> list[tuple[Tile, int, bytes]]:
    """Return, per tile that rows of leaves ``first, first + 1, ...`` (see ``append``) add to,
    ``(tile, slot, hashes)``: the hashes they add, concatenated, starting at ``slot``; by tile level, then index.
    """
    _check_non_negative("first", first)
    parts: dict[Tile, tuple[int, list[bytes]]] = {}
    for offset, row in enumerate(rows):
        i = first + offset
        for tile_level in range((len(row) // HASH_SIZE + TILE_HEIGHT - 1) // TILE_HEIGHT):
            at = HASH_SIZE * TILE_HEIGHT * tile_level
            index = i >> (TILE_HEIGHT * tile_level)
            tile = (tile_level, index >> TILE_HEIGHT)
            part = parts.get(tile)
            if part is None:
                parts[tile] = (index & (TILE_WIDTH - 1), [row[at : at + HASH_SIZE]])
            else:
                part[1].append(row[at : at + HASH_SIZE])
    return [(tile, slot, b"".join(hashes)) for tile, (slot, hashes) in sorted(parts.items())]


def frontier_after(size: int, frontier: Mapping[Node, bytes], rows: Sequence[bytes]) -> dict[Node, bytes]:
    """Return the hashes of ``frontier_nodes(size + len(rows))``, given those of ``frontier_nodes(size)``
    and the ``append`` rows of the leaves from ``size`` on."""
    out: dict[Node, bytes] = {}
    for node in frontier_nodes(size + len(rows)):
        level_no, index = node
        last = ((index + 1) << level_no) - 1
        if last >= size:
            out[node] = rows[last - size][HASH_SIZE * level_no : HASH_SIZE * (level_no + 1)]
        else:
            out[node] = frontier[node]
    return out
