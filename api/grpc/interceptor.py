"""Who is calling: the centre named by the client certificate, for every Redemption call.

TLS has already verified the certificate chain (client auth is required);
``CentreAuthInterceptor`` takes the centre from the certificate's URI SAN
``suanli:centre:<id>`` and puts it in ``current_centre`` for the call; no such SAN:
UNAUTHENTICATED ``NO_CENTRE_CERTIFICATE``. Standard services (health, reflection) pass.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any

import grpc

from api import metrics
from api.devpki import CENTRE_URI_PREFIX
from api.grpc.messages import SERVICE_NAME, refusal_status
from ledger.errors import InternalError, LedgerError, Unauthenticated

log = logging.getLogger("suanli.grpc")

current_centre: ContextVar[str] = ContextVar("suanli_centre")


def centre_from_auth(auth: Mapping[str, Iterable[bytes]]) -> str | None:
    """The one ``suanli:centre:<id>`` URI SAN of the verified client certificate, if any."""
    found = {
        san.decode("utf-8", "replace")[len(CENTRE_URI_PREFIX) :]
        for san in auth.get("x509_subject_alternative_name", ())
        if san.startswith(CENTRE_URI_PREFIX.encode())
    }
    return found.pop() if len(found) == 1 else None


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: LedgerError) -> None:
    """End the call with ``error``'s status (counted by reason); never returns."""
    metrics.REFUSALS.labels(error.reason).inc()
    status = refusal_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


async def _abort_failure(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    """End a call whose handler raised: a refusal with its own status; a bug with INTERNAL
    and an error id that the server log has beside the traceback, never the exception's
    text (which would tell a client about the server's insides)."""
    if isinstance(exc, grpc.aio.AbortError):
        raise exc  # the handler has already ended the call with its status
    if isinstance(exc, LedgerError):
        await abort(context, exc)
    error_id = uuid.uuid4().hex[:16]
    log.error("gRPC call failed by a bug; error id %s", error_id, exc_info=exc)
    await abort(context, InternalError(error_id))


class CentreAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticate every Redemption call by its client certificate's centre."""

    def __init__(self, service_name: str = SERVICE_NAME) -> None:
        self._prefix = f"/{service_name}/"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(self._prefix):
            return handler
        return _wrap_handler(handler, _authenticate)


async def _authenticate(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    centre = centre_from_auth(context.auth_context())
    if centre is None:
        await abort(
            context,
            Unauthenticated(
                "the client certificate names no centre: it needs exactly one URI SAN "
                f"{CENTRE_URI_PREFIX}<centre id>",
                reason="NO_CENTRE_CERTIFICATE",
            ),
        )
    current_centre.set(centre)  # type: ignore[arg-type]


_MAKERS = {  # (request streaming, response streaming): the handler's attribute, its maker
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def _wrap_handler(
    handler: grpc.RpcMethodHandler,
    before: Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[None]],
) -> grpc.RpcMethodHandler:
    """The same handler with ``before(context)`` awaited first (in the call's own task)."""
    name, make = _MAKERS[(bool(handler.request_streaming), bool(handler.response_streaming))]
    inner = getattr(handler, name)

    async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
        await before(context)
        try:
            async for response in inner(request, context):
                yield response
        except Exception as exc:
            await _abort_failure(context, exc)

    async def single(request: Any, context: Any) -> Any:
        await before(context)
        try:
            return await inner(request, context)
        except Exception as exc:
            await _abort_failure(context, exc)

    return make(
        streaming if handler.response_streaming else single,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
