"""What the ``suanli`` commands share: the data dir and database options, and settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from api.settings import Settings

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="keys, certificates, SQLite db")]
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
