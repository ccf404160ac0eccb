"""``suanli serve --grpc-apart`` on the embedded SQLite default: the first process serves HTTP
and holds no gRPC port; one worker process redeems. Claims over gRPC and writes over HTTP
land in one log order (a blacklisting written over HTTP stops the worker's next claim), and
HTTP reads show the worker's claims (``Suanli-Min-Log-Size``)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from grpc_fixtures import START, ManualClock, issue_voucher, usage_for
from pg_cluster import _free_port

from adapters.client import RedemptionClient, RedemptionError
from api.bootstrap import open_service
from api.devpki import ensure_dev_pki
from api.settings import Settings
from ledger import vouchers as vouchers_mod
from ledger.timeutil import format_time
from ledger.usage import UsageRecord

SUANLI = str(Path(sys.executable).parent / "suanli")
COST_FEN = 100_000


@dataclass
class Apart:
    process: subprocess.Popen[bytes]
    http: str
    grpc_port: int
    data_dir: Path
    token: str
    voucher: str
    holder: str
    usages: list[UsageRecord]
    clock_start: datetime

    def centre_client(self) -> RedemptionClient:
        """nscc-cd's gRPC client, its clock a second into the service's."""
        at = self.clock_start + timedelta(seconds=1)
        return RedemptionClient.from_data_dir(
            f"localhost:{self.grpc_port}", self.data_dir, "nscc-cd", clock=lambda: at, timeout=30
        )


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (its socket fds matched in /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


def _children(pid: int) -> list[int]:
    """Process ``pid``'s children, whichever of its threads started them."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:  # a thread that ended meanwhile
            continue
    return sorted(found)


@pytest.fixture
def apart(tmp_path: Path) -> Iterator[Apart]:
    data_dir, db = tmp_path / "data", f"sqlite:///{tmp_path / 'ledger.db'}"
    service = open_service(Settings(data_dir=data_dir, db=db), clock=ManualClock(START))
    voucher = issue_voucher(service, "industry", amount_fen=COST_FEN * 3)
    holder = vouchers_mod.voucher_of(service.ledger.refresh(), voucher).holder
    usages = [usage_for(service.ledger, "nscc-cd", COST_FEN, f"job-{n}") for n in range(3)]
    token, _ = service.tokens.create("admin", label="test")
    ensure_dev_pki(data_dir)
    service.close()
    clock_start = START + timedelta(minutes=5)
    grpc_port, http = _free_port(), f"127.0.0.1:{_free_port()}"
    settings = Settings(
        data_dir=data_dir,
        db=db,
        clock=format_time(clock_start),
        http=http,
        grpc=f"127.0.0.1:{grpc_port}",
        grpc_apart=True,
        log_level="WARNING",
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([SUANLI, "serve"], env={**os.environ, **settings.environment()},
                                   stdout=log_file, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        with RedemptionClient.from_data_dir(f"localhost:{grpc_port}", data_dir, "nscc-cd") as c:
            if not c.wait_serving(60, alive=lambda: process.poll() is None):
                pytest.fail(f"suanli serve --grpc-apart did not start:\n{log_path.read_text()}")
        httpx.get(f"http://{http}/readyz", timeout=30).raise_for_status()
        yield Apart(process, http, grpc_port, data_dir, token, voucher, holder, usages, clock_start)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:  # pragma: no cover - reported by the fail
            process.kill()
            pytest.fail(f"suanli serve --grpc-apart did not stop:\n{log_path.read_text()}")
    assert process.returncode == 0, log_path.read_text()


def test_http_apart_from_the_claims_one_log_order(apart: Apart) -> None:
    (worker,) = _children(apart.process.pid)
    assert apart.grpc_port not in _listening_ports(apart.process.pid)
    assert apart.grpc_port in _listening_ports(worker)
    assert int(apart.http.rpartition(":")[2]) in _listening_ports(apart.process.pid)

    headers = {"Authorization": f"Bearer {apart.token}"}
    client = apart.centre_client()
    with client, httpx.Client(base_url=f"http://{apart.http}", headers=headers) as http:
        first = client.claim(apart.usages[0], apart.voucher, COST_FEN)
        seen = {"Suanli-Min-Log-Size": str(first.log_index + 1)}
        voucher = http.get(f"/v1/admin/vouchers/{apart.voucher}", headers=seen)
        assert voucher.status_code == 200, voucher.text
        assert int(voucher.headers["Suanli-Log-Size"]) >= first.log_index + 1
        assert voucher.json()["used_fen"] == first.subsidy_fen > 0

        evidence = hashlib.sha256(b"judgment").hexdigest()
        body = {"reason": "court judgment", "evidence_sha256": evidence}
        blacklisted = http.post(f"/v1/admin/entities/{apart.holder}/blacklist", json=body)
        assert blacklisted.status_code == 200, blacklisted.text
        with pytest.raises(RedemptionError) as refused:  # the worker folds HTTP's entry first
            client.claim(apart.usages[1], apart.voucher, COST_FEN)
        assert refused.value.reason == "VOUCHER_SUSPENDED"

        lifted = http.post(
            f"/v1/admin/entities/{apart.holder}/unblacklist", json={"reason": "appeal upheld"}
        )
        assert lifted.status_code == 200, lifted.text
        second = client.claim(apart.usages[1], apart.voucher, COST_FEN)
        assert second.log_index > first.log_index
        seen = {"Suanli-Min-Log-Size": str(second.log_index + 1)}
        voucher = http.get(f"/v1/admin/vouchers/{apart.voucher}", headers=seen).json()
        assert voucher["used_fen"] == first.subsidy_fen + second.subsidy_fen


def test_a_worker_killed_is_started_again(apart: Apart) -> None:
    (worker,) = _children(apart.process.pid)
    os.kill(worker, signal.SIGKILL)
    with httpx.Client(base_url=f"http://{apart.http}") as http:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert http.get("/readyz").status_code == 200  # HTTP never went away
            now = _children(apart.process.pid)
            if now and now != [worker] and apart.grpc_port in _listening_ports(now[0]):
                break
            time.sleep(0.2)
        else:
            log = (apart.data_dir.parent / "serve.log").read_text()
            pytest.fail(f"no new gRPC worker within 60 s (children {now}, was {worker}):\n{log}")
        assert "suanli_worker_restarts_total 1.0" in http.get("/metrics").text
    client = apart.centre_client()
    with client:
        assert client.wait_serving(30)
        done = client.claim(apart.usages[2], apart.voucher, COST_FEN)
    assert done.subsidy_fen > 0


def test_the_follower_says_once_that_it_fails_and_once_that_it_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A database away for a while gives two log lines, not fifty a second."""
    import threading

    from api.serve import follow_log

    class Flaky:
        def __init__(self) -> None:
            self.calls, self.recovered = 0, threading.Event()

        def snapshot(self) -> None:
            self.calls += 1
            if self.calls <= 20:
                raise OSError("database unreachable")
            if self.calls > 21:  # the first success has been logged by now
                self.recovered.set()

    flaky, stop = Flaky(), threading.Event()
    with caplog.at_level("INFO", logger="suanli"):
        follow_log(flaky, stop, every=0.001)  # type: ignore[arg-type]
        assert flaky.recovered.wait(10)
        stop.set()
    said = [r.getMessage() for r in caplog.records if "folding in" in r.getMessage()]
    assert said == [
        "folding in the log's new entries failed; retrying",
        "folding in the log's new entries works again",
    ]
