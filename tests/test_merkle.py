"""ledger.merkle against the transparency-dev/merkle vectors, the RFC 6962 example tree, and
properties.

source: tests/vectors/transparency-dev-merkle/inclusion_probes.json,
        tests/vectors/transparency-dev-merkle/consistency_probes.json,
        tests/vectors/transparency-dev-merkle/reference_tree_8_leaves.json
        (transparency-dev/merkle testdata/ and testonly/, Apache-2.0; see tests/vectors/README.md)
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput, LedgerError, NotFound, VerificationError
from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    NodeId,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_at,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parent / "vectors" / "transparency-dev-merkle"
U64 = 1 << 64


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


INCLUSION = _load("inclusion_probes.json")
CONSISTENCY = _load("consistency_probes.json")
REFERENCE = _load("reference_tree_8_leaves.json")


def b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def b64_proof(value: list[str] | None) -> list[bytes]:
    # `null` means an empty proof (the Go JSON encoding of a nil slice).
    return [b64(p) for p in value or []]


def _params(probes: list[dict[str, Any]]) -> list[Any]:
    return [
        pytest.param(p, id=p["source_path"].removeprefix("testdata/").removesuffix(".json"))
        for p in probes
    ]


# --- a dict-backed store and counting reader ---------------------------------------------


class Store:
    """Every full node of a tree, as the storage layer keeps them, fed by CompactRange."""

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self.nodes: dict[NodeId, bytes] = {}
        self.range = CompactRange(0, [])
        self.calls: list[list[NodeId]] = []
        for h in leaf_hashes:
            self.append(h)

    def append(self, h: bytes) -> None:
        for node, value in self.range.append(h):
            assert node not in self.nodes, "a full node is written once"
            self.nodes[node] = value

    def read(self, ids: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
        self.calls.append(list(ids))
        return {i: self.nodes[i] for i in ids if i in self.nodes}


def leaves(n: int, seed: bytes = b"") -> list[bytes]:
    return [leaf_hash(seed + i.to_bytes(4, "big")) for i in range(n)]


def id_bound(size: int) -> int:
    return 2 * math.ceil(math.log2(size)) + 2 if size > 1 else 2


def flip(b: bytes, bit: int) -> bytes:
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# --- transparency-dev probes ----------------------------------------------------------------


def test_probe_files_are_complete() -> None:
    assert len(INCLUSION["probes"]) == INCLUSION["count"] == 98
    assert len(CONSISTENCY["probes"]) == CONSISTENCY["count"] == 98
    assert sum(not p["wantErr"] for p in INCLUSION["probes"]) == 6


@pytest.mark.parametrize("probe", _params(INCLUSION["probes"]))
def test_inclusion_probe(probe: dict[str, Any]) -> None:
    args = (
        b64(probe["leafHash"]),
        probe["leafIdx"],
        probe["treeSize"],
        b64_proof(probe["proof"]),
        b64(probe["root"]),
    )
    if probe["wantErr"]:
        with pytest.raises((VerificationError, InvalidInput)):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


# Where this module deliberately disagrees with transparency-dev/merkle, and why.
CONSISTENCY_DEVIATIONS = {
    "testdata/consistency/additional/sizes-are-equal-one-and-proof-is-empty.json": (
        "its roots are 12-byte placeholders ('don't care 2'); Go compares the bytes only, "
        "we refuse any hash that is not 32 bytes (InvalidInput)"
    ),
}


def test_consistency_deviations_are_the_only_ones() -> None:
    listed = [p for p in CONSISTENCY["probes"] if p["source_path"] in CONSISTENCY_DEVIATIONS]
    assert len(listed) == len(CONSISTENCY_DEVIATIONS)
    assert all(not p["wantErr"] for p in listed)


@pytest.mark.parametrize("probe", _params(CONSISTENCY["probes"]))
def test_consistency_probe(probe: dict[str, Any]) -> None:
    args = (
        probe["size1"],
        probe["size2"],
        b64_proof(probe["proof"]),
        b64(probe["root1"]),
        b64(probe["root2"]),
    )
    if probe["source_path"] in CONSISTENCY_DEVIATIONS:
        with pytest.raises(InvalidInput):
            verify_consistency(*args)
        # The rule the probe is about still holds with well-formed roots.
        real = hashlib.sha256(probe["root1"].encode()).digest()
        verify_consistency(probe["size1"], probe["size2"], args[2], real, real)
    elif probe["wantErr"]:
        with pytest.raises((VerificationError, InvalidInput)):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


# --- the RFC 6962 8-leaf reference tree --------------------------------------------------------


@pytest.mark.parametrize("kat", REFERENCE["hasher_kats"], ids=lambda k: k["desc"])
def test_hasher_kat(kat: dict[str, Any]) -> None:
    want = bytes.fromhex(kat["want"])
    if kat["fn"] == "empty_root":
        assert want == EMPTY_ROOT
        assert CompactRange(0, []).root() == EMPTY_ROOT == root_from_leaf_hashes([])
    elif kat["fn"] == "leaf_hash":
        data = (
            kat["input_ascii"].encode() if "input_ascii" in kat else bytes.fromhex(kat["input_hex"])
        )
        assert leaf_hash(data) == want
    else:
        assert node_hash(kat["left_ascii"].encode(), kat["right_ascii"].encode()) == want


@pytest.fixture(scope="module")
def reference_store() -> Store:
    return Store([leaf_hash(bytes.fromhex(x)) for x in REFERENCE["leaf_inputs"]])


def test_reference_node_hashes(reference_store: Store) -> None:
    want = {
        (level, i): bytes.fromhex(h)
        for level, row in enumerate(REFERENCE["node_hashes_by_level"])
        for i, h in enumerate(row)
    }
    # Exactly the full nodes of an 8-leaf tree: 8 + 4 + 2 + 1.
    assert reference_store.nodes == want


def test_reference_roots(reference_store: Store) -> None:
    hashes = [reference_store.nodes[(0, i)] for i in range(8)]
    cr = CompactRange(0, [])
    for size in range(9):
        want = bytes.fromhex(REFERENCE["root_hashes_by_size"][str(size)])
        assert cr.size == size
        assert cr.root() == want
        assert root_from_leaf_hashes(hashes[:size]) == want
        assert root_at(size, reference_store.read) == want
        if size < 8:
            cr.append(hashes[size])


@pytest.mark.parametrize(
    "case", REFERENCE["inclusion_proofs"], ids=lambda c: f"{c['leaf_index']}-in-{c['tree_size']}"
)
def test_reference_inclusion_proof(reference_store: Store, case: dict[str, Any]) -> None:
    index, size = case["leaf_index"], case["tree_size"]
    want = [bytes.fromhex(h) for h in case["proof"]]
    assert inclusion_proof(index, size, reference_store.read) == want
    root = bytes.fromhex(REFERENCE["root_hashes_by_size"][str(size)])
    verify_inclusion(reference_store.nodes[(0, index)], index, size, want, root)


@pytest.mark.parametrize(
    "case", REFERENCE["consistency_proofs"], ids=lambda c: f"{c['size1']}-to-{c['size2']}"
)
def test_reference_consistency_proof(reference_store: Store, case: dict[str, Any]) -> None:
    old, new = case["size1"], case["size2"]
    want = [bytes.fromhex(h) for h in case["proof"]]
    assert consistency_proof(old, new, reference_store.read) == want
    roots = REFERENCE["root_hashes_by_size"]
    verify_consistency(
        old, new, want, bytes.fromhex(roots[str(old)]), bytes.fromhex(roots[str(new)])
    )


# --- CompactRange -----------------------------------------------------------------------------


def test_append_reports_leaf_then_parents() -> None:
    cr = CompactRange(0, [])
    hs = leaves(8)
    for h in hs[:7]:
        cr.append(h)
    new = cr.append(hs[7])
    assert [node for node, _ in new] == [(0, 7), (1, 3), (2, 1), (3, 0)]
    assert new[0][1] == hs[7]
    assert new[-1][1] == cr.root() == root_from_leaf_hashes(hs)
    assert cr.hashes() == [cr.root()]


def test_compact_range_resumes_from_storage() -> None:
    store = Store(leaves(77))
    ids = CompactRange.node_ids(77)
    # 77 = 64 + 8 + 4 + 1: [0, 64), [64, 72), [72, 76), [76, 77).
    assert ids == [(6, 0), (3, 8), (2, 18), (0, 76)]
    resumed = CompactRange(77, [store.nodes[i] for i in ids])
    assert resumed.root() == store.range.root()
    more = leaves(90)[77:]
    for h in more:
        assert resumed.append(h) == store.range.append(h)
    assert resumed.hashes() == store.range.hashes()


def test_compact_range_rejects_bad_state() -> None:
    h = leaf_hash(b"x")
    with pytest.raises(InvalidInput):
        CompactRange(3, [h])  # popcount(3) == 2
    with pytest.raises(InvalidInput):
        CompactRange(1, [h[:31]])
    with pytest.raises(InvalidInput):
        CompactRange(-1, [])
    with pytest.raises(InvalidInput):
        CompactRange(U64, [])
    with pytest.raises(InvalidInput):
        CompactRange(0, []).append(b"short")
    full = CompactRange(U64 - 1, [h] * 64)
    with pytest.raises(InvalidInput):
        full.append(h)
    with pytest.raises(InvalidInput):
        CompactRange.node_ids(-1)


def test_root_from_leaf_hashes_rejects_bad_hash() -> None:
    with pytest.raises(InvalidInput):
        root_from_leaf_hashes([leaf_hash(b""), b"\x00" * 31])


# --- edge-case decisions (the table in ledger/merkle.py) -------------------------------------


def test_generation_edge_cases() -> None:
    store = Store(leaves(5))
    assert root_at(0, store.read) == EMPTY_ROOT
    assert inclusion_proof(0, 1, store.read) == []
    assert consistency_proof(0, 5, store.read) == []  # from the empty tree: nothing to show
    assert consistency_proof(5, 5, store.read) == []
    assert consistency_proof(0, 0, store.read) == []
    assert store.calls == []  # no empty batches reach storage
    for bad in [(5, 5), (6, 5), (-1, 5), (0, U64), (True, 5)]:
        with pytest.raises(InvalidInput):
            inclusion_proof(bad[0], bad[1], store.read)
    with pytest.raises(InvalidInput):
        consistency_proof(5, 4, store.read)
    with pytest.raises(InvalidInput):
        consistency_proof(1, U64, store.read)
    with pytest.raises(InvalidInput):
        root_at(-1, store.read)


def test_missing_or_corrupt_node() -> None:
    store = Store(leaves(6))
    with pytest.raises(NotFound):
        root_at(7, store.read)
    with pytest.raises(NotFound):
        inclusion_proof(0, 8, store.read)

    def corrupt(ids: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
        return dict.fromkeys(ids, b"\x00" * 31)

    with pytest.raises(VerificationError):
        root_at(6, corrupt)


def test_verify_inclusion_edge_cases() -> None:
    hs = leaves(5)
    store = Store(hs)
    root = root_at(5, store.read)
    proof = inclusion_proof(2, 5, store.read)
    verify_inclusion(hs[2], 2, 5, proof, root)
    # index >= size, including the empty tree: the claim is false, not malformed.
    with pytest.raises(VerificationError):
        verify_inclusion(hs[2], 5, 5, proof, root)
    with pytest.raises(VerificationError):
        verify_inclusion(hs[0], 0, 0, [], EMPTY_ROOT)
    # Out of the uint64 domain, or not 32-byte hashes: malformed.
    with pytest.raises(InvalidInput):
        verify_inclusion(hs[2], 2, U64, proof, root)
    with pytest.raises(InvalidInput):
        verify_inclusion(hs[2], -1, 5, proof, root)
    with pytest.raises(InvalidInput):
        verify_inclusion(hs[2][:31], 2, 5, proof, root)
    with pytest.raises(InvalidInput):
        verify_inclusion(hs[2], 2, 5, proof, root + b"\x00")
    with pytest.raises(InvalidInput):
        verify_inclusion(hs[2], 2, 5, [*proof[:-1], proof[-1][:16]], root)
    # Too long or too short, even by a copy of a genuine element.
    with pytest.raises(VerificationError, match="has 3 hashes, got 4"):
        verify_inclusion(hs[2], 2, 5, [*proof, proof[0]], root)
    with pytest.raises(VerificationError, match="has 3 hashes, got 2"):
        verify_inclusion(hs[2], 2, 5, proof[:2], root)
    assert root_from_inclusion_proof(hs[2], 2, 5, proof) == root


def test_verify_consistency_edge_cases() -> None:
    store = Store(leaves(7))
    r = [root_at(n, store.read) for n in range(8)]
    # Equal sizes: empty proof and equal roots; at size 0 the root must be SHA-256('').
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(4, 4, [], r[4], r[4])
    with pytest.raises(VerificationError):
        verify_consistency(0, 0, [], r[1], r[1])
    with pytest.raises(VerificationError):
        verify_consistency(4, 4, [], r[4], r[5])
    with pytest.raises(VerificationError):
        verify_consistency(4, 4, [r[4]], r[4], r[4])
    # From 0: refused even though generation gives an empty proof.
    with pytest.raises(VerificationError, match="empty tree"):
        verify_consistency(0, 7, consistency_proof(0, 7, store.read), EMPTY_ROOT, r[7])
    # old > new.
    with pytest.raises(VerificationError):
        verify_consistency(5, 4, [], r[5], r[4])
    # Lengths.
    proof = consistency_proof(3, 7, store.read)
    with pytest.raises(VerificationError):
        verify_consistency(3, 7, [*proof, r[7]], r[3], r[7])
    with pytest.raises(VerificationError):
        verify_consistency(3, 7, proof[1:], r[3], r[7])
    with pytest.raises(VerificationError):
        verify_consistency(3, 7, [], r[3], r[7])
    with pytest.raises(InvalidInput):
        verify_consistency(3, 7, proof, r[3][:31], r[7])
    with pytest.raises(InvalidInput):
        verify_consistency(3, U64, proof, r[3], r[7])
    verify_consistency(3, 7, proof, r[3], r[7])


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(size=st.integers(0, 300), seed=st.binary(max_size=8))
def test_compact_range_matches_reference(size: int, seed: bytes) -> None:
    hs = leaves(size, seed)
    cr = CompactRange(0, [])
    store = Store()
    roots = []
    for n in range(size + 1):
        assert cr.size == n
        assert cr.root() == root_from_leaf_hashes(hs[:n])
        assert len(cr.hashes()) == n.bit_count()
        roots.append(cr.root())
        if n < size:
            for node, value in cr.append(hs[n]):
                store.nodes[node] = value
    # Full nodes never change, so the final store serves the root of every earlier size.
    for n in range(size + 1):
        store.calls.clear()
        assert root_at(n, store.read) == roots[n]
        assert store.calls == ([CompactRange.node_ids(n)] if n else [])
        assert len(CompactRange.node_ids(n)) == n.bit_count()


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 300), seed=st.binary(max_size=8))
def test_inclusion_proofs_verify_for_every_index(size: int, seed: bytes) -> None:
    hs = leaves(size, seed)
    store = Store(hs)
    root = root_from_leaf_hashes(hs)
    for index in range(size):
        store.calls.clear()
        proof = inclusion_proof(index, size, store.read)
        assert len(store.calls) == (1 if proof else 0)
        assert all(len(c) <= id_bound(size) for c in store.calls)
        assert all(len(p) == HASH_SIZE for p in proof)
        verify_inclusion(hs[index], index, size, proof, root)


@settings(max_examples=25, deadline=None)
@given(new=st.integers(1, 300), seed=st.binary(max_size=8))
def test_consistency_proofs_verify_for_every_old_size(new: int, seed: bytes) -> None:
    hs = leaves(new, seed)
    store = Store(hs)
    new_root = root_from_leaf_hashes(hs)
    for old in range(1, new + 1):
        store.calls.clear()
        proof = consistency_proof(old, new, store.read)
        assert len(store.calls) == (1 if proof else 0)
        assert all(len(c) <= id_bound(new) for c in store.calls)
        verify_consistency(old, new, proof, root_at(old, store.read), new_root)


def test_every_pair_in_small_trees() -> None:
    # Exhaustive below 70 leaves: every shape of small tree, every index and every old size.
    store = Store(leaves(70))
    roots = [root_at(n, store.read) for n in range(71)]
    for new in range(1, 71):
        for i in range(new):
            verify_inclusion(
                store.nodes[(0, i)], i, new, inclusion_proof(i, new, store.read), roots[new]
            )
        for old in range(1, new + 1):
            verify_consistency(
                old, new, consistency_proof(old, new, store.read), roots[old], roots[new]
            )


@settings(max_examples=60, deadline=None)
@given(data=st.data(), size=st.integers(2, 300))
def test_flipped_bit_in_inclusion_proof_or_root_fails(data: st.DataObject, size: int) -> None:
    hs = leaves(size)
    store = Store(hs)
    root = root_at(size, store.read)
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(index, size, store.read)
    for k in range(len(proof)):
        bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1), label=f"bit in proof[{k}]")
        bad = [*proof[:k], flip(proof[k], bit), *proof[k + 1 :]]
        with pytest.raises(VerificationError):
            verify_inclusion(hs[index], index, size, bad, root)
    bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1), label="bit in root")
    with pytest.raises(VerificationError):
        verify_inclusion(hs[index], index, size, proof, flip(root, bit))
    with pytest.raises(VerificationError):
        verify_inclusion(flip(hs[index], bit), index, size, proof, root)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), new=st.integers(2, 300))
def test_flipped_bit_in_consistency_proof_or_roots_fails(data: st.DataObject, new: int) -> None:
    store = Store(leaves(new))
    old = data.draw(st.integers(1, new - 1), label="old")
    old_root, new_root = root_at(old, store.read), root_at(new, store.read)
    proof = consistency_proof(old, new, store.read)
    for k in range(len(proof)):
        bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1), label=f"bit in proof[{k}]")
        bad = [*proof[:k], flip(proof[k], bit), *proof[k + 1 :]]
        with pytest.raises(VerificationError):
            verify_consistency(old, new, bad, old_root, new_root)
    bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1), label="bit in a root")
    with pytest.raises(VerificationError):
        verify_consistency(old, new, proof, flip(old_root, bit), new_root)
    with pytest.raises(VerificationError):
        verify_consistency(old, new, proof, old_root, flip(new_root, bit))


# --- huge trees: no per-leaf work --------------------------------------------------------------


def _uniform_tree_reader(calls: list[int]) -> Any:
    """A virtual tree whose leaves are all equal, so a full subtree's hash depends only on
    its level: a consistent store for ANY size up to 2**64 - 1 in 64 hashes."""
    level_hash = [leaf_hash(b"same")]
    for _ in range(64):
        level_hash.append(node_hash(level_hash[-1], level_hash[-1]))

    def read(ids: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
        calls.append(len(ids))
        return {(level, i): level_hash[level] for level, i in ids}

    return read, level_hash


@pytest.mark.parametrize(
    ("index", "old", "size"),
    [
        (0, 1, U64 - 1),
        (U64 - 2, U64 - 2, U64 - 1),
        (123_456_789_012, 2**40, 2**40 + 12_345),
        (2**62, 2**62 + 1, 2**63),
    ],
)
def test_huge_trees(index: int, old: int, size: int) -> None:
    calls: list[int] = []
    read, level_hash = _uniform_tree_reader(calls)
    root = root_at(size, read)
    if size & (size - 1) == 0:
        assert root == level_hash[size.bit_length() - 1]
    leaf = level_hash[0]
    verify_inclusion(leaf, index, size, inclusion_proof(index, size, read), root)
    verify_consistency(old, size, consistency_proof(old, size, read), root_at(old, read), root)
    assert len(calls) == 4  # two roots, two proofs: one read each
    assert max(calls) <= id_bound(size)


def test_errors_are_ledger_errors() -> None:
    # The API layer maps LedgerError subclasses; nothing else may escape for bad input.
    for call in (
        lambda: verify_inclusion(b"", 0, 1, [], b""),
        lambda: verify_consistency(2, 1, [], b"\x00" * 32, b"\x00" * 32),
        lambda: inclusion_proof(1, 1, lambda ids: {}),
    ):
        with pytest.raises(LedgerError):
            call()


def test_empty_root_constant() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
