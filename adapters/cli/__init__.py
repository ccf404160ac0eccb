"""``suanli centre``: the compute centre's commands (``center`` is an alias).

* ``preview``: the usage records a metering export would claim, before claiming them;
* ``run``: the centre agent (read, keep in the outbox, claim over gRPC, exactly once);
* ``reconcile``: the centre's records against the ledger's claims and statements;
* ``check-log``: the ledger's log as the centre must see it (signed, witnessed, one
  history, holding every claim acknowledged to it).

They are registered here, explicitly; ``api.cli`` adds this app to ``suanli``.
"""

from __future__ import annotations

import typer

from adapters.cli.check_log import check_log
from adapters.cli.preview import preview
from adapters.cli.reconcile import reconcile
from adapters.cli.run import run

app = typer.Typer(
    help="Compute-centre side: preview, claim and reconcile usage.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def centre() -> None:
    """Compute-centre tools."""


app.command()(preview)
app.command()(run)
app.command()(reconcile)
app.command("check-log")(check_log)
