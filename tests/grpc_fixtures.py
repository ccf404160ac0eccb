"""gRPC test fixtures: a real service (SQLite or PostgreSQL), a real TLS server on port 0,
real clients with the development certificates, and the 2023 round seeded through the log.

The service clock and the clients' clocks are one ``ManualClock`` set inside the 2023 round
(the application window is in August 2023), so that signed times are never skewed unless a
test skews them on purpose.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from domain_helpers import DEFAULT_INPUTS, attest_all, local, make_uscc, materials_for

from adapters.client import RedemptionClient
from api.bootstrap import Service, open_ledger
from api.config import Settings
from api.devpki import ensure_dev_pki
from api.grpc_server import GrpcServer
from ledger import applications, claims, entities, vouchers
from ledger.policy import Policy, current_policy, publish_body
from ledger.store.unit_of_work import FoldedLog
from ledger.usage import UsageRecord

START = local("2023-08-20 10:00")  # inside the application window of the 2023 round
USAGE_START = local("2023-03-01 09:00")  # inside the usage window (2023-01-10 .. 2023-07-31)


class ManualClock:
    """A clock that moves only when told; shared by the service and the clients."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, **delta: float) -> None:
        with self._lock:
            self._now += timedelta(**delta)

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment


# --- the round, through the log ------------------------------------------------------------


def seed_round(ledger: FoldedLog) -> None:
    """Publish the packaged policy, register its centres and rate cards (once)."""
    keys = ledger.keys
    ledger.refresh()
    if "policy" in ledger.state.parts:
        return
    policy = Policy.load()
    with ledger.transaction() as tx:
        tx.append(tx.sign("policy.publish", publish_body(policy), keys.issuer))
        for centre in policy.centres.values():
            body = claims.centre_body(centre.id, centre.name, centre.kind)
            tx.append(tx.sign("centre.register", body, keys.issuer))
        for card in policy.rate_cards:
            body = claims.ratecard_body(card.centre, card.version, card.effective_from, card.prices)
            tx.append(tx.sign("ratecard.publish", body, keys.issuer))


_serial = iter(range(1, 1_000_000))


def issue_voucher(
    ledger: FoldedLog,
    programme: str = "industry",
    *,
    amount_fen: int | None = None,
    inputs: dict[str, Any] | None = None,
    uscc: str | None = None,
    **issue: Any,
) -> str:
    """An entity (new unless ``uscc``), its approved application and a voucher; the id."""
    keys = ledger.keys
    n = next(_serial)
    with ledger.transaction() as tx:
        policy = current_policy(tx.state)
        if uscc is None:
            uscc = make_uscc(5000 + n)
            body = entities.register_body(uscc, f"测试单位{n}", "enterprise", "成都高新区")
            tx.append(tx.sign("entity.register", body, keys.service))
        app_id = f"A-grpc-{n:04d}"
        body = applications.submit_body(
            application=app_id,
            programme=programme,
            applicant=uscc,
            inputs={**DEFAULT_INPUTS[programme], **(inputs or {})},
            materials=materials_for(policy, programme),
            attestations=attest_all(policy, programme),
            policy=policy,
        )
        tx.append(tx.sign("application.submit", body, keys.service))
        district = tx.state.parts["applications"].applications[app_id].district
        body = applications.review_body(
            application=app_id, district=district, reviewer="reviewer-1", opinion="approve"
        )
        tx.append(tx.sign("application.review", body, keys.service))
        app = tx.state.parts["applications"].applications[app_id]
        amount = (
            amount_fen
            if amount_fen is not None
            else policy.programme(programme).entitlement(app.inputs)
        )
        body = applications.decide_body(
            application=app_id, decision="approve", amount_fen=amount, policy=policy
        )
        tx.append(tx.sign("application.decide", body, keys.issuer))
        voucher_id = f"V-grpc-{n:04d}"
        body = vouchers.issue_body(
            tx.state,
            application=app_id,
            voucher=voucher_id,
            issuer=keys.issuer,
            log_index=tx.next_index,
            **issue,
        )
        tx.append(tx.sign("voucher.issue", body, keys.issuer))
    return voucher_id


def set_voucher_status(ledger: FoldedLog, voucher: str, kind: str) -> None:
    """voucher.suspend / .revoke / .expire / .reinstate, by the issuer."""
    with ledger.transaction() as tx:
        tx.append(tx.sign(kind, vouchers.status_body(voucher, "test"), ledger.keys.issuer))


def usage_for(
    ledger: FoldedLog,
    centre: str,
    cost_fen: int,
    record_id: str,
    *,
    resource: str = "cpu",
    start: datetime = USAGE_START,
    hours: float = 1,
) -> UsageRecord:
    """A usage record that the centre's rate card prices at exactly ``cost_fen``."""
    card = claims.book(ledger.refresh()).centres[centre].card_at(start)
    assert card is not None
    price = card.prices[resource]
    quantity = max(1, math.ceil(cost_fen * price.per_units / price.price_fen))
    assert price.cost(quantity) == cost_fen, f"{cost_fen} fen is not reachable on {resource}"
    return UsageRecord(
        centre, record_id, "acct", resource, quantity, start, start + timedelta(hours=hours)
    )


def cost_of(ledger: FoldedLog, usage: UsageRecord) -> int:
    card = claims.book(ledger.refresh()).centres[usage.centre].card_at(usage.start)
    assert card is not None
    return int(card.prices[usage.resource].cost(usage.quantity))


# --- a running server ------------------------------------------------------------------------


@dataclass
class GrpcEnv:
    service: Service
    server: GrpcServer
    port: int
    clock: ManualClock
    data_dir: Path
    clients: list[RedemptionClient] = field(default_factory=list)

    @property
    def ledger(self) -> FoldedLog:
        return self.service.ledger

    @property
    def target(self) -> str:
        return f"localhost:{self.port}"

    def client(self, centre: str = "nscc-cd", **options: Any) -> RedemptionClient:
        options.setdefault("clock", self.clock)
        options.setdefault("timeout", 10.0)
        client = RedemptionClient.from_data_dir(self.target, self.data_dir, centre, **options)
        self.clients.append(client)
        return client

    def log_size(self) -> int:
        return self.ledger.store.size()

    def voucher(self, programme: str = "industry", **kw: Any) -> str:
        return issue_voucher(self.ledger, programme, **kw)

    def usage(self, cost_fen: int, record_id: str, centre: str = "nscc-cd", **kw: Any) -> Any:
        return usage_for(self.ledger, centre, cost_fen, record_id, **kw)


@pytest.fixture
def grpc_env_factory(tmp_path: Path) -> Iterator[Callable[..., GrpcEnv]]:
    """Start (possibly several) gRPC services; everything is stopped at teardown."""
    envs: list[GrpcEnv] = []

    def start(db: str | None = None, name: str = "data", **server_options: Any) -> GrpcEnv:
        data_dir = tmp_path / name
        clock = ManualClock(START)
        settings = Settings(data_dir=data_dir, db=db or f"sqlite:///{tmp_path / name}.db")
        service = open_ledger(settings, clock=clock)
        seed_round(service.ledger)
        ensure_dev_pki(data_dir)
        server = GrpcServer(service, "127.0.0.1:0", **server_options)
        port = server.start()
        env = GrpcEnv(service, server, port, clock, data_dir)
        envs.append(env)
        return env

    yield start
    for env in envs:
        for client in env.clients:
            client.close()
        env.server.stop(1.0)
        env.service.close()


@pytest.fixture
def grpc_env(grpc_env_factory: Callable[..., GrpcEnv]) -> GrpcEnv:
    return grpc_env_factory()
