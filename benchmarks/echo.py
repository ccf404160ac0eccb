"""The echo server of the gRPC benchmark (``benchmarks.grpc``): its ceiling.

python -m benchmarks.echo <data dir> <port>
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any


def echo_server(data_dir: Path, port: int) -> None:
    """The gRPC ceiling: Claim and ClaimStream over the same mutual TLS, with the same
    centre interceptor, message limits and request parsing as the real server, answering
    every claim with a fixed ClaimResult at once: no signature check, no ledger."""
    import asyncio

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from suanli.v1 import redemption_pb2 as pb

    from api.devpki import server_files
    from api.grpc.interceptor import CentreAuthInterceptor
    from api.grpc.messages import SERVICE_NAME, reader, stream_reader
    from api.grpc.server import HARD_RECEIVE, MAX_SEND, server_credentials

    answer = pb.ClaimResult(
        centre="nscc-cd",
        record_id="echo",
        voucher="V-bench-0000",
        subsidy_fen=30,
        cost_fen=100,
        rate_bp=3000,
        bound_by="rate",
        voucher_balance_fen=299_999_970,
        policy_version="chengdu-2023-31",
        log_index=123_456,
        at="2023-08-20T02:05:00.000000Z",
    )

    async def claim(request: Any, context: Any) -> Any:
        return answer

    async def claim_stream(requests: Any, context: Any) -> Any:
        async for request in requests:
            if request.claims:
                answers = [pb.StreamAnswer(seq=c.seq, result=answer) for c in request.claims]
                yield pb.ClaimStreamResponse(answers=answers)
            else:
                yield pb.ClaimStreamResponse(seq=request.seq, result=answer)

    async def main() -> None:
        server = grpc.aio.server(
            interceptors=[CentreAuthInterceptor()],
            options=[
                ("grpc.max_receive_message_length", HARD_RECEIVE),
                ("grpc.max_send_message_length", MAX_SEND),
            ],
        )
        handlers = {
            "Claim": grpc.unary_unary_rpc_method_handler(
                claim, reader(pb.ClaimRequest), pb.ClaimResult.SerializeToString
            ),
            "ClaimStream": grpc.stream_stream_rpc_method_handler(
                claim_stream,
                stream_reader(),
                pb.ClaimStreamResponse.SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
        )
        servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        server.add_secure_port(f"127.0.0.1:{port}", server_credentials(server_files(data_dir)))
        await server.start()
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await server.wait_for_termination()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(main())


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m benchmarks.echo <data dir> <port>")
    echo_server(Path(sys.argv[1]), int(sys.argv[2]))
