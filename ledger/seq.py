"""``Seq``: the fold's persistent append-only sequence (a centre's claims in log order, an
entity's history, a statement's settled claims).

Why not ``pyrsistent.PVector``: the garbage collector walks a container each time it scans
the generation it is in, and a ``PVector``'s traversal visits every element of its tree. A
new vector is made by every append, so each young-generation collection walked a centre's
whole list of claims — at 3 * 10^5 claims, half of the server's time went to the collector
(py-spy, docs/benchmarks.md). A ``Seq`` keeps its items in an ``immutables.Map`` from
position to item, whose nodes the collector visits one at a time: an append makes a handful
of new nodes, and a collection walks only those.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar, overload

from immutables import Map

_T = TypeVar("_T")


_NO_CHUNKS: Map[int, tuple[Any, ...]] = Map()
CHUNK = 32  # items per chunk: the last, partial one is a tuple of its own (the tail)


class Seq(Sequence[_T]):
    """An immutable sequence: ``append`` returns a new one; reading by position is O(log n).

    The items are kept in chunks of ``CHUNK`` (tuples) in an ``immutables.Map`` by chunk
    number, and the last chunk, not yet full, as a tuple of its own: an append copies that
    short tuple, and only one append in ``CHUNK`` puts a chunk into the map (a ``Map.set``
    copies a node at each level of the trie: the dearest step of an append)."""

    __slots__ = ("_chunks", "_size", "_tail")

    _chunks: Map[int, tuple[_T, ...]]
    _tail: tuple[_T, ...]
    _size: int

    def __init__(self, items: Iterable[_T] = ()) -> None:
        if not items:  # Seq(), the default of many a lookup: nothing to chunk
            self._chunks, self._tail, self._size = _NO_CHUNKS, (), 0
            return
        listed = list(items)
        full = len(listed) - len(listed) % CHUNK
        self._chunks = Map(
            (n, tuple(listed[at : at + CHUNK])) for n, at in enumerate(range(0, full, CHUNK))
        )
        self._tail = tuple(listed[full:])
        self._size = len(listed)

    @classmethod
    def _made(cls, chunks: Map[int, tuple[_T, ...]], tail: tuple[_T, ...], size: int) -> Seq[_T]:
        made: Seq[_T] = cls.__new__(cls)
        made._chunks, made._tail, made._size = chunks, tail, size
        return made

    def append(self, item: _T) -> Seq[_T]:
        tail = (*self._tail, item)
        if len(tail) < CHUNK:
            return Seq._made(self._chunks, tail, self._size + 1)
        return Seq._made(self._chunks.set(self._size // CHUNK, tail), (), self._size + 1)

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, at: int) -> _T: ...

    @overload
    def __getitem__(self, at: slice) -> list[_T]: ...

    def __getitem__(self, at: int | slice) -> _T | list[_T]:
        if isinstance(at, slice):
            return [self._at(i) for i in range(*at.indices(self._size))]
        if at < 0:
            at += self._size
        if not 0 <= at < self._size:
            raise IndexError("Seq index out of range")
        return self._at(at)

    def _at(self, at: int) -> _T:
        chunk, offset = divmod(at, CHUNK)
        if chunk == len(self._chunks):
            return self._tail[offset]
        return self._chunks[chunk][offset]

    def __iter__(self) -> Iterator[_T]:
        chunks = self._chunks
        for n in range(len(chunks)):
            yield from chunks[n]
        yield from self._tail

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Seq):
            return NotImplemented
        return (
            self._size == other._size
            and self._tail == other._tail
            and self._chunks == other._chunks
        )

    def __hash__(self) -> int:
        return hash((self._size, self._tail, self._chunks))

    def __repr__(self) -> str:
        return f"Seq({list(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Seq, (list(self),))
