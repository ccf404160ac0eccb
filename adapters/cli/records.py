"""``suanli centre quarantine`` and ``suanli centre requeue``: the outbox's bad rows, and
records refused because of the centre's own configuration, sent again once it is fixed.

    suanli centre quarantine [--centre ID] [--after N] [--limit N] [--json]
    suanli centre requeue --mapping FILE [--centre ID] [--reason R,...] [--rates ...]

``quarantine`` lists, a page at a time, the rows of the exports that were wrong (a value
out of the ledger's bounds, a field that does not parse), each with where it was read, its
line number and the reason; they were kept out of the outbox while the good rows of the
same export went on. A row leaves the quarantine when its export is read again without it
(fixed at the source).

``requeue`` takes the records the ledger refused for a configuration reason
(``CERTIFICATE_MISMATCH``, ``UNKNOWN_VOUCHER``, ``CENTRE_NOT_ACCEPTED`` by default), reads
each one's voucher again from the (fixed) mapping by the job's own keys (account, user,
partition, QOS, wckey), reprices it, and puts it back to pending; the next ``run`` sends
it. A refusal wrote nothing in the ledger, and the ledger's idempotency on (centre, record
id) holds, so each is claimed once.

Exit status: 0; 1 for an unreadable mapping or rate cards; 2 for bad options; 3 when there
is no outbox yet.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from adapters.cli import options as opt

CONFIG_REASONS = ("CERTIFICATE_MISMATCH", "UNKNOWN_VOUCHER", "CENTRE_NOT_ACCEPTED")


def quarantine(
    *,
    centre: opt.CentreOpt = None,
    data_dir: opt.DataDirOpt = None,
    centre_dir: opt.CentreDirOpt = None,
    outbox: opt.OutboxOpt = None,
    after: Annotated[int, typer.Option(min=0, help="the cursor a previous page gave")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="rows on this page")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per row")] = False,
) -> None:
    """List the bad rows kept out of the outbox (a page at a time)."""
    from adapters.errors import AgentError
    from adapters.outbox import Outbox

    centre_id = centre or "nscc-cd"
    _, outbox_path = opt.paths(centre_id, data_dir, centre_dir, outbox)
    if not outbox_path.exists():
        raise opt.fail(f"no outbox at {outbox_path} (suanli centre run makes it)", 3)
    try:
        box = Outbox(outbox_path)
    except AgentError as exc:
        raise opt.fail(str(exc)) from exc
    with box:
        rows = box.quarantined(centre_id, after=after, limit=limit + 1)
        total = box.quarantine_count(centre_id)
    more = len(rows) > limit
    rows = rows[:limit]
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row.__dict__, ensure_ascii=False))
        else:
            job = f" job {row.job_id}" if row.job_id else ""
            typer.echo(f"{row.origin}:{row.line_no}{job}: {row.reason}")
    cursor = f"; next page: --after {rows[-1].seq}" if more else ""
    typer.echo(f"{len(rows)} of {total} quarantined rows of {centre_id}{cursor}", err=True)


def requeue(
    *,
    mapping: opt.MappingOpt = None,
    centre: opt.CentreOpt = None,
    data_dir: opt.DataDirOpt = None,
    centre_dir: opt.CentreDirOpt = None,
    outbox: opt.OutboxOpt = None,
    reason: Annotated[
        str, typer.Option(help="refusal reasons to send again (comma list)")
    ] = ",".join(CONFIG_REASONS),
    rates: opt.RatesOpt = "builtin",
) -> None:
    """Send refused records again after a configuration fix, with the mapping read again."""
    from adapters.agent import Agent
    from adapters.credentials import CentreFiles
    from adapters.errors import AgentError
    from adapters.mapping import AccountMap
    from adapters.outbox import Outbox
    from adapters.rates import RateBook
    from adapters.settings import CentreSettings
    from ledger.errors import InvalidInput

    if mapping is None:
        raise typer.BadParameter("the (fixed) mapping file is required", param_hint="--mapping")
    reasons = [r.strip() for r in reason.split(",") if r.strip()]
    if not reasons:
        raise typer.BadParameter("give at least one reason", param_hint="--reason")
    centre_id = centre or "nscc-cd"
    directory, outbox_path = opt.paths(centre_id, data_dir, centre_dir, outbox)
    if not outbox_path.exists():
        raise opt.fail(f"no outbox at {outbox_path} (suanli centre run makes it)", 3)
    try:
        accounts = AccountMap.load(mapping)
        book = RateBook.load(rates, token=CentreSettings().token, centre=centre_id)
    except AgentError as exc:
        raise opt.fail(str(exc)) from exc
    except InvalidInput as exc:
        raise opt.fail(exc.message) from exc
    try:
        box = Outbox(outbox_path)
    except AgentError as exc:
        raise opt.fail(str(exc)) from exc
    agent = Agent(
        centre=centre_id, outbox=box, target="", files=CentreFiles(directory),
        mapping=accounts, rates=book,
    )  # fmt: skip
    try:
        changed = box.remap(reasons, centre_id, agent.remapped)
        left = sum(n for r, n in box.refusals(centre_id).items() if r in reasons)
    finally:
        box.close()
    moved = sum(1 for old, new in changed if old.voucher != new.voucher)
    typer.echo(
        f"{len(changed)} refused records back to pending ({moved} with a new voucher from"
        f" {mapping}); {left} left refused (not mapped). suanli centre run sends them."
    )
