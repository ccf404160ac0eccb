"""``suanli centre run``: read usage, keep it in the outbox, claim it over gRPC, exactly once.

    suanli centre run --source sacct:jobs.log --mapping accounts.json --centre nscc-cd

Credentials come from the centre directory (``--centre-dir``, default
``<data dir>/centres/<centre>``, which ``suanli init`` fills for development):
``client.pem``, ``client.key``, ``ca.pem`` and ``signing.key``. The outbox is
``<centre dir>/outbox.db`` unless ``--outbox`` says otherwise. docs/centre.md is the
operator's guide.

Exit status: 0 when every record has an answer (claimed or refused); 3 when records are
still pending after ``--give-up-after`` seconds without an answer (run again: nothing is
lost); 1 for a source, mapping, rate-card or credential problem; 2 for bad options.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from adapters.cli import options as opt
from adapters.settings import CentreSettings

if TYPE_CHECKING:
    from adapters.agent import Agent, IngestReport, SubmitReport
    from adapters.outbox import Outbox


def summary(outbox: Outbox, centre: str) -> dict[str, Any]:
    counts = outbox.counts(centre)
    return {
        "centre": centre,
        "outbox": str(outbox.path),
        "records": sum(counts.values()),
        "claimed": counts["claimed"],
        "refused": counts["refused"],
        "pending": counts["pending"],
        "subsidy_fen": outbox.subsidy_total(centre),
        "refusals": outbox.refusals(centre),
    }


def _print_summary(
    info: dict[str, Any], ingest: IngestReport | None, submitted: SubmitReport | None
) -> None:
    from rich.console import Console
    from rich.table import Table

    from ledger.money import format_fen

    table = Table(title=f"centre {info['centre']}: outbox {info['outbox']}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    if ingest is not None:
        skipped = ", ".join(f"{n} {code}" for code, n in ingest.skipped.most_common()) or "none"
        table.add_row("read", f"{ingest.rows} rows -> {ingest.records} records; skipped: {skipped}")
        table.add_row(
            "outbox",
            f"{ingest.added} new, {ingest.known} already there, {ingest.changed} changed"
            f" (first body kept), {ingest.unpriced} not priced",
        )
    if submitted is not None:
        table.add_row(
            "this run",
            f"{submitted.answered} answered ({submitted.claimed} claimed, {submitted.replayed}"
            f" replayed, {submitted.refused} refused) in {submitted.seconds:.1f} s",
        )
    table.add_row(
        "all records",
        f"{info['records']}: {info['claimed']} claimed, {info['refused']} refused,"
        f" {info['pending']} pending",
    )
    table.add_row("subsidy", format_fen(info["subsidy_fen"]))
    refusals = ", ".join(f"{n} {reason}" for reason, n in info["refusals"].items()) or "none"
    table.add_row("refusals", refusals)
    Console(stderr=not sys.stdout.isatty()).print(table)


def run(
    *,
    source: opt.SourceOpt,
    mapping: Annotated[Path, typer.Option(help="account -> voucher mapping (JSON or TOML)")],
    centre: opt.CentreOpt = None,
    data_dir: opt.DataDirOpt = None,
    centre_dir: opt.CentreDirOpt = None,
    outbox: opt.OutboxOpt = None,
    target: opt.TargetOpt = None,
    interval: Annotated[
        float | None, typer.Option(min=1.0, help="read the source again every S seconds")
    ] = None,
    rates: opt.RatesOpt = "builtin",
    delimiter: opt.DelimiterOpt = "|",
    tz: opt.TzOpt = "UTC",
    give_up_after: Annotated[
        float, typer.Option(min=1.0, help="stop after S seconds without an answer (exit 3)")
    ] = 300.0,
    retry_refused: Annotated[
        str, typer.Option(help="send refused records with these reasons again (comma list)")
    ] = "",
    batch: Annotated[int, typer.Option(min=1, help="records per claim stream")] = 5000,
    window: Annotated[int, typer.Option(min=1, max=4096, help="claims in flight")] = 1024,
    server_name: opt.ServerNameOpt = None,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="default: if a terminal")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="warnings only")] = False,
) -> None:
    """Read usage, keep it in the outbox, claim it over gRPC; exactly once, retried."""
    from adapters.errors import AgentError
    from adapters.progress import Progress
    from adapters.sources import UsageSource

    opt.use_logging(quiet)
    zone = opt.parse_zone(tz)
    delimiter = opt.delimiter_of(delimiter)
    try:
        sources = [UsageSource.parse(s, delimiter=delimiter, tz=zone) for s in source]
    except AgentError as exc:
        raise opt.fail(str(exc)) from exc
    centre_id = opt.centre_for(centre, source)
    directory, outbox_path = opt.paths(centre_id, data_dir, centre_dir, outbox)
    agent = _build_agent(
        centre_id, directory, outbox_path, mapping, rates, sources, opt.target_of(target),
        batch=batch, window=window, progress=Progress(f"{centre_id} claims", bar=progress),
        server_name=server_name,
    )  # fmt: skip
    box = agent.outbox
    _retry_refused(agent, retry_refused)
    _stop_on_signals(agent)
    last: dict[str, Any] = {}

    def cycle(ingest: IngestReport, submitted: SubmitReport) -> None:
        last["ingest"], last["submitted"] = ingest, submitted
        if interval is not None and not as_json:
            _print_summary(summary(box, centre_id), ingest, submitted)

    try:
        submitted = agent.run(interval=interval, give_up_after=give_up_after, on_cycle=cycle)
    except AgentError as exc:
        raise opt.fail(str(exc)) from exc
    finally:
        agent.close()
    info = summary(box, centre_id)
    box.close()
    if as_json:
        typer.echo(json.dumps(info, ensure_ascii=False))
    elif interval is None:
        _print_summary(info, last.get("ingest"), last.get("submitted"))
    if not submitted.finished and not agent.stopping.is_set():
        typer.echo(
            f"{info['pending']} records still pending (no answer for {give_up_after:.0f} s);"
            " run again to continue: nothing is lost",
            err=True,
        )
        raise typer.Exit(opt.EXIT_PENDING)


def _retry_refused(agent: Agent, retry_refused: str) -> None:
    """Put the refused records with these reasons (a comma list) back to pending."""
    reasons = [r.strip() for r in retry_refused.split(",") if r.strip()]
    if reasons:
        again = agent.outbox.requeue(reasons, agent.centre, agent.reprice)
        logging.getLogger("suanli.agent").info(
            "%d refused records (%s) put back to pending", again, ", ".join(reasons)
        )


def _build_agent(
    centre: str,
    directory: Path,
    outbox_path: Path,
    mapping: Path,
    rates: str,
    sources: list[Any],
    target: str,
    **options: Any,
) -> Agent:
    from adapters.agent import Agent
    from adapters.credentials import CentreFiles
    from adapters.errors import AgentError
    from adapters.mapping import AccountMap
    from adapters.outbox import Outbox
    from adapters.rates import RateBook
    from ledger.errors import InvalidInput

    try:
        accounts = AccountMap.load(mapping)
        book = RateBook.load(rates, token=CentreSettings().token)
        files = CentreFiles(directory)
        files.check()
    except AgentError as exc:
        raise opt.fail(str(exc)) from exc
    except InvalidInput as exc:
        raise opt.fail(exc.message) from exc
    return Agent(
        centre=centre,
        outbox=Outbox(outbox_path),
        target=target,
        files=files,
        mapping=accounts,
        rates=book,
        sources=sources,
        **options,
    )


def _stop_on_signals(agent: Agent) -> None:
    def stop(signum: int, _frame: object) -> None:
        logging.getLogger("suanli.agent").info(
            "%s: stopping (signal %d); pending records stay in the outbox",
            agent.centre,
            signum,
        )
        agent.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
