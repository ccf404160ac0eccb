"""Wiring in one place: settings -> database -> keys -> ledger, and the first entries.

On first run the log is empty; ``open_ledger`` then writes the genesis (the log key), the
registration of the issuer, service and centre keys, and the policy in force, so that a
fresh service already has entries to audit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from api import metrics
from api.config import Settings
from api.keystore import CENTRES, load_centre_keys, load_service_keys
from ledger import claims
from ledger.keys import Signer
from ledger.policy import Policy, publish_body
from ledger.store.db import make_engine, migrate
from ledger.store.log import LogStore
from ledger.store.sequencer import Sequencer
from ledger.store.tokens import TokenStore
from ledger.store.unit_of_work import Clock, FoldedLog, Transaction, system_clock
from ledger.timeutil import parse_time


def publish_round(tx: Transaction, policy: Policy) -> None:
    """Record a policy version, its centres and their rate cards (all signed by the issuer)."""
    issuer = tx.ledger.keys.issuer
    tx.append(tx.sign("policy.publish", publish_body(policy), issuer))
    known = claims.book(tx.state).centres
    for centre in policy.centres.values():
        if centre.id not in known:
            body = claims.centre_body(centre.id, centre.name, centre.kind)
            tx.append(tx.sign("centre.register", body, issuer))
    for card in policy.rate_cards:
        body = claims.ratecard_body(card.centre, card.version, card.effective_from, card.prices)
        tx.append(tx.sign("ratecard.publish", body, issuer))


@dataclass
class Service:
    settings: Settings
    ledger: FoldedLog
    centre_keys: dict[str, Signer]
    tokens: TokenStore
    _sequencer: Sequencer | None = field(default=None, repr=False)

    @property
    def sequencer(self) -> Sequencer:
        """The process's one group-commit writer, shared by gRPC and HTTP (made on first use)."""
        if self._sequencer is None:
            self._sequencer = Sequencer(self.ledger)
        return self._sequencer

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


def open_ledger(settings: Settings, clock: Clock | None = None) -> Service:
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
    return Service(settings, ledger, centre_keys, TokenStore(engine))


def write_genesis(ledger: FoldedLog, centre_keys: dict[str, Signer]) -> None:
    keys = ledger.keys
    with ledger.transaction() as tx:
        if tx.next_index != 0:
            return  # another process got there first
        tx.append(
            tx.sign(
                "log.genesis",
                {"origin": ledger.origin, "log_key": keys.log.verifier.vkey},
                keys.log,
            )
        )
        for signer, role in ((keys.issuer, "issuer"), (keys.service, "service")):
            body = {"vkey": signer.verifier.vkey, "roles": [role]}
            tx.append(tx.sign("key.register", body, keys.log))
        for centre, signer in sorted(centre_keys.items()):
            body = {"vkey": signer.verifier.vkey, "roles": ["centre"], "centre": centre}
            tx.append(tx.sign("key.register", body, keys.log))
        publish_round(tx, Policy.load())


__all__ = ["CENTRES", "Service", "open_ledger"]
