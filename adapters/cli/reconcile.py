"""``suanli centre reconcile``: the centre's records against the ledger's claims and statements.

    suanli centre reconcile --period 2023-Q3 --centre nscc-cd

Exit status: 0 when there is no difference, 1 when there are differences, 2 for bad
options or an unreachable ledger.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from adapters.cli import options as opt
from adapters.settings import CentreSettings


def reconcile(
    *,
    period: Annotated[str, typer.Option(help="2023-Q3, 2023-08, 2023, A..B (dates) or all")],
    centre: opt.CentreOpt = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="also compare the export itself")
    ] = None,
    mapping: opt.MappingOpt = None,
    data_dir: opt.DataDirOpt = None,
    centre_dir: opt.CentreDirOpt = None,
    outbox: opt.OutboxOpt = None,
    target: opt.TargetOpt = None,
    rates: opt.RatesOpt = "builtin",
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
    delimiter: opt.DelimiterOpt = "|",
    tz: opt.TzOpt = "UTC",
    server_name: opt.ServerNameOpt = None,
    limit: Annotated[int, typer.Option(help="differences shown (all with --json)")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Compare the centre's records with the ledger's claims and statements."""
    from adapters.credentials import CentreFiles
    from adapters.errors import AgentError
    from adapters.reconcile import Period
    from adapters.reconcile import reconcile as compare
    from ledger.errors import InvalidInput

    sources = source or []
    centre_id = opt.centre_for(centre, sources) if (centre or sources) else "nscc-cd"
    directory, outbox_path = opt.paths(centre_id, data_dir, centre_dir, outbox)
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
        raise opt.fail(exc.message if isinstance(exc, InvalidInput) else str(exc), 2) from exc
    try:
        records, now = _centre_side(
            outbox_path, centre_id, sources, mapping, rates, opt.delimiter_of(delimiter), tz
        )
    except (AgentError, InvalidInput) as exc:
        raise opt.fail(exc.message if isinstance(exc, InvalidInput) else str(exc)) from exc
    claims, statements = _ledger_side(files, centre_id, opt.target_of(target), server_name)
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

    try:
        with RedemptionClient.from_files(target, files, centre, server_name=server_name) as client:
            return ledger_records(client)
    except RedemptionError as exc:
        raise opt.fail(f"cannot list the ledger's claims at {target}: {exc}", 2) from exc


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

    from adapters.mapping import AccountMap
    from adapters.outbox import OutboxRecord
    from adapters.rates import RateBook, Unpriced
    from adapters.reconcile import CentreRecord
    from adapters.sources import UsageSource

    accounts = AccountMap.load(mapping)
    book = RateBook.load(rates, token=CentreSettings().token)
    zone = opt.parse_zone(tz)
    for text in sources:
        src = UsageSource.parse(text, delimiter=delimiter, tz=zone)
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
