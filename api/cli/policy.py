"""``suanli policy``: the policy in force in the ledger, publishing and comparing versions,
and what-if simulations against a policy file.

``current`` reads the version in force from the log (not the packaged file), ``diff``
compares two versions or files, ``publish FILE [--supersedes VERSION]`` publishes a
version through the same use case as ``POST /v1/admin/policy``. To undo a bad version,
publish the earlier file again naming the bad one: ``--supersedes`` (docs/policy.md).

``suanli policy simulate [--policy FILE ...] [--json] [INPUT]`` reads claims and grant
requests as JSON lines (INPUT, or standard input; format in ``docs/policy.md``), applies
the policy and its caps in order to an in-memory ledger — nothing is written anywhere —
and prints per line the subsidy in fen and the cap that bound it, or the refusal and its
reason, then a total. ``--policy`` given several times runs the rounds side by side (a
line names its ``round``) and the total adds the cost per round and per pool.

Exit status: 0 when the run completed (refusals are results, not errors), 2 when the
policy file or the input cannot be read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from api.cli.manners import EXIT_USAGE, say_error
from api.cli.options import DataDir, Db, command_group, open_existing, settings_from
from ledger.errors import LedgerError

if TYPE_CHECKING:
    from ledger.policy import Policy
    from ledger.state import LedgerState

app = command_group(
    "policy",
    "The round's policy: the version in force, diff, publish, show a file, simulate.",
)

PolicyFile = Annotated[
    Path | None,
    typer.Option("--policy", help="policy JSON file (default: the packaged chengdu-2023-31)"),
]
PolicyFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--policy",
        help="policy JSON file (default: the packaged chengdu-2023-31); several: the "
        "rounds side by side, a line naming its round (default: the first)",
    ),
]


def _load(path: Path | None) -> Policy:
    from ledger.policy import Policy

    try:
        return Policy.load(path)
    except (LedgerError, OSError) as exc:
        message = exc.message if isinstance(exc, LedgerError) else str(exc)
        say_error(f"policy {path or 'chengdu-2023-31'}: {message}", "see docs/policy.md")
        raise typer.Exit(EXIT_USAGE) from None


@app.command()
def simulate(
    input: Annotated[
        Path | None, typer.Argument(help="JSON lines file; '-' or nothing for standard input")
    ] = None,
    policy: PolicyFiles = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """What would these claims and grants get under the policy (or several rounds side by
    side)? Writes nothing."""
    from ledger.simulate import simulate as run

    loaded = [_load(path) for path in policy] if policy else [_load(None)]
    try:
        if input is None or str(input) == "-":
            lines = sys.stdin.read().splitlines()
        else:
            lines = input.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        say_error(f"cannot read {input}: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    try:
        outcomes, summary = run(lines, loaded)
    except LedgerError as exc:  # the rounds cannot run together (one round twice, …)
        say_error(f"policy: {exc.message}", "see docs/policy.md")
        raise typer.Exit(EXIT_USAGE) from None
    for outcome in outcomes:
        typer.echo(json.dumps(outcome.to_json(), ensure_ascii=False) if as_json else outcome.text())
    if as_json:
        typer.echo(json.dumps({"total": summary.to_json()}, ensure_ascii=False))
    else:
        typer.echo(summary.text())


@app.command()
def show(policy: PolicyFile = None) -> None:
    """Print a policy FILE's version and programmes (default: the packaged one; the
    version in force in the ledger is `suanli policy current`)."""
    _print_policy(_load(policy))


def _print_policy(loaded: Policy) -> None:
    """The policy's version and its programmes (rates, caps, pools, centres)."""
    from ledger.money import format_bp, format_fen

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
    if loaded.scheme is not None:
        stated = loaded.scheme_caps
        figures = [
            f"{name} {format_fen(amount)}/year"
            for name, amount in (
                ("entity", stated.entity_yearly_fen if stated else None),
                ("pool", stated.pool_yearly_fen if stated else None),
            )
            if amount is not None
        ]
        typer.echo(
            f"scheme:   {loaded.scheme} ({', '.join(loaded.scheme_programmes)} count on it): "
            + ("; ".join(figures) if figures else "states no cap (those in force stay)")
        )


# --- the policy in the ledger ---------------------------------------------------------------

Round = Annotated[str | None, typer.Option("--round", help="policy round (default: the notice's)")]


def _round(round_id: str | None) -> str:
    from ledger.policy import DEFAULT_POLICY

    return round_id or DEFAULT_POLICY


def _published(state: LedgerState, ref: str) -> Policy:
    """A version published in the log, named by its SHA-256 or a unique prefix (8+ hex)."""
    from ledger.policy import book

    versions = book(state).versions
    matches = [v for v in versions if v.startswith(ref.lower())] if len(ref) >= 8 else []
    if len(matches) != 1:
        why = "is ambiguous" if matches else "is not a published version"
        raise typer.BadParameter(
            f"{ref!r} {why} (give a file, or 8 or more hex digits of a published version)"
        )
    return versions[matches[0]]


@app.command()
def current(
    round_id: Round = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="{round, version, published_index, policy}")
    ] = False,
    data_dir: DataDir = None,
    db: Db = None,
) -> None:
    """The policy version in force in the ledger, as the log has it."""
    from ledger.policy import book, current_policy

    with open_existing(settings_from(data_dir, db)) as service, service.reading() as snapshot:
        policy = current_policy(snapshot.state, _round(round_id))
        index = book(snapshot.state).published_at[policy.version]
    if as_json:
        answer = {
            "round": policy.round,
            "version": policy.version,
            "published_index": index,
            "policy": policy.to_json(),
        }
        typer.echo(json.dumps(answer, ensure_ascii=False))
        return
    typer.echo(f"in force: since log entry {index}")
    _print_policy(policy)


@app.command()
def diff(
    first: Annotated[str, typer.Argument(help="a policy file, or a published version (8+ hex)")],
    second: Annotated[
        str | None,
        typer.Argument(help="another file or version (default: the version in force)"),
    ] = None,
    round_id: Round = None,
    data_dir: DataDir = None,
    db: Db = None,
) -> None:
    """Compare two policy versions (files or published versions), or the version in force
    with one (what publishing it would change): a unified diff of their JSON. Exit status
    0 either way."""
    import difflib

    refs = [first, second] if second is not None else [None, first]  # in force -> FILE
    loaded: dict[int, Policy] = {
        i: _load(Path(ref)) for i, ref in enumerate(refs) if ref is not None and _is_file(ref)
    }
    if len(loaded) < 2:
        from ledger.policy import current_policy

        with (
            open_existing(settings_from(data_dir, db)) as service,
            service.reading() as snapshot,
        ):
            for i, ref in enumerate(refs):
                if i not in loaded:
                    state = snapshot.state
                    loaded[i] = (
                        current_policy(state, _round(round_id))
                        if ref is None
                        else _published(state, ref)
                    )
    a, b = loaded[0], loaded[1]
    names = [f"{ref or 'in force'} ({p.version[:12]})" for ref, p in zip(refs, (a, b), strict=True)]
    if a.version == b.version:
        typer.echo(f"no differences: both are version {a.version}")
        return
    lines = difflib.unified_diff(
        _pretty(a), _pretty(b), fromfile=names[0], tofile=names[1], lineterm=""
    )
    for line in lines:
        typer.echo(line)


def _is_file(ref: str) -> bool:
    return Path(ref).is_file() or ref.endswith(".json")


def _pretty(policy: Policy) -> list[str]:
    return json.dumps(policy.to_json(), ensure_ascii=False, indent=2, sort_keys=True).splitlines()


@app.command()
def publish(
    file: Annotated[Path, typer.Argument(help="the policy JSON file to bring into force")],
    supersedes: Annotated[
        str | None,
        typer.Option(
            help="the version in force it replaces (8+ hex); needed to bring back a "
            "version published before"
        ),
    ] = None,
    data_dir: DataDir = None,
    db: Db = None,
) -> None:
    """Publish a policy version (signed by the issuer; the round's new policy in force),
    with the centres and rate cards new in it."""
    from ledger.usecases.commands.round import publish_round

    policy = _load(file)
    with open_existing(settings_from(data_dir, db)) as service:
        replaced = None
        if supersedes is not None:
            with service.reading() as snapshot:
                replaced = _published(snapshot.state, supersedes).version
        done = service.write(publish_round, policy, replaced)
    typer.echo(f"published {policy.round} version {policy.version} at log entry {done.entry.index}")
    if replaced is not None:
        typer.echo(f"supersedes: {replaced}")
    for centre in done.centres:
        typer.echo(f"centre registered: {centre}")
    for card in done.rate_cards:
        typer.echo(f"rate card published: {card}")
