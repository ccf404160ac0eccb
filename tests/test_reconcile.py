"""Reconciliation (adapters.reconcile, ``suanli centre reconcile``): every kind of difference
between the centre's records and the ledger's claims and statements, and none when the
agent has done its work."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from grpc_fixtures import GrpcEnv, grpc_env, grpc_env_factory
from test_agent import WINDOW, make_agent, write_sacct
from typer.testing import CliRunner

from adapters.cli import app
from adapters.outbox import Claimed, OutboxRecord, Refusal
from adapters.reconcile import (
    CentreRecord,
    LedgerClaim,
    Period,
    Statement,
    StatementLine,
    reconcile,
)
from ledger.errors import InvalidInput
from ledger.money import format_fen
from ledger.timeutil import format_time

runner = CliRunner()
FIXTURES = (grpc_env, grpc_env_factory)  # pytest finds fixtures by the names imported here

AUG = "2023-08-20T02:00:00.000000Z"  # inside 2023-Q3
MAR = "2023-03-01T01:00:00.000000Z"


def record(rid: str, cost: int = 1000, voucher: str = "V-1") -> OutboxRecord:
    return OutboxRecord("nscc-cd", rid, "acct", voucher, "cpu", 3600, MAR, MAR, cost)


def claimed(rid: str, subsidy: int = 300, index: int = 10, **kw: object) -> CentreRecord:
    answer = Claimed(subsidy, index, "rate", 0, 3000, "ab" * 32, AUG, False)
    return CentreRecord(record(rid, **kw), "claimed", claimed=answer, answered_at=AUG)  # type: ignore[arg-type]


def ledger(rid: str, subsidy: int = 300, index: int = 10, cost: int = 1000) -> LedgerClaim:
    return LedgerClaim(rid, "claim", "V-1", "cpu", 3600, MAR, MAR, cost, subsidy, index, AUG)


Q3 = Period.parse("2023-Q3")


def test_periods() -> None:
    q3 = Period.parse("2023-Q3")
    assert format_time(q3.start) == "2023-06-30T16:00:00.000000Z"  # 07-01 00:00 Beijing
    assert format_time(q3.end) == "2023-09-30T16:00:00.000000Z"
    assert Period.parse("2023-12").end == Period.parse("2024-01").start
    assert Period.parse("2023").contains(datetime(2023, 6, 1, tzinfo=UTC))
    days = Period.parse("2023-08-01..2023-08-31")
    assert days.end == Period.parse("2023-08").end
    everything = Period.parse("all")
    assert everything.contains(datetime(1999, 1, 1, tzinfo=UTC))
    for bad in ("2023-Q5", "2023-13", "Q3", "2023-09-01..2023-08-01"):
        with pytest.raises(InvalidInput):
            Period.parse(bad)


def test_matching_sides_have_no_difference() -> None:
    report = reconcile(
        centre="nscc-cd",
        period=Q3,
        centre_records=[claimed("j/1"), claimed("j/2", 150, 11)],
        ledger_claims=[ledger("j/1"), ledger("j/2", 150, 11)],
    )
    assert report.ok and report.matched == 2
    assert report.centre_subsidy_fen == report.ledger_subsidy_fen == 450


def test_every_kind_of_difference() -> None:
    refused = CentreRecord(
        record("j/refused"),
        "refused",
        refusal=Refusal("CAP_EXHAUSTED", "RESOURCE_EXHAUSTED", "no room", {"cap": "voucher"}),
        answered_at=AUG,
    )
    expired = CentreRecord(
        record("j/expired"),
        "refused",
        refusal=Refusal("VOUCHER_EXPIRED", "FAILED_PRECONDITION", "expired"),
        answered_at=AUG,
    )
    pending = CentreRecord(record("j/pending"), "pending", attempts=3, last_error="UNAVAILABLE")
    unsent = CentreRecord(record("j/unsent"), "unsent")
    changed = CentreRecord(
        record("j/changed"),
        "claimed",
        claimed=Claimed(300, 14, "rate", 0, 3000, "ab" * 32, AUG, False),
        source_body=record("j/changed", cost=2000).body(),
    )
    report = reconcile(
        centre="nscc-cd",
        period=Q3,
        centre_records=[
            claimed("j/ok"),
            claimed("j/lost", index=12),  # the agent has an answer the ledger lacks
            claimed("j/amount", subsidy=299, index=13),
            claimed("j/body", cost=999, index=15),
            refused,
            expired,
            pending,
            unsent,
            changed,
        ],
        ledger_claims=[
            ledger("j/ok"),
            ledger("j/amount", index=13),
            ledger("j/body", index=15),
            ledger("j/changed", index=14),
            ledger("j/stranger", index=16),  # claimed with the centre's key, unknown to it
        ],
        now=datetime(2023, 8, 21, tzinfo=UTC),
        allow_refused=["CAP_EXHAUSTED"],
    )
    kinds = {(d.kind, d.record_id) for d in report.differences}
    assert kinds == {
        ("missing-in-ledger", "j/lost"),
        ("amount-differs", "j/amount"),
        ("differs", "j/body"),
        ("refused", "j/expired"),
        ("missing-in-ledger", "j/pending"),
        ("missing-in-ledger", "j/unsent"),
        ("differs", "j/changed"),
        ("missing-at-centre", "j/stranger"),
    }
    assert [(d.kind, d.record_id) for d in report.explained] == [("refused-allowed", "j/refused")]
    detail = {d.record_id: d.detail for d in report.differences}
    assert "cost_fen 999 (centre) vs 1000 (ledger)" in detail["j/body"]
    assert "3 attempts, last error: UNAVAILABLE" in detail["j/pending"]
    assert "VOUCHER_EXPIRED" in detail["j/expired"]
    assert "cost_fen 1000 -> 2000" in detail["j/changed"]
    assert not report.ok
    # Pending and unsent records belong to the current period only.
    later = reconcile(
        centre="nscc-cd",
        period=Q3,
        centre_records=[pending, unsent],
        ledger_claims=[],
        now=datetime(2023, 11, 1, tzinfo=UTC),
    )
    assert later.ok and later.centre_records == 0


def test_by_usage_period() -> None:
    report = reconcile(
        centre="nscc-cd",
        period=Period.parse("2023-03"),
        centre_records=[claimed("j/1")],
        ledger_claims=[ledger("j/1")],
        by="usage",
    )
    assert report.ok and report.matched == 1
    assert (
        reconcile(
            centre="nscc-cd",
            period=Q3,
            centre_records=[claimed("j/1")],
            ledger_claims=[ledger("j/1")],
            by="usage",
        ).matched
        == 0
    )


def test_statement_differences() -> None:
    def q3(amount_fen: int, *lines: tuple[str, int], **more: Any) -> Statement:
        """nscc-cd's first Q3 statement: ``lines`` (record, amount) on V-1, cost 1000 each."""
        paid = tuple(StatementLine(record, "V-1", 1000, fen) for record, fen in lines)
        return Statement("nscc-cd.2023-Q3.1", "2023-Q3", amount_fen, 2000, paid, **more)

    good = q3(450, ("j/1", 300), ("j/2", 150))

    def with_statements(*statements: Statement) -> Any:
        """The Q3 reconciliation of j/1 and j/2 (claimed, both sides) against ``statements``."""
        return reconcile(
            centre="nscc-cd",
            period=Q3,
            centre_records=[claimed("j/1"), claimed("j/2", 150, 11)],
            ledger_claims=[ledger("j/1"), ledger("j/2", 150, 11)],
            statements=list(statements),
        )

    ok = with_statements(good)
    assert ok.ok and ok.statements == [good]
    bad = q3(500, ("j/1", 301), ("j/9", 150), log_index=20)
    report = with_statements(bad, Statement("nscc-cd.2023-Q2.1", "2023-Q2", 0, 0, ()))
    kinds = sorted((d.kind, d.record_id) for d in report.differences)
    assert kinds == [
        ("not-on-statement", "j/2"),
        ("statement-differs", "j/1"),
        ("statement-total", ""),
        ("statement-unknown", "j/9"),
    ]
    # A claim recorded after the period's latest statement is not yet settled: no difference.
    later = reconcile(
        centre="nscc-cd",
        period=Q3,
        centre_records=[claimed("j/1"), claimed("j/3", 150, 30)],
        ledger_claims=[ledger("j/1"), ledger("j/3", 150, 30)],
        statements=[
            Statement(
                "nscc-cd.2023-Q3.1", "2023-Q3", 300, 1000,
                (StatementLine("j/1", "V-1", 1000, 300),), log_index=20,
            )
        ],
    )  # fmt: skip
    assert later.ok and later.unsettled == 1
    # An adjustment line (a clawback after settlement) is not compared with the claim.
    adjusted = Statement(
        "nscc-cd.2023-Q3.2", "2023-Q3", -100, 0,
        (StatementLine("j/1", "V-1", 0, -100, "adjustment"),), log_index=25,
    )  # fmt: skip
    assert reconcile(
        centre="nscc-cd",
        period=Q3,
        centre_records=[claimed("j/1")],
        ledger_claims=[ledger("j/1")],
        statements=[
            Statement("s1", "2023-Q3", 300, 1000, (StatementLine("j/1", "V-1", 1000, 300),), 20),
            adjusted,
        ],
    ).ok


# --- the command, against a real server --------------------------------------------------------


def run_reconcile(env: GrpcEnv, outbox: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        ["reconcile", "--period", "2023-Q3", "--centre", "nscc-cd", "--data-dir",
         str(env.data_dir), "--outbox", str(outbox), "--target", env.target, *extra],
    )  # fmt: skip
    return result.exit_code, result.output


def test_reconcile_after_a_backfill(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    voucher = grpc_env.voucher("industry")
    small = grpc_env.voucher("industry", amount_fen=100_000, face_value_fen=100_000)
    source = write_sacct(tmp_path / "jobs.log", 80, ["chem", "tiny"], gpu_share=0.5)
    accounts = {"chem": voucher, "tiny": small}
    agent = make_agent(grpc_env, tmp_path, accounts, [f"sacct:{source}"])
    agent.run()
    refused = agent.outbox.counts()["refused"]
    assert refused > 0  # the small voucher's cap
    outbox = agent.outbox.path
    agent.close()
    mapping = tmp_path / "accounts.json"
    mapping.write_text(json.dumps({"accounts": accounts}), encoding="utf-8")

    code, out = run_reconcile(grpc_env, outbox)
    assert code == 1 and re.search(rf"\n  refused +{refused}\n", out), out  # by default
    code, out = run_reconcile(
        grpc_env, outbox, "--allow-refused", "CAP_EXHAUSTED", "--source", f"sacct:{source}",
        "--mapping", str(mapping),
    )  # fmt: skip
    assert code == 0, out
    assert "differences" in out and "none" in out
    assert f"{refused} CAP_EXHAUSTED" in out

    # Another period: nothing there, no difference.
    result = runner.invoke(
        app,
        ["reconcile", "--period", "2023-Q2", "--data-dir", str(grpc_env.data_dir),
         "--outbox", str(outbox), "--target", grpc_env.target, "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ledger_claims"] == 0

    # A claim the centre has no record of, and a record whose answer the outbox lost.
    with sqlite3.connect(outbox) as db:
        (gone,) = db.execute(
            "SELECT record_id FROM records WHERE status = 'claimed' ORDER BY seq LIMIT 1"
        ).fetchone()
        db.execute("DELETE FROM records WHERE record_id = ?", [gone])
    client = grpc_env.client()
    stranger = grpc_env.usage(5000, "manual/1", start=WINDOW[0])
    client.claim(stranger, voucher, 5000)
    result = runner.invoke(
        app,
        ["reconcile", "--period", "2023-Q3", "--data-dir", str(grpc_env.data_dir),
         "--outbox", str(outbox), "--target", grpc_env.target, "--json",
         "--allow-refused", "CAP_EXHAUSTED"],
    )  # fmt: skip
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    found = {(d["kind"], d["record_id"]) for d in report["differences"]}
    assert found == {("missing-at-centre", gone), ("missing-at-centre", "manual/1")}


def test_reconcile_usage_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["reconcile", "--period", "2023-Q9", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    result = runner.invoke(app, ["reconcile", "--period", "2023-Q3", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "lacks client.pem" in result.output


def test_reconcile_reads_at_80_columns_with_prefix_totals(
    grpc_env: GrpcEnv, tmp_path: Path
) -> None:
    """Two clusters, one statement: with --prefix the statement row gives the prefix's
    lines and amount out of the whole statement's; every line fits 80 columns and every
    record id is printed whole; the differences are summed up by kind."""
    from ledger.usecases.commands import settlement

    voucher = grpc_env.voucher("industry")
    tianhe = write_sacct(tmp_path / "tianhe.log", 20, ["chem"], gpu_share=0.5)
    long_name = "sugon-cluster-with-a-long-name"
    sugon = write_sacct(tmp_path / "sugon.log", 15, ["chem"], gpu_share=0.5,
                        cluster=long_name, first_job=900_000_000)  # fmt: skip
    agent = make_agent(grpc_env, tmp_path, {"chem": voucher}, [f"sacct:{tianhe}", f"sacct:{sugon}"])
    agent.run()
    outbox = agent.outbox.path
    agent.close()
    settlement.issue_statement(grpc_env.service.write, centre="nscc-cd", period="2023-Q3")
    with sqlite3.connect(outbox) as db:  # the centre lost one record of each cluster
        for cluster in ("tianhe/", "sugon-cluster-with-a-long-name/"):
            db.execute(
                "DELETE FROM records WHERE seq = (SELECT MIN(seq) FROM records"
                " WHERE record_id LIKE ? || '%' AND record_id LIKE '%:gpu')",
                [cluster],
            )
    [whole] = json.loads(run_reconcile(grpc_env, outbox, "--json")[1])["statements"]
    paid = Statement.of(grpc_env.client().statement(whole["statement_id"])).lines
    mine = [line.subsidy_fen for line in paid if line.record_id.startswith("tianhe/")]
    assert 0 < len(mine) < whole["lines"] == len(paid)
    code, out = run_reconcile(grpc_env, outbox, "--prefix", "tianhe/")
    assert code == 1, out
    assert (
        f"{whole['statement_id']}: {len(mine)} of {len(paid)} lines, {format_fen(sum(mine))}"
        f" of {format_fen(whole['total_subsidy_fen'])} (these prefixes' part)"
    ) in " ".join(out.split()), out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "differences by kind" in out and re.search(r"\n  missing-at-centre +1\n", out)
    code, everything = run_reconcile(grpc_env, outbox)
    listed = everything.split("\ndifferences (", 1)[1].splitlines()[1:]
    missing = [line.split()[1] for line in listed if line.startswith("  missing-at-centre ")]
    assert len(missing) == 2, everything
    assert any(m.startswith("sugon-cluster-with-a-long-name/9") for m in missing)
    assert all(m.endswith(":gpu") for m in missing)  # whole ids, never cut
    assert all(len(line) <= 80 for line in everything.splitlines()), everything
