"""Tests for graven.core.merkle: RFC 9162 hashing, stored-subtree proofs and appends."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graven.core.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    TILE_WIDTH,
    Node,
    ProofError,
    append,
    completed_nodes,
    consistency_nodes,
    consistency_proof,
    consistency_proof_from_leaves,
    frontier_after,
    frontier_nodes,
    inclusion_nodes,
    inclusion_proof,
    inclusion_proof_from_leaves,
    leaf_hash,
    node_hash,
    node_row,
    root_from,
    root_nodes,
    root_of,
    roots_at,
    tile_deltas,
    tile_hashes,
    tile_of,
    verify_consistency,
    verify_inclusion,
)

# ------------------------------------------------------------------ published vectors
# The 8-leaf tree used across Certificate Transparency implementations, with its prefix
# roots and proofs, as published in transparency-dev/merkle, proof/verify_test.go
# (variables `leaves`, `roots`, `inclusionProofs`, `consistencyProofs`). That file numbers
# inclusion leaves from 1; the indices below are 0-based.

LEAF_DATA = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
LEAVES = [leaf_hash(d) for d in LEAF_DATA]

PUBLISHED_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}

PUBLISHED_INCLUSION = [  # (index, size, proof)
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

PUBLISHED_CONSISTENCY = [  # (old_size, new_size, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")

# -------------------------------------------------------------------------- helpers


def _unhex(proof: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in proof]


def _root(size: int) -> bytes:
    return bytes.fromhex(PUBLISHED_ROOTS[size])


def _mth(d: Sequence[bytes]) -> bytes:
    """MTH straight from the RFC 9162 definition, independent of the module."""
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _split(len(d))
    return hashlib.sha256(b"\x01" + _mth(d[:k]) + _mth(d[k:])).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _inclusion_shape(index: int, size: int) -> tuple[bool, ...]:
    """Per RFC 9162 PATH element, bottom-up, whether the sibling sits on the left."""
    if size == 1:
        return ()
    k = _split(size)
    if index < k:
        return (*_inclusion_shape(index, k), False)
    return (*_inclusion_shape(index - k, size - k), True)


def _consistency_shape(old: int, new: int, b: bool = True) -> tuple[bool, tuple[bool, ...]]:
    """Per RFC 9162 SUBPROOF: whether the old root seeds the proof, then sibling sides."""
    if old == new:
        return b, ()
    k = _split(new)
    if old <= k:
        seed, sides = _consistency_shape(old, k, b)
        return seed, (*sides, False)
    seed, sides = _consistency_shape(old - k, new - k, False)
    return seed, (*sides, True)


def _leaves(size: int, seed: int) -> list[bytes]:
    return [leaf_hash(f"{seed}/{i}".encode()) for i in range(size)]


def _rows(leaves: Sequence[bytes]) -> list[bytes]:
    return append(0, [], leaves).rows


def _fetch(rows: Sequence[bytes], nodes: Sequence[Node]) -> dict[Node, bytes]:
    """Read exactly ``nodes`` from stored rows, the way the log's store does."""
    fetched: dict[Node, bytes] = {}
    for node in nodes:
        i, offset = node_row(node)
        fetched[node] = rows[i][offset : offset + HASH_SIZE]
    return fetched


def _subtree(leaves: Sequence[bytes], node: Node) -> bytes:
    level, index = node
    return _mth(leaves[index << level : (index + 1) << level])


def _flip(proof: Sequence[bytes], position: int) -> list[bytes]:
    altered = list(proof)
    altered[position] = bytes([altered[position][0] ^ 0x10]) + altered[position][1:]
    return altered


MAX_SIZE = 300
seeds = st.integers(0, 2**32)


@st.composite
def leaves_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(1, MAX_SIZE))
    return _leaves(size, draw(seeds)), draw(st.integers(0, size - 1))


@st.composite
def leaves_and_old_size(draw: st.DrawFn, min_old: int = 0) -> tuple[list[bytes], int]:
    size = draw(st.integers(max(1, min_old), MAX_SIZE))
    return _leaves(size, draw(seeds)), draw(st.integers(min_old, size))


@st.composite
def proper_consistency(draw: st.DrawFn) -> tuple[list[bytes], int]:
    """Leaves and an old size with 0 < old_size < len(leaves): a non-empty proof."""
    size = draw(st.integers(2, MAX_SIZE))
    return _leaves(size, draw(seeds)), draw(st.integers(1, size - 1))


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, 2**64))
    return draw(st.integers(0, size - 1)), size


@st.composite
def old_and_new_size(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(0, 2**64))
    return draw(st.integers(0, new)), new


slow = settings(deadline=None)

# ------------------------------------------------------------------- hashing, roots


def test_leaf_and_node_hashes_use_rfc_domain_prefixes() -> None:
    """Leaf and node hashes are SHA-256 over the 0x00 and 0x01 prefixed inputs."""
    assert hashlib.sha256(b"\x00abc").digest() == leaf_hash(b"abc")
    assert hashlib.sha256(b"\x01" + LEAVES[0] + LEAVES[1]).digest() == node_hash(LEAVES[0], LEAVES[1])


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    """Every way of asking for the root of zero leaves gives SHA-256 of the empty string."""
    expected = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert expected == EMPTY_ROOT
    assert expected == root_of([])
    assert expected == root_from(0, {})
    assert expected == roots_at([], [0])[0]
    assert expected == append(0, [], []).root


@pytest.mark.parametrize("size", range(1, 9))
def test_published_prefix_roots(size: int) -> None:
    """root_of reproduces the published root of every prefix of the 8-leaf tree."""
    assert _root(size) == root_of(LEAVES[:size])


def test_roots_at_reproduces_all_published_prefix_roots_in_one_pass() -> None:
    """roots_at returns the published root for each requested prefix size."""
    expected = {size: _root(size) for size in range(1, 9)} | {0: EMPTY_ROOT}
    assert expected == roots_at(LEAVES, [8, 3, 0, 1, 2, 4, 5, 6, 7, 3])


@given(st.integers(0, MAX_SIZE), seeds)
def test_root_of_matches_rfc_definition(size: int, seed: int) -> None:
    """The level-by-level root equals the RFC 9162 recursive MTH for any size."""
    leaves = _leaves(size, seed)
    assert _mth(leaves) == root_of(leaves)


@given(st.integers(0, MAX_SIZE), seeds, st.lists(st.integers(0, MAX_SIZE), max_size=12))
def test_roots_at_matches_root_of_for_every_prefix(size: int, seed: int, picks: list[int]) -> None:
    """roots_at gives, for each size asked, the root of that prefix."""
    leaves = _leaves(size, seed)
    sizes = [pick % (size + 1) for pick in picks]
    assert {s: root_of(leaves[:s]) for s in sizes} == roots_at(leaves, sizes)


# ------------------------------------------------------------------- storage layout


def test_completed_nodes_are_the_subtrees_whose_last_leaf_is_i() -> None:
    """Row i holds exactly the perfect subtrees ending at leaf i, by increasing level."""
    expected = [
        [(level, ((i + 1) >> level) - 1) for level in range(12) if (i + 1) % (1 << level) == 0] for i in range(2048)
    ]
    assert expected == [completed_nodes(i) for i in range(2048)]


@given(st.integers(0, 2**64))
def test_node_row_locates_each_completed_node_in_its_row(i: int) -> None:
    """node_row maps each node of row i back to row i at byte offset 32 * level."""
    expected = [(i, HASH_SIZE * level) for level, _ in completed_nodes(i)]
    assert expected == [node_row(node) for node in completed_nodes(i)]


@given(st.integers(0, 2**64))
def test_frontier_nodes_tile_the_tree_left_to_right(size: int) -> None:
    """The frontier is one perfect subtree per set bit, largest first, covering [0, size)."""
    nodes = frontier_nodes(size)
    set_bits = [level for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]
    widths = [1 << level for level, _ in nodes]
    assert set_bits == [level for level, _ in nodes]
    assert list(accumulate([0, *widths]))[:-1] == [index << level for level, index in nodes]
    assert frontier_nodes(size) == root_nodes(size)


# ------------------------------------------------------------------------- appending


@slow
@given(
    st.integers(0, MAX_SIZE),
    seeds,
    st.lists(st.integers(0, MAX_SIZE), max_size=8),
)
def test_append_in_batches_equals_append_at_once(size: int, seed: int, cuts: list[int]) -> None:
    """Appending in any batch split yields the same rows, frontier and roots as one batch."""
    leaves = _leaves(size, seed)
    bounds = sorted({0, size, *(cut % (size + 1) for cut in cuts)})
    whole = append(0, [], leaves)
    done, frontier, rows = 0, list[bytes](), list[bytes]()
    for end in bounds[1:]:
        step = append(done, frontier, leaves[done:end])
        assert root_of(leaves[:end]) == step.root
        done, frontier, rows = end, step.frontier, rows + step.rows
    assert whole.rows == rows
    assert whole.frontier == frontier
    assert root_of(leaves) == whole.root


@slow
@given(st.integers(0, MAX_SIZE), seeds)
def test_rows_and_frontier_hold_the_hashes_of_their_nodes(size: int, seed: int) -> None:
    """Each row concatenates the hashes of completed_nodes(i); the frontier those of its nodes."""
    leaves = _leaves(size, seed)
    result = append(0, [], leaves)
    expected_rows = [b"".join(_subtree(leaves, node) for node in completed_nodes(i)) for i in range(size)]
    assert expected_rows == result.rows
    assert [_subtree(leaves, node) for node in frontier_nodes(size)] == result.frontier


# ---------------------------------------------------------- proofs: published vectors


@pytest.mark.parametrize(("index", "size", "proof"), PUBLISHED_INCLUSION)
def test_published_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    """Oracle and stored-node inclusion proofs equal the published ones, and they verify."""
    expected = _unhex(proof)
    nodes = inclusion_nodes(index, size)
    assert expected == inclusion_proof_from_leaves(index, LEAVES[:size])
    assert expected == inclusion_proof(index, size, _fetch(_rows(LEAVES), nodes))
    assert verify_inclusion(LEAVES[index], index, size, expected, _root(size))


@pytest.mark.parametrize(("old", "new", "proof"), PUBLISHED_CONSISTENCY)
def test_published_consistency_proofs(old: int, new: int, proof: list[str]) -> None:
    """Oracle and stored-node consistency proofs equal the published ones, and they verify."""
    expected = _unhex(proof)
    nodes = consistency_nodes(old, new)
    assert expected == consistency_proof_from_leaves(old, LEAVES[:new])
    assert expected == consistency_proof(old, new, _fetch(_rows(LEAVES), nodes))
    assert verify_consistency(old, new, _root(old), _root(new), expected)


@pytest.mark.parametrize(("index", "size", "proof"), PUBLISHED_INCLUSION[1:])
def test_published_inclusion_proofs_reject_reference_corruptions(index: int, size: int, proof: list[str]) -> None:
    """The corruptions probed by the reference suite all fail to verify."""
    good, root, leaf = _unhex(proof), _root(size), LEAVES[index]
    probes = [
        (leaf, index - 1, size, good, root),
        (leaf, index + 1, size, good, root),
        (leaf, index ^ 2, size, good, root),
        (leaf, index, size * 2, good, root),
        (leaf, index, size // 2, good, root),
        (leaf_hash(b"WrongLeaf"), index, size, good, root),
        (leaf, index, size, good, EMPTY_ROOT),
        (leaf, index, size, good, SOME_HASH),
        (leaf, index, size, [*good, b""], root),
        (leaf, index, size, [*good, root], root),
        (leaf, index, size, [b"", *good], root),
        (leaf, index, size, [root, *good], root),
        (leaf, index, size, good[:-1], root),
        (leaf, index, size, [good[0], SOME_HASH, *good[1:]], root),
    ] + [(leaf, index, size, _flip(good, k), root) for k in range(len(good))]
    assert [False] * len(probes) == [verify_inclusion(*probe) for probe in probes]


@pytest.mark.parametrize(("old", "new", "proof"), PUBLISHED_CONSISTENCY[1:])
def test_published_consistency_proofs_reject_reference_corruptions(old: int, new: int, proof: list[str]) -> None:
    """The corruptions probed by the reference suite all fail to verify."""
    good, r1, r2 = _unhex(proof), _root(old), _root(new)
    probes = [
        (old - 1, new, r1, r2, good),
        (old + 1, new, r1, r2, good),
        (old ^ 2, new, r1, r2, good),
        (old, new * 2, r1, r2, good),
        (old, new // 2, r1, r2, good),
        (old, new, SOME_HASH, r2, good),
        (old, new, r1, SOME_HASH, good),
        (old, new, r2, r1, good),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*good, b""]),
        (old, new, r1, r2, [*good, r1]),
        (old, new, r1, r2, [*good, r2]),
        (old, new, r1, r2, [b"", *good]),
        (old, new, r1, r2, [r1, *good]),
        (old, new, r1, r2, [r2, *good]),
        (old, new, r1, r2, [good[0], *good]),
        (old, new, r1, r2, good[:-1]),
    ] + [(old, new, r1, r2, _flip(good, k)) for k in range(len(good))]
    assert [False] * len(probes) == [verify_consistency(*probe) for probe in probes]


# ------------------------------------------------- proofs: stored nodes versus oracle


@slow
@given(leaves_and_index())
def test_inclusion_proof_from_stored_nodes_equals_oracle(case: tuple[list[bytes], int]) -> None:
    """A proof assembled from just the fetched stored subtrees equals the RFC recursion."""
    leaves, index = case
    size = len(leaves)
    actual = inclusion_proof(index, size, _fetch(_rows(leaves), inclusion_nodes(index, size)))
    assert inclusion_proof_from_leaves(index, leaves) == actual
    assert verify_inclusion(leaves[index], index, size, actual, root_of(leaves))


@slow
@given(leaves_and_old_size())
def test_consistency_proof_from_stored_nodes_equals_oracle(
    case: tuple[list[bytes], int],
) -> None:
    """A proof assembled from just the fetched stored subtrees equals the RFC recursion."""
    leaves, old = case
    new = len(leaves)
    actual = consistency_proof(old, new, _fetch(_rows(leaves), consistency_nodes(old, new)))
    assert consistency_proof_from_leaves(old, leaves) == actual
    assert verify_consistency(old, new, root_of(leaves[:old]), root_of(leaves), actual)


@slow
@given(st.integers(0, MAX_SIZE), seeds)
def test_root_from_stored_nodes_equals_root_of(size: int, seed: int) -> None:
    """The tree head folded from the fetched frontier subtrees equals root_of."""
    leaves = _leaves(size, seed)
    assert root_of(leaves) == root_from(size, _fetch(_rows(leaves), root_nodes(size)))


def test_every_proof_of_every_small_tree_equals_oracle_and_verifies() -> None:
    """For every tree up to 40 leaves, every stored-node proof equals the oracle and verifies."""
    leaves = _leaves(40, 7)
    rows, roots = _rows(leaves), roots_at(leaves, range(41))
    failures: list[tuple[str, int, int]] = []
    for size in range(1, 41):
        for index in range(size):
            proof = inclusion_proof(index, size, _fetch(rows, inclusion_nodes(index, size)))
            if proof != inclusion_proof_from_leaves(index, leaves[:size]) or not verify_inclusion(
                leaves[index], index, size, proof, roots[size]
            ):
                failures.append(("inclusion", index, size))
        for old in range(size + 1):
            proof = consistency_proof(old, size, _fetch(rows, consistency_nodes(old, size)))
            if proof != consistency_proof_from_leaves(old, leaves[:size]) or not (
                verify_consistency(old, size, roots[old], roots[size], proof)
            ):
                failures.append(("consistency", old, size))
    no_failures: list[tuple[str, int, int]] = []
    assert no_failures == failures


@given(index_and_size())
def test_inclusion_needs_few_nodes_all_already_stored(case: tuple[int, int]) -> None:
    """An inclusion proof reads at most 2 distinct subtrees per bit of size, all stored."""
    index, size = case
    nodes = inclusion_nodes(index, size)
    assert len(nodes) == len(set(nodes))
    assert len(nodes) <= 2 * size.bit_length()
    assert all(node_row(node)[0] < size for node in nodes)


@given(old_and_new_size())
def test_consistency_needs_few_nodes_all_already_stored(case: tuple[int, int]) -> None:
    """A consistency proof reads at most 2 distinct subtrees per bit of size, all stored."""
    old, new = case
    nodes = consistency_nodes(old, new)
    assert len(nodes) == len(set(nodes))
    assert len(nodes) <= 2 * new.bit_length()
    assert all(node_row(node)[0] < new for node in nodes)


# --------------------------------------------------- proofs: altered proofs rejected


@slow
@given(leaves_and_index(), st.data())
def test_inclusion_rejects_any_flipped_byte(case: tuple[list[bytes], int], data: st.DataObject) -> None:
    """Changing any byte of any proof element makes the inclusion proof fail."""
    leaves, index = case
    proof = inclusion_proof_from_leaves(index, leaves)
    root = root_of(leaves)
    for k, element in enumerate(proof):
        at = data.draw(st.integers(0, HASH_SIZE - 1))
        altered = list(proof)
        altered[k] = element[:at] + bytes([element[at] ^ 0x01]) + element[at + 1 :]
        assert verify_inclusion(leaves[index], index, len(leaves), altered, root) is False


@slow
@given(leaves_and_index(), st.integers(0, MAX_SIZE))
def test_inclusion_rejects_dropped_or_added_hash(case: tuple[list[bytes], int], at: int) -> None:
    """Removing a proof element or inserting one anywhere makes the inclusion proof fail."""
    leaves, index = case
    size, root = len(leaves), root_of(leaves)
    proof = inclusion_proof_from_leaves(index, leaves)
    at %= len(proof) + 1
    added = [*proof[:at], SOME_HASH, *proof[at:]]
    assert verify_inclusion(leaves[index], index, size, added, root) is False
    if proof:
        dropped = proof[: at % len(proof)] + proof[at % len(proof) + 1 :]
        assert verify_inclusion(leaves[index], index, size, dropped, root) is False


@slow
@given(leaves_and_index(), st.integers(0, MAX_SIZE))
def test_inclusion_rejects_wrong_index_leaf_or_root(case: tuple[list[bytes], int], other: int) -> None:
    """A proof fails for any other index, another leaf, another root, or outside the tree."""
    leaves, index = case
    size, root = len(leaves), root_of(leaves)
    proof = inclusion_proof_from_leaves(index, leaves)
    other %= size
    leaf = leaves[index]
    assert (other == index) == verify_inclusion(leaf, other, size, proof, root)
    assert verify_inclusion(leaf, -1, size, proof, root) is False
    assert verify_inclusion(leaf, size, size, proof, root) is False
    assert verify_inclusion(leaf_hash(b"other"), index, size, proof, root) is False
    assert verify_inclusion(leaf, index, size, proof, SOME_HASH) is False
    assert verify_inclusion(leaf, index, size, proof, root[:-1]) is False


@slow
@given(leaves_and_index(), st.integers(-2, 2 * MAX_SIZE))
def test_inclusion_other_size_accepted_only_with_identical_path_shape(
    case: tuple[list[bytes], int], other: int
) -> None:
    """Another size verifies a proof only if the leaf's left/right path is the same there."""
    leaves, index = case
    size, root = len(leaves), root_of(leaves)
    proof = inclusion_proof_from_leaves(index, leaves)
    expected = index < other and _inclusion_shape(index, other) == _inclusion_shape(index, size)
    assert expected == verify_inclusion(leaves[index], index, other, proof, root)


@slow
@given(proper_consistency(), st.data())
def test_consistency_rejects_any_flipped_byte(case: tuple[list[bytes], int], data: st.DataObject) -> None:
    """Changing any byte of any proof element makes the consistency proof fail."""
    leaves, old = case
    new, r1, r2 = len(leaves), root_of(leaves[:old]), root_of(leaves)
    proof = consistency_proof_from_leaves(old, leaves)
    for k, element in enumerate(proof):
        at = data.draw(st.integers(0, HASH_SIZE - 1))
        altered = list(proof)
        altered[k] = element[:at] + bytes([element[at] ^ 0x80]) + element[at + 1 :]
        assert verify_consistency(old, new, r1, r2, altered) is False


@slow
@given(proper_consistency(), st.integers(0, MAX_SIZE))
def test_consistency_rejects_dropped_or_added_hash(case: tuple[list[bytes], int], at: int) -> None:
    """Removing a proof element or inserting one anywhere makes the consistency proof fail."""
    leaves, old = case
    new, r1, r2 = len(leaves), root_of(leaves[:old]), root_of(leaves)
    proof = consistency_proof_from_leaves(old, leaves)
    at_add, at_drop = at % (len(proof) + 1), at % len(proof)
    for altered in (
        [*proof[:at_add], SOME_HASH, *proof[at_add:]],
        [*proof[:at_add], r1, *proof[at_add:]],
        proof[:at_drop] + proof[at_drop + 1 :],
        [],
    ):
        assert verify_consistency(old, new, r1, r2, altered) is False


@slow
@given(proper_consistency())
def test_consistency_rejects_wrong_roots(case: tuple[list[bytes], int]) -> None:
    """A proof fails against another old root, another new root or swapped roots."""
    leaves, old = case
    new, r1, r2 = len(leaves), root_of(leaves[:old]), root_of(leaves)
    proof = consistency_proof_from_leaves(old, leaves)
    for wrong1, wrong2 in ((SOME_HASH, r2), (r1, SOME_HASH), (r2, r1), (r1[:-1], r2)):
        assert verify_consistency(old, new, wrong1, wrong2, proof) is False


@slow
@given(proper_consistency(), st.integers(-2, 2 * MAX_SIZE), st.integers(-2, 2 * MAX_SIZE))
def test_consistency_other_sizes_accepted_only_with_identical_shape(
    case: tuple[list[bytes], int], other_old: int, other_new: int
) -> None:
    """Other sizes verify a proof only if their RFC proof has the very same shape."""
    leaves, old = case
    new, r1, r2 = len(leaves), root_of(leaves[:old]), root_of(leaves)
    proof = consistency_proof_from_leaves(old, leaves)
    for o, n in ((other_old, new), (old, other_new), (other_old, other_new)):
        expected = 0 < o < n and _consistency_shape(o, n) == _consistency_shape(old, new)
        assert expected == verify_consistency(o, n, r1, r2, proof)


# ------------------------------------------------------------------------ edge cases


@given(leaves_and_old_size())
def test_consistency_from_empty_tree_needs_empty_proof(case: tuple[list[bytes], int]) -> None:
    """From size 0 the proof is empty and verifies only empty, against the empty root."""
    leaves, _ = case
    new, root = len(leaves), root_of(leaves)
    no_nodes: list[Node] = []
    no_hashes: list[bytes] = []
    assert no_nodes == consistency_nodes(0, new)
    assert no_hashes == consistency_proof_from_leaves(0, leaves)
    assert verify_consistency(0, new, EMPTY_ROOT, root, [])
    assert verify_consistency(0, new, EMPTY_ROOT, root, [SOME_HASH]) is False
    assert verify_consistency(0, new, SOME_HASH, root, []) is False


@given(leaves_and_old_size())
def test_consistency_between_equal_sizes_needs_empty_proof_and_equal_roots(
    case: tuple[list[bytes], int],
) -> None:
    """Equal sizes have an empty proof that verifies only empty and with equal roots."""
    leaves, _ = case
    size, root = len(leaves), root_of(leaves)
    no_nodes: list[Node] = []
    no_hashes: list[bytes] = []
    assert no_nodes == consistency_nodes(size, size)
    assert no_hashes == consistency_proof_from_leaves(size, leaves)
    assert verify_consistency(size, size, root, root, [])
    assert verify_consistency(size, size, root, SOME_HASH, []) is False
    assert verify_consistency(size, size, root, root, [root]) is False


def test_consistency_verification_rejects_shrinking_or_negative_sizes() -> None:
    """Sizes that go backwards or below zero never verify."""
    assert verify_consistency(2, 1, _root(2), _root(1), []) is False
    assert verify_consistency(-1, 1, EMPTY_ROOT, _root(1), []) is False
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])


def test_single_leaf_tree_inclusion_has_empty_proof() -> None:
    """In a one-leaf tree the leaf hash is the root and the proof is empty."""
    no_nodes: list[Node] = []
    assert no_nodes == inclusion_nodes(0, 1)
    assert verify_inclusion(LEAVES[0], 0, 1, [], LEAVES[0])
    assert verify_inclusion(LEAVES[0], 0, 1, [], LEAVES[1]) is False
    assert verify_inclusion(b"", 0, 1, [], b"") is False


# ----------------------------------------------------------------------- ProofError


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: inclusion_nodes(5, 5), "index must be < size (5), got 5"),
        (lambda: inclusion_nodes(-1, 5), "index must be >= 0, got -1"),
        (lambda: inclusion_proof(0, -2, {}), "size must be >= 0, got -2"),
        (lambda: inclusion_proof_from_leaves(3, LEAVES[:3]), "index must be < size (3), got 3"),
        (lambda: consistency_nodes(6, 5), "old_size must be <= new_size (5), got 6"),
        (lambda: consistency_proof(-1, 5, {}), "old_size must be >= 0, got -1"),
        (lambda: consistency_nodes(0, -1), "new_size must be >= 0, got -1"),
        (
            lambda: consistency_proof_from_leaves(4, LEAVES[:3]),
            "old_size must be <= new_size (3), got 4",
        ),
        (lambda: roots_at(LEAVES, [9]), "size must be <= len(leaf_hashes) (8), got 9"),
        (lambda: roots_at(LEAVES, [-1]), "size must be >= 0, got -1"),
        (lambda: root_nodes(-4), "size must be >= 0, got -4"),
        (lambda: completed_nodes(-1), "i must be >= 0, got -1"),
        (lambda: node_row((-1, 0)), "node level must be >= 0, got -1"),
        (lambda: node_row((0, -7)), "node index must be >= 0, got -7"),
        (
            lambda: append(3, [SOME_HASH], []),
            "frontier must hold 2 hashes (one per set bit of size 3), got 1",
        ),
        (
            lambda: append(0, [], [SOME_HASH, b"short"]),
            "leaf_hashes[1] must be 32 bytes long, got 5 bytes",
        ),
        (
            lambda: inclusion_proof(0, 2, {}),
            "hashes must hold every requested node, missing (0, 1)",
        ),
    ],
)
def test_proof_error_names_argument_limit_and_value(call: Callable[[], object], message: str) -> None:
    """Out-of-range arguments raise ProofError naming the argument, its limit and the value."""
    with pytest.raises(ProofError) as caught:
        call()
    assert message == str(caught.value)


def test_proof_error_is_a_value_error() -> None:
    """ProofError can be caught as a ValueError."""
    assert issubclass(ProofError, ValueError)


# ------------------------------------------------------------------------------ tiles


def _tiles_of(batches: Sequence[int]) -> tuple[list[bytes], dict[tuple[int, int], bytes]]:
    """Leaves appended in batches of the given sizes, with the tiles their deltas build."""
    leaves: list[bytes] = []
    tiles: dict[tuple[int, int], bytes] = {}
    for count in batches:
        new = [hashlib.sha256(len(leaves).to_bytes(4, "big") + bytes([k % 256])).digest() for k in range(count)]
        size = len(leaves)
        leaves += new
        rows = append(size, [roots_nodes_hash(leaves[:size], n) for n in frontier_nodes(size)], new).rows
        for tile, slot, hashes in tile_deltas(size, rows):
            assert len(tiles.get(tile, b"")) == 32 * slot
            tiles[tile] = tiles.get(tile, b"") + hashes
    return leaves, tiles


def roots_nodes_hash(leaves: Sequence[bytes], node: tuple[int, int]) -> bytes:
    """The hash of one perfect subtree, straight from the leaves."""
    level, index = node
    return root_of(leaves[index << level : (index + 1) << level])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 700), min_size=1, max_size=6), st.data())
def test_tiles_hold_every_proof(batches: list[int], data: st.DataObject) -> None:
    """Tiles grown by batches of any sizes answer roots, inclusion and consistency proofs exactly."""
    leaves, tiles = _tiles_of(batches)
    size = len(leaves)
    assert all(len(blob) <= 32 * TILE_WIDTH for blob in tiles.values())
    assert root_of(leaves) == root_from(size, tile_hashes(root_nodes(size), tiles))
    index = data.draw(st.integers(0, size - 1))
    hashes = tile_hashes(inclusion_nodes(index, size), tiles)
    assert inclusion_proof_from_leaves(index, leaves) == inclusion_proof(index, size, hashes)
    old = data.draw(st.integers(0, size))
    hashes = tile_hashes(consistency_nodes(old, size), tiles)
    assert consistency_proof_from_leaves(old, leaves) == consistency_proof(old, size, hashes)


@given(st.integers(0, 2000), st.integers(0, 600))
def test_frontier_after_matches_append(size: int, count: int) -> None:
    """The frontier grown from append's rows is the frontier append itself keeps."""
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size + count)]
    before = {n: roots_nodes_hash(leaves, n) for n in frontier_nodes(size)}
    done = append(size, [before[n] for n in frontier_nodes(size)], leaves[size:])
    grown = frontier_after(size, before, done.rows)
    assert done.frontier == [grown[n] for n in frontier_nodes(size + count)]


def test_tile_of_names_the_tile_and_its_slots() -> None:
    """A node maps to the tile of its level's multiple of 8, at the run of slots beneath it."""
    assert ((0, 0), 5, 1) == tile_of((0, 5))
    assert ((0, 1), 0, 1) == tile_of((0, 256))
    assert ((0, 1), 128, 128) == tile_of((7, 3))
    assert ((1, 0), 3, 1) == tile_of((8, 3))
    assert ((1, 2), 4, 4) == tile_of((10, 129))


def test_append_folds_the_root_only_when_it_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Appending a leaf that completes no subtree hashes nothing; the root (which a writer needs
    only when it signs) is folded from the frontier on first use, and is the tree's root."""
    from graven.core import merkle

    calls: list[int] = []
    real = merkle.node_hash

    def counted(left: bytes, right: bytes) -> bytes:
        calls.append(1)
        return real(left, right)

    monkeypatch.setattr(merkle, "node_hash", counted)
    leaves = [leaf_hash(bytes([i])) for i in range(7)]
    grown = append(6, [root_of(leaves[:4]), root_of(leaves[4:6])], [leaves[6]])
    assert [] == calls
    assert root_of(leaves) == grown.root
    assert 2 == len(calls)
    assert root_of(leaves) == grown.root
    assert 2 == len(calls)
