"""``suanli centre preview``: what a centre's metering export would claim, before claiming it.

One input, exactly one of::

    suanli centre preview --sacct FILE [--delimiter '|'] [--tz UTC] [--centre nscc-cd]
    suanli centre preview --events FILE [--centre cd-icc]
    suanli centre preview --csv FILE --centre ID

plus ``--mapping FILE`` (see ``adapters.mapping``) to show the voucher of each account.
FILE may be ``-`` for standard input.

Standard output gets one JSON object per usage record, one per line::

    {"centre": "nscc-cd", "record_id": "phillips/163485:gpu", "account": "chaff",
     "voucher": "V-1", "resource": "gpu", "quantity": 1824852, "unit": "card-second",
     "start": "2016-12-22T07:15:13.000000Z", "end": "2017-01-01T20:42:19.000000Z"}

``voucher`` is present only with ``--mapping``; a record whose account the mapping does not
know has ``"voucher": null, "unmapped": true`` (it is shown, but the agent would not claim
it). Standard error gets a summary: rows read, records, skipped rows counted by reason code
with an example reason and their first line numbers, and the unmapped accounts.

Exit status: 0 whenever the input could be read, skipped rows or not; 1 when a file cannot
be read or is not the format asked for (no header columns, JSON that does not parse); 2 for
bad options. sacct output is decoded as UTF-8 with undecodable bytes replaced (a job name
in GBK must not sink an export); events, CSV and mapping files must be UTF-8.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TextIO

import typer

from adapters.cli.options import DEFAULT_CENTRE, DelimiterOpt, TzOpt, delimiter_of, parse_zone
from adapters.events import parse_events, parse_usage_csv
from adapters.mapping import AccountMap
from adapters.slurm import ParseResult, parse_sacct
from ledger.errors import InvalidInput
from ledger.timeutil import format_time
from ledger.usage import RESOURCE_UNITS

FIRST_LINES = 5  # skipped line numbers shown per reason code


@contextmanager
def _open(path: str, *, sacct: bool, newline: str | None = None) -> Iterator[TextIO]:
    errors = "replace" if sacct else "strict"
    if path == "-":
        stream = sys.stdin
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=errors)
        yield stream
        return
    with Path(path).open(encoding="utf-8-sig", errors=errors, newline=newline) as file:
        yield file


def _summary(kind: str, path: str, result: ParseResult, unmapped: Counter[str]) -> str:
    skipped = result.skipped
    out = [
        f"{kind} {path}: {result.rows} rows read, {len(result.records)} records,"
        f" {len(skipped)} skipped"
    ]
    by_code: dict[str, list[int]] = {}
    example: dict[str, str] = {}
    for skip in skipped:
        by_code.setdefault(skip.code, []).append(skip.line_no)
        example.setdefault(skip.code, skip.reason)
    for code, line_nos in sorted(by_code.items(), key=lambda item: (-len(item[1]), item[0])):
        shown = ", ".join(str(n) for n in line_nos[:FIRST_LINES])
        more = ", ..." if len(line_nos) > FIRST_LINES else ""
        out.append(f"  skipped {len(line_nos)} {code} (e.g. {example[code]}): lines {shown}{more}")
    if skipped:
        firsts = ", ".join(str(s.line_no) for s in skipped[:FIRST_LINES])
        out.append(f"  first skipped lines: {firsts}")
    if unmapped:
        accounts = ", ".join(f"{a} ({n} records)" for a, n in sorted(unmapped.items()))
        out.append(f"  accounts with no voucher mapping (shown, flagged unmapped): {accounts}")
    return "\n".join(out)


def preview(
    *,
    sacct: Annotated[
        str | None, typer.Option(help="sacct --parsable/--parsable2 output ('-' for stdin)")
    ] = None,
    events: Annotated[
        str | None, typer.Option(help="CloudEvents usage events: JSON Lines, array or object")
    ] = None,
    csv: Annotated[
        str | None,
        typer.Option("--csv", help="usage CSV: record_id,account,resource,quantity,start,end"),
    ] = None,
    delimiter: DelimiterOpt = "|",
    centre: Annotated[
        str | None,
        typer.Option(help="centre id (default nscc-cd for --sacct, cd-icc for --events)"),
    ] = None,
    tz: TzOpt = "UTC",
    mapping: Annotated[
        Path | None, typer.Option(help="account -> voucher mapping file (JSON or TOML)")
    ] = None,
) -> None:
    """Print the usage records an export would claim (JSON lines) and a summary on stderr."""
    given = [(kind, path) for kind, path in (("sacct", sacct), ("events", events), ("csv", csv))]
    chosen = [(kind, path) for kind, path in given if path is not None]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --sacct, --events, --csv")
    kind, path = chosen[0]
    assert path is not None  # for mypy: chosen only holds given paths
    centre_id = centre or DEFAULT_CENTRE.get(kind)
    if centre_id is None:
        raise typer.BadParameter("--centre is required with --csv", param_hint="--centre")
    zone = parse_zone(tz)
    delimiter = delimiter_of(delimiter)

    try:
        accounts = AccountMap.load(mapping) if mapping is not None else None
        if kind == "sacct":
            with _open(path, sacct=True) as lines:
                result = parse_sacct(lines, centre=centre_id, delimiter=delimiter, tz=zone)
        elif kind == "events":
            with _open(path, sacct=False) as lines:
                result = parse_events(
                    lines,
                    centre=centre_id,
                    instance_types=accounts.instance_types if accounts else None,
                )
        else:
            with _open(path, sacct=False, newline="") as lines:
                result = parse_usage_csv(lines, centre=centre_id)
    except (OSError, UnicodeDecodeError, InvalidInput) as exc:
        message = exc.message if isinstance(exc, InvalidInput) else str(exc)
        typer.echo(f"error: cannot read {path}: {message}", err=True)
        raise typer.Exit(1) from exc

    unmapped = _print_records(result, accounts)
    typer.echo(_summary(kind, path, result, unmapped), err=True)


def _print_records(result: ParseResult, accounts: AccountMap | None) -> Counter[str]:
    """One JSON line per record on standard output; the unmapped accounts, counted."""
    unmapped: Counter[str] = Counter()
    out = sys.stdout
    for record in result.records:
        line: dict[str, object] = {
            "centre": record.centre,
            "record_id": record.record_id,
            "account": record.account,
        }
        if accounts is not None:
            voucher = accounts.voucher_for(record.account)
            line["voucher"] = voucher
            if voucher is None:
                line["unmapped"] = True
                unmapped[record.account] += 1
        line.update(
            resource=record.resource,
            quantity=record.quantity,
            unit=RESOURCE_UNITS[record.resource],
            start=format_time(record.start),
            end=format_time(record.end),
        )
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
    out.flush()
    return unmapped
