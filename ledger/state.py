"""The ledger's state: what the fold (``ledger.fold``) has made of the log so far.

Each domain module owns one part of the state (``LedgerState.parts``, keyed by module name)
and the handlers (``Handler``) that decide its entry kinds; ``ledger.fold`` lists which
handler decides which kind (a ``Rule``) and applies entries one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.entry import Entry
from ledger.registry import KeyRegistry, RegisteredKey

Result = dict[str, Any]


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


@dataclass
class LedgerState:
    size: int = 0
    time: datetime | None = None
    registry: KeyRegistry = field(default_factory=KeyRegistry)
    # Domain parts hang here, keyed by module name, so that this module needs no import of them.
    parts: dict[str, Any] = field(default_factory=dict)

    def part(self, name: str, factory: Callable[[], Any]) -> Any:
        if name not in self.parts:
            self.parts[name] = factory()
        return self.parts[name]
