"""What one client can make the service do is bounded, and a bug answers with an id only.

Through the real ASGI app (TestClient) and through ``suanli serve`` on real sockets:
request bodies over the limit are refused 413 before authentication and parsing (a
100 MiB unauthenticated POST is refused after its head, the server's memory stays flat
and ``/healthz`` answers meanwhile), a client has a bounded number of requests in flight
(429), heads over the limit are refused, the access log keeps no query strings, tokens
expire (401 TOKEN_EXPIRED), SQLite files are created 0600, and a request failing by a bug
gets 500 / INTERNAL with an error id that the log has, never the exception text.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from grpc_fixtures import GrpcEnv, grpc_env, grpc_env_factory
from typer.testing import CliRunner

from adapters.client import RedemptionError
from api.bootstrap import Service
from api.cli.app import app as cli_app
from api.http.app import create_app
from ledger.errors import InvalidInput
from ledger.store.db import make_engine

__all__ = ["grpc_env", "grpc_env_factory"]

PROBLEM = "application/problem+json"
SUANLI = str(Path(sys.executable).parent / "suanli")
ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def app_service(open_service, tmp_path: Path) -> Service:  # type: ignore[no-untyped-def]
    service: Service = open_service(
        f"sqlite:///{tmp_path / 'ledger.db'}", max_body_bytes=4096, max_requests_per_client=2
    )
    return service


def bearer(service: Service, role: str = "admin") -> dict[str, str]:
    token, _ = service.tokens.create(role)
    return {"Authorization": f"Bearer {token}"}


# --- the body limit, through the ASGI app ------------------------------------------------------


def test_a_body_over_the_limit_is_refused_before_authentication(app_service: Service) -> None:
    size = app_service.ledger.store.size()
    with TestClient(create_app(app_service)) as client:
        entity = {"uscc": "x", "name": "x" * 5000, "type": "enterprise", "district": "锦江区"}
        for headers in ({}, bearer(app_service)):  # unauthenticated, then as the admin
            answer = client.post("/v1/admin/entities", json=entity, headers=headers)
            assert answer.status_code == 413, answer.text
            assert answer.headers["content-type"].startswith(PROBLEM)
            problem = answer.json()
            assert problem["reason"] == "BODY_TOO_LARGE" and problem["status"] == 413
            assert problem["details"]["limit"] == "4096"
        # a body without Content-Length (chunked) is cut off as soon as it passes the limit
        chunks = iter([b"{" + b" " * 3000, b" " * 3000, b"}"])
        answer = client.post("/v1/admin/entities", content=chunks, headers=bearer(app_service))
        assert answer.status_code == 413 and answer.json()["reason"] == "BODY_TOO_LARGE"
        # under the limit: read, authenticated and parsed as before
        answer = client.post("/v1/admin/entities", json={"uscc": 1})
        assert answer.status_code == 401
    assert app_service.ledger.store.size() == size


# --- a bug answers with an error id only -------------------------------------------------------


def test_an_http_bug_is_500_with_an_error_id_the_log_has(
    app_service: Service, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise OverflowError("date value out of range: internal detail")

    with TestClient(create_app(app_service), raise_server_exceptions=False) as client:
        assert client.get("/checkpoint").status_code == 200
        monkeypatch.setattr(app_service.ledger.store, "latest_checkpoint", broken)
        with caplog.at_level(logging.ERROR, logger="suanli.http"):
            answer = client.get("/checkpoint")
        assert client.get("/healthz").status_code == 200  # the next request is served
    assert answer.status_code == 500 and answer.headers["content-type"].startswith(PROBLEM)
    problem = answer.json()
    error_id = problem["details"]["error_id"]
    assert problem["reason"] == "INTERNAL" and error_id in problem["detail"]
    assert "Overflow" not in answer.text and "internal detail" not in answer.text
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_a_grpc_bug_is_internal_with_an_error_id_only(
    grpc_env: GrpcEnv, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from ledger.usecases.views import centres

    voucher = grpc_env.voucher()
    client = grpc_env.client()
    assert client.verify_voucher(voucher).usable

    def broken(*_: object) -> None:
        raise OverflowError("date value out of range: internal detail")

    monkeypatch.setattr(centres, "voucher_check", broken)
    with (
        caplog.at_level(logging.ERROR, logger="suanli.grpc"),
        pytest.raises(RedemptionError) as caught,
    ):
        client.verify_voucher(voucher)
    error = caught.value
    assert error.code.name == "INTERNAL" and error.reason == "INTERNAL"
    assert "Overflow" not in str(error) and "internal detail" not in str(error)
    assert any(error.metadata["error_id"] in r.getMessage() for r in caplog.records)
    assert client.balance(voucher).balance_fen > 0  # the next call is served


# --- tokens and files --------------------------------------------------------------------------


def test_tokens_expire(app_service: Service) -> None:
    tokens = app_service.tokens
    token, principal = tokens.create("auditor", days=1)
    with TestClient(create_app(app_service)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/v1/bureau/budget", headers=headers).status_code == 200
        tokens.now = lambda: datetime.now(UTC) + timedelta(days=1, seconds=1)
        answer = client.get("/v1/bureau/budget", headers=headers)
    assert answer.status_code == 401 and answer.json()["reason"] == "TOKEN_EXPIRED"
    assert "expired at" in answer.json()["detail"]
    assert answer.headers["www-authenticate"] == "Bearer"
    for days in (0, 367):
        with pytest.raises(InvalidInput) as caught:
            tokens.create("auditor", days=days)
        assert caught.value.reason == "OUT_OF_RANGE"
    info = next(i for i in tokens.infos() if i.principal == principal)
    assert info.last_used_at is not None and info.expired(tokens.now())


def test_token_list_shows_created_expires_and_last_used(tmp_path: Path) -> None:
    runner = CliRunner()
    where = ["--data-dir", str(tmp_path / "data")]
    assert runner.invoke(cli_app, ["init", *where]).exit_code == 0
    made = runner.invoke(cli_app, ["token", "create", "--role", "auditor", "--days", "7", *where])
    assert made.exit_code == 0, made.output
    listed = runner.invoke(cli_app, ["token", "list", *where])
    assert listed.exit_code == 0, listed.output
    shown = listed.output.splitlines()
    at = next(i for i, line in enumerate(shown) if line.startswith("id "))  # after the notes
    heading, row = shown[at : at + 2]
    assert heading.split()[3:6] == ["created", "expires", "last_used"]
    created, expires, last_used = row.split()[3:6]
    assert datetime.fromisoformat(expires) - datetime.fromisoformat(created) == timedelta(days=7)
    assert last_used == "never"
    refused = runner.invoke(
        cli_app, ["token", "create", "--role", "auditor", "--days", "400", *where]
    )
    assert refused.exit_code != 0


def test_sqlite_files_are_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "private" / "ledger.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x)")
    for made in (path, Path(f"{path}-wal")):
        if made.exists():
            assert stat.S_IMODE(made.stat().st_mode) == 0o600, made
    engine.dispose()


# --- suanli serve on real sockets --------------------------------------------------------------


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1])

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """``suanli serve`` on SQLite with two requests per client, INFO access log."""
    port = free_port()
    env = {
        **os.environ,
        "SUANLI_DATA_DIR": str(tmp_path / "data"),
        "SUANLI_MAX_REQUESTS_PER_CLIENT": "2",
        "SUANLI_LOG_LEVEL": "INFO",
    }
    subprocess.run([SUANLI, "init", "--dev"], env=env, cwd=ROOT, check=True, capture_output=True)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [SUANLI, "serve", "--http", f"127.0.0.1:{port}", "--grpc", f"127.0.0.1:{free_port()}"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    server = Served(process, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{server.base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def read_status(sock: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1") else 0


def post_huge(
    server: Served, total: int, *, chunked: bool, between: Callable[[], None] = lambda: None
) -> int:
    """POST ``total`` bytes of nothing, unauthenticated, as fast as the socket takes them,
    calling ``between`` once the head and half a MiB (under the limit) are sent; the status
    the server answered (it may close before it has all)."""
    framing = b"Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}".encode()
    piece = b"0" * (MiB // 2)
    with server.connect() as sock:
        sock.sendall(b"POST /v1/admin/entities HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n" + framing + b"\r\n\r\n")  # fmt: skip
        try:
            for n in range(total // len(piece)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                if n == 0:
                    between()
        except OSError:  # the server answered and closed: what the test wants
            pass
        return read_status(sock)


# a request of the client "sl_someone" whose body (100 bytes) has not arrived yet
HELD_HEAD = (
    b"POST /v1/admin/entities HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sl_someone\r\n"
    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
)


@pytest.mark.slow
def test_a_100_mib_post_is_refused_early_and_memory_stays_flat(served: Served) -> None:
    before = served.rss_kib()
    healthy: list[int] = []

    def check_health() -> None:  # while a 100 MiB upload is under way
        healthy.append(httpx.get(f"{served.base}/healthz", timeout=10).status_code)

    assert post_huge(served, 100 * MiB, chunked=True, between=check_health) == 413
    assert post_huge(served, 100 * MiB, chunked=False) == 413  # refused on its head
    assert healthy == [200]
    grown = served.rss_kib() - before
    assert grown < 30 * 1024, f"RSS grew by {grown} KiB"  # far below one 100 MiB body


def test_requests_in_flight_per_client_are_bounded(served: Served) -> None:
    someone = {"Authorization": "Bearer sl_someone"}
    held: list[socket.socket] = []
    try:
        for _ in range(2):  # two requests of one client, waiting for their bodies
            sock = served.connect()
            sock.sendall(HELD_HEAD + b"{")
            held.append(sock)
        time.sleep(0.5)  # let the server start both (not a timing assertion)
        with httpx.Client(base_url=served.base, timeout=10) as client:
            third = client.get(
                "/v1/log/checkpoints", headers={"Authorization": "Bearer sl_someone"}
            )
            assert third.status_code == 429, third.text
            assert third.json()["reason"] == "TOO_MANY_REQUESTS"
            assert third.headers["retry-after"] == "1"
            other = client.get("/v1/log/checkpoints", headers={"Authorization": "Bearer sl_other"})
            assert other.status_code == 200  # another client is not held back (a public read)
            for sock in held:
                sock.close()
            held.clear()
            deadline = time.monotonic() + 10
            while (again := client.get("/v1/log/checkpoints", headers=someone)).status_code == 429:
                assert time.monotonic() < deadline, "the slots were never given back"
                time.sleep(0.1)
            assert again.status_code == 200
    finally:
        for sock in held:
            sock.close()


def test_a_head_over_the_limit_is_refused(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (64 << 10) + b"\r\n\r\n"
        )
        assert read_status(sock) == 431
    assert httpx.get(f"{served.base}/healthz", timeout=10).status_code == 200


def test_the_access_log_keeps_no_query_strings(served: Served) -> None:
    secret = "sl_secret_in_a_query_string"
    answer = httpx.get(f"{served.base}/healthz?token={secret}", timeout=10)
    assert answer.status_code == 200
    served.process.terminate()
    served.process.wait(30)
    text = served.log.read_text()
    assert "GET /healthz?" in text, text[-2000:]
    assert secret not in text
    json.dumps(text)  # the log is text


# --- policy files and simulate lines -------------------------------------------------------


FAR, EARLY = "9999-12-31T23:59:59+08:00", "0001-01-01T00:00:00Z"


def test_simulate_lines_out_of_range_fail_alone() -> None:
    from ledger.simulate import simulate

    voucher = {"type": "voucher", "id": "N1", "programme": "industry", "holder": "alpha",
               "inputs": {"level": "national", "project_type": "bottleneck",
                          "compute_cost_fen": 12_000_000_00}}  # fmt: skip
    lines = [
        json.dumps(voucher),
        json.dumps({"type": "claim", "voucher": "N1", "cost_fen": 10**30}),
        json.dumps(
            {
                "type": "claim",
                "voucher": "N1",
                "cost_fen": 100,
                "usage_start": "9999-12-31T23:59:59+08:00",
            }
        ),
        json.dumps(
            {"type": "claim", "voucher": "N1", "cost_fen": 100, "at": "0001-01-01T00:00:00Z"}
        ),
        json.dumps({"type": "claim", "voucher": "N1", "cost_fen": 100}),
    ]
    outcomes, _ = simulate(lines)
    assert [o.reason for o in outcomes] == [None, "OUT_OF_RANGE", "OUT_OF_RANGE",
                                            "OUT_OF_RANGE", None]  # fmt: skip
    assert "cost_fen" in outcomes[1].message and "usage_start" in outcomes[2].message
    assert outcomes[4].ok and outcomes[4].subsidy_fen == 30  # the next line is unaffected


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("voucher_pools", 0, "amount_fen"), 10**30, "amount_fen"),
        (("entity_yearly_cap_fen",), 10**13, "entity_yearly_cap_fen"),
        (("windows", "applications", "from"), "0001-01-01", "from"),
        (("windows", "online_submission", "to"), "9999-12-31T24:00", "to"),
    ],
)
def test_a_policy_file_out_of_range_is_refused_naming_the_field(
    path: tuple[Any, ...], value: Any, field: str
) -> None:
    from ledger.policy import Policy

    document = json.loads((ROOT / "ledger" / "policies" / "chengdu-2023-31.json").read_text())
    place = document
    for step in path[:-1]:
        place = place[step]
    assert path[-1] in place
    place[path[-1]] = value
    with pytest.raises(InvalidInput) as caught:
        Policy.from_json(document)
    assert caught.value.reason == "OUT_OF_RANGE", caught.value
    assert field in caught.value.message
