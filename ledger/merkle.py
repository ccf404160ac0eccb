"""The RFC 9162 Merkle tree of the log: hashing, the compact right edge, proofs and their checks.

Pure code: standard library only, no I/O. Storage reaches it through a ``NodeReader``, a
batch lookup of stored *full*-subtree hashes keyed by ``NodeId = (level, index)``, where
``(level, index)`` is the root of the perfect subtree over leaves
``[index * 2**level, (index + 1) * 2**level)`` and level 0 holds the leaf hashes. The
storage layer keeps every full node (all levels), as returned by ``CompactRange.append``.

Proofs and roots also need the hash of a *partial* subtree (the right edge of a range whose
size is not a power of two, the "ephemeral" node). It is never stored: it is recomputed from
the full subtrees that tile that range, so every proof or root costs a single ``read`` call
with O(log n) ids and O(log n) hashing, and never touches individual leaves. The node-id
layout follows transparency-dev/merkle ``proof.Inclusion``/``proof.Consistency``, which
produce exactly the RFC 9162 PATH and SUBPROOF sequences.

Edge cases that RFC 9162 leaves open, and what this module does (consistent with the
transparency-dev/merkle probes vendored under ``tests/vectors/transparency-dev-merkle/``):

=====================================  ==========================  ==========================
case                                   proof generation            verification
=====================================  ==========================  ==========================
size / index not an int in [0, 2**64)  InvalidInput                InvalidInput
hash (leaf, root, proof element) not   InvalidInput (CompactRange  InvalidInput
exactly 32 bytes                       hashes too)
index >= size (includes size 0)        InvalidInput                VerificationError
old > new                              InvalidInput                VerificationError
old == new (any size, including 0)     empty proof                 valid only with an empty
                                                                   proof and old_root ==
                                                                   new_root; at size 0 both
                                                                   must also be EMPTY_ROOT
old == 0 < new                         empty proof (as             VerificationError: a proof
                                       transparency-dev            from the empty tree proves
                                       ``proof.Consistency``)      nothing (as transparency-dev
                                                                   ``VerifyConsistency``);
                                                                   clients with no earlier
                                                                   checkpoint have nothing to
                                                                   check
proof too long or too short            n/a                         VerificationError, before
                                                                   any hashing
root of size 0                         EMPTY_ROOT, no read         n/a
a node missing from storage            NotFound                    n/a
a stored hash not 32 bytes             VerificationError           n/a
=====================================  ==========================  ==========================

The split between the two error kinds: ``InvalidInput`` means a value is outside its domain
whatever tree it is about (a size that is not a uint64, a hash that is not 32 bytes);
``VerificationError`` means well-formed values that do not check out against each other.
The 32-byte rule makes one transparency-dev probe fail that Go accepts
(``consistency/additional/sizes-are-equal-one-and-proof-is-empty``: equal sizes, empty
proof, equal 12-byte placeholder roots); the test suite lists it as a deliberate deviation.
``node_hash`` itself takes inputs of any length, because it is the raw RFC 9162 hasher (its
known-answer tests hash 4-byte strings); lengths are checked at every public boundary above it.

``read`` is called at most once per root or proof, and not at all when no stored node is
needed (size 0 roots, size 1 inclusion proofs, consistency proofs from 0 or between equal
sizes), so storage never sees an empty batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

from ledger.errors import InvalidInput, NotFound, VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "NodeId",
    "NodeReader",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_at",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
# RFC 9162 2.1.1: MTH({}) = HASH(), the hash of the empty string.
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_U64_LIMIT = 1 << 64

NodeId = tuple[int, int]
NodeReader = Callable[[Sequence[NodeId]], Mapping[NodeId, bytes]]


# --- hashing (RFC 9162 2.1.1) ----------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = HASH(0x00 || d). The 0x00 prefix keeps leaves and nodes apart (2.1.1)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """HASH(0x01 || left || right), the interior node of RFC 9162 2.1.1."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The reference MTH of RFC 9162 2.1.1, straight from its recursive definition.

    O(n): for tests and small trees. It deliberately shares no code with ``CompactRange`` so
    that each can be checked against the other.
    """
    for i, h in enumerate(hashes):
        _check_hash(h, f"hashes[{i}]")

    def mth(lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 1:
            return hashes[lo]
        # k is the largest power of two smaller than n (2.1.1).
        k = 1 << ((n - 1).bit_length() - 1)
        return node_hash(mth(lo, lo + k), mth(lo + k, hi))

    return mth(0, len(hashes)) if hashes else EMPTY_ROOT


# --- argument checks -------------------------------------------------------------------


def _check_u64(value: object, what: str) -> int:
    # bool is an int subclass; a True size is a bug, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer, got {type(value).__name__}")
    if not 0 <= value < _U64_LIMIT:
        raise InvalidInput(
            f"{what} must be an unsigned 64-bit integer, got {value}", details={what: value}
        )
    return value


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidInput(f"{what} must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise InvalidInput(
            f"{what} must be a {HASH_SIZE}-byte SHA-256 hash, got {len(value)} bytes",
            details={"field": what, "length": len(value)},
        )
    return value


# --- node-id arithmetic ------------------------------------------------------------------


def _range_nodes(begin: int, end: int) -> list[NodeId]:
    """The maximal full subtrees that tile leaves [begin, end), left to right."""
    out: list[NodeId] = []
    while begin < end:
        # The biggest subtree that starts at `begin` is limited by begin's alignment (its
        # lowest set bit) and by the room left before `end`.
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        out.append((level, begin >> level))
        begin += 1 << level
    return out


def _fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from the roots of its maximal full subtrees, left to right.

    Each subtree is smaller than every subtree to its left, so the RFC 9162 2.1.1 split
    (largest power of two below n) always falls after the first one: fold from the right.
    """
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


class _Shape:
    """Which stored nodes a proof needs, in proof order.

    ``ids[eph_begin:eph_end]`` tile the ephemeral node (a partial subtree on the right edge)
    and become ONE proof element; every other id is one proof element by itself.
    """

    __slots__ = ("eph_begin", "eph_end", "ids")

    def __init__(self, ids: list[NodeId], eph_begin: int, eph_end: int) -> None:
        self.ids = ids
        self.eph_begin = eph_begin
        self.eph_end = eph_end

    def proof_len(self) -> int:
        return len(self.ids) - max(0, self.eph_end - self.eph_begin - 1)

    def drop_first(self) -> _Shape:
        return _Shape(self.ids[1:], self.eph_begin - 1, self.eph_end - 1)


def _path_shape(index: int, level: int, size: int) -> _Shape:
    """The nodes that prove node (level, index) is in the tree of `size` leaves.

    The first id is the node itself. Walking up from it, the path to the node and the path
    to the tree's right edge split at the "fork" node, `inner` levels up. Below the fork
    every sibling is a full subtree; the fork's right sibling is the ephemeral node over
    [end, size); above the fork every sibling is on the left, hence full: they are the
    maximal subtrees of [0, begin), nearest (lowest) first. This reproduces RFC 9162
    2.1.3.1 PATH (and, seeded at an inner node, 2.1.4.1 SUBPROOF) without recursion.
    """
    inner = (index ^ (size >> level)).bit_length() - 1
    fork_level = level + inner
    begin = (index >> inner) << fork_level
    end = begin + (1 << fork_level)
    ids: list[NodeId] = [(level, index)]
    ids.extend((level + i, (index >> i) ^ 1) for i in range(inner))
    eph_begin = len(ids)
    ids.extend(_range_nodes(end, size))
    eph_end = len(ids)
    ids.extend(reversed(_range_nodes(0, begin)))
    return _Shape(ids, eph_begin, eph_end)


def _inclusion_shape(index: int, size: int) -> _Shape:
    # The leaf itself is what the verifier already holds: not part of PATH.
    return _path_shape(index, 0, size).drop_first()


def _consistency_shape(old: int, new: int) -> _Shape:
    """SUBPROOF(old, D[new], true) of RFC 9162 2.1.4.1, for 0 < old < new.

    The old tree's last maximal subtree (level = trailing zeros of old) is the seed; the
    proof is that node followed by its inclusion path in the new tree. When old is a power
    of two the seed is the whole old tree, whose root the verifier already has, so it is
    left out (the `b = true` case of SUBPROOF).
    """
    level = (old & -old).bit_length() - 1
    index = (old - 1) >> level
    shape = _path_shape(index, level, new)
    return shape.drop_first() if index == 0 else shape


def _read_nodes(read: NodeReader, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
    if not ids:
        return {}
    got = read(list(ids))
    out: dict[NodeId, bytes] = {}
    for node in ids:
        h = got.get(node)
        if h is None:
            raise NotFound(
                f"Merkle node {node} is not stored",
                details={"level": node[0], "index": node[1]},
            )
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise VerificationError(
                f"stored Merkle node {node} is not a {HASH_SIZE}-byte hash",
                details={"level": node[0], "index": node[1]},
            )
        out[node] = h
    return out


def _proof_from_shape(shape: _Shape, read: NodeReader) -> list[bytes]:
    stored = _read_nodes(read, shape.ids)
    hashes = [stored[i] for i in shape.ids]
    proof = hashes[: shape.eph_begin]
    if shape.eph_end > shape.eph_begin:
        proof.append(_fold(hashes[shape.eph_begin : shape.eph_end]))
    proof.extend(hashes[shape.eph_end :])
    return proof


# --- the compact right edge ------------------------------------------------------------


class CompactRange:
    """The right edge of a tree of `size` leaves: the roots of its maximal full subtrees, left
    to right (one per set bit of `size`, biggest first).

    It is all an appender needs to keep: each ``append`` returns the full nodes it completes,
    for storage, and ``root`` is the tree head.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int, hashes: Sequence[bytes]) -> None:
        _check_u64(size, "size")
        want = size.bit_count()
        if len(hashes) != want:
            raise InvalidInput(
                f"a compact range of size {size} has {want} hashes, got {len(hashes)}",
                details={"size": size, "want": want, "got": len(hashes)},
            )
        self._size = size
        self._hashes = [_check_hash(h, f"hashes[{i}]") for i, h in enumerate(hashes)]

    @staticmethod
    def node_ids(size: int) -> list[NodeId]:
        """The ids of the subtrees whose hashes make up the range, left to right."""
        _check_u64(size, "size")
        return _range_nodes(0, size)

    @property
    def size(self) -> int:
        return self._size

    def hashes(self) -> list[bytes]:
        return list(self._hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[NodeId, bytes]]:
        """Add one leaf hash; return every full node this completes, the leaf first, then
        its newly complete ancestors upward."""
        _check_hash(leaf_hash, "leaf_hash")
        if self._size + 1 >= _U64_LIMIT:
            raise InvalidInput("the tree is full: its size would not fit in 64 bits")
        index = self._size
        h = leaf_hash
        new: list[tuple[NodeId, bytes]] = [((0, index), h)]
        level = 0
        # Each trailing 1 bit of the old size is a subtree of the same height just left of
        # the new node: merge with it, which completes their parent.
        while (index >> level) & 1:
            h = node_hash(self._hashes.pop(), h)
            level += 1
            new.append(((level, index >> level), h))
        self._hashes.append(h)
        self._size += 1
        return new

    def root(self) -> bytes:
        return _fold(self._hashes) if self._hashes else EMPTY_ROOT

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


# --- reading roots and proofs from storage ----------------------------------------------


def root_at(size: int, read: NodeReader) -> bytes:
    """MTH(D[size]) from the stored full subtrees of its compact range (one batch read)."""
    ids = CompactRange.node_ids(size)
    if not ids:
        return EMPTY_ROOT
    stored = _read_nodes(read, ids)
    return _fold([stored[i] for i in ids])


def inclusion_proof(index: int, size: int, read: NodeReader) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 2.1.3.1, bottom-up, from one batch read."""
    _check_u64(index, "index")
    _check_u64(size, "size")
    if index >= size:
        raise InvalidInput(
            f"leaf index {index} is not in a tree of size {size}",
            details={"index": index, "size": size},
        )
    return _proof_from_shape(_inclusion_shape(index, size), read)


def consistency_proof(old: int, new: int, read: NodeReader) -> list[bytes]:
    """PROOF(old, D[new]) = SUBPROOF(old, D[new], true) of RFC 9162 2.1.4.1, one batch read.

    Empty when old == new (nothing to prove) and when old == 0 (the empty tree is a prefix of
    every tree; transparency-dev/merkle ``proof.Consistency`` does the same). Note that
    ``verify_consistency`` refuses old == 0: see the module docstring.
    """
    _check_u64(old, "old")
    _check_u64(new, "new")
    if old > new:
        raise InvalidInput(
            f"old size {old} is larger than new size {new}", details={"old": old, "new": new}
        )
    if old in (0, new):
        return []
    return _proof_from_shape(_consistency_shape(old, new), read)


# --- verification -------------------------------------------------------------------------


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that `proof` implies for `leaf_hash` at `index` (RFC 9162 2.1.3.2 steps 1-4).

    Raises VerificationError if index >= size or the proof has the wrong length for
    (index, size); the caller compares the result with a trusted root.
    """
    _check_hash(leaf_hash, "leaf_hash")
    _check_u64(index, "index")
    _check_u64(size, "size")
    # Step 1.
    if index >= size:
        raise VerificationError(
            f"leaf index {index} is not in a tree of size {size}",
            details={"index": index, "size": size},
        )
    want = _inclusion_shape(index, size).proof_len()
    if len(proof) != want:
        # Step 4a/5 would also catch this, but only after hashing; say exactly what is wrong.
        raise VerificationError(
            f"an inclusion proof for index {index} in a tree of size {size} has {want} "
            f"hashes, got {len(proof)}",
            details={"index": index, "size": size, "want": want, "got": len(proof)},
        )
    for i, p in enumerate(proof):
        _check_hash(p, f"proof[{i}]")
    # Steps 2-4, verbatim: fn walks the leaf's position, sn the last leaf's.
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # 4b.ii: climb past the levels where this node has no right sibling.
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    # Step 5, first half.
    if sn != 0:
        raise VerificationError("inclusion proof is too short")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 2.1.3.2: raise VerificationError unless `proof` shows `leaf_hash` is leaf
    `index` of the tree of `size` leaves whose root is `root`."""
    _check_hash(root, "root")
    got = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if got != root:
        raise VerificationError(
            f"inclusion proof for index {index} does not lead to the root of size {size}",
            details={"index": index, "size": size},
        )


def verify_consistency(
    old: int, new: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """RFC 9162 2.1.4.2: raise VerificationError unless `proof` shows the tree of `old`
    leaves with root `old_root` is a prefix of the tree of `new` leaves with root `new_root`.
    """
    _check_u64(old, "old")
    _check_u64(new, "new")
    _check_hash(old_root, "old_root")
    _check_hash(new_root, "new_root")
    sizes = {"old": old, "new": new}
    if old > new:
        raise VerificationError(f"old size {old} is larger than new size {new}", details=sizes)
    if old == new:
        # Nothing to prove: the same size must mean the same tree, with nothing in between.
        if proof:
            raise VerificationError("sizes are equal but the proof is not empty", details=sizes)
        if old_root != new_root:
            raise VerificationError(f"two different roots for size {old}", details=sizes)
        if old == 0 and old_root != EMPTY_ROOT:
            raise VerificationError("the root of the empty tree is SHA-256('')", details=sizes)
        return
    if old == 0:
        raise VerificationError(
            "a consistency proof from the empty tree proves nothing", details=sizes
        )
    want = _consistency_shape(old, new).proof_len()
    if len(proof) != want:
        raise VerificationError(
            f"a consistency proof from {old} to {new} has {want} hashes, got {len(proof)}",
            details={**sizes, "want": want, "got": len(proof)},
        )
    for i, p in enumerate(proof):
        _check_hash(p, f"proof[{i}]")

    fr, sr = _consistency_roots(old, new, proof, old_root)
    if fr != old_root:
        raise VerificationError(
            f"consistency proof does not lead to the root of size {old}", details=sizes
        )
    if sr != new_root:
        raise VerificationError(
            f"consistency proof does not lead to the root of size {new}", details=sizes
        )


def _consistency_roots(
    old: int, new: int, proof: Sequence[bytes], old_root: bytes
) -> tuple[bytes, bytes]:
    """RFC 9162 2.1.4.2 steps 1-7, verbatim, for 0 < old < new and a proof of the right
    length: the (old, new) roots the proof implies."""
    sizes = {"old": old, "new": new}
    # Step 1 (empty proof) is covered by the caller's length check.
    path = list(proof)
    # Step 2: a power-of-two old tree is a node of the new one; its root starts the walk.
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    # Steps 3-4.
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5.
    fr = sr = path[0]
    # Step 6.
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is too long", details=sizes)
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # Step 7 (the root comparisons are the caller's).
    if sn != 0:
        raise VerificationError("consistency proof is too short", details=sizes)
    return fr, sr
