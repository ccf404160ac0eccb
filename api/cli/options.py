"""What the ``suanli`` commands share: the data dir and database options, and settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from api.errors import ToolError
from api.settings import ENV_FILES, Settings

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="keys, certificates, SQLite db")]
Db = Annotated[str | None, typer.Option("--db", help="database URL (default: SQLite in data dir)")]


EnvFile = Annotated[
    Path | None,
    typer.Option(
        "--env-file",
        help="read SUANLI_* settings from this file too (default: /etc/suanli/suanli.env, "
        "./suanli.env); the environment wins",
        exists=True,
        dir_okay=False,
    ),
]
TlsCert = Annotated[
    Path | None, typer.Option("--tls-cert", help="gRPC server certificate (PEM, with chain)")
]
TlsKey = Annotated[Path | None, typer.Option("--tls-key", help="gRPC server private key file")]
ClientCa = Annotated[
    Path | None, typer.Option("--client-ca", help="CA of the centres' client certificates")
]


@contextmanager
def tool_errors() -> Iterator[None]:
    """A tool's own refusal (``ToolError``) as one line on stderr and exit status 2."""
    try:
        yield
    except ToolError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def command_group(name: str, help: str) -> typer.Typer:
    """A group of ``suanli`` subcommands: help when called bare, no locals in tracebacks."""
    return typer.Typer(
        name=name, help=help, no_args_is_help=True, pretty_exceptions_show_locals=False
    )


def settings_from(
    data_dir: Path | None = None,
    db: str | None = None,
    *,
    env_file: Path | None = None,
    **more: Any,
) -> Settings:
    """The settings (``SUANLI_*``, and the env files), with the command line's on top."""
    overrides = {k: v for k, v in {"data_dir": data_dir, "db": db, **more}.items() if v is not None}
    if env_file is not None:
        overrides["_env_file"] = (*ENV_FILES, env_file)
    return Settings(**overrides)
