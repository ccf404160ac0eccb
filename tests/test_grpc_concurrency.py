"""Caps hold under concurrency: two `suanli serve` processes on one PostgreSQL database,
32 concurrent centre clients claiming against one entity's two vouchers.

The entity's cap in the programme (300 万元 for a national-level (四) project) is smaller
than the two vouchers' face values together (2 × 200 万元) and than the demand, so every
claim races for the same cap across two processes. The total subsidy must be exactly
min(demand, cap) to the fen, no voucher may exceed its face value, every refusal must be
CAP_EXHAUSTED, and a replay of the log from scratch must agree with what was answered.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from grpc_fixtures import START, ManualClock, issue_voucher, usage_for

from adapters.client import ClaimItem, RedemptionClient, RedemptionError
from api.bootstrap import open_service
from api.devpki import ensure_dev_pki
from api.settings import Settings
from ledger import caps as caps_mod
from ledger import claims
from ledger import vouchers as vouchers_mod
from ledger.fold import apply
from ledger.state import LedgerState
from ledger.timeutil import format_time

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CLIENTS = 32
CLAIMS_PER_CLIENT = 5
COST_FEN = 7_000_000  # 7 万元 of compute per claim -> 2.1 万元 of subsidy at 30 %
SUBSIDY_FEN = COST_FEN * 3000 // 10_000
FACE_FEN = 200_000_000  # 200 万元 per voucher
ENTITY_CAP_FEN = 300_000_000  # 300 万元: (四), national-level project


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RunningClock:
    """Starts at ``start`` and runs with real time (like ``SUANLI_CLOCK`` in the servers)."""

    def __init__(self, start) -> None:  # type: ignore[no-untyped-def]
        self.start, self.began = start, time.monotonic()

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.start + timedelta(seconds=time.monotonic() - self.began)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture(params=["two serve processes", "serve --workers 2"])
def two_servers(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path
) -> Iterator[dict[str, object]]:
    """Two processes redeeming on one database: two ``suanli serve`` on two ports, or one
    ``suanli serve --workers 2`` whose two processes share one port (SO_REUSEPORT)."""
    workers = 2 if request.param == "serve --workers 2" else 1
    data_dir = tmp_path / "data"
    service = open_service(Settings(data_dir=data_dir, db=pg_url), clock=ManualClock(START))
    entity = None
    vouchers = []
    for _ in range(2):
        vid = issue_voucher(
            service, "industry", amount_fen=FACE_FEN, uscc=entity, face_value_fen=FACE_FEN
        )
        vouchers.append(vid)
        entity = vouchers_mod.voucher_of(service.ledger.refresh(), vid).holder
    ensure_dev_pki(data_dir)
    service.close()

    clock_start = START + timedelta(minutes=5)
    servers: list[tuple[subprocess.Popen[bytes], int, Path]] = []
    try:
        for n in range(2 if workers == 1 else 1):
            port = _free_port()
            log_path = tmp_path / f"serve-{n}.log"
            settings = Settings(
                data_dir=data_dir,
                db=pg_url,
                clock=format_time(clock_start),
                log_level="WARNING",
                http=f"127.0.0.1:{_free_port()}",
                grpc=f"127.0.0.1:{port}",
                workers=workers,
            )
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    [str(Path(sys.executable).parent / "suanli"), "serve"],
                    env={**os.environ, **settings.environment()},
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=Path(__file__).resolve().parent.parent,
                )
            servers.append((process, port, log_path))
        for process, port, log_path in servers:
            _wait_serving(process, port, data_dir, log_path)
        ports = [port for _, port, _ in servers]
        worker_pids = _children(servers[0][0].pid) if workers > 1 else []
        yield {
            "data_dir": data_dir,
            "db": pg_url,
            "ports": ports * 2 if workers > 1 else ports,
            "workers": {pid: _cpu_seconds(pid) for pid in worker_pids},
            "vouchers": vouchers,
            "clock": RunningClock(clock_start),
            "tmp": tmp_path,
        }
    finally:
        for process, _, _ in servers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _, log_path in servers:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:  # pragma: no cover - reported by the assert
                process.kill()
                process.wait(5)
                pytest.fail(f"suanli serve did not stop on SIGTERM:\n{log_path.read_text()}")


def _wait_serving(process: subprocess.Popen[bytes], port: int, data_dir: Path, log: Path) -> None:
    with RedemptionClient.from_data_dir(f"localhost:{port}", data_dir, "nscc-cd") as client:
        if not client.wait_serving(60, alive=lambda: process.poll() is None):
            pytest.fail(f"suanli serve on port {port} did not become healthy:\n{log.read_text()}")


def test_two_processes_32_clients_never_overspend(two_servers: dict[str, object]) -> None:
    data_dir = two_servers["data_dir"]
    ports: list[int] = two_servers["ports"]  # type: ignore[assignment]
    vouchers: list[str] = two_servers["vouchers"]  # type: ignore[assignment]
    clock = two_servers["clock"]
    # Usage records priced by the rate card, computed once from a local replay.
    reader = open_service(
        Settings(data_dir=two_servers["tmp"] / "reader", db=two_servers["db"])  # type: ignore[operator]
    )
    try:
        templates = {c: usage_for(reader.ledger, c, COST_FEN, "t") for c in ("nscc-cd", "cd-icc")}
    finally:
        reader.close()

    def work(n: int) -> list[tuple[str, int | None, str | None]]:
        centre = "nscc-cd" if n % 2 == 0 else "cd-icc"
        client = RedemptionClient.from_data_dir(
            f"localhost:{ports[(n // 2) % 2]}",
            data_dir,
            centre,
            clock=clock,
            timeout=60,  # type: ignore[arg-type]
        )
        out: list[tuple[str, int | None, str | None]] = []
        template = templates[centre]
        try:
            items = [
                ClaimItem(
                    template.__class__(
                        centre,
                        f"c{n}-r{k}",
                        "acct",
                        template.resource,
                        template.quantity,
                        template.start,
                        template.end,
                    ),
                    vouchers[(n + k) % 2],
                    COST_FEN,
                )
                for k in range(CLAIMS_PER_CLIENT)
            ]
            if n % 4 == 3:  # a quarter of the clients stream, the rest call Claim
                for answer in client.claim_stream(items):
                    record = answer.item.usage.record_id
                    if answer.result is not None:
                        out.append((record, answer.result.subsidy_fen, None))
                    else:
                        assert answer.refusal is not None
                        out.append((record, None, answer.refusal.reason))
            else:
                for item in items:
                    try:
                        result = client.claim(item.usage, item.voucher, item.cost_fen)
                        out.append((item.usage.record_id, result.subsidy_fen, None))
                    except RedemptionError as refusal:
                        out.append((item.usage.record_id, None, refusal.reason))
        finally:
            client.close()
        return out

    started = time.perf_counter()
    barrier = threading.Barrier(CLIENTS)

    def run(n: int) -> list[tuple[str, int | None, str | None]]:
        barrier.wait(30)
        return work(n)

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = [a for batch in pool.map(run, range(CLIENTS)) for a in batch]
    elapsed = time.perf_counter() - started
    # With --workers, the worker process took connections and did the work of their claims.
    for pid, idle in two_servers["workers"].items():  # type: ignore[attr-defined]
        assert _cpu_seconds(pid) - idle > 0.05, "the worker redeemed nothing"

    demand = CLIENTS * CLAIMS_PER_CLIENT * SUBSIDY_FEN
    granted = {record: subsidy for record, subsidy, _ in answers if subsidy is not None}
    refusals = {reason for _, subsidy, reason in answers if subsidy is None}
    assert len(answers) == CLIENTS * CLAIMS_PER_CLIENT
    assert refusals <= {"CAP_EXHAUSTED"}, refusals
    assert demand > ENTITY_CAP_FEN
    assert sum(granted.values()) == min(demand, ENTITY_CAP_FEN)  # to the fen
    # Every claim got the full 30 % but one, which got exactly what was left under the cap.
    full, rest = divmod(ENTITY_CAP_FEN, SUBSIDY_FEN)
    assert sorted(granted.values()) == [rest] + [SUBSIDY_FEN] * full
    print(
        f"\n{len(answers)} claims from {CLIENTS} clients over 2 processes in {elapsed:.2f} s; "
        f"{len(granted)} granted, {len(answers) - len(granted)} CAP_EXHAUSTED"
    )

    # The audit: replay the whole log from scratch with the same rules.
    audit = open_service(
        Settings(data_dir=two_servers["tmp"] / "audit", db=two_servers["db"])  # type: ignore[operator]
    )
    try:
        state = LedgerState()
        for entry in audit.ledger.store.replay(0):
            state, _ = apply(state, entry)
    finally:
        audit.close()
    book = claims.book(state)
    replayed = {
        record: c.subsidy_fen for (_, record), c in book.claims.items() if record in granted
    }
    assert replayed == granted
    assert len([1 for (_, record) in book.claims if record.startswith("c")]) == len(granted)
    used = caps_mod.book(state).used
    per_voucher = [used.get(("voucher", v), 0) for v in vouchers]
    assert all(0 <= spent <= FACE_FEN for spent in per_voucher)
    assert sum(per_voucher) == sum(granted.values()) == ENTITY_CAP_FEN
    assert caps_mod.book(state).audit() == []
