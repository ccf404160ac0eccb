"""``suanli centre reconcile``: the centre's records against the ledger's claims and statements.

    suanli centre reconcile --period 2023-Q3 --centre nscc-cd

Exit status: 0 when there is no difference, 1 when there are differences, 2 for bad
options or an unreachable ledger.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from adapters.cli import options as opt
from adapters.settings import CentreSettings

if TYPE_CHECKING:
    from adapters.sources import UsageSource


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
    cluster: opt.ClusterOpt = None,
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
    parsed = opt.sources_of(sources, delimiter, tz, cluster)
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
        records, now = _centre_side(outbox_path, centre_id, parsed, mapping, rates)
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
    sources: list[UsageSource],
    mapping: Path | None,
    rates: str,
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
        _add_source_records(records, sources, centre, mapping, rates)
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
    sources: list[UsageSource],
    centre: str,
    mapping: Path,
    rates: str,
) -> None:
    import dataclasses

    from adapters.mapping import AccountMap
    from adapters.outbox import OutboxRecord
    from adapters.rates import RateBook, Unpriced
    from adapters.reconcile import CentreRecord

    accounts = AccountMap.load(mapping)
    book = RateBook.load(rates, token=CentreSettings().token, centre=centre)
    for src in sources:
        results = (
            [src.run_command(centre, accounts)]
            if src.kind == "sacct-cmd"
            else [src.parse_file(p, centre, accounts) for p in src.files()]
        )
        for result in results:
            for usage in result.records:
                voucher = accounts.voucher_of(result.keys_of(usage))
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


WIDTH = 80  # the report reads at 80 columns: values wrap, record ids are never cut
LABEL = 20


def _print_report(report: Any, limit: int) -> None:
    """The report as plain text: the head, the differences by kind, then each difference
    (kind and record id on a line of their own, the detail wrapped below)."""
    from ledger.money import format_fen

    out = [f"reconciliation of {report.centre}, {report.period.label} (by {report.by})"]
    row = _row_printer(out)
    row("centre records", str(report.centre_records))
    row("ledger claims", str(report.ledger_claims))
    row("matched", str(report.matched))
    row("subsidy", f"{format_fen(report.centre_subsidy_fen)} (centre) /"
                   f" {format_fen(report.ledger_subsidy_fen)} (ledger)")  # fmt: skip
    for i, statement in enumerate(report.statements or [None]):
        row("" if i else "statements", _statement_text(statement))
    if report.unsettled:
        row("not yet settled", f"{report.unsettled} claims after the latest statement")
    if report.explained:
        reasons = _reasons(report.explained).most_common()
        row("refusals explained", ", ".join(f"{n} {reason}" for reason, n in reasons))
    counts = report.counts()
    row("differences", f"{sum(counts.values())}" if counts else "none")
    if counts:
        out.append("differences by kind")
        for kind, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            row(kind, str(n))
        shown = report.differences[:limit]
        out.append(f"differences ({len(shown)} of {len(report.differences)}; --json for all)")
        for d in shown:
            out.append(
                f"  {d.kind}  {d.record_id or '-'}" + (f"  {d.voucher}" if d.voucher else "")
            )
            indent = " " * 6
            out.extend(
                textwrap.wrap(d.detail, WIDTH, initial_indent=indent, subsequent_indent=indent)
            )
    typer.echo("\n".join(out))


def _row_printer(out: list[str]) -> Any:
    def row(label: str, value: str) -> None:
        lines = textwrap.wrap(value, WIDTH - LABEL - 2, break_on_hyphens=False) or [""]
        out.append(f"  {label:<{LABEL}}{lines[0]}".rstrip())
        out.extend(" " * (LABEL + 2) + line for line in lines[1:])

    return row


def _statement_text(statement: Any) -> str:
    """A statement's lines and total; with --prefix, the prefix's part of the whole."""
    from ledger.money import format_fen

    if statement is None:
        return "none for this period"
    if statement.whole_lines is None:
        return (
            f"{statement.statement_id}: {len(statement.lines)} lines,"
            f" {format_fen(statement.total_subsidy_fen)}"
        )
    return (
        f"{statement.statement_id}: {len(statement.lines)} of {statement.whole_lines} lines,"
        f" {format_fen(statement.total_subsidy_fen)} of"
        f" {format_fen(statement.whole_subsidy_fen)} (these prefixes' part)"
    )


def _reasons(explained: list[Any]) -> Any:
    from collections import Counter

    return Counter(d.detail.split(" ", 1)[0] for d in explained)
