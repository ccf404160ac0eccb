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

    service = open_ledger(settings_from(data_dir, db))
    keys = service.ledger.keys
    pki = ensure_dev_pki(service.settings.data_dir)
    typer.echo(f"data dir:   {service.settings.data_dir.resolve()}")
    typer.echo(f"database:   {service.settings.database_url()}")
    typer.echo(f"log size:   {service.ledger.store.size()}")
    typer.echo(f"log key:    {keys.log.verifier.vkey}")
    typer.echo(f"gRPC TLS:   CA {pki.server.ca}, server {pki.server.cert}")
    for centre, files in pki.centres.items():
        typer.echo(f"centre:     {centre}: {files.cert.parent}/ (client.pem, client.key, ca.pem)")


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

    service = open_ledger(settings_from(data_dir, db))
    token, principal = service.tokens.create(
        role, district=district, entity=entity, centre=centre, label=label
    )
    typer.echo(token)
    typer.echo(f"id {principal.token_id}, role {role}", err=True)


@token_app.command("list")
def token_list(data_dir: DataDir = None, db: Db = None) -> None:
    """List active tokens (ids and scopes, never the tokens)."""
    from api.bootstrap import open_ledger

    for p in open_ledger(settings_from(data_dir, db)).tokens.list():
        scope = p.district or p.entity or p.centre or "-"
        typer.echo(f"{p.token_id}  {p.role:9} {scope}  {p.label}")


@token_app.command("revoke")
def token_revoke(token_id: str, data_dir: DataDir = None, db: Db = None) -> None:
    """Revoke a token by its id."""
    from api.bootstrap import open_ledger

    open_ledger(settings_from(data_dir, db)).tokens.revoke(token_id)
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
    app()
