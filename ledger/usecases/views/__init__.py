"""Read models: what the ways in show, computed from a snapshot of the state.

Every view is a function of a :class:`Snapshot` (or of a ``LedgerState`` and a time), reads
nothing else (a view that needs entry bodies the fold does not keep takes a reader for
them) and changes nothing. The modules go by area: ``vouchers`` (a voucher's balance and
caps as a centre sees it), ``entities`` (an entity's vouchers and every cap by name),
``history`` (an entity's claims, corrections and grants), ``bureau`` (the bureau's
reports), ``statements`` (settlement statements, issued and pending), ``applications``
(the application queues) and ``keys`` (the key registry).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.state import LedgerState
from ledger.timeutil import parse_time

PROOF = "/v1/log/proof/inclusion?index={}"

EntryReader = Callable[[Sequence[int]], Mapping[int, Mapping[str, Any]]]
"""The entries at some log indices, as JSON (``{"kind", "at", "body", ...}``), by index:
how a view reads what the fold does not keep (a statement's lines, a correction's reason)."""


def proof_link(index: int) -> str:
    """Where the inclusion proof of entry ``index`` is served (docs/api.md)."""
    return PROOF.format(index)


def as_of(state: LedgerState, now: datetime | str) -> datetime:
    """The time a view or a write is made at: the service clock, never behind the time the
    ledger has already reached (an entry may carry a later time than the clock reads)."""
    moment = parse_time(now) if isinstance(now, str) else now
    return state.time if state.time is not None and state.time > moment else moment


@dataclass(frozen=True)
class Snapshot:
    """The committed state, held still, and the time views are computed for."""

    state: LedgerState
    now: datetime

    @classmethod
    def at(cls, state: LedgerState, clock_now: datetime) -> Snapshot:
        return cls(state, as_of(state, clock_now))
