"""``suanli centre check-log``: the centre checks the ledger's log (``adapters.monitor``).

    suanli centre check-log --ledger https://ledger.example --log-key "$LOG_VKEY" \\
        --witness-policy suanli.policy --centre nscc-cd

Run it after each agent run, or on a schedule: it remembers the last good checkpoint in the
centre's outbox and proves every claim acknowledged since. Exit status: 0 when every check
holds, 1 when one fails (a wrong signature, a missing quorum, a rewritten history, a claim
not in the log), 2 for bad options or an unreachable ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adapters.cli import options as opt


def check_log(
    *,
    ledger: Annotated[str, typer.Option(help="the ledger's HTTP URL (its public log API)")],
    log_key: Annotated[
        list[str], typer.Option("--log-key", help="the log's verifier key you pinned (repeatable)")
    ],
    centre: opt.CentreOpt = None,
    data_dir: opt.DataDirOpt = None,
    centre_dir: opt.CentreDirOpt = None,
    outbox: opt.OutboxOpt = None,
    witness: Annotated[
        list[str] | None,
        typer.Option("--witness", help="a witness's cosignature key (0x04 vkey); repeatable"),
    ] = None,
    quorum: Annotated[
        int | None, typer.Option(min=0, help="cosignatures required (default: every --witness)")
    ] = None,
    witness_policy: Annotated[
        Path | None, typer.Option(help="a c2sp.org/tlog-policy file: witnesses and quorum")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="claims to prove in this run")] = 100_000,
) -> None:
    """Check the ledger's log: the pinned key, the witnesses' quorum, consistency with the
    last check, and every claim acknowledged to this centre since."""
    from adapters.credentials import CentreFiles
    from adapters.errors import AgentError
    from adapters.monitor import LogCheckFailed, check_log
    from adapters.outbox import Outbox
    from ledger.errors import LedgerError
    from ledger.keys import Signer, Verifier
    from ledger.tlogpolicy import demanded

    centre_id = centre or "nscc-cd"
    directory, outbox_path = opt.paths(centre_id, data_dir, centre_dir, outbox)
    try:
        keys = [Verifier.parse(k) for k in log_key]
        text = None if witness_policy is None else witness_policy.read_bytes()
        policy = demanded(witness or [], quorum, text)
        files = CentreFiles(directory)
        signer = Signer.parse(files.signing_key.read_text().strip())
        if not outbox_path.exists():
            raise AgentError(f"no outbox at {outbox_path}: nothing acknowledged to check")
    except (LedgerError, OSError, AgentError) as exc:
        raise opt.fail(exc.message if isinstance(exc, LedgerError) else str(exc), 2) from exc
    with Outbox(outbox_path) as box:
        try:
            found = check_log(ledger, keys, box, centre_id, signer.verifier, policy, limit)
        except LogCheckFailed as exc:
            typer.echo(f"FAIL: {exc}")
            raise typer.Exit(1) from exc
        except AgentError as exc:
            raise opt.fail(str(exc), 2) from exc
    since = f"extends size {found.previous_size}" if found.previous_size else "first check"
    witnesses = f"; cosigned by {', '.join(sorted(found.cosigned_by))}" if policy else ""
    typer.echo(
        f"OK: checkpoint of size {found.size} ({since}){witnesses}; "
        f"{found.claims_proven} claims proven in the log"
        + (f", {found.claims_waiting} beyond this checkpoint" if found.claims_waiting else "")
    )
