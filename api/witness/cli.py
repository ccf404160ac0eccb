"""``suanli witness``: run a witness, or print its key.

The typer sub-app ``app`` is mounted in the main CLI as ``witness``; ``python -m
api.witness`` runs it on its own.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Annotated

import typer

from ledger.errors import InvalidInput
from ledger.keys import Verifier

app = typer.Typer(
    name="witness",
    help="A C2SP tlog witness: cosigns checkpoints consistent with those it cosigned before.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

DataDir = Annotated[
    Path, typer.Option("--data-dir", help="the witness's key and SQLite database live here")
]
Name = Annotated[
    str | None,
    typer.Option(
        help="the witness's name (a schema-less URL, e.g. czj.chengdu.gov.cn/witness); "
        "needed on the first run, when the key is created"
    ),
]


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def read_logs(vkeys: list[str], logs_file: Path | None) -> list[Verifier]:
    """The log keys from ``--log`` options and a ``--logs`` file of ``log <vkey>`` lines."""
    from ledger.tlogpolicy import parse_log_list

    keys = [Verifier.parse(v) for v in vkeys]
    if logs_file is not None:
        keys += [entry.key for entry in parse_log_list(logs_file.read_bytes())]
    if not keys:
        raise InvalidInput("a witness needs at least one log: --log VKEY or --logs FILE")
    publics = [k.public for k in keys]
    if len(set(publics)) != len(publics):
        raise InvalidInput("the same log key is listed twice")
    return keys


@app.command()
def serve(
    data_dir: DataDir = Path("suanli-witness"),
    name: Name = None,
    log: Annotated[
        list[str] | None,
        typer.Option(
            "--log", help="a log's verifier key (its key name is the log's origin); repeatable"
        ),
    ] = None,
    logs_file: Annotated[
        Path | None,
        typer.Option("--logs", help="a file of c2sp.org/tlog-policy 'log <vkey>' lines"),
    ] = None,
    db: Annotated[
        str | None, typer.Option(help="database URL (default: SQLite witness.db in the data dir)")
    ] = None,
    http: Annotated[str, typer.Option(help="listen address; port 0 picks a free one")] = (
        "127.0.0.1:8090"
    ),
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING...")] = "INFO",
) -> None:
    """Run the witness: POST /add-checkpoint, GET /<origin hash>/checkpoint, GET /healthz."""
    import uvicorn

    from api.witness.app import create_app
    from api.witness.service import open_witness
    from ledger.witness import logs_by_origin

    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        keys = read_logs(log or [], logs_file)
        service = open_witness(data_dir, logs_by_origin(keys), name=name, db=db)
    except InvalidInput as exc:
        raise typer.BadParameter(exc.message) from exc
    host, port = split_address(http)
    # Bind and listen here rather than in uvicorn: the port actually bound (port 0) is
    # known and printed, and a client that reads it can connect at once (the kernel queues
    # the connection until uvicorn accepts).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(socket.SOMAXCONN)
    bound = sock.getsockname()[1]
    typer.echo(f"witness key: {service.witness.cosigner.vkey}")
    for origin in service.witness.logs:
        typer.echo(f"witnessing:  {origin}")
    typer.echo(f"listening:   http://{host if family == socket.AF_INET else f'[{host}]'}:{bound}")
    config = uvicorn.Config(create_app(service), log_level=log_level.lower(), access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        service.close()
        sock.close()


@app.command()
def key(data_dir: DataDir = Path("suanli-witness"), name: Name = None) -> None:
    """Print the witness's verifier key (type 0x04 vkey), creating the key on first use.
    Verifiers put this line in their policy; the log puts it in its witness list."""
    from api.witness.service import load_or_create_key
    from ledger.checkpoint import CosignatureVerifier

    try:
        signer, _ = load_or_create_key(data_dir, name)
    except InvalidInput as exc:
        raise typer.BadParameter(exc.message) from exc
    typer.echo(CosignatureVerifier.from_signer(signer).vkey)


def main() -> None:
    app()
