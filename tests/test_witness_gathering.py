"""The log gathers its witnesses' cosignatures (issue 15, docs/witness.md): ``suanli serve
--witness-policy`` with two witness processes, all over real sockets, on SQLite and
PostgreSQL. /checkpoint serves the newest checkpoint both witnesses cosigned; the audit,
a tlog-proof and check-proof demand the quorum; a witness that is down stops nothing and
its lag is a metric; a witness that has seen another history never cosigns this one."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import pytest
from domain_helpers import make_uscc
from pg import throwaway_database
from sqlalchemy import Engine
from witness_helpers import RunningWitness, start_witness

from api import bootstrap
from api.settings import Settings
from ledger.store.db import make_engine
from ledger.store.log import LogStore
from ledger.store.tokens import TokenStore
from ledger.tlogpolicy import parse_policy, require_quorum, verify_checkpoint
from ledger.witness import QuorumNotMet

CZJ, SJJ = "czj.chengdu.example/witness", "sjj.chengdu.example/witness"
SUANLI = [sys.executable, "-c", "from api.cli import main; main()"]


class Running(Protocol):
    def stop(self) -> None: ...


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Log:
    """A service's data dir and database, made (keys and genesis) but not running."""

    data_dir: Path
    db: str
    vkey: str
    engine: Engine

    def store(self) -> LogStore:
        return LogStore(self.engine)

    def admin_token(self) -> str:
        token, _ = TokenStore(self.engine).create("admin", label="witness test")
        return token

    def stop(self) -> None:
        self.engine.dispose()


def make_log(data_dir: Path, db: str) -> Log:
    with bootstrap.open_service(Settings(data_dir=data_dir, db=db)) as service:
        return Log(data_dir, db, service.keys.log.verifier.vkey, make_engine(db))


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    output: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)

    def register(self, token: str, n: int) -> None:
        body = {"uscc": make_uscc(n), "name": f"实体 {n}", "type": "enterprise",
                "district": "成都高新区"}  # fmt: skip
        answer = httpx.post(
            f"{self.url}/v1/admin/entities",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text

    def checkpoint(self) -> tuple[int, str]:
        answer = httpx.get(f"{self.url}/checkpoint", timeout=10)
        assert answer.status_code == 200, answer.text
        return int(answer.headers["Suanli-Checkpoint-Size"]), answer.text

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text


def serve(log: Log, policy: Path, output: Path) -> Served:
    http, grpc = _free_port(), _free_port()
    out = output.open("ab")
    process = subprocess.Popen(
        [*SUANLI, "serve", "--data-dir", str(log.data_dir), "--db", log.db,
         "--http", f"127.0.0.1:{http}", "--grpc", f"127.0.0.1:{grpc}",
         "--witness-policy", str(policy)],
        stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    out.close()
    served = Served(f"http://127.0.0.1:{http}", process, output)
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{served.url}/readyz", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            served.stop()
            pytest.fail(f"suanli serve did not start:\n{output.read_text()}")
        time.sleep(0.2)


def write_policy(path: Path, log: Log, witnesses: list[tuple[str, str, str]]) -> Path:
    """A tlog-policy: the log, the witnesses (name, vkey, URL) and 'all of them'."""
    lines = [f"log {log.vkey}"]
    lines += [f"witness {name} {vkey} {url}" for name, vkey, url in witnesses]
    lines += [f"group both all {' '.join(n for n, _, _ in witnesses)}", "quorum both"]
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def suanli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SUANLI, *args], capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


@pytest.fixture
def witness_db(tmp_path: Path, db_url: str) -> Callable[[str], str]:
    """Each witness's database: SQLite in its own dir, or the test's PostgreSQL database
    (a witness's rows are keyed by its key ID)."""
    return lambda name: (
        f"sqlite:///{tmp_path / name / 'witness.db'}" if db_url.startswith("sqlite") else db_url
    )


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for process in reversed(started):
        process.stop()


def test_two_witnesses_cosign_and_verifiers_demand_them(
    tmp_path: Path,
    db_url: str,
    witness_db: Callable[[str], str],
    running: list[Running],
) -> None:
    log = make_log(tmp_path / "data", db_url)
    running.append(log)
    ports = {"czj": f"127.0.0.1:{_free_port()}", "sjj": f"127.0.0.1:{_free_port()}"}

    def witness(name: str, full: str) -> RunningWitness:
        w = start_witness(tmp_path / name, full, witness_db(name), tmp_path / f"{name}.err",
                          log_vkey=log.vkey, http=ports[name])  # fmt: skip
        running.append(w)
        return w

    czj, sjj = witness("czj", CZJ), witness("sjj", SJJ)
    policy_file = write_policy(
        tmp_path / "witnesses.policy",
        log,
        [("czj", czj.vkey.vkey, czj.url), ("sjj", sjj.vkey.vkey, sjj.url)],
    )
    policy = parse_policy(policy_file.read_bytes())
    server = serve(log, policy_file, tmp_path / "serve.log")
    running.append(server)
    token = log.admin_token()
    for n in range(1, 6):
        server.register(token, n)
    size = log.store().size()

    # Both witnesses cosign the newest checkpoint; /checkpoint serves it with both lines.
    wait_for(
        lambda: server.checkpoint()[0] == size and server.checkpoint()[1].count("\n— ") == 3,
        "both cosignatures at the log's size",
    )
    _, note = server.checkpoint()
    seen = verify_checkpoint(note, policy)
    assert seen.checkpoint.size == size
    assert {w.key_id for w in seen.cosigners} == {czj.vkey.key_id, sjj.vkey.key_id}
    assert 'suanli_witness_lag_entries{witness="czj"} 0.0' in server.metrics()
    witnesses_json = httpx.get(f"{server.url}/v1/log/witnesses", timeout=10).json()
    assert [w["name"] for w in witnesses_json["witnesses"]] == ["czj", "sjj"]
    assert all(w["cosigned_size"] == size for w in witnesses_json["witnesses"])
    assert witnesses_json["quorum"] == "both"
    if db_url.startswith("sqlite"):  # the page checks both cosignatures in the browser
        page_shows_cosigners(server.url, ["czj", "sjj"], tmp_path)
    one_less = "".join(
        line for line in note.splitlines(keepends=True) if not line.startswith(f"— {CZJ} ")
    )
    with pytest.raises(QuorumNotMet, match="no cosignature from witness czj"):
        require_quorum(one_less, policy)

    # The auditor demands both: the whole audit, then a tlog-proof carrying cosignatures.
    keys = ["--witness", czj.vkey.vkey, "--witness", sjj.vkey.vkey]
    done = suanli("audit", "verify", server.url, "--key", log.vkey, *keys, "--quorum", "2",
                  "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"witnesses: size {size} cosigned by" in done.stdout
    done = suanli("audit", "verify", server.url, "--key", log.vkey, "--witness-policy",
                  str(policy_file), "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    proof, entry = tmp_path / "entry.proof", tmp_path / "entry.json"
    done = suanli("audit", "prove", "3", "--source", server.url, "-o", str(proof),
                  "--entry-out", str(entry))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert proof.read_text().count("\n— ") >= 3  # the log's signature and two cosignatures
    done = suanli("audit", "check-proof", str(proof), str(entry), "--key", log.vkey, *keys)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"cosigned by {czj.vkey.key_id}, {sjj.vkey.key_id}" in done.stdout

    # A verifier that knows a third witness and wants all three refuses, naming it.
    stranger = start_witness(tmp_path / "nscc", "nscc.example/witness", witness_db("nscc"),
                             tmp_path / "nscc.err", log_vkey=log.vkey)  # fmt: skip
    running.append(stranger)
    done = suanli("audit", "verify", server.url, "--key", log.vkey, *keys, "--witness",
                  stranger.vkey.vkey, "--no-progress")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL (witnesses)" in done.stdout and stranger.vkey.key_id in done.stdout

    # One witness down: writes go on at once; /checkpoint stays at the last size both
    # cosigned; the lag shows in /metrics.
    sjj.stop()
    for n in range(6, 9):
        server.register(token, n)
    grown = log.store().size()
    wait_for(
        lambda: (
            f'suanli_witness_lag_entries{{witness="sjj"}} {float(grown - size)}' in server.metrics()
        ),
        "the lag of the stopped witness",
    )
    assert 'suanli_witness_failures_total{reason="unavailable",witness="sjj"}' in server.metrics()
    assert server.checkpoint()[0] == size

    # Back on the same address and database: it catches up from the size it cosigned.
    running.append(witness("sjj", SJJ))
    wait_for(lambda: server.checkpoint()[0] == grown, "the restarted witness to catch up")
    assert verify_checkpoint(server.checkpoint()[1], policy).checkpoint.size == grown


def page_shows_cosigners(url: str, names: list[str], tmp_path: Path) -> None:
    """The auditor view lists each witness with its cosignature verified by WebCrypto."""
    from test_web_browser import _need_chromium, chromium_driver

    _need_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium_driver(tmp_path / "chromium") as driver:
        driver.get(url + "/#auditor")
        shown = WebDriverWait(driver, 30, poll_frequency=0.1).until(
            lambda d: (
                len(d.find_elements(By.CSS_SELECTOR, "#cp-witnesses .witness")) == 2
                and d.find_elements(By.CSS_SELECTOR, "#cp-witnesses .witness")
            ),
            message="the witnesses on the page",
        )
        texts = [e.text for e in shown]
        assert [t.split()[1] for t in texts] == names, texts
        assert all(t.startswith("✔") for t in texts), texts
        assert "quorum: both" in driver.find_element(By.ID, "cp-witnesses").text


def test_a_witness_that_saw_a_fork_never_cosigns(
    tmp_path: Path,
    db_url: str,
    witness_db: Callable[[str], str],
    running: list[Running],
) -> None:
    """Split view: the same log key signs a second history (another database), and the
    witness cosigns it first. The real log's checkpoints are then inconsistent with what
    that witness has seen: it refuses every one, the log says so loudly, and no checkpoint
    of the real log ever reaches the quorum."""
    from api.witness.client import request_cosignature
    from ledger import merkle

    log = make_log(tmp_path / "data", db_url)
    running.append(log)
    with ExitStack() as stack:
        fork_db = (
            f"sqlite:///{tmp_path / 'fork.db'}"
            if db_url.startswith("sqlite")
            else stack.enter_context(throwaway_database())
        )
        fork = make_log(tmp_path / "data", fork_db)  # same keys, its own genesis
        assert fork.vkey == log.vkey
        czj = start_witness(tmp_path / "czj", CZJ, witness_db("czj"), tmp_path / "czj.err",
                            log_vkey=log.vkey)  # fmt: skip
        running.append(czj)
        sjj = start_witness(tmp_path / "sjj", SJJ, witness_db("sjj"), tmp_path / "sjj.err",
                            log_vkey=log.vkey)  # fmt: skip
        running.append(sjj)
        store = fork.store()
        fork_size, fork_note = store.latest_checkpoint() or (0, "")
        read = store.node_reader()
        request_cosignature(
            czj.url,
            fork_note,
            fork_size,
            lambda old: merkle.consistency_proof(old, fork_size, read),
        )
        fork.stop()
        policy_file = write_policy(
            tmp_path / "witnesses.policy",
            log,
            [("czj", czj.vkey.vkey, czj.url), ("sjj", sjj.vkey.vkey, sjj.url)],
        )
        server = serve(log, policy_file, tmp_path / "serve.log")
        running.append(server)
        token = log.admin_token()
        for n in range(1, 4):
            server.register(token, n)
        refused = re.compile(
            r'suanli_witness_failures_total\{reason="(?!unavailable)[A-Z_]+",witness="czj"\}'
        )
        wait_for(lambda: refused.search(server.metrics()) is not None, "the witness's refusal")
        wait_for(
            lambda: log.store().cosigned_size(sjj.vkey.vkey) == log.store().size(),
            "the honest witness",
        )
        # The honest witness cosigned; the one that saw the fork did not; no quorum.
        assert log.store().cosigned_size(czj.vkey.vkey) == 0
        assert "ERROR" in server.output.read_text() and "witness czj" in server.output.read_text()
        keys = ["--witness", czj.vkey.vkey, "--witness", sjj.vkey.vkey]
        done = suanli("audit", "verify", server.url, "--key", log.vkey, *keys, "--no-progress")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "FAIL (witnesses)" in done.stdout and czj.vkey.key_id in done.stdout
