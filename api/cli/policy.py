"""``suanli policy``: inspect a policy file and run what-if simulations against it.

``suanli policy simulate [--policy FILE] [--json] [INPUT]`` reads claims and grant
requests as JSON lines (INPUT, or standard input; format in ``docs/policy.md``), applies
the policy and its caps in order to an in-memory ledger — nothing is written anywhere —
and prints per line the subsidy in fen and the cap that bound it, or the refusal and its
reason, then a total.

Exit status: 0 when the run completed (refusals are results, not errors), 2 when the
policy file or the input cannot be read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from api.cli.options import command_group
from ledger.errors import LedgerError

if TYPE_CHECKING:
    from ledger.policy import Policy

app = command_group(
    "policy", "The round's policy file: show it, and simulate claims and grants against it."
)

EXIT_USAGE = 2

PolicyFile = Annotated[
    Path | None,
    typer.Option("--policy", help="policy JSON file (default: the packaged chengdu-2023-31)"),
]


def _load(path: Path | None) -> Policy:
    from ledger.policy import Policy

    try:
        return Policy.load(path)
    except (LedgerError, OSError) as exc:
        message = exc.message if isinstance(exc, LedgerError) else str(exc)
        typer.echo(f"error: policy {path or 'chengdu-2023-31'}: {message}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


@app.command()
def simulate(
    input: Annotated[
        Path | None, typer.Argument(help="JSON lines file; '-' or nothing for standard input")
    ] = None,
    policy: PolicyFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """What would these claims and grants get under the policy? Writes nothing."""
    from ledger.simulate import simulate as run

    loaded = _load(policy)
    try:
        if input is None or str(input) == "-":
            lines = sys.stdin.read().splitlines()
        else:
            lines = input.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        typer.echo(f"error: cannot read {input}: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    outcomes, summary = run(lines, loaded)
    for outcome in outcomes:
        typer.echo(json.dumps(outcome.to_json(), ensure_ascii=False) if as_json else outcome.text())
    if as_json:
        total = {
            "total": {
                "claims_fen": summary.claims_fen,
                "grants_fen": summary.grants_fen,
                "refused": summary.refused,
                "by_programme": summary.by_programme,
            }
        }
        typer.echo(json.dumps(total, ensure_ascii=False))
    else:
        typer.echo(summary.text())


@app.command()
def show(policy: PolicyFile = None) -> None:
    """Print the policy's version and its programmes (rates, caps, pools, centres)."""
    from ledger.money import format_bp, format_fen

    loaded = _load(policy)
    typer.echo(f"round:    {loaded.round}  {loaded.notice}")
    typer.echo(f"version:  {loaded.version}")
    for name, window in loaded.windows.items():
        typer.echo(f"window:   {name:<18} {window.describe()}")
    for p in loaded.programmes.values():
        rate = "open" if p.rate_bp is None else format_bp(p.rate_bp)
        if p.calculator is not None:
            rate = p.calculator.kind
        caps = []
        if p.entity_cap is not None:
            amounts = (
                {"": p.entity_cap.amount_fen}
                if p.entity_cap.amount_fen is not None
                else dict(p.entity_cap.amounts_fen)
            )
            caps.append(
                "entity "
                + "/".join(f"{k}{':' if k else ''}{format_fen(v or 0)}" for k, v in amounts.items())
            )
        if p.period_cap is not None:
            caps.append(
                f"{p.period_cap.kind} {format_fen(p.period_cap.amount_fen)} × {p.period_cap.count}"
            )
        if p.pool is not None:
            caps.append(f"pool {format_fen(p.pool.amount_fen)}/year")
        if p.voucher_pool is not None:
            caps.append(f"draws on {p.voucher_pool}")
        typer.echo(
            f"{p.section:<8} {p.id:<20} {p.kind:<7} {rate:<16} {'; '.join(caps)}"
            + (f"  centres: {','.join(p.centres)}" if p.centres else "")
        )
    for pool in loaded.voucher_pools.values():
        note = "" if pool.stated_in_notice else "  (not stated in the notice)"
        typer.echo(f"pool:     {pool.id} {format_fen(pool.amount_fen)}/year{note}")
