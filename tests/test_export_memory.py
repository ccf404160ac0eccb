"""A statement's CSV and XLSX exports stream in bounded memory.

Two statements of one centre, one three times the other's size (both more lines than an
export reads at once), are exported through the real ASGI app, the answer's body counted
and dropped as it is sent (a test client would keep it whole). Python's allocations are
traced (tracemalloc) during each export: bounded memory means the larger statement's peak
is about the smaller's, not three times it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from grpc_fixtures import ManualClock, issue_voucher

from api.http.app import create_app
from ledger import claims
from ledger.policy import current_policy
from ledger.publication import concealed
from ledger.timeutil import parse_time
from ledger.usecases.commands.settlement import issue_statement

START = parse_time("2023-08-20T10:00:00+08:00")
Q4 = parse_time("2023-10-10T10:00:00+08:00")
USAGE = parse_time("2023-03-01T09:00:00+08:00")
SMALL = 4_000  # > 16 parts (what an export reads at once) of ~190 lines
BATCH = 5_000


def append_claims(service: Any, vouchers: list[str], first: int, count: int) -> None:
    key = service.centre_keys["nscc-cd"]
    price = current_policy(service.ledger.snapshot()).rate_cards[0].prices["cpu"]
    quantity = math.ceil(100 * price.per_units / price.price_fen)
    for start in range(first, first + count, BATCH):
        with service.ledger.transaction() as tx:
            for i in range(start, min(first + count, start + BATCH)):
                body = claims.claim_body(
                    centre="nscc-cd",
                    record_id=f"job-{i}",
                    voucher=vouchers[i % len(vouchers)],
                    resource="cpu",
                    quantity=quantity,
                    start=USAGE,
                    end=USAGE + timedelta(hours=1),
                    cost_fen=price.cost(quantity),
                )
                tx.append(concealed("claim", tx.now(), body).signed(key))


def get(app: Any, path: str, token: str, keep: bool = False) -> tuple[int, int, bytes]:
    """GET through the ASGI app: (status, body bytes sent, the body if ``keep``)."""
    sent: dict[str, Any] = {"status": 0, "size": 0, "body": io.BytesIO()}

    done = asyncio.Event()
    asked: list[bool] = []

    async def receive() -> dict[str, Any]:
        if not asked:
            asked.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # the client stays until the whole answer is sent
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
        elif message["type"] == "http.response.body":
            sent["size"] += len(message.get("body", b""))
            if keep:
                sent["body"].write(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }

    async def call() -> None:
        await app(scope, receive, send)
        done.set()

    asyncio.run(call())
    return sent["status"], sent["size"], sent["body"].getvalue()


def peak_of(service: Any, path: str, token: str) -> tuple[int, int, int]:
    """(peak traced bytes, bytes still held after, body bytes) of one export, by a fresh
    app (nothing cached from an earlier request)."""
    app = create_app(service)
    tracemalloc.start()
    try:
        status, size, _ = get(app, path, token)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 200, path
    return peak, held, size


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_statement_exports_stream_in_bounded_memory(open_service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clock = ManualClock(START)
    service = open_service(f"sqlite:///{tmp_path / 'ledger.db'}", clock=clock)
    vouchers = [issue_voucher(service) for _ in range(8)]
    append_claims(service, vouchers, 0, SMALL)
    clock.set(Q4)
    append_claims(service, vouchers, SMALL, 3 * SMALL)
    clock.set(Q4 + timedelta(days=90))
    small = issue_statement(service.write, centre="nscc-cd", period="2023-Q3").result
    large = issue_statement(service.write, centre="nscc-cd", period="2023-Q4").result
    assert (small["lines"], large["lines"]) == (SMALL, 3 * SMALL)
    token, _ = service.tokens.create("admin")
    status, _, body = get(
        create_app(service), f"/v1/statements/{large['statement']}.csv", token, keep=True
    )
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert status == 200 and len(rows) == 3 * SMALL + 2 and rows[-1][0] == "合计"

    for fmt in ("csv", "xlsx"):
        small_peak, _, small_size = peak_of(
            service, f"/v1/statements/{small['statement']}.{fmt}", token
        )
        large_peak, held, large_size = peak_of(
            service, f"/v1/statements/{large['statement']}.{fmt}", token
        )
        assert large_size > 2.5 * small_size  # three times the lines were sent
        # bounded: not three times the memory (a whole statement held would be), and
        # nothing of the statement kept once it is sent
        assert large_peak < 1.5 * small_peak + 4 * 2**20, (fmt, small_peak, large_peak)
        assert held < 4 * 2**20, (fmt, held)
