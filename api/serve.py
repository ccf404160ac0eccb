"""``suanli serve``: the HTTP app under uvicorn and the gRPC server, in one process (the
one module that starts both ways in; each knows nothing of the other); with ``--workers``
more processes redeem on the gRPC port, and with ``--grpc-apart`` only they do, so that
HTTP readers never share an interpreter (its lock, its collector) with the claims."""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from typing import Any

import uvicorn

from api import metrics
from api.bootstrap import Service, open_service
from api.http.app import create_app
from api.settings import Settings
from api.workers import Workers
from ledger.store.unit_of_work import FoldedLog

log = logging.getLogger("suanli")


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


PROJECTION_INTERVAL = 30.0


class ProjectionWriter:
    """Stores the live fold's projection now, every ``interval`` seconds while the log
    grows, and once more on stop, so that auditors can compare it with their replay."""

    def __init__(self, service: Service, interval: float) -> None:
        self.ledger = service.ledger
        self.interval = interval
        self.saved = self.ledger.save_projection()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="suanli-projection", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._save()

    def _save(self) -> None:
        if self.ledger.state.size != self.saved:
            try:
                self.saved = self.ledger.save_projection()
            except Exception:  # a failed save is retried at the next tick; never fatal
                log.exception("saving the projection failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._save()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for these settings: the address, the head-size and keep-alive
    limits, and an access log without query strings."""
    from api.http.limits import quiet_query_strings

    quiet_query_strings()
    host, port = split_address(settings.http)
    return {
        "host": host,
        "port": port,
        "log_level": settings.log_level.lower(),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_seconds,
    }


FREEZE_EVERY = 5.0


def freeze_collector(stop: threading.Event, every: float = FREEZE_EVERY) -> threading.Thread:
    """Move what is alive now out of the garbage collector's full passes, every ``every``
    seconds until ``stop``: the fold only grows, and walking it in every generation-2
    collection stopped all threads for 100–300 ms at 10^4 claims, growing with the log
    (docs/benchmarks.md). A frozen object is still freed when nothing refers to it
    (reference counting); only cycles among frozen objects are never collected."""

    def loop() -> None:
        gc.freeze()
        while not stop.wait(every):
            gc.freeze()

    thread = threading.Thread(target=loop, name="suanli-gc-freeze", daemon=True)
    thread.start()
    return thread


FOLLOW_EVERY = 0.02


def follow_log(ledger: FoldedLog, stop: threading.Event, every: float = FOLLOW_EVERY) -> None:
    """Fold in what other processes append, every ``every`` seconds until ``stop``: in a
    process that does not redeem (``--grpc-apart``), so that a read finds at most a few
    entries to fold in first, never a back-fill's worth."""

    def loop() -> None:
        failing = False  # said once when it starts failing, once when it recovers
        while not stop.wait(every):
            try:
                ledger.snapshot()
            except Exception:  # the next tick tries again; a read folds in what it needs
                if not failing:
                    log.exception("folding in the log's new entries failed; retrying")
                failing = True
            else:
                if failing:
                    log.info("folding in the log's new entries works again")
                failing = False

    threading.Thread(target=loop, name="suanli-follow", daemon=True).start()


def start_grpc(service: Service, settings: Settings, tls: Any) -> tuple[Any, Workers, int]:
    """The gRPC side: this process's server and ``workers - 1`` worker processes on its
    port; or, with ``grpc_apart``, ``workers`` worker processes and no server here."""
    from api.grpc.server import GrpcServer

    if settings.grpc_apart:
        workers = Workers(settings, settings.workers)
        port = workers.start(None)
        assert port is not None
        return None, workers, port
    server = GrpcServer(service, settings.grpc, tls=tls, reuse_port=settings.workers > 1)
    port = server.start()
    workers = Workers(settings, settings.workers - 1)
    workers.start(port)
    return server, workers, port


def run(settings: Settings) -> None:
    from api.datadir import server_tls, settle_mode
    from api.grpc.server import DEFAULT_GRACE
    from api.witness.gatherer import WitnessGatherer

    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # Hand the interpreter between threads every 1 ms instead of 5: a claim crosses the
    # gRPC event loop and the sequencer thread several times, and each crossing may wait
    # for a thread building a heavy read view to be switched out (benchmarks/reads.py).
    sys.setswitchinterval(0.001)
    mode, marked = settle_mode(settings.data_dir)
    tls, created = server_tls(settings)  # refuses before anything is opened
    service = open_service(settings)
    ledger = service.ledger
    ledger.refresh()  # replay the log before accepting traffic
    stopping = threading.Event()
    freeze_collector(stopping)
    metrics.LOG_SIZE.set(ledger.state.size)
    projections = ProjectionWriter(service, PROJECTION_INTERVAL)
    keeper = ledger.start_snapshots(settings.snapshot_every)
    host, port = split_address(settings.http)
    log.info(
        "log %s: %d entries; log key %s",
        ledger.origin,
        ledger.state.size,
        ledger.keys.log.verifier.vkey,
    )
    if marked:
        log.warning(
            "%s had no mark: it is a %s data dir (suanli init makes a production one)",
            settings.data_dir,
            mode,
        )
    if created:
        log.info("development TLS material created: %s", ", ".join(created))
    log.info("database %s; gRPC certificate %s", settings.database_shown(), tls.cert)
    gatherer = None
    if service.witness_policy is not None:
        gatherer = WitnessGatherer(ledger.store, service.witness_policy).start()
        log.info(
            "witnesses: %s; /checkpoint waits for quorum %s",
            ", ".join(f"{w.name} at {w.url}" for w in service.witness_policy.witnesses),
            service.witness_policy.quorum,
        )
    grpc_server, workers, grpc_port = start_grpc(service, settings, tls)
    where = "worker processes only" if settings.grpc_apart else "this process"
    log.info("gRPC (mTLS) on %s (port %d; %s)", settings.grpc, grpc_port, where)
    if workers.count:
        follow_log(ledger, stopping)
    log.info("HTTP on http://%s:%d (API docs at /docs)", host, port)
    # uvicorn handles SIGINT/SIGTERM, stops HTTP gracefully, then raises the signal again
    # once it has returned: note SIGTERM instead of dying, so that gRPC drains too.
    previous = signal.signal(signal.SIGTERM, lambda *_: log.info("SIGTERM: shutting down"))
    try:
        uvicorn.run(create_app(service), **uvicorn_options(settings))
    finally:
        log.info("gRPC: draining calls in flight (up to %.0f s)", DEFAULT_GRACE)
        workers.stop()
        if grpc_server is not None:
            grpc_server.stop(DEFAULT_GRACE)
        if gatherer is not None:
            gatherer.stop()
        projections.stop()
        stopping.set()
        keeper.stop()
        service.close()
        signal.signal(signal.SIGTERM, previous)
