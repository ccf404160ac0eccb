"""``suanli center run`` and ``suanli center reconcile`` (added to ``suanli center``).

    suanli center run --source sacct:jobs.log --mapping accounts.json --centre nscc-cd
    suanli center reconcile --period 2023-Q3 --centre nscc-cd

Credentials come from the centre directory (``--centre-dir``, default
``<data dir>/centres/<centre>``, which ``suanli init`` fills for development):
``client.pem``, ``client.key``, ``ca.pem`` and ``signing.key``. The outbox is
``<centre dir>/outbox.db`` unless ``--outbox`` says otherwise. docs/centre.md is the
operator's guide.

Exit status of ``run``: 0 when every record has an answer (claimed or refused); 3 when
records are still pending after ``--give-up-after`` seconds without an answer (run again:
nothing is lost); 1 for a source, mapping, rate-card or credential problem; 2 for bad
options. ``reconcile``: 0 when there is no difference, 1 when there are differences,
2 for bad options or an unreachable ledger.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from adapters.preview import DEFAULT_CENTRE, app, parse_zone

if TYPE_CHECKING:
    from adapters.agent import Agent, IngestReport, SubmitReport
    from adapters.outbox import Outbox

EXIT_PENDING = 3

SourceOpt = Annotated[
    list[str],
    typer.Option(
        "--source",
        help="sacct:FILE | sacct-cmd:'sacct ...' | events:DIR | csv:FILE (repeatable)",
    ),
]
CentreOpt = Annotated[
    str | None,
    typer.Option(help="centre id (default: nscc-cd for sacct sources, cd-icc for events)"),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="the data dir whose centres/<id>/ holds the credentials"),
]
CentreDirOpt = Annotated[
    Path | None,
    typer.Option(
        help="client.pem, client.key, ca.pem, signing.key (default <data dir>/centres/<id>)"
    ),
]
OutboxOpt = Annotated[
    Path | None, typer.Option(help="the outbox file (default <centre dir>/outbox.db)")
]
TargetOpt = Annotated[
    str | None,
    typer.Option(help="the ledger's gRPC address (default $SUANLI_GRPC or 127.0.0.1:50051)"),
]
RatesOpt = Annotated[
    str,
    typer.Option(
        help="rate cards: builtin (development defaults), a JSON file, or the ledger's HTTP URL"
    ),
]
MappingOpt = Annotated[Path | None, typer.Option(help="account -> voucher mapping (JSON or TOML)")]


def _centre_for(centre: str | None, sources: list[str]) -> str:
    if centre:
        return centre
    kinds = {s.partition(":")[0].removesuffix("-cmd") for s in sources}
    defaults = {DEFAULT_CENTRE[k] for k in kinds if k in DEFAULT_CENTRE}
    if len(defaults) == 1 and len(kinds) == 1:
        return defaults.pop()
    raise typer.BadParameter("give --centre", param_hint="--centre")


def _paths(
    centre: str, data_dir: Path | None, centre_dir: Path | None, outbox: Path | None
) -> tuple[Path, Path]:
    base = data_dir or Path(os.environ.get("SUANLI_DATA_DIR", "suanli-data"))
    directory = centre_dir or base / "centres" / centre
    return directory, outbox or directory / "outbox.db"


def _target(target: str | None) -> str:
    return target or os.environ.get("SUANLI_GRPC", "127.0.0.1:50051")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


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


@app.command()
def run(
    *,
    source: SourceOpt,
    mapping: Annotated[Path, typer.Option(help="account -> voucher mapping (JSON or TOML)")],
    centre: CentreOpt = None,
    data_dir: DataDirOpt = None,
    centre_dir: CentreDirOpt = None,
    outbox: OutboxOpt = None,
    target: TargetOpt = None,
    interval: Annotated[
        float | None, typer.Option(min=1.0, help="read the source again every S seconds")
    ] = None,
    rates: RatesOpt = "builtin",
    delimiter: Annotated[str, typer.Option(help="sacct --delimiter (\\t for tab)")] = "|",
    tz: Annotated[str, typer.Option(help="zone of sacct's zone-less times")] = "UTC",
    give_up_after: Annotated[
        float, typer.Option(min=1.0, help="stop after S seconds without an answer (exit 3)")
    ] = 300.0,
    retry_refused: Annotated[
        str, typer.Option(help="send refused records with these reasons again (comma list)")
    ] = "",
    batch: Annotated[int, typer.Option(min=1, help="records per claim stream")] = 5000,
    window: Annotated[int, typer.Option(min=1, max=4096, help="claims in flight")] = 1024,
    server_name: Annotated[
        str | None, typer.Option(help="TLS name to expect from the server")
    ] = None,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="default: if a terminal")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="warnings only")] = False,
) -> None:
    """Read usage, keep it in the outbox, claim it over gRPC; exactly once, retried."""
    from adapters.agent import AgentError, Progress, Source

    _logging(quiet)
    zone = parse_zone(tz)
    if delimiter == "\\t":
        delimiter = "\t"
    try:
        sources = [Source.parse(s, delimiter=delimiter, tz=zone) for s in source]
    except AgentError as exc:
        raise _fail(str(exc)) from exc
    centre_id = _centre_for(centre, source)
    directory, outbox_path = _paths(centre_id, data_dir, centre_dir, outbox)
    agent = _build_agent(
        centre_id, directory, outbox_path, mapping, rates, sources, _target(target),
        batch=batch, window=window, progress=Progress(f"{centre_id} claims", bar=progress),
        server_name=server_name,
    )  # fmt: skip
    box = agent.outbox
    if retry_refused:
        reasons = [r.strip() for r in retry_refused.split(",") if r.strip()]
        again = box.requeue(reasons, centre_id, agent.reprice)
        logging.getLogger("suanli.agent").info(
            "%d refused records (%s) put back to pending", again, ", ".join(reasons)
        )
    _stop_on_signals(agent)
    last: dict[str, Any] = {}

    def cycle(ingest: IngestReport, submitted: SubmitReport) -> None:
        last["ingest"], last["submitted"] = ingest, submitted
        if interval is not None and not as_json:
            _print_summary(summary(box, centre_id), ingest, submitted)

    try:
        submitted = agent.run(interval=interval, give_up_after=give_up_after, on_cycle=cycle)
    except AgentError as exc:
        raise _fail(str(exc)) from exc
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
        raise typer.Exit(EXIT_PENDING)


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
    from adapters.agent import Agent, AgentError, CentreFiles, RateBook
    from adapters.mapping import AccountMap
    from adapters.outbox import Outbox
    from ledger.errors import InvalidInput

    try:
        accounts = AccountMap.load(mapping)
        book = RateBook.load(rates)
        files = CentreFiles(directory)
        files.check()
    except AgentError as exc:
        raise _fail(str(exc)) from exc
    except InvalidInput as exc:
        raise _fail(exc.message) from exc
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


@app.command()
def reconcile(
    *,
    period: Annotated[str, typer.Option(help="2023-Q3, 2023-08, 2023, A..B (dates) or all")],
    centre: CentreOpt = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="also compare the export itself")
    ] = None,
    mapping: MappingOpt = None,
    data_dir: DataDirOpt = None,
    centre_dir: CentreDirOpt = None,
    outbox: OutboxOpt = None,
    target: TargetOpt = None,
    rates: RatesOpt = "builtin",
    by: Annotated[
        str, typer.Option(help="claimed (ledger time) or usage (usage start)")
    ] = "claimed",
    allow_refused: Annotated[
        str, typer.Option(help="refusal reasons to count as explained (comma list)")
    ] = "",
    prefix: Annotated[
        list[str] | None,
        typer.Option("--prefix", help="only record ids starting with this (repeatable)"),
    ] = None,
    delimiter: Annotated[str, typer.Option(help="sacct --delimiter")] = "|",
    tz: Annotated[str, typer.Option(help="zone of sacct's zone-less times")] = "UTC",
    server_name: Annotated[str | None, typer.Option(help="TLS name to expect")] = None,
    limit: Annotated[int, typer.Option(help="differences shown (all with --json)")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Compare the centre's records with the ledger's claims and statements."""
    from adapters.agent import AgentError, CentreFiles
    from adapters.reconcile import Period
    from adapters.reconcile import reconcile as compare
    from ledger.errors import InvalidInput

    sources = source or []
    centre_id = _centre_for(centre, sources) if (centre or sources) else "nscc-cd"
    directory, outbox_path = _paths(centre_id, data_dir, centre_dir, outbox)
    try:
        wanted = Period.parse(period)
        if by not in ("claimed", "usage"):
            raise typer.BadParameter("claimed or usage", param_hint="--by")
        files = CentreFiles(directory)
        files.check()
        if sources and mapping is None:
            raise typer.BadParameter("--source needs --mapping", param_hint="--mapping")
        if not outbox_path.exists() and not sources:
            raise AgentError(f"no outbox at {outbox_path} and no --source: nothing to compare")
    except (AgentError, InvalidInput) as exc:
        raise _fail(exc.message if isinstance(exc, InvalidInput) else str(exc), 2) from exc
    try:
        records, now = _centre_side(outbox_path, centre_id, sources, mapping, rates, delimiter, tz)
    except (AgentError, InvalidInput) as exc:
        raise _fail(exc.message if isinstance(exc, InvalidInput) else str(exc)) from exc
    claims, statements = _ledger_side(files, centre_id, _target(target), server_name)
    report = compare(
        centre=centre_id,
        period=wanted,
        centre_records=records.values(),
        ledger_claims=claims,
        statements=statements,
        by=by,
        now=now,
        allow_refused=[r.strip() for r in allow_refused.split(",") if r.strip()],
        prefixes=prefix or (),
    )
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=1))
    else:
        _print_report(report, limit)
    if not report.ok:
        raise typer.Exit(1)


def _centre_side(
    outbox_path: Path,
    centre: str,
    sources: list[str],
    mapping: Path | None,
    rates: str,
    delimiter: str,
    tz: str,
) -> tuple[dict[str, Any], Any]:
    """The centre's records (outbox, then the export) and the service time last seen."""
    from datetime import UTC, datetime, timedelta

    from adapters.outbox import Outbox
    from adapters.reconcile import outbox_records

    records: dict[str, Any] = {}
    offset = 0.0
    if outbox_path.exists():
        with Outbox(outbox_path) as box:
            records = outbox_records(box, centre)
            saved = box.get_meta(f"clock_offset:{centre}")
            offset = float(saved) if saved else 0.0
    if sources:
        assert mapping is not None
        if delimiter == "\\t":
            delimiter = "\t"
        _add_source_records(records, sources, centre, mapping, rates, delimiter, tz)
    return records, datetime.now(UTC) + timedelta(seconds=offset)


def _ledger_side(
    files: Any, centre: str, target: str, server_name: str | None
) -> tuple[list[Any], list[Any]]:
    from adapters.client import RedemptionClient, RedemptionError
    from adapters.reconcile import ledger_records
    from ledger.keys import Signer

    signer = Signer.parse(files.signing_key.read_text().strip())
    try:
        with RedemptionClient(
            target, files.ca, files.cert, files.key, signer, centre, server_name=server_name
        ) as client:
            return ledger_records(client)
    except RedemptionError as exc:
        raise _fail(f"cannot list the ledger's claims at {target}: {exc}", 2) from exc


def _add_source_records(
    records: dict[str, Any],
    sources: list[str],
    centre: str,
    mapping: Path,
    rates: str,
    delimiter: str,
    tz: str,
) -> None:
    import dataclasses

    from adapters.agent import RateBook, Source, Unpriced
    from adapters.mapping import AccountMap
    from adapters.outbox import OutboxRecord
    from adapters.reconcile import CentreRecord

    accounts = AccountMap.load(mapping)
    book = RateBook.load(rates)
    zone = parse_zone(tz)
    for text in sources:
        src = Source.parse(text, delimiter=delimiter, tz=zone)
        results = (
            [src.run_command(centre, accounts)]
            if src.kind == "sacct-cmd"
            else [src.parse_file(p, centre, accounts) for p in src.files()]
        )
        for result in results:
            for usage in result.records:
                voucher = accounts.voucher_for(usage.account)
                if voucher is None:
                    continue
                try:
                    cost = book.cost(usage)
                except Unpriced:
                    cost = 0
                record = OutboxRecord.of(usage, voucher, cost, str(src))
                known = records.get(usage.record_id)
                if known is None:
                    records[usage.record_id] = CentreRecord(record, "unsent")
                else:
                    records[usage.record_id] = dataclasses.replace(known, source_body=record.body())


def _print_report(report: Any, limit: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from ledger.money import format_fen

    console = Console()
    head = Table(
        title=f"reconciliation of {report.centre}, {report.period.label} (by {report.by})",
        show_header=False,
    )
    head.add_column("what")
    head.add_column("value")
    head.add_row("centre records", str(report.centre_records))
    head.add_row("ledger claims", str(report.ledger_claims))
    head.add_row("matched", str(report.matched))
    head.add_row(
        "subsidy",
        f"{format_fen(report.centre_subsidy_fen)} (centre) /"
        f" {format_fen(report.ledger_subsidy_fen)} (ledger)",
    )
    statements = ", ".join(
        f"{s.statement_id} ({len(s.lines)} lines, {format_fen(s.total_subsidy_fen)})"
        for s in report.statements
    )
    head.add_row("statements", statements or "none for this period")
    if report.unsettled:
        head.add_row("not yet settled", f"{report.unsettled} claims after the latest statement")
    if report.explained:
        reasons = ", ".join(
            f"{n} {reason}" for reason, n in _reasons(report.explained).most_common()
        )
        head.add_row("refusals explained", reasons)
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts().most_common())
    head.add_row("differences", counts or "none")
    console.print(head)
    if report.differences:
        table = Table(title="differences")
        for column in ("kind", "record", "voucher", "detail"):
            table.add_column(column)
        for d in report.differences[:limit]:
            table.add_row(d.kind, d.record_id, d.voucher, d.detail)
        console.print(table)
        if len(report.differences) > limit:
            console.print(f"... and {len(report.differences) - limit} more (--limit, --json)")


def _reasons(explained: list[Any]) -> Any:
    from collections import Counter

    return Counter(d.detail.split(" ", 1)[0] for d in explained)
