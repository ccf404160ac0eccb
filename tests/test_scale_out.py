"""The scale-out topology on one machine (docs/operations.md): a PostgreSQL primary and a
streaming-replication standby, two ``suanli serve`` processes on the primary that read
from the standby (``--read-db``); claims through either process; reads through either
agree, say the log size they reflect and never show less than the caller has seen; the
public tiles exported from the standby, served by a plain static web server, pass
``suanli audit verify``. CI runs it (marked postgres: never skipped there)."""

from __future__ import annotations

import functools
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from grpc_fixtures import START, ManualClock, issue_voucher, usage_for
from pg_cluster import Cluster, _free_port, primary_and_standby
from typer.testing import CliRunner

from adapters.client import RedemptionClient
from api.bootstrap import open_service
from api.cli.app import app
from api.devpki import ensure_dev_pki
from api.settings import Settings
from ledger import vouchers as vouchers_mod
from ledger.store.db import make_engine
from ledger.store.log import LogStore
from ledger.timeutil import format_time

pytestmark = [pytest.mark.postgres]

COST_FEN = 100_000
SUANLI = str(Path(sys.executable).parent / "suanli")


class RunningClock:
    def __init__(self, start: Any) -> None:
        self.start, self.began = start, time.monotonic()

    def __call__(self) -> Any:
        return self.start + timedelta(seconds=time.monotonic() - self.began)


def standby_size(cluster: Cluster) -> int:
    engine = make_engine(cluster.standby)
    try:
        return LogStore(engine).size()
    finally:
        engine.dispose()


def wait_standby(cluster: Cluster, size: int) -> None:
    deadline = time.monotonic() + 30
    while standby_size(cluster) < size:
        assert time.monotonic() < deadline, "the standby did not catch up"
        time.sleep(0.05)


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with primary_and_standby() as cluster:
        data_dir = tmp_path / "data"
        setup = open_service(
            Settings(data_dir=data_dir, db=cluster.primary), clock=ManualClock(START)
        )
        voucher = issue_voucher(setup, "industry")
        holder = vouchers_mod.voucher_of(setup.ledger.refresh(), voucher).holder
        token, _ = setup.tokens.create("grantee", entity=holder, label="scale-out test")
        templates = {c: usage_for(setup.ledger, c, COST_FEN, "t") for c in ("nscc-cd", "cd-icc")}
        vkey = setup.keys.log.verifier.vkey
        setup.close()
        ensure_dev_pki(data_dir)
        clock_start = START + timedelta(minutes=5)
        servers: list[tuple[subprocess.Popen[bytes], int, int, Path]] = []
        try:
            for n in range(2):
                grpc_port, http_port = _free_port(), _free_port()
                settings = Settings(
                    data_dir=data_dir, db=cluster.primary, read_db=cluster.standby,
                    clock=format_time(clock_start), log_level="WARNING",
                    http=f"127.0.0.1:{http_port}", grpc=f"127.0.0.1:{grpc_port}",
                )  # fmt: skip
                log_path = tmp_path / f"serve-{n}.log"
                with log_path.open("wb") as log_file:
                    process = subprocess.Popen(
                        [SUANLI, "serve"], env={**os.environ, **settings.environment()},
                        stdout=log_file, stderr=subprocess.STDOUT,
                    )  # fmt: skip
                servers.append((process, grpc_port, http_port, log_path))
            for process, grpc_port, _, log_path in servers:
                target = f"localhost:{grpc_port}"
                with RedemptionClient.from_data_dir(target, data_dir, "nscc-cd") as client:
                    if not client.wait_serving(60, alive=lambda p=process: p.poll() is None):
                        pytest.fail(f"suanli serve did not start:\n{log_path.read_text()}")
            yield {
                "cluster": cluster, "data_dir": data_dir, "voucher": voucher, "token": token,
                "templates": templates, "vkey": vkey, "clock": RunningClock(clock_start),
                "grpc": [s[1] for s in servers], "http": [s[2] for s in servers],
                "tmp": tmp_path,
            }  # fmt: skip
        finally:
            for process, *_ in servers:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process, *_ in servers:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()


def claim(t: dict[str, Any], process: int, centre: str, record: str) -> int:
    """A claim through one process's gRPC port; the log size it left behind."""
    template = t["templates"][centre]
    usage = template.__class__(centre, record, "acct", template.resource, template.quantity,
                               template.start, template.end)  # fmt: skip
    target = f"localhost:{t['grpc'][process]}"
    with RedemptionClient.from_data_dir(target, t["data_dir"], centre, clock=t["clock"],
                                        timeout=30) as client:  # type: ignore[arg-type]  # fmt: skip
        done = client.claim(usage, t["voucher"], COST_FEN)
    assert done.subsidy_fen > 0
    return int(done.log_index) + 1


def read(t: dict[str, Any], process: int, seen: int | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {t['token']}"}
    if seen is not None:
        headers["Suanli-Min-Log-Size"] = str(seen)
    url = f"http://127.0.0.1:{t['http'][process]}/v1/me/vouchers/{t['voucher']}"
    response = httpx.get(url, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return int(response.headers["Suanli-Log-Size"]), response.json()


def test_two_processes_one_primary_reads_from_the_standby(topology: dict[str, Any]) -> None:
    t, cluster = topology, topology["cluster"]
    sizes = [claim(t, n % 2, ("nscc-cd", "cd-icc")[n % 2], f"job-{n}") for n in range(4)]
    seen = max(sizes)
    wait_standby(cluster, seen)
    answers = [read(t, n, seen) for n in (0, 1)]
    assert all(size >= seen for size, _ in answers)
    (_, first), (_, second) = answers
    assert first["balance_fen"] == second["balance_fen"] == first["face_value_fen"] - 4 * 30_000

    # The standby stops replaying: a read with no floor shows the standby's (older) log;
    # one that sends what the caller has seen waits briefly, then is answered by the primary.
    with psycopg.connect(cluster.standby_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        try:
            newer = claim(t, 1, "nscc-cd", "job-while-paused")
            stale_size, stale = read(t, 0)
            assert stale_size < newer and stale["balance_fen"] == first["balance_fen"]
            fresh_size, fresh = read(t, 0, newer)
            assert fresh_size >= newer
            assert fresh["balance_fen"] == first["balance_fen"] - 30_000
            checkpoint = httpx.get(f"http://127.0.0.1:{t['http'][1]}/checkpoint",
                                   headers={"Suanli-Min-Log-Size": str(newer)})  # fmt: skip
            assert int(checkpoint.headers["Suanli-Log-Size"]) >= newer
            assert checkpoint.text.splitlines()[1] == str(
                int(checkpoint.headers["Suanli-Log-Size"])
            )
        finally:
            conn.execute("SELECT pg_wal_replay_resume()")
    beyond = httpx.get(f"http://127.0.0.1:{t['http'][0]}/checkpoint",
                       headers={"Suanli-Min-Log-Size": str(10**9)})  # fmt: skip
    assert beyond.status_code == 400 and beyond.json()["reason"] == "LOG_SIZE_UNKNOWN"
    bad = httpx.get(f"http://127.0.0.1:{t['http'][0]}/checkpoint",
                    headers={"Suanli-Min-Log-Size": "-1"})  # fmt: skip
    assert bad.status_code == 400 and "Suanli-Min-Log-Size" in bad.json()["detail"]

    # The public tiles, exported from the standby, served by a plain static web server.
    wait_standby(cluster, newer)
    tiles_dir = t["tmp"] / "static"
    env = {"SUANLI_READ_DB": cluster.standby}
    args = ["tiles", "export", str(tiles_dir), "--db", cluster.primary,
            "--data-dir", str(t["data_dir"])]  # fmt: skip
    exported = CliRunner().invoke(app, args, env=env)
    assert exported.exit_code == 0, exported.output
    assert not (tiles_dir / "disclosures.jsonl").exists()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tiles_dir))
    static = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=static.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{static.server_address[1]}"
        verified = CliRunner().invoke(
            app, ["audit", "verify", url, "--key", t["vkey"], "--public", "--jobs", "1"]
        )
    finally:
        static.shutdown()
        static.server_close()
    assert verified.exit_code == 0, verified.output
    assert f"OK: {newer} entries" in verified.output
