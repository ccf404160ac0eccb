"""``suanli serve``, ``suanli init`` and ``suanli rebuild``: run the service, set it up, and
rebuild its projection from the log alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli.manners import Unreachable
from api.cli.options import (
    ClientCa,
    DataDir,
    Db,
    EnvFile,
    TlsCert,
    TlsKey,
    announce,
    open_existing,
    settings_from,
    tool_errors,
)
from api.settings import Settings

UVICORN_STARTUP_FAILURE = 3  # uvicorn.run's exit status when it cannot bind


def serve(
    data_dir: DataDir = None,
    db: Db = None,
    http: Annotated[
        str | None, typer.Option(help="HTTP listen address (default 127.0.0.1:8080)")
    ] = None,
    grpc: Annotated[
        str | None, typer.Option(help="gRPC listen address (default 127.0.0.1:50051)")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="processes redeeming on the gRPC port (PostgreSQL)"),
    ] = None,
    grpc_apart: Annotated[
        bool,
        typer.Option("--grpc-apart", help="redeem in worker processes only; this one serves HTTP"),
    ] = False,
    witness_policy: Annotated[
        Path | None,
        typer.Option(
            help="a c2sp.org/tlog-policy file: the witnesses (each with its URL) and quorum"
        ),
    ] = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    client_ca: ClientCa = None,
    read_db: Annotated[
        str | None,
        typer.Option("--read-db", help="a streaming-replication standby for HTTP reads"),
    ] = None,
    migrate: Annotated[
        bool, typer.Option("--migrate", help="upgrade an older database schema first")
    ] = False,
    env_file: EnvFile = None,
) -> None:
    """Run the ledger service: HTTP (API, tiles, web page) and gRPC (centres, mutual TLS).

    A production data dir (``suanli init``) needs the gRPC server's certificate and key and
    the centres' client CA; a development one makes development certificates if missing.
    The first run on the default ./suanli-data creates it as a development data dir (as
    `suanli init --dev` does); a data dir given with --data-dir must exist (`suanli init`)."""
    from api.datadir import data_dir_given, require_data_dir
    from api.serve import run

    with tool_errors():
        settings = settings_from(
            data_dir, db, env_file=env_file, http=http, grpc=grpc, workers=workers,
            witness_policy=witness_policy, tls_cert=tls_cert, tls_key=tls_key,
            client_ca=client_ca, read_db=read_db, migrate=migrate or None,
            grpc_apart=grpc_apart or None,
        )  # fmt: skip
        if not settings.data_dir.exists() and not data_dir_given(settings):
            set_up_data_dir(settings, development=True)  # make run's first start
        require_data_dir(settings)
        announce(settings)
        try:
            run(settings)
        except SystemExit as stop:
            if stop.code == UVICORN_STARTUP_FAILURE:  # uvicorn logged why; say it in one line
                raise Unreachable(
                    f"the service did not start on {settings.http}",
                    hint="is the port in use by another process? (the log line above says)",
                ) from None
            raise


def set_up_data_dir(settings: Settings, *, development: bool) -> None:
    """Create and mark the data dir, its keys and the log's first entries; idempotent. The
    one place ``init`` and serve's first run set one up."""
    from api.bootstrap import open_service
    from api.datadir import Mode, check_can_become, mark

    mode: Mode = "development" if development else "production"
    check_can_become(settings.data_dir, mode)
    mark(settings.data_dir, mode)
    with open_service(settings):
        pass


def init(
    data_dir: DataDir = None,
    db: Db = None,
    dev: Annotated[
        bool, typer.Option("--dev", help="a development data dir (centre keys, a dev PKI)")
    ] = False,
    env_file: EnvFile = None,
) -> None:
    """Make a data dir: the service's keys (0600) and the log's first entries.

    Production (the default): no centre keys and no certificates; the centres are added
    with ``suanli centres add`` and the server takes certificates from the bureau's CA.
    ``--dev``: also development keys for the two centres and a development PKI."""
    from api.bootstrap import open_service
    from api.devpki import ensure_dev_pki

    with tool_errors():
        settings = settings_from(data_dir, db, env_file=env_file)
        set_up_data_dir(settings, development=dev)
        announce(settings)
        with open_service(settings) as service:
            keys = service.ledger.keys
            size = service.ledger.store.size()
    typer.echo(
        f"data dir:   {settings.data_dir.resolve()} ({'development' if dev else 'production'})"
    )
    typer.echo(f"database:   {settings.database_shown()}")
    typer.echo(f"log size:   {size}")
    typer.echo(f"log key:    {keys.log.verifier.vkey}")
    typer.echo("            (publish it: auditors pin it to verify the log)")
    if not dev:
        typer.echo("next:       suanli centres add <id> --vkey <the centre's verifier key> ...")
        typer.echo("            suanli serve --tls-cert FILE --tls-key FILE --client-ca FILE")
        return
    pki = ensure_dev_pki(settings.data_dir)
    typer.echo(f"gRPC TLS:   CA {pki.server.ca}, server {pki.server.cert}")
    for centre, files in pki.centres.items():
        typer.echo(f"centre:     {centre}: {files.cert.parent}/ (client.pem, client.key, ca.pem)")


def rebuild(data_dir: DataDir = None, db: Db = None) -> None:
    """Rebuild every projection from the log alone and store it; report where it differs
    from the projection the service had stored (exit status 1 if it does)."""
    from ledger.fold import apply
    from ledger.projection import differences, summary
    from ledger.state import LedgerState
    from ledger.store.log import load_projection, save_projection

    with open_existing(settings_from(data_dir, db)) as service:
        engine = service.ledger.store.engine
        stored = load_projection(engine)
        state, drift = LedgerState(), []
        for entry in service.ledger.store.replay():
            state, _ = apply(state, entry)
            if stored is not None and stored[0] == state.size:
                drift = differences(stored[1], summary(state))
        values = summary(state)
        save_projection(engine, state.size, values)
    typer.echo(f"replayed {state.size} entries; stored {len(values)} projection values")
    if stored is not None:
        verdict = "differs" if drift else "matches"
        typer.echo(f"the projection stored at size {stored[0]} {verdict} the replay")
    for line in drift:
        typer.echo(f"  {line}")
    if drift:
        raise typer.Exit(1)
