"""``suanli token``: API tokens for the HTTP roles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from api.cli.options import DataDir, Db, command_group, open_existing, settings_from

if TYPE_CHECKING:
    from api.bootstrap import Service

app = command_group("token", "API tokens for the HTTP roles (stored hashed; shown once).")


@app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="admin | reviewer | grantee | auditor | centre")],
    district: Annotated[str | None, typer.Option(help="reviewer: its 区县")] = None,
    entity: Annotated[str | None, typer.Option(help="grantee: its 统一社会信用代码")] = None,
    centre: Annotated[str | None, typer.Option(help="centre: its id")] = None,
    label: Annotated[str, typer.Option(help="who holds it")] = "",
    data_dir: DataDir = None,
    db: Db = None,
) -> None:
    """Create a token and print it (only its hash is stored). The scope is checked first:
    a known role, a valid 统一社会信用代码 (check character), one of Chengdu's districts."""
    from ledger.store.tokens import check_scope

    check_scope(role, district=district, entity=entity, centre=centre)
    with open_existing(settings_from(data_dir, db)) as service:
        token, principal = service.tokens.create(
            role, district=district, entity=entity, centre=centre, label=label
        )
        known = entity is None or _registered(service, entity)
    typer.echo(token)
    typer.echo(f"id {principal.token_id}, role {role}", err=True)
    if not known:
        typer.echo(
            f"note: no entity with 统一社会信用代码 {entity} is registered in the log yet "
            "(it will be when it applies); if it should be, check the code",
            err=True,
        )


def _registered(service: Service, uscc: str) -> bool:
    from ledger.entities import book

    with service.reading() as snapshot:
        return uscc in book(snapshot.state).entities


@app.command("list")
def token_list(data_dir: DataDir = None, db: Db = None) -> None:
    """List active tokens (ids and scopes, never the tokens)."""
    with open_existing(settings_from(data_dir, db)) as service:
        principals = service.tokens.list()
    for p in principals:
        scope = p.district or p.entity or p.centre or "-"
        typer.echo(f"{p.token_id}  {p.role:9} {scope}  {p.label}")


@app.command("revoke")
def token_revoke(token_id: str, data_dir: DataDir = None, db: Db = None) -> None:
    """Revoke a token by its id (`suanli token list` shows the ids)."""
    with open_existing(settings_from(data_dir, db)) as service:
        service.tokens.revoke(token_id)
    typer.echo(f"revoked {token_id}")
