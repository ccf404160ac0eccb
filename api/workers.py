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

A worker that exits before the service stops is logged, counted and started again on the
same port (``Workers``); meanwhile its centres' connections fail over to the other
processes, or wait for the new one (the agent retries UNAVAILABLE).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading

from api import metrics
from api.settings import Settings

log = logging.getLogger("suanli.workers")

READY = "suanli gRPC worker ready on port"


class Workers:
    """The gRPC worker processes of one ``suanli serve``, kept running until :meth:`stop`:
    one that exits (a crash, the OOM killer, kill -9) is logged, counted
    (``suanli_worker_restarts_total``) and started again on the same port, so that a
    ``--grpc-apart`` service never stays without its claims side."""

    WATCH_EVERY = 1.0  # seconds between looks at the workers

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings, self.count = settings, count
        self.processes: list[subprocess.Popen[str]] = []
        self.port: int | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self, port: int | None) -> int | None:
        """Start the workers on ``port`` (the one the main process bound with SO_REUSEPORT),
        or, with ``port`` None, the first on ``settings.grpc`` and the rest on the port it
        bound; return once each has bound it, with the port."""
        self.port = port
        for n in range(1, self.count + 1):
            try:
                self.processes.append(self._spawn(n))
            except RuntimeError:
                self.stop()
                raise
        if self.processes:
            self._watcher = threading.Thread(target=self._watch, name="suanli-workers")
            self._watcher.daemon = True
            self._watcher.start()
        return self.port

    def _spawn(self, n: int) -> subprocess.Popen[str]:
        host = self.settings.grpc.rpartition(":")[0] or "127.0.0.1"
        address = self.settings.grpc if self.port is None else f"{host}:{self.port}"
        shared = self.settings.model_copy(
            update={"grpc": address, "workers": 1, "grpc_apart": False}
        )
        process = subprocess.Popen(
            [sys.executable, "-c", "from api.workers import worker_main; worker_main()"],
            env={**os.environ, **shared.environment(), "SUANLI_WORKER": str(n)},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if READY not in line:
            _end(process, 5.0)
            raise RuntimeError(f"gRPC worker {n} did not start (exit {process.poll()})")
        self.port = int(line.rpartition(" ")[2])
        log.info("gRPC worker %d (pid %d) on port %d", n, process.pid, self.port)
        return process

    def _watch(self) -> None:
        while not self._stopping.wait(self.WATCH_EVERY):
            for n, process in enumerate(self.processes, start=1):
                if process.poll() is None or self._stopping.is_set():
                    continue
                log.error("gRPC worker %d (pid %d) exited with %s: starting another", n,
                          process.pid, process.returncode)  # fmt: skip
                metrics.WORKER_RESTARTS.inc()
                if process.stdout is not None:
                    process.stdout.close()
                try:
                    self.processes[n - 1] = self._spawn(n)
                except RuntimeError:
                    log.exception("gRPC worker %d did not start again; next try in %.0f s",
                                  n, self.WATCH_EVERY)  # fmt: skip

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every worker (each drains its calls in flight), then wait for them."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            _end(process, grace)


def _end(process: subprocess.Popen[str], grace: float) -> None:
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
