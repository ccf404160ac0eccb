"""What the ``suanli`` commands share: the data dir and database options, settings, and
opening the service on an existing data dir (saying which one, on stderr)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.settings import Settings

if TYPE_CHECKING:
    from api.bootstrap import Service

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="keys, certificates, SQLite db (default: ./suanli-data)"),
]
Db = Annotated[str | None, typer.Option("--db", help="database URL (default: SQLite in data dir)")]


def command_group(name: str, help: str) -> typer.Typer:
    """A group of ``suanli`` subcommands: help when called bare, no locals in tracebacks."""
    return typer.Typer(
        name=name, help=help, no_args_is_help=True, pretty_exceptions_show_locals=False
    )


def settings_from(data_dir: Path | None = None, db: str | None = None, **more: Any) -> Settings:
    """The settings (``SUANLI_*``), with the options given on the command line on top."""
    overrides = {k: v for k, v in {"data_dir": data_dir, "db": db, **more}.items() if v is not None}
    return Settings(**overrides)


def announce(settings: Settings) -> None:
    """One line on stderr: the data dir and database this command works on."""
    from api.datadir import database_text

    typer.echo(
        f"suanli: data dir {settings.data_dir.resolve()}, database {database_text(settings)}",
        err=True,
    )


def open_existing(settings: Settings) -> Service:
    """The service on an existing data dir (never creating one), announced on stderr."""
    from api.bootstrap import open_service
    from api.datadir import require_data_dir

    require_data_dir(settings)
    announce(settings)
    return open_service(settings)
