"""``suanli demo``: the command and the table it prints at the end."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from api.cli.demo.run import Demo, DemoOptions, Step


def print_table(steps: Sequence[Step]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="suanli demo: the round, end to end")
    table.add_column("step", style="bold")
    table.add_column("", width=2)
    table.add_column("what happened")
    for step in steps:
        table.add_row(step.name, "✓" if step.ok else "✗", step.short)
    Console().print(table)


def demo(
    http: Annotated[
        str | None, typer.Option(help="the service's HTTP address (default: SUANLI_HTTP)")
    ] = None,
    grpc: Annotated[
        str | None, typer.Option(help="the service's gRPC address (default: SUANLI_GRPC)")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="the service's data dir (keys, tokens)")
    ] = None,
    db: Annotated[
        str | None, typer.Option(help="the service's database URL, if not SQLite")
    ] = None,
    jobs: Annotated[int, typer.Option(min=10, help="sacct jobs for 国家超算成都中心")] = 100,
    events: Annotated[int, typer.Option(min=10, help="usage events for 成都智算中心")] = 120,
    start: Annotated[
        bool, typer.Option("--start/--no-start", help="start suanli serve if none answers")
    ] = True,
    keep_tokens: Annotated[bool, typer.Option(help="do not revoke the demo's tokens")] = False,
    witnesses: Annotated[
        int,
        typer.Option(
            min=0, max=2, help="witness processes to start with the service (when it starts it)"
        ),
    ] = 2,
) -> None:
    """Run the round end to end against the service (make run): applications, review,
    vouchers, both centres' agents over gRPC, a cap reached, statements, audit verify.

    It publishes a moved round into the log, so it runs only on a development data dir
    (`make run`'s ./suanli-data, or one made by `suanli init --dev`)."""
    from api.cli.options import announce, settings_from
    from api.datadir import require_development

    settings = settings_from(data_dir, db)
    require_development(settings)
    announce(settings)
    address = http or settings.http
    base = address if "://" in address else f"http://{address}"
    options = DemoOptions(
        http=base.rstrip("/"),
        grpc=grpc or settings.grpc,
        data_dir=settings.data_dir,
        db=settings.db,
        jobs=jobs,
        events=events,
        start=start,
        keep_tokens=keep_tokens,
        witnesses=witnesses,
    )
    runner = Demo(options, say=lambda line: typer.echo(line, err=True))
    ok = runner.run()
    print_table(runner.steps)
    if not ok:
        raise typer.Exit(1)
