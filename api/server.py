"""``suanli serve``: the HTTP app under uvicorn and the gRPC server, in one process."""

from __future__ import annotations

import logging

import uvicorn

from api import metrics
from api.app import create_app
from api.bootstrap import open_ledger
from api.config import Settings

log = logging.getLogger("suanli")


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def run(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    service = open_ledger(settings)
    ledger = service.ledger
    ledger.refresh()  # replay the log before accepting traffic
    metrics.LOG_SIZE.set(ledger.state.size)
    host, port = split_address(settings.http)
    log.info(
        "log %s: %d entries; log key %s",
        ledger.origin,
        ledger.state.size,
        ledger.keys.log.verifier.vkey,
    )
    log.info("HTTP on http://%s:%d (API docs at /docs)", host, port)
    uvicorn.run(create_app(service), host=host, port=port, log_level=settings.log_level.lower())
