"""Wiring in one place: settings -> database -> keys -> the folded log -> the service.

On first run the log is empty; ``open_service`` then writes its first entries
(``ledger.usecases.commands.log.start_log``): the genesis (the log key), the issuer,
service and centre keys, and the round in force, so that a fresh service already has
entries to audit.

Every way in reaches the ledger through :class:`Service`: reads through ``reading()`` (the
committed state, held still, and the time views are computed for), writes through
``write()``/``submit()``, which hand a use case and its arguments to the group-commit
sequencer; the sequencer runs it in its shared transaction, seen by the use case as a
unit of work (``ledger.store.unit_of_work.Transaction``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from api import metrics
from api.errors import ConfigurationError, DeadlinePassed
from api.keystore import load_centre_keys, load_service_keys
from api.settings import Settings
from ledger.errors import LedgerError
from ledger.keys import ServiceKeys, Signer
from ledger.policy import Policy
from ledger.registry import KeyRegistry
from ledger.store.db import make_engine, migrate
from ledger.store.log import LogStore
from ledger.store.sequencer import Sequencer
from ledger.store.tokens import TokenStore
from ledger.store.unit_of_work import Clock, FoldedLog, Transaction, system_clock
from ledger.timeutil import parse_time
from ledger.tlogpolicy import Policy as WitnessPolicy
from ledger.tlogpolicy import parse_policy
from ledger.usecases import Snapshot, UnitOfWork
from ledger.usecases.commands.log import start_log

P = ParamSpec("P")
R = TypeVar("R")


class UseCaseCall(Generic[R]):
    """One use case and its arguments, as the sequencer runs it inside its transaction.

    ``deadline`` (on ``time.monotonic()``): a call whose caller stopped waiting before it
    reached the ledger is refused (``DEADLINE_EXCEEDED``) and never applied.
    """

    def __init__(
        self,
        usecase: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        deadline: float | None = None,
    ) -> None:
        self.usecase, self.args, self.kwargs, self.deadline = usecase, args, kwargs, deadline

    def __call__(self, tx: Transaction) -> R:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlinePassed(
                f"the caller's deadline passed before its {self.usecase.__name__} was applied"
            )
        return self.usecase(tx, *self.args, **self.kwargs)


@dataclass
class Service:
    settings: Settings
    ledger: FoldedLog
    centre_keys: dict[str, Signer]
    tokens: TokenStore
    witness_policy: WitnessPolicy | None = None
    """The log's witnesses and the quorum ``/checkpoint`` waits for (``--witness-policy``)."""
    _sequencer: Sequencer | None = field(default=None, repr=False)

    @property
    def sequencer(self) -> Sequencer:
        """The process's one group-commit writer, shared by gRPC and HTTP (made on first use)."""
        if self._sequencer is None:
            self._sequencer = Sequencer(self.ledger)
        return self._sequencer

    @property
    def keys(self) -> ServiceKeys:
        return self.ledger.keys

    @contextmanager
    def reading(self) -> Iterator[Snapshot]:
        """The fold at the committed log, held still while a view is built from it, and the
        time views are computed for. Every read of the state goes through here."""
        with self.ledger.reading() as state:
            yield Snapshot.at(state, self.ledger.clock())

    def latest_registry(self) -> KeyRegistry:
        """The key registry as the fold has it now, without waiting for the writer: for the
        gRPC edge's early signature check only (a registered key never changes; what this
        misses, a key registered meanwhile, the writer checks)."""
        return self.ledger.state.registry

    def write(
        self, usecase: Callable[Concatenate[UnitOfWork, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Run ``usecase`` in the sequencer's next batch; its answer once committed."""
        result: R = self.sequencer.call(UseCaseCall(usecase, args, kwargs))
        return result

    def submit(
        self,
        usecase: Callable[Concatenate[UnitOfWork, P], R],
        deadline: float | None,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Future[R]:
        """Hand ``usecase`` to the sequencer; the future resolves after its batch commits."""
        future: Future[R] = self.sequencer.submit(UseCaseCall(usecase, args, kwargs, deadline))
        return future

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sequencer is not None:
            self._sequencer.close()
            self._sequencer = None
        self.ledger.close()


def service_clock(settings: Settings) -> Clock:
    """The system clock, or with ``SUANLI_CLOCK`` one that starts there and runs (demos)."""
    if not settings.clock:
        return system_clock
    start, began = parse_time(settings.clock), time.monotonic()

    def clock() -> datetime:
        return start + timedelta(seconds=time.monotonic() - began)

    return clock


def open_service(settings: Settings, clock: Clock | None = None) -> Service:
    clock = clock or service_clock(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url())
    migrate(engine)
    keys = load_service_keys(settings.data_dir, settings.origin)
    centre_keys = load_centre_keys(settings.data_dir)
    ledger = FoldedLog(LogStore(engine), keys, settings.origin, clock)
    ledger.key_loader = lambda: load_service_keys(settings.data_dir, settings.origin)
    ledger.on_commit.append(lambda batch: metrics.committed(len(batch.appended), ledger.state.size))
    # The fold is replayed lazily (on the first read or write), so that commands that never
    # touch the state, such as `suanli token create`, start at once on a long log.
    if ledger.store.size() == 0:
        write_genesis(ledger, centre_keys)
    witnesses = load_witness_policy(settings.witness_policy)
    return Service(settings, ledger, centre_keys, TokenStore(engine), witnesses)


def load_witness_policy(path: Path | None) -> WitnessPolicy | None:
    """The tlog-policy file naming the log's witnesses, parsed; ``ConfigurationError``
    naming the file and the line when it cannot be read or parsed."""
    if path is None:
        return None
    try:
        return parse_policy(path.read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"witness policy {path}: {exc.strerror or exc}") from exc
    except LedgerError as exc:
        raise ConfigurationError(f"witness policy {path}: {exc.message}") from exc


def write_genesis(ledger: FoldedLog, centre_keys: dict[str, Signer]) -> None:
    with ledger.transaction() as tx:
        if tx.next_index != 0:
            return  # another process got there first
        start_log(tx, origin=ledger.origin, centre_keys=centre_keys, policy=Policy.load())
