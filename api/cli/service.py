"""``suanli serve``, ``suanli init`` and ``suanli rebuild``: run the service, set it up, and
rebuild its projection from the log alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli.manners import Unreachable
from api.cli.options import DataDir, Db, announce, open_existing, settings_from
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
    witness_policy: Annotated[
        Path | None,
        typer.Option(
            help="a c2sp.org/tlog-policy file: the witnesses (each with its URL) and quorum"
        ),
    ] = None,
) -> None:
    """Run the ledger service: HTTP (API, tiles, web page) and gRPC (centres).

    The first run on the default ./suanli-data creates it as a development data dir (as
    `suanli init --dev` does); a data dir given with --data-dir must exist (`suanli init`)."""
    from api.datadir import data_dir_given, require_data_dir
    from api.serve import run

    settings = settings_from(
        data_dir, db, http=http, grpc=grpc, witness_policy=witness_policy, workers=workers
    )
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
    """Create the data dir (marked as a development one if asked), its keys and the log's
    first entries; idempotent. The one place `init` and serve's first run set one up."""
    from api.bootstrap import open_service
    from api.datadir import create_data_dir

    create_data_dir(settings, development=development)
    with open_service(settings):
        pass


def init(
    data_dir: DataDir = None,
    db: Db = None,
    dev: Annotated[
        bool,
        typer.Option("--dev", help="mark it a development data dir (`suanli demo` may run on it)"),
    ] = False,
) -> None:
    """Create a data dir: keys, development certificates and the log's first entries."""
    from api.bootstrap import open_service
    from api.datadir import is_development
    from api.devpki import ensure_dev_pki

    settings = settings_from(data_dir, db)
    set_up_data_dir(settings, development=dev)
    announce(settings)
    with open_service(settings) as service:
        keys = service.ledger.keys
        size = service.ledger.store.size()
    pki = ensure_dev_pki(service.settings.data_dir)
    typer.echo(f"data dir:   {service.settings.data_dir.resolve()}")
    typer.echo(f"database:   {service.settings.database_url()}")
    typer.echo(f"log size:   {size}")
    kind = "development" if is_development(settings.data_dir) else "production"
    typer.echo(f"kind:       {kind}")
    typer.echo(f"log key:    {keys.log.verifier.vkey}")
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
