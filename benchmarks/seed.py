"""Seed a round for the gRPC benchmarks: vouchers issued through the log, in this process.

``seed(url, data_dir, vouchers)`` opens the service on a fresh database with its clock held
at ``START`` (2023-08-20 10:00 Shanghai, inside the 2023 round's application window), lets
genesis publish the policy, centres and rate cards, then registers one entity per voucher
and takes each through the service's own use cases (``voucher_for``: application submitted,
reviewed, decided, voucher issued), every entry signed and applied by the domain rules.
It also makes the development TLS material, so that ``suanli serve`` on the same data dir
and database can start at once. The answer is plain data (it crosses process
boundaries to the benchmark's client processes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from api.bootstrap import Service, open_service
from api.devpki import ensure_dev_pki
from api.settings import Settings
from ledger import claims
from ledger.store.unit_of_work import FoldedLog
from ledger.timeutil import format_time, parse_time
from ledger.usage import UsageRecord
from ledger.uscc import complete
from ledger.usecases.commands.applications import Approval
from ledger.usecases.commands.entities import NewEntity
from ledger.usecases.commands.vouchers import voucher_for

START = parse_time("2023-08-20T10:00:00+08:00")  # inside the 2023 application window
USAGE_START = parse_time("2023-03-01T09:00:00+08:00")  # inside the usage window
PROGRAMME = "industry"
INPUTS: dict[str, Any] = {  # a national-level AI project: a 300 万元 entity cap
    "compute_cost_fen": 1_200_000_000,  # 1200 万元
    "level": "national",
    "project_type": "ai_industrialisation",
    "project_start": "2023-02-01",
    "project_end": "2023-07-15",
}
CENTRES = ("nscc-cd", "cd-icc")
COST_FEN = 100  # 1 元 of CPU time per claim: 30 fen of subsidy, so no cap is ever reached


@dataclass(frozen=True)
class Usage:
    """A usage record's fields that every claim of one centre shares (priced at COST_FEN)."""

    centre: str
    resource: str
    quantity: int
    start: str
    end: str

    def record(self, record_id: str) -> UsageRecord:
        return UsageRecord(
            self.centre,
            record_id,
            "bench",
            self.resource,
            self.quantity,
            parse_time(self.start),
            parse_time(self.end),
        )


@dataclass(frozen=True)
class Seeded:
    data_dir: Path
    db: str
    vouchers: tuple[str, ...]
    usage: dict[str, Usage]  # by centre
    cost_fen: int
    log_size: int
    clock_start: str  # where ``SUANLI_CLOCK`` starts the server (after every seeded entry)


class _Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def issue(service: Service, n: int) -> str:
    """A new entity, its approved application in PROGRAMME and a voucher; the voucher id."""
    uscc = complete(f"91510100MA{7_000_000 + n:07d}")
    entity = NewEntity(uscc, f"基准测试单位{n}", "enterprise", "成都高新区")
    approval = Approval(f"A-bench-{n:04d}", PROGRAMME, uscc, INPUTS, reviewer="bench")
    done = service.write(voucher_for, approval, f"V-bench-{n:04d}", entity=entity)
    return str(done.entry.body["voucher"])


def usage_at(ledger: FoldedLog, centre: str, cost_fen: int = COST_FEN) -> Usage:
    """CPU usage at ``centre`` that its rate card prices at exactly ``cost_fen``."""
    card = claims.book(ledger.refresh()).centres[centre].card_at(USAGE_START)
    if card is None:
        raise RuntimeError(f"{centre} has no rate card in force at {USAGE_START}")
    price = card.prices["cpu"]
    quantity = max(1, math.ceil(cost_fen * price.per_units / price.price_fen))
    if price.cost(quantity) != cost_fen:
        raise RuntimeError(f"{cost_fen} fen is not reachable on {centre}'s CPU price")
    end = USAGE_START + timedelta(hours=1)
    return Usage(centre, "cpu", quantity, format_time(USAGE_START), format_time(end))


def seed(url: str, data_dir: Path, count: int) -> Seeded:
    service = open_service(Settings(data_dir=data_dir, db=url), clock=_Clock(START))
    try:
        ledger = service.ledger
        if "policy" not in ledger.refresh().parts:
            raise RuntimeError("genesis did not publish the policy")
        ids = tuple(issue(service, n) for n in range(count))
        usage = {centre: usage_at(ledger, centre) for centre in CENTRES}
        size = ledger.store.size()
    finally:
        service.close()
    ensure_dev_pki(data_dir)
    clock_start = format_time(START + timedelta(minutes=5))
    return Seeded(data_dir, url, ids, usage, COST_FEN, size, clock_start)
