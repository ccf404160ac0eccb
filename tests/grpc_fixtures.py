"""gRPC test fixtures: a real service (SQLite or PostgreSQL), a real TLS server on port 0,
real clients with the development certificates, and vouchers issued through the use cases.

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

from adapters.client import RedemptionClient, body_dict
from adapters.client import claim_body as claim_message
from api.bootstrap import Service, open_service
from api.devpki import ensure_dev_pki
from api.grpc.server import GrpcServer
from api.settings import Settings
from ledger import applications as applications_domain
from ledger import claims
from ledger.policy import current_policy
from ledger.publication import concealed
from ledger.store.unit_of_work import FoldedLog
from ledger.timeutil import format_time
from ledger.usage import UsageRecord
from ledger.usecases.commands import applications, redemption
from ledger.usecases.commands.applications import Approval
from ledger.usecases.commands.entities import NewEntity
from ledger.usecases.commands.redemption import Redeemed, SignedWrite
from ledger.usecases.commands.vouchers import change_voucher_status, voucher_for

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


# --- vouchers, through the service's use cases ------------------------------------------------


_serial = iter(range(1, 1_000_000))


def issue_voucher(
    service: Service,
    programme: str = "industry",
    *,
    amount_fen: int | None = None,
    inputs: dict[str, Any] | None = None,
    uscc: str | None = None,
    **issue: Any,
) -> str:
    """An entity (new unless ``uscc``), its approved application and a voucher; the id."""
    n = next(_serial)
    holder = uscc or make_uscc(5000 + n)
    entity = None if uscc else NewEntity(holder, f"测试单位{n}", "enterprise", "成都高新区")
    with service.reading() as snapshot:
        policy = current_policy(snapshot.state)
    approval = Approval(
        application=f"A-grpc-{n:04d}",
        programme=programme,
        applicant=holder,
        inputs={**DEFAULT_INPUTS[programme], **(inputs or {})},
        amount_fen=amount_fen,
        materials=materials_for(policy, programme),
        attestations=attest_all(policy, programme),
    )
    done = service.write(voucher_for, approval, f"V-grpc-{n:04d}", entity=entity, **issue)
    return str(done.entry.body["voucher"])


def reject_application(
    service: Service, application: str, uscc: str, programme: str, note: str = ""
) -> None:
    """An application of the (registered) entity ``uscc`` submitted, then rejected by its
    区县 (with ``note``) and by the bureau."""
    state = service.ledger.snapshot()
    policy = current_policy(state)
    service.write(applications.submit_application, application=application,
                  programme=programme, applicant=uscc, inputs=DEFAULT_INPUTS[programme],
                  materials=materials_for(policy, programme),
                  attestations=attest_all(policy, programme))  # fmt: skip
    district = applications_domain.application_of(service.ledger.snapshot(), application).district
    service.write(applications.review_application, application=application,
                  district=district, reviewer="r-1", opinion="reject", note=note)  # fmt: skip
    service.write(applications.decide_application, application=application, decision="reject")


def set_voucher_status(service: Service, voucher: str, kind: str) -> None:
    """voucher.suspend / .revoke / .expire / .reinstate, by the issuer."""
    action = kind.removeprefix("voucher.")
    service.write(change_voucher_status, voucher=voucher, action=action, reason="test")


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


def claim_body(usage: UsageRecord, voucher: str, cost_fen: int) -> dict[str, Any]:
    """The JSON body of a claim of ``usage`` on ``voucher``, as a centre's client sends it."""
    return body_dict(claim_message(usage, voucher, cost_fen))


def centre_write(service: Service, kind: str, body: dict[str, Any]) -> Redeemed:
    """A centre's entry (claim, hold, capture, void) signed now with the centre's key, through
    the redemption use case, as the gRPC server runs it."""
    signer = service.centre_keys[body["centre"]]
    entry = concealed(kind, format_time(service.ledger.clock()), body).signed(signer)
    return service.write(redemption.REDEEM[kind], SignedWrite(entry))


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
        return issue_voucher(self.service, programme, **kw)

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
        service = open_service(settings, clock=clock)  # its genesis publishes the round
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
