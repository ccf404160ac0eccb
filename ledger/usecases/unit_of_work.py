"""The unit of work every use case runs in, and an in-memory one.

A use case reads the working state, signs entries with the service's keys and appends
them; the unit of work applies each entry with the fold (``ledger.fold.apply``: a refusal
raises and appends nothing) and keeps what was appended. The store's transaction
(``ledger.store.unit_of_work.Transaction``, through ``api.bootstrap``) writes them to the
log and signs a checkpoint when it commits; :class:`MemoryUnitOfWork` keeps them in a list
(simulations, tests, seeding in memory), as cosmicpython's fake unit of work does.

``state`` is read-only to callers and may be a new object after every ``append``: read it
again after appending, never keep it across an append.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from ledger.disclosure import erasure_marker
from ledger.entry import Entry
from ledger.errors import InvalidInput
from ledger.fold import apply, opened
from ledger.keys import ServiceKeys, Signer
from ledger.publication import concealed
from ledger.registry import verify_entry_signatures
from ledger.state import LedgerState, Result
from ledger.timeutil import format_time

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Appended:
    """One entry a unit of work appended: its log index, the entry as published and the
    fold's result."""

    index: int
    entry: Entry
    result: Result

    @property
    def body(self) -> Mapping[str, Any]:
        """The body as its author wrote it: concealed members opened (the author, and who
        it answers, may read them; the log publishes ``entry.body``)."""
        return opened(self.entry).body


class UnitOfWork(Protocol):
    """What a use case needs from where it runs."""

    @property
    def state(self) -> LedgerState:
        """The working state: the committed log and what this unit appended so far."""
        ...

    @property
    def keys(self) -> ServiceKeys:
        """The service's signers (log, issuer, service)."""
        ...

    def now(self) -> str:
        """The service clock, RFC 3339 UTC (the ``at`` of entries signed here)."""
        ...

    def clock_now(self) -> datetime:
        """The service clock as a time (what ``now`` writes), for comparing with it."""
        ...

    def sign(self, kind: str, body: dict[str, Any], *signers: Signer) -> Entry:
        """A new entry of ``kind`` at ``now()``, signed by ``signers``."""
        ...

    def append(self, entry: Entry, *, signatures_checked: bool = False) -> Appended:
        """Apply ``entry`` (raising if the rules refuse it) and keep it."""
        ...


def decide(
    state: LedgerState, entry: Entry, index: int, now: str, *, signed_here: bool, checked: bool
) -> tuple[Entry, LedgerState, Result]:
    """How every unit of work appends: the entry as logged, the state after it, its result.

    An entry signed elsewhere (a centre's claim) has its signatures verified, unless the
    caller ``checked`` them already, and is stamped with the ledger's time ``now``
    (``Entry.logged``): its author's clock never sets the ledger's. An entry ``signed_here``
    was signed by the service at its own clock, so its ``at`` is the ledger's time already.
    The fold refuses by raising; nothing is kept then.
    """
    if entry.erased_by is not None:
        raise InvalidInput(
            f"{entry.kind}: an entry is appended with its disclosures, not an erasure marker",
            reason="MALFORMED_BODY",
        )
    if not signed_here:
        if not checked:
            verify_entry_signatures(state.registry, entry)
        entry = entry.stamped(now)
    new_state, result = apply(state, entry, index)
    return entry, new_state, result


def erased_by_entry(done: Appended) -> tuple[int, ...]:
    """The entries whose disclosures ``done`` erased, if it is an ``erase`` entry: the unit
    of work deletes them when it keeps ``done`` (``ledger.erasure``)."""
    return tuple(done.result.get("erased", ())) if done.entry.kind == "erase" else ()


@dataclass
class MemoryUnitOfWork:
    """A unit of work over a state in memory: entries are applied and kept in a list.

    ``clock`` gives the time of the entries signed here (a fixed or moving test clock).
    Entries signed elsewhere (a centre's claim) have their signatures checked on append.
    """

    keys: ServiceKeys
    clock: Clock
    state: LedgerState = field(default_factory=LedgerState)
    appended: list[Appended] = field(default_factory=list)
    _signed_here: dict[int, Entry] = field(default_factory=dict, repr=False)

    def now(self) -> str:
        return format_time(self.clock())

    def clock_now(self) -> datetime:
        return self.clock()

    def sign(self, kind: str, body: dict[str, Any], *signers: Signer) -> Entry:
        entry = concealed(kind, self.now(), body).signed(*signers)
        self._signed_here[id(entry)] = entry
        return entry

    def append(self, entry: Entry, *, signatures_checked: bool = False) -> Appended:
        signed_here = self._signed_here.pop(id(entry), None) is entry
        index = self.state.size
        entry, self.state, result = decide(
            self.state,
            entry,
            index,
            self.now(),
            signed_here=signed_here,
            checked=signatures_checked,
        )
        done = Appended(index, entry, result)
        self.appended.append(done)
        marker = (erasure_marker(index),)
        first = self.appended[0].index
        for erased in erased_by_entry(done):
            if erased >= first:  # kept here (not in a state this unit started from)
                kept = self.appended[erased - first]
                self.appended[erased - first] = replace(kept, entry=kept.entry.disclosed(marker))
        return done

    @property
    def entries(self) -> list[Entry]:
        return [a.entry for a in self.appended]
