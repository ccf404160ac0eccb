"""The fold: ledger state is the log, applied entry by entry.

``apply`` is the single place where an entry's meaning is decided. The service runs it
before appending (a refusal raises and nothing is written) and the auditor runs the same
function over the whole log (a raise there means the log holds an entry the rules forbid).
It is deterministic: it reads no clock and no storage. Time comes from the entries: the
effective time of entry *i* is ``max(at_i, effective time of i-1)``, so that expiry and
windows never run backwards when authors' clocks differ by a little.

Each kind of entry has a ``Rule``: which roles may sign it and the handler that checks and
applies it. Handlers check everything first and mutate last, so a refusal leaves the state
as it was. Domain modules register their rules with ``@rule``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.entry import Entry
from ledger.errors import InvalidInput
from ledger.registry import KeyRegistry, RegisteredKey
from ledger.timeutil import parse_time

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


RULES: dict[str, Rule] = {}


def rule(kind: str, *roles: str) -> Callable[[Handler], Handler]:
    """Register the handler for entries of ``kind``, signable by keys with any of ``roles``."""

    def register(handler: Handler) -> Handler:
        if kind in RULES:
            raise RuntimeError(f"two rules for entry kind {kind}")
        RULES[kind] = Rule(frozenset(roles) if roles else None, handler)
        return handler

    return register


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


def apply(state: LedgerState, entry: Entry, index: int | None = None) -> Result:
    """Check ``entry`` against the state and, if it is allowed, apply it as entry ``index``."""
    index = state.size if index is None else index
    if index != state.size:
        raise InvalidInput(f"entry {index} applied to a state of size {state.size}")
    found = RULES.get(entry.kind)
    if found is None:
        raise InvalidInput(f"unknown entry kind {entry.kind!r}", reason="UNKNOWN_KIND")
    at = parse_time(entry.at)
    moment = at if state.time is None or at > state.time else state.time
    signers: tuple[RegisteredKey, ...] = ()
    if found.roles is not None:
        signers = tuple(state.registry.authorise(entry, index, found.roles))
    result = found.handle(state, entry, Context(index, moment, signers)) or {}
    state.size = index + 1
    state.time = moment
    return result


# --- the registry's rules ----------------------------------------------------------------


@rule("log.genesis")
def _genesis(state: LedgerState, entry: Entry, ctx: Context) -> None:
    state.registry.genesis(entry, ctx.index)


@rule("log.rotate")
def _rotate(state: LedgerState, entry: Entry, ctx: Context) -> None:
    state.registry.rotate(entry, ctx.index)


@rule("key.register", "registry")
def _register(state: LedgerState, entry: Entry, ctx: Context) -> None:
    state.registry.register(entry, ctx.index)


@rule("key.retire", "registry")
def _retire(state: LedgerState, entry: Entry, ctx: Context) -> None:
    state.registry.retire(entry, ctx.index)


@rule("log.note", "registry", "issuer", "service")
def _note(state: LedgerState, entry: Entry, ctx: Context) -> None:
    """A signed remark in the log (an operator's annotation: maintenance, incident, notice)."""
    text = entry.body.get("text")
    if not isinstance(text, str) or not text or len(text) > 4000:
        raise InvalidInput("log.note: body.text must be a string of 1..4000 characters")
