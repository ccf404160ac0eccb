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


class Seq(Sequence[_T]):
    """An immutable sequence: ``append`` returns a new one; reading by position is O(log n)."""

    __slots__ = ("_items", "_size")

    def __init__(self, items: Iterable[_T] = ()) -> None:
        listed = list(items)
        self._items: Map[int, _T] = Map(enumerate(listed))
        self._size = len(listed)

    @classmethod
    def _made(cls, items: Map[int, _T], size: int) -> Seq[_T]:
        made: Seq[_T] = cls.__new__(cls)
        made._items, made._size = items, size
        return made

    def append(self, item: _T) -> Seq[_T]:
        return Seq._made(self._items.set(self._size, item), self._size + 1)

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, at: int) -> _T: ...

    @overload
    def __getitem__(self, at: slice) -> list[_T]: ...

    def __getitem__(self, at: int | slice) -> _T | list[_T]:
        if isinstance(at, slice):
            return [self._items[i] for i in range(*at.indices(self._size))]
        if at < 0:
            at += self._size
        if not 0 <= at < self._size:
            raise IndexError("Seq index out of range")
        return self._items[at]

    def __iter__(self) -> Iterator[_T]:
        items = self._items
        return (items[i] for i in range(self._size))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Seq):
            return NotImplemented
        return self._size == other._size and self._items == other._items

    def __hash__(self) -> int:
        return hash((self._size, self._items))

    def __repr__(self) -> str:
        return f"Seq({list(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Seq, (list(self),))
