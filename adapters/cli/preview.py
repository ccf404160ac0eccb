"""``suanli centre preview``: what a centre's metering export would claim, before claiming it.

One source, named as ``run`` and ``reconcile`` name theirs::

    suanli centre preview --source sacct:FILE [--delimiter '|'] [--tz UTC] [--cluster NAME]
    suanli centre preview --source events:FILE [--centre cd-icc]
    suanli centre preview --source csv:FILE --centre ID

plus ``--mapping FILE`` (see ``adapters.mapping``) to show the voucher of each job. FILE
may be ``-`` for standard input. (``--sacct FILE``, ``--events FILE`` and ``--csv FILE``
are still read, as hidden spellings of the same.)

Standard output gets one JSON object per usage record, one per line::

    {"centre": "nscc-cd", "record_id": "phillips/163485:gpu", "account": "chaff",
     "voucher": "V-1", "resource": "gpu", "quantity": 1824852, "unit": "card-second",
     "start": "2016-12-22T07:15:13.000000Z", "end": "2017-01-01T20:42:19.000000Z"}

``voucher`` is present only with ``--mapping``; a record the mapping does not map has
``"voucher": null, "unmapped": true`` (it is shown, but the agent would not claim it).
Standard error gets a summary: rows read, records, skipped rows counted by reason code
with an example reason and their first line numbers, the bad rows (code ``invalid``) each
with its line number and reason, and the unmapped accounts.

Exit status: 0 when the input was read and no row is bad; 1 when some rows are bad (the
agent would quarantine them; the summary lists them) unless ``--skip-bad``, or when no row
of the input parses (the summary then says which delimiter the file seems to use), or the
input cannot be read; 2 for bad options.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TextIO

import typer

from adapters.cli import options as opt
from adapters.errors import AgentError
from adapters.mapping import AccountMap
from adapters.slurm import ParseResult, delimiter_name, guess_delimiter
from adapters.sources import UsageSource
from ledger.errors import InvalidInput
from ledger.timeutil import format_time
from ledger.usage import RESOURCE_UNITS

FIRST_LINES = 5  # skipped line numbers shown per reason code
BAD_SHOWN = 20  # bad rows shown one by one


@contextmanager
def _open(source: UsageSource) -> Iterator[TextIO]:
    if source.spec == "-":
        stream = sys.stdin
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=source.errors)
        yield stream
        return
    path = Path(source.spec)
    with path.open(encoding="utf-8-sig", errors=source.errors, newline=source.newline) as file:
        yield file


class _Sample:
    """The first lines of an input, kept while it streams by (to guess its delimiter)."""

    def __init__(self, lines: Iterable[str], keep: int = 20) -> None:
        self.lines = lines
        self.keep = keep
        self.first: list[str] = []

    def __iter__(self) -> Iterator[str]:
        for line in self.lines:
            if len(self.first) < self.keep:
                self.first.append(line)
            yield line


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
    bad = result.bad
    for row in bad[:BAD_SHOWN]:
        job = f" (job {row.job_id})" if row.job_id else ""
        out.append(f"  bad line {row.line_no}{job}: {row.reason}")
    if len(bad) > BAD_SHOWN:
        out.append(f"  ... and {len(bad) - BAD_SHOWN} more bad lines")
    if unmapped:
        accounts = ", ".join(f"{a} ({n} records)" for a, n in sorted(unmapped.items()))
        out.append(f"  accounts with no voucher mapping (shown, flagged unmapped): {accounts}")
    return "\n".join(out)


def preview(
    *,
    source: Annotated[
        list[str] | None,
        typer.Option(help="sacct:FILE | events:FILE | csv:FILE ('-' for standard input)"),
    ] = None,
    mapping: opt.MappingOpt = None,
    centre: opt.CentreOpt = None,
    delimiter: opt.DelimiterOpt = "|",
    tz: opt.TzOpt = "UTC",
    cluster: opt.ClusterOpt = None,
    skip_bad: opt.SkipBadOpt = False,
    sacct: Annotated[str | None, typer.Option(hidden=True)] = None,
    events: Annotated[str | None, typer.Option(hidden=True)] = None,
    csv: Annotated[str | None, typer.Option("--csv", hidden=True)] = None,
) -> None:
    """Print the usage records an export would claim (JSON lines) and a summary on stderr."""
    named = list(source or [])
    named += [f"{kind}:{path}" for kind, path in (("sacct", sacct), ("events", events),
                                                  ("csv", csv)) if path is not None]  # fmt: skip
    if len(named) != 1:
        raise typer.BadParameter(
            "give exactly one of --source sacct:FILE, events:FILE or csv:FILE",
            param_hint="--source",
        )
    try:
        chosen = UsageSource.parse(
            named[0], delimiter=opt.delimiter_of(delimiter), tz=opt.parse_zone(tz), cluster=cluster
        )
    except AgentError as exc:
        raise typer.BadParameter(str(exc), param_hint="--source") from exc
    if chosen.kind == "sacct-cmd":
        raise typer.BadParameter(
            "preview reads a file: run the command into one", param_hint="--source"
        )
    centre_id = opt.centre_for(centre, named)
    try:
        accounts = AccountMap.load(mapping) if mapping is not None else None
        with _open(chosen) as lines:
            sample = _Sample(lines)
            result = chosen.parse_lines(sample, centre_id, accounts, skip_unmapped=False)
    except (OSError, UnicodeDecodeError, InvalidInput) as exc:
        message = exc.message if isinstance(exc, InvalidInput) else str(exc)
        raise opt.fail(f"cannot read {chosen.spec}: {message}") from exc

    unmapped = _print_records(result, accounts)
    typer.echo(_summary(chosen.kind, chosen.spec, result, unmapped), err=True)
    if result.rows and not result.records and len(result.bad) == result.rows:
        raise opt.fail(_nothing_parsed(chosen, sample.first))
    if result.bad and not skip_bad:
        raise opt.fail(
            f"{len(result.bad)} bad rows (listed above) would be quarantined;"
            " fix the export, or give --skip-bad to accept that they are left out",
            opt.EXIT_QUARANTINED,
        )


def _nothing_parsed(source: UsageSource, first: list[str]) -> str:
    message = f"no row of {source.spec} parses as {source.kind}"
    if source.kind != "sacct":
        return message
    guessed = guess_delimiter(first)
    if guessed is not None and guessed != source.delimiter:
        return f"{message}: the file seems to use {delimiter_name(guessed)}"
    return f"{message} with the delimiter {source.delimiter!r} (is it sacct --parsable output?)"


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
            voucher = accounts.voucher_of(result.keys_of(record))
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
