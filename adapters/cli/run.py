"""``suanli centre run``: read usage, keep it in the outbox, claim it over gRPC, exactly once.

    suanli centre run --source sacct:jobs.log --mapping accounts.json --centre nscc-cd

Credentials come from the centre directory (``--centre-dir``, default
``<data dir>/centres/<centre>``, which ``suanli init`` fills for development):
``client.pem``, ``client.key``, ``ca.pem`` and ``signing.key``. The outbox is
``<centre dir>/outbox.db`` unless ``--outbox`` says otherwise. docs/centre.md is the
operator's guide.

Before sending anything it runs the pre-flight checks (``adapters.preflight``): the
certificate is this centre's, the CA verifies the ledger, every mapped voucher exists and
accepts this centre. Each failure is printed with its cause.

Exit status: 0 when every record has an answer (claimed or refused); 1 for a source,
mapping, rate-card or credential problem, a failed pre-flight check, or bad rows in the
quarantine (the good rows were claimed; ``suanli centre quarantine`` lists them) unless
``--skip-bad``; 2 for bad options; 3 when records are still pending after
``--give-up-after`` seconds without an answer, or the ledger is unreachable (run again:
nothing is lost).
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
        "quarantined": outbox.quarantine_count(centre),
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
    if info["quarantined"]:
        table.add_row("quarantined", f"{info['quarantined']} bad rows (suanli centre quarantine)")
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
    cluster: opt.ClusterOpt = None,
    skip_bad: opt.SkipBadOpt = False,
    give_up_after: Annotated[
        float, typer.Option(min=1.0, help="stop after S seconds without an answer (exit 3)")
    ] = 300.0,
    retry_refused: Annotated[
        str, typer.Option(help="send refused records with these reasons again (comma list)")
    ] = "",
    batch: Annotated[int, typer.Option(min=1, help="records per claim stream")] = 5000,
    window: Annotated[int, typer.Option(min=1, max=4096, help="claims in flight")] = 1024,
    claims_per_message: opt.ClaimsPerMessageOpt = None,
    server_name: opt.ServerNameOpt = None,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="default: if a terminal")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="errors and warnings only, no summary")
    ] = False,
) -> None:
    """Read usage, keep it in the outbox, claim it over gRPC; exactly once, retried."""
    from adapters.errors import AgentError
    from adapters.progress import Progress

    opt.use_logging(quiet)
    sources = opt.sources_of(source, delimiter, tz, cluster)
    centre_id = opt.centre_for(centre, source)
    directory, outbox_path = opt.paths(centre_id, data_dir, centre_dir, outbox)
    agent = _build_agent(
        centre_id, directory, outbox_path, mapping, rates, sources, opt.target_of(target),
        batch=batch, window=window,
        per_message=claims_per_message or CentreSettings().claims_per_message,
        progress=Progress(f"{centre_id} claims", bar=progress),
        server_name=server_name,
    )  # fmt: skip
    box = agent.outbox
    _preflight(agent, quiet, give_up_after)
    _retry_refused(agent, retry_refused)
    _stop_on_signals(agent)
    last: dict[str, Any] = {}

    def cycle(ingest: IngestReport, submitted: SubmitReport) -> None:
        last["ingest"], last["submitted"] = ingest, submitted
        if interval is not None and not (as_json or quiet):
            _print_cycle(box, centre_id, ingest, submitted)

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
    elif interval is None and not quiet:
        _print_summary(info, last.get("ingest"), last.get("submitted"))
    if not submitted.finished and not agent.stopping.is_set():
        raise opt.fail(
            f"{info['pending']} records still pending (no answer for {give_up_after:.0f} s);"
            " run again to continue: nothing is lost",
            opt.EXIT_PENDING,
        )
    _exit_if_quarantined(info, skip_bad)


def _print_cycle(box: Outbox, centre: str, ingest: IngestReport, done: SubmitReport) -> None:
    """After a cycle under --interval: the table when it did something, one line if idle."""
    if ingest.rows or ingest.added or done.answered or done.transient:
        _print_summary(summary(box, centre), ingest, done)
        return
    counts = box.counts(centre)
    typer.echo(
        f"{centre}: nothing new ({counts['claimed']} claimed, {counts['refused']} refused,"
        f" {counts['pending']} pending)",
        err=True,
    )


def _exit_if_quarantined(info: dict[str, Any], skip_bad: bool) -> None:
    if info["quarantined"] and not skip_bad:
        raise opt.fail(
            f"{info['quarantined']} bad rows are quarantined (the good rows were claimed):"
            f" suanli centre quarantine --centre {info['centre']} lists them; fix the export,"
            " or give --skip-bad",
            opt.EXIT_QUARANTINED,
        )


def _preflight(agent: Agent, quiet: bool, patience: float) -> None:
    """The pre-flight checks; every failure printed with its cause, then a non-zero exit
    (3 when the ledger stays unreachable for ``patience`` seconds, as for records left
    pending; 1 otherwise)."""
    from adapters.client import RedemptionClient
    from adapters.preflight import run_preflight

    def connect() -> RedemptionClient:
        return RedemptionClient.from_files(
            agent.target, agent.files, agent.centre, timeout=agent.timeout, retries=1,
            server_name=agent.server_name,
        )  # fmt: skip

    vouchers = agent.mapping.vouchers().items()
    checks = run_preflight(agent.files, agent.centre, vouchers, connect, patience)
    failed = [c for c in checks if c.failed]
    for check in checks:
        if check.failed or check.level == "warning":
            typer.echo(check.line(), err=True)
    if failed:
        agent.close()
        agent.outbox.close()
        unreachable = all(c.level == "unreachable" for c in failed)
        raise opt.fail(
            f"pre-flight: {len(failed)} check(s) failed; nothing was sent",
            opt.EXIT_PENDING if unreachable else 1,
        )
    if not quiet:
        logging.getLogger("suanli.agent").info(
            "%s: pre-flight passed (%d checks)", agent.centre, len(checks)
        )


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
        book = RateBook.load(rates, token=CentreSettings().token, centre=centre)
        files = CentreFiles(directory)
        files.check()
        box = Outbox(outbox_path)
    except AgentError as exc:
        raise opt.fail(str(exc)) from exc
    except InvalidInput as exc:
        raise opt.fail(exc.message) from exc
    return Agent(
        centre=centre,
        outbox=box,
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
