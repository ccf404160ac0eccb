"""``suanli serve --workers N``: N processes redeem on one gRPC port, in one commit order.

The process ``suanli serve`` starts serves HTTP and gRPC as always; it starts N - 1 worker
processes that serve gRPC only, on the same port (``SO_REUSEPORT``: the kernel spreads the
centres' connections over the processes). With ``--grpc-apart`` the first process binds
no gRPC port: it serves HTTP alone (reads, the web page, the few HTTP writes) and N worker
processes redeem, so that no reader ever holds the interpreter a claim is waiting for; it
folds in the workers' entries every few milliseconds (``api.serve.follow_log``).

Every process has its own group-commit sequencer and fold; they append to the one log
under its append lock (PostgreSQL's advisory lock, SQLite's ``BEGIN IMMEDIATE``), and each
folds in the others' entries before it decides (``FoldedLog.transaction``), so the log has
one order and every cap holds across processes exactly as within one. What more workers
buy is CPU: TLS, parsing, the signature check and the fold run on more cores. On SQLite the
processes queue on one file lock, so more than one redeeming process is for PostgreSQL;
``--grpc-apart`` with one worker suits SQLite too (HTTP writes are few).

A worker that dies is logged and not replaced: its connections fail over to the others
when the centres reconnect (the agent retries UNAVAILABLE).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading

from api.settings import Settings

log = logging.getLogger("suanli.workers")

READY = "suanli gRPC worker ready on port"


def start_workers(
    settings: Settings, port: int | None, count: int
) -> tuple[list[subprocess.Popen[str]], int | None]:
    """Start ``count`` gRPC worker processes on ``port`` (the one the main process bound
    with SO_REUSEPORT), or, with ``port`` None, the first on ``settings.grpc`` and the rest
    on the port it bound; return once each has bound it, with the port."""
    host = settings.grpc.rpartition(":")[0] or "127.0.0.1"
    workers: list[subprocess.Popen[str]] = []
    for n in range(1, count + 1):
        address = settings.grpc if port is None else f"{host}:{port}"
        shared = settings.model_copy(update={"grpc": address, "workers": 1, "grpc_apart": False})
        process = subprocess.Popen(
            [sys.executable, "-c", "from api.workers import worker_main; worker_main()"],
            env={**os.environ, **shared.environment(), "SUANLI_WORKER": str(n)},
            stdout=subprocess.PIPE,
            text=True,
        )
        workers.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        if READY not in line:
            stop_workers(workers)
            raise RuntimeError(f"gRPC worker {n} did not start (exit {process.poll()})")
        port = int(line.rpartition(" ")[2])
        log.info("gRPC worker %d (pid %d) on port %d", n, process.pid, port)
    return workers, port


def stop_workers(workers: list[subprocess.Popen[str]], grace: float = 15.0) -> None:
    """SIGTERM every worker (each drains its calls in flight), then wait for them."""
    for process in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in workers:
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def worker_main() -> None:
    """A worker process: the service, its fold caught up, gRPC on the shared port, until
    SIGTERM."""
    from api.bootstrap import open_service
    from api.datadir import server_tls
    from api.grpc.server import DEFAULT_GRACE, GrpcServer
    from api.serve import freeze_collector

    settings = Settings()
    number = os.environ.get("SUANLI_WORKER", "?")
    logging.basicConfig(
        level=settings.log_level,
        format=f"%(asctime)s %(levelname)s %(name)s[worker {number}] %(message)s",
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    service = open_service(settings)
    service.ledger.refresh()
    freeze_collector(stop)
    tls, _ = server_tls(settings)  # the files the main process checked (or made)
    server = GrpcServer(service, settings.grpc, tls=tls, reuse_port=True)
    port = server.start()
    sys.stdout.write(f"{READY} {port}\n")  # the main process waits for this line
    sys.stdout.flush()
    try:
        stop.wait()
    finally:
        server.stop(DEFAULT_GRACE)
        service.close()
