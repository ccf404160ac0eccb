"""Projections: the live fold's summary is stored, `suanli rebuild` recomputes it from the
log alone, and the audit fails when the stored projection differs from its replay."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from grpc_fixtures import START, ManualClock, centre_write, claim_body, issue_voucher, usage_for
from typer.testing import CliRunner

from api.cli import app
from ledger.audit import verify_log
from ledger.projection import summary
from ledger.store.log import load_projection


def _service_with_claims(open_service, db_url, tmp_path: Path):  # type: ignore[no-untyped-def]
    clock = ManualClock(START)
    service = open_service(db_url, tmp_path / "data", clock=clock)
    ledger = service.ledger
    voucher = issue_voucher(service, "industry")
    for i in range(5):
        usage = usage_for(ledger, "nscc-cd", 10_000 * (i + 1), f"job-{i}")
        centre_write(service, "claim", claim_body(usage, voucher, 10_000 * (i + 1)))
    return service


def test_stored_projection_matches_the_replay_and_tampering_is_caught(  # type: ignore[no-untyped-def]
    open_service, db_url, tmp_path: Path
) -> None:
    service = _service_with_claims(open_service, db_url, tmp_path)
    ledger = service.ledger
    size = ledger.save_projection()
    stored = load_projection(ledger.store.engine)
    assert stored is not None and stored[0] == size
    assert stored[1]["claims"] == 5
    assert stored[1]["subsidy_fen"] == sum(3_000 * (i + 1) for i in range(5))  # 30 % of cost
    assert stored[1] == summary(ledger.refresh())

    genesis = ledger.state.registry.log_epochs[0].verifier
    note = ledger.store.latest_checkpoint()[1]  # type: ignore[index]
    report = verify_log(
        ledger.store.iter_entries(), note, genesis, jobs=1, projection=stored,
        disclosures=ledger.store.disclosures,
    )  # fmt: skip
    assert report.ok, report.verdict()

    with ledger.store.engine.begin() as conn:  # the projection drifts from the log
        conn.execute(sa.text("UPDATE projection SET value = value + 1 WHERE name = 'subsidy_fen'"))
    drifted = load_projection(ledger.store.engine)
    report = verify_log(
        ledger.store.iter_entries(), note, genesis, jobs=1, projection=drifted,
        disclosures=ledger.store.disclosures,
    )  # fmt: skip
    assert not report.ok
    first = report.failures[0]
    assert first.check == "projection" and first.index == size - 1
    assert "subsidy_fen: stored 45001, replay 45000" in first.message

    args = ["rebuild", "--data-dir", str(tmp_path / "data"), "--db", db_url]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "differs the replay" in result.output or "differs" in result.output
    assert "subsidy_fen: stored 45001, replay 45000" in result.output
    again = CliRunner().invoke(app, args)  # rebuilt: now it matches
    assert again.exit_code == 0, again.output
    assert "matches" in again.output
    assert load_projection(ledger.store.engine) == stored
