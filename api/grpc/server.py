"""The centre-facing gRPC server: ``suanli.v1.Redemption`` over mutual TLS, with health
checking and reflection, on its own asyncio event loop in a background thread, so that it
can sit beside uvicorn in ``suanli serve`` and beside pytest in tests.

gRPC itself refuses anything over ``HARD_RECEIVE`` (plain RESOURCE_EXHAUSTED), so that no
peer can make the server buffer more than that; ``api.grpc.messages`` refuses anything over
``MAX_RECEIVE`` with a reason. How a call is handled: ``api.grpc.servicer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from api.bootstrap import Service
from api.devpki import TlsFiles, ensure_dev_pki, server_files
from api.grpc.interceptor import CentreAuthInterceptor
from api.grpc.messages import SERVICE_NAME
from api.grpc.servicer import Redemption

log = logging.getLogger("suanli.grpc")

HARD_RECEIVE = 4 << 20  # gRPC drops anything larger before it reaches this module
MAX_SEND = 4 << 20
DEFAULT_GRACE = 10.0

_T = TypeVar("_T")


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    ca, cert, key = files.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


class GrpcServer:
    """The gRPC server on its own event loop thread.

    ``start()`` binds (port 0 picks a free port) and returns the port; ``stop(grace)``
    stops accepting calls and lets the calls in flight finish for up to ``grace`` seconds,
    then cancels the rest. The service's sequencer (shared with HTTP) is the service's to
    close.
    """

    def __init__(
        self,
        service: Service,
        address: str | None = None,
        *,
        tls: TlsFiles | None = None,
        skew_seconds: float | None = None,
        reader_threads: int = 8,
        reuse_port: bool = False,
    ) -> None:
        """``reuse_port``: share the port with other processes (``suanli serve --workers``);
        off otherwise, so that a port in use is an error, not a silent neighbour."""
        self.service = service
        self.address = address or service.settings.grpc
        self.tls = tls
        self.reuse_port = reuse_port
        self.readers = ThreadPoolExecutor(reader_threads, thread_name_prefix="suanli-grpc-read")
        self.redemption = Redemption(service, self.readers, skew_seconds)
        self.port: int | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="suanli-grpc", daemon=True
        )
        self._server: grpc.aio.Server | None = None
        self._health: Any = None

    def _run(self, coroutine: Awaitable[_T], timeout: float | None = None) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)  # type: ignore[arg-type]

    def start(self) -> int:
        if self.tls is None:
            self.tls = server_files(self.service.settings.data_dir)
            if not (self.tls.ca.exists() and self.tls.cert.exists() and self.tls.key.exists()):
                ensure_dev_pki(self.service.settings.data_dir)
        self._thread.start()
        self.port = self._run(self._start())
        return self.port

    async def _start(self) -> int:
        server = grpc.aio.server(
            interceptors=[CentreAuthInterceptor()],
            options=[
                ("grpc.max_receive_message_length", HARD_RECEIVE),
                ("grpc.max_send_message_length", MAX_SEND),
                ("grpc.so_reuseport", 1 if self.reuse_port else 0),
            ],
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, self.redemption.handlers()),)
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        assert self.tls is not None
        port: int = server.add_secure_port(self.address, server_credentials(self.tls))
        if port == 0:
            raise OSError(f"could not bind the gRPC server to {self.address}")
        await server.start()
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        log.info("gRPC (mTLS) on %s, port %d", self.address, port)
        return port

    def stop(self, grace: float = DEFAULT_GRACE) -> None:
        if self._server is not None:
            self._run(self._stop(grace))
        self.readers.shutdown(wait=True, cancel_futures=True)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    async def _stop(self, grace: float) -> None:
        assert self._server is not None
        with contextlib.suppress(Exception):
            await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        self._server = None

    def wait(self) -> None:
        if self._server is not None:
            self._run(self._server.wait_for_termination())
