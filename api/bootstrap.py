"""Wiring in one place: settings -> database -> keys -> ledger, and the first entries.

On first run the log is empty; ``open_ledger`` then writes the genesis (the log key), the
registration of the issuer, service and centre keys, and the policy in force, so that a
fresh service already has entries to audit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from api import metrics
from api.config import Settings
from api.keystore import CENTRES, load_centre_keys, load_service_keys
from ledger.keys import Signer
from ledger.store.db import make_engine, migrate
from ledger.store.ledger import Clock, Ledger, Transaction, system_clock
from ledger.store.log import LogStore
from ledger.store.tokens import TokenStore

# Later parts (policy, centres, rate cards) add their first entries here.
GENESIS_STEPS: list[Callable[[Transaction, dict[str, Signer]], None]] = []


@dataclass
class Service:
    settings: Settings
    ledger: Ledger
    centre_keys: dict[str, Signer]
    tokens: TokenStore

    def close(self) -> None:
        self.ledger.close()


def open_ledger(settings: Settings, clock: Clock = system_clock) -> Service:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url())
    migrate(engine)
    keys = load_service_keys(settings.data_dir, settings.origin)
    centre_keys = load_centre_keys(settings.data_dir)
    ledger = Ledger(LogStore(engine), keys, settings.origin, clock)
    ledger.on_commit.append(lambda batch: metrics.committed(len(batch.appended), ledger.state.size))
    # The fold is replayed lazily (on the first read or write), so that commands that never
    # touch the state, such as `suanli token create`, start at once on a long log.
    if ledger.store.size() == 0:
        write_genesis(ledger, centre_keys)
    return Service(settings, ledger, centre_keys, TokenStore(engine))


def write_genesis(ledger: Ledger, centre_keys: dict[str, Signer]) -> None:
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
        for step in GENESIS_STEPS:
            step(tx, centre_keys)


__all__ = ["CENTRES", "Service", "open_ledger"]
