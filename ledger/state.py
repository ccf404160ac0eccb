"""The ledger's state: what the fold (``ledger.fold``) has made of the log so far.

Each domain module owns one part of the state (``LedgerState.parts``, keyed by module name)
and the handlers (``Handler``) that decide its entry kinds; ``ledger.fold`` lists which
handler decides which kind (a ``Rule``) and applies entries one by one.

A state never changes once the fold has made it. ``apply`` works on a *draft* of the
state (:meth:`LedgerState.draft`): the first time a handler asks the draft for a part, it
gets a shallow copy of that part, and the part's collections are persistent (``Map``,
``Seq``, tuples, frozen records), so a handler changes a part only by putting new
values into the copy's fields. The state the draft was made from, and every reader holding
it, sees nothing of it; a handler that raises halfway leaves only a draft to throw away.
That is what lets a request fail alone, and readers read without waiting for writers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from ledger.entry import Entry
from ledger.registry import KeyRegistry, RegisteredKey

Result = dict[str, Any]
_Part = TypeVar("_Part")


@dataclass(frozen=True)
class Context:
    index: int
    time: datetime  # effective time (monotone)
    signers: tuple[RegisteredKey, ...]

    def centre(self) -> str | None:
        """The centre whose key signed this entry, if any."""
        return next((k.centre for k in self.signers if k.centre), None)


Handler = Callable[["LedgerState", Entry, Context], Result | None]


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str] | None  # None: the handler authorises the signers itself
    handle: Handler


@dataclass(eq=False)
class LedgerState:
    size: int = 0
    time: datetime | None = None
    registry: KeyRegistry = field(default_factory=KeyRegistry)
    # Domain parts hang here, keyed by module name, so that this module needs no import of them.
    parts: dict[str, Any] = field(default_factory=dict)
    # A draft: the names of the parts (and "@registry") already copied for writing. None: a
    # sealed state, which nothing may change.
    _copied: set[str] | None = field(default=None, repr=False)

    def part(self, name: str, factory: Callable[[], _Part]) -> _Part:
        """The part ``name``; in a draft, this draft's own copy of it, free to change."""
        found: _Part | None = self.parts.get(name)
        if self._copied is None:
            return found if found is not None else factory()
        if name not in self._copied:
            found = _shallow_copy(found) if found is not None else factory()
            self.parts[name] = found
            self._copied.add(name)
        assert found is not None
        return found

    def read(self, name: str, factory: Callable[[], _Part]) -> _Part:
        """The part ``name`` to read only, never to change: in a draft, the draft's copy if
        it has one, else the part it shares with the state it was made from (not copied;
        a lookup that changes nothing need not pay for a copy)."""
        found: _Part | None = self.parts.get(name)
        return found if found is not None else factory()

    def edit_registry(self) -> KeyRegistry:
        """The draft's own copy of the key registry, free to change."""
        if self._copied is None:
            raise RuntimeError("a sealed state is never changed: apply entries to a draft")
        if "@registry" not in self._copied:
            self.registry = copy.copy(self.registry)
            self._copied.add("@registry")
        return self.registry

    @property
    def is_draft(self) -> bool:
        return self._copied is not None

    def draft(self) -> LedgerState:
        """A draft of this state: changes to it never reach this state."""
        return LedgerState(self.size, self.time, self.registry, dict(self.parts), set())

    def seal(self, size: int, time: datetime) -> LedgerState:
        """Finish a draft as the state at ``size`` and ``time``; it never changes again."""
        if self._copied is None:
            raise RuntimeError("only a draft is sealed")
        self.size, self.time, self._copied = size, time, None
        return self


def _shallow_copy(part: _Part) -> _Part:
    """A shallow copy of a part. Parts are plain classes: copying their ``__dict__`` takes a
    fifth of the time of ``copy.copy`` (which goes through ``__reduce_ex__``), and every
    entry the fold applies copies the parts it changes."""
    fields = getattr(part, "__dict__", None)
    if fields is None or hasattr(type(part), "__copy__"):
        return copy.copy(part)
    twin: _Part = object.__new__(type(part))
    twin.__dict__.update(fields)
    return twin
