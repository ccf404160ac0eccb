"""What the ``suanli`` commands share: the data dir and database options, settings, and
opening the service on an existing data dir (saying which one, on stderr)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.errors import ToolError
from api.settings import ENV_FILES, Settings

if TYPE_CHECKING:
    from api.bootstrap import Service

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="keys, certificates, SQLite db (default: ./suanli-data)"),
]
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
    """A tool's own refusal (``ToolError``) said as every ``suanli`` error is (one line on
    stderr, its hint after it) with its class's exit status (docs/cli.md), also when the
    command runs without ``suanli``'s own wrapper (as under typer's test runner)."""
    from api.cli.manners import say_error

    try:
        yield
    except ToolError as error:
        say_error(str(error), error.hint)
        raise typer.Exit(error.exit_code) from None


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


def announce(settings: Settings) -> None:
    """One line on stderr: the data dir and database this command works on."""
    typer.echo(
        f"suanli: data dir {settings.data_dir.resolve()}, database {settings.database_shown()}",
        err=True,
    )


def require_existing(settings: Settings) -> Settings:
    """``settings`` once its data dir is known to exist (only ``serve`` and ``init`` make
    one), announced on stderr."""
    from api.datadir import require_data_dir

    require_data_dir(settings)
    announce(settings)
    return settings


def open_existing(settings: Settings) -> Service:
    """The service on an existing data dir (never creating one), announced on stderr."""
    from api.bootstrap import open_service

    return open_service(require_existing(settings))
