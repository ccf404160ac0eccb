"""The ``suanli`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="suanli",
    help="suanli: the compute-voucher (算力券) ledger of 成经信财〔2023〕31号.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="keys, certificates, SQLite db")]
Db = Annotated[str | None, typer.Option("--db", help="database URL (default: SQLite in data dir)")]


def settings_from(data_dir: Path | None = None, db: str | None = None, **more: object):  # type: ignore[no-untyped-def]
    from api.config import Settings

    overrides = {k: v for k, v in {"data_dir": data_dir, "db": db, **more}.items() if v is not None}
    return Settings(**overrides)  # type: ignore[arg-type]


@app.command()
def serve(
    data_dir: DataDir = None,
    db: Db = None,
    http: Annotated[
        str | None, typer.Option(help="HTTP listen address (default 127.0.0.1:8080)")
    ] = None,
    grpc: Annotated[
        str | None, typer.Option(help="gRPC listen address (default 127.0.0.1:50051)")
    ] = None,
) -> None:
    """Run the ledger service: HTTP (API, tiles, web page) and gRPC (centres)."""
    from api.server import run

    run(settings_from(data_dir, db, http=http, grpc=grpc))


@app.command()
def init(data_dir: DataDir = None, db: Db = None) -> None:
    """Create development keys and certificates and write the log's first entries."""
    from api.bootstrap import open_ledger
    from api.devpki import ensure_dev_pki

    with open_ledger(settings_from(data_dir, db)) as service:
        keys = service.ledger.keys
        size = service.ledger.store.size()
    pki = ensure_dev_pki(service.settings.data_dir)
    typer.echo(f"data dir:   {service.settings.data_dir.resolve()}")
    typer.echo(f"database:   {service.settings.database_url()}")
    typer.echo(f"log size:   {size}")
    typer.echo(f"log key:    {keys.log.verifier.vkey}")
    typer.echo(f"gRPC TLS:   CA {pki.server.ca}, server {pki.server.cert}")
    for centre, files in pki.centres.items():
        typer.echo(f"centre:     {centre}: {files.cert.parent}/ (client.pem, client.key, ca.pem)")


@app.command()
def rebuild(data_dir: DataDir = None, db: Db = None) -> None:
    """Rebuild every projection from the log alone and store it; report where it differs
    from the projection the service had stored (exit status 1 if it does)."""
    from api.bootstrap import open_ledger
    from ledger.entry import Entry
    from ledger.fold import apply
    from ledger.projection import differences, summary
    from ledger.state import LedgerState
    from ledger.store.log import load_projection, save_projection

    with open_ledger(settings_from(data_dir, db)) as service:
        engine = service.ledger.store.engine
        stored = load_projection(engine)
        state, drift = LedgerState(), []
        for index, data in service.ledger.store.iter_entries():
            state, _ = apply(state, Entry.from_bytes(data), index)
            if stored is not None and stored[0] == index + 1:
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


keys_app = typer.Typer(help="The service's keys.")
app.add_typer(keys_app, name="keys")


@keys_app.command("rotate-log")
def keys_rotate_log(data_dir: DataDir = None, db: Db = None) -> None:
    """Hand the log over to a new key (recorded in the log, signed by old and new keys).

    Earlier checkpoints stay verifiable with the old key; auditors keep pinning the
    genesis key and follow the rotation in the log."""
    from api.bootstrap import open_ledger
    from api.keystore import install_log_key, stage_log_key

    settings = settings_from(data_dir, db)
    with open_ledger(settings) as service:
        old = service.ledger.log_signer_for(service.ledger.refresh().size)
        new = stage_log_key(settings.data_dir, settings.origin)
        done = service.ledger.rotate_log_key(new)
        install_log_key(settings.data_dir, new)
    typer.echo(f"log key rotated at index {done.index}: {old.key_id} -> {new.key_id}")
    typer.echo(f"new verifier key: {new.verifier.vkey}")


token_app = typer.Typer(help="API tokens for the HTTP roles (stored hashed; shown once).")
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="admin | reviewer | grantee | auditor | centre")],
    district: Annotated[str | None, typer.Option(help="reviewer: its 区县")] = None,
    entity: Annotated[str | None, typer.Option(help="grantee: its 统一社会信用代码")] = None,
    centre: Annotated[str | None, typer.Option(help="centre: its id")] = None,
    label: Annotated[str, typer.Option(help="who holds it")] = "",
    data_dir: DataDir = None,
    db: Db = None,
) -> None:
    """Create a token and print it (only its hash is stored)."""
    from api.bootstrap import open_ledger

    with open_ledger(settings_from(data_dir, db)) as service:
        token, principal = service.tokens.create(
            role, district=district, entity=entity, centre=centre, label=label
        )
    typer.echo(token)
    typer.echo(f"id {principal.token_id}, role {role}", err=True)


@token_app.command("list")
def token_list(data_dir: DataDir = None, db: Db = None) -> None:
    """List active tokens (ids and scopes, never the tokens)."""
    from api.bootstrap import open_ledger

    with open_ledger(settings_from(data_dir, db)) as service:
        principals = service.tokens.list()
    for p in principals:
        scope = p.district or p.entity or p.centre or "-"
        typer.echo(f"{p.token_id}  {p.role:9} {scope}  {p.label}")


@token_app.command("revoke")
def token_revoke(token_id: str, data_dir: DataDir = None, db: Db = None) -> None:
    """Revoke a token by its id."""
    from api.bootstrap import open_ledger

    with open_ledger(settings_from(data_dir, db)) as service:
        service.tokens.revoke(token_id)
    typer.echo(f"revoked {token_id}")


def main() -> None:
    for name, module in (
        ("audit", "api.audit_cli"),
        ("policy", "api.policy_cli"),
        ("center", "adapters.preview"),
    ):
        try:
            sub = __import__(module, fromlist=["app"]).app
        except ImportError:
            continue
        app.add_typer(sub, name=name)
    from api.demo import demo

    app.command("demo")(demo)
    app()
