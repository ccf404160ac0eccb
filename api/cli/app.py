"""The ``suanli`` command: every subcommand registered here, explicitly.

* ``serve``, ``init``, ``rebuild`` (``api.cli.service``); ``demo`` (``api.cli.demo``);
* ``keys`` (log key rotation), ``token`` (API tokens), ``audit`` (offline verification),
  ``policy`` (show and simulate a policy), ``voucher verify`` (a holder's offline check);
* ``centre`` (alias ``center``): the compute centre's commands, from ``adapters.cli``;
* ``witness``: run a C2SP witness that cosigns the log's checkpoints (``api.witness``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from adapters.cli import app as centre_app
from api.cli import audit, keys, manners, policy, service, tokens, voucher
from api.cli.demo.command import demo
from api.witness.cli import app as witness_app

app = typer.Typer(
    name="suanli",
    help="suanli: the compute-voucher (算力券) ledger of 成经信财〔2023〕31号. "
    "Exit status: 0 ok, 1 refused or a check failed, 2 usage, 3 not set up or "
    "unreachable, 4 internal error (docs/cli.md).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings=manners.context_settings(),
)


def _version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"suanli {version('suanli')}")
        except PackageNotFoundError:
            typer.echo("suanli (not installed as a package)")
        raise typer.Exit()


@app.callback()
def suanli(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help="show the traceback of an internal error (anywhere on the line)"
        ),
    ] = False,
) -> None:
    """suanli: the compute-voucher (算力券) ledger of 成经信财〔2023〕31号."""


app.command()(service.serve)
app.command()(service.init)
app.command()(service.rebuild)
app.command("demo")(demo)
app.add_typer(keys.app, name="keys")
app.add_typer(tokens.app, name="token")
app.add_typer(audit.app, name="audit")
app.add_typer(policy.app, name="policy")
app.add_typer(voucher.app, name="voucher")
app.add_typer(centre_app, name="centre")
app.add_typer(centre_app, name="center", hidden=True)  # the American spelling, as an alias
app.add_typer(witness_app, name="witness")


def main(argv: Sequence[str] | None = None) -> None:
    """The console entry point: one line and a documented exit status on any error."""
    sys.exit(manners.run(app, argv))
