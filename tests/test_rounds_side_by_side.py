"""Issue #17's 'done means': the 2023 round and a later round side by side in one ledger
(the real service on SQLite, redemption over gRPC with mutual TLS), for the same entities,
at both centres and a third provider registered as data; the scheme's yearly cap binds
across the rounds, the third provider is refused under 2023 and accepted under the later
round, and ``suanli audit verify`` replays all of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from domain_helpers import attest_all, materials_for, wan
from grpc_fixtures import GrpcEnv, grpc_env, grpc_env_factory, issue_voucher
from test_audit import audit_verify
from test_rounds import THIRD, THIRD_PROVIDER
from typer.testing import CliRunner

from adapters.client import RedemptionError
from api.cli.app import app
from ledger.caps import book as caps_book
from ledger.policy import Policy
from ledger.timeutil import format_time
from ledger.usecases.commands.applications import Approval
from ledger.usecases.commands.vouchers import voucher_for
from ledger.usecases.views import Snapshot, bureau
from ledger.vouchers import voucher_of

__all__ = ["grpc_env", "grpc_env_factory"]  # fixtures used here

POLICIES = Path(__file__).parent.parent / "ledger" / "policies"
LATER = "chengdu-2025-example"
SCHEME = "chengdu-suanliquan-scheme"
runner = CliRunner()


def cli(env: GrpcEnv, *args: str) -> str:
    db = str(env.service.settings.database_url())
    clock = {"SUANLI_CLOCK": format_time(env.clock())}
    result = runner.invoke(app, [*args, "--data-dir", str(env.data_dir), "--db", db], env=clock)
    assert result.exit_code == 0, result.output
    return result.stdout


def later_round_in_2023(path: Path) -> Path:
    """The later round's file with its windows moved to 2023, as ``suanli demo`` moves the
    notice's to today: so that both rounds pay in one budget year. Its figures, scheme and
    provider acceptance are the file's."""
    doc = json.loads((POLICIES / f"{LATER}.json").read_text("utf-8"))
    doc["windows"] = {
        "applications": {"from": "2023-08-01", "to": "2023-12-31"},
        "online_submission": {"from": "2023-08-01T00:00", "to": "2023-12-31T24:00"},
        "district_review": {"to": "2024-01-15T24:00"},
        "project_activity": {"from": "2023-01-01", "to": "2023-12-31"},
    }
    doc["programmes"][0]["usage_window"] = {"from": "2023-01-01", "to": "2023-12-31"}
    path.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    return path


def later_voucher(env: GrpcEnv, uscc: str, n: int, cost_fen: int) -> str:
    """A 算力券 of the later round: 60 % of the stated compute cost."""
    policy = Policy.load(POLICIES / f"{LATER}.json")
    approval = Approval(
        application=f"A-later-{n}",
        programme="compute-voucher",
        applicant=uscc,
        inputs={
            "compute_cost_fen": cost_fen,
            "project_start": "2023-02-01",
            "project_end": "2023-11-30",
        },
        materials=materials_for(policy, "compute-voucher"),
        attestations=attest_all(policy, "compute-voucher"),
        round=LATER,
    )
    done = env.service.write(voucher_for, approval, f"V-later-{n}")
    return str(done.entry.body["voucher"])


def claim(env: GrpcEnv, centre: str, record: str, voucher: str, cost_fen: int) -> Any:
    """The centre's claim over gRPC of usage its rate card prices at ``cost_fen``."""
    return env.client(centre).claim(env.usage(cost_fen, record, centre=centre), voucher, cost_fen)


def refused(env: GrpcEnv, centre: str, record: str, voucher: str, cost_fen: int) -> RedemptionError:
    with pytest.raises(RedemptionError) as caught:
        claim(env, centre, record, voucher, cost_fen)
    return caught.value


def test_two_rounds_side_by_side(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    env = grpc_env
    provider = json.dumps(THIRD_PROVIDER, ensure_ascii=False)
    (tmp_path / "provider.json").write_text(provider, "utf-8")
    cli(env, "centres", "add", THIRD, "--provider", str(tmp_path / "provider.json"))
    out = cli(env, "policy", "publish", str(later_round_in_2023(tmp_path / "later.json")))
    assert LATER in out

    in_2023 = issue_voucher(env.service, "industry", amount_fen=wan(300))  # a new entity
    alpha = voucher_of(env.service.ledger.refresh(), in_2023).holder
    # alpha: 300 万 at the supercomputing centre under 2023 …
    first = claim(env, "nscc-cd", "nscc-1", in_2023, wan(1100))
    assert (first.subsidy_fen, first.bound_by) == (wan(300), "voucher")
    # … then the later round: 60 % of 500 万 would be 300 万; 200 万 is left of the
    # scheme's 500 万 a year, whichever round and whichever provider
    later_alpha = later_voucher(env, alpha, 1, wan(1000))
    second = claim(env, THIRD, "xa-1", later_alpha, wan(500))
    assert (second.subsidy_fen, second.bound_by) == (wan(200), "scheme_entity")
    spent = refused(env, "cd-icc", "icc-1", later_alpha, wan(10))
    assert spent.reason == "CAP_EXHAUSTED" and "scheme_entity" in spent.message
    # the third provider: refused under 2023 (it names its centres), accepted under the later
    beta_2023 = issue_voucher(env.service, "industry", amount_fen=wan(300))
    beta = voucher_of(env.service.ledger.refresh(), beta_2023).holder
    no = refused(env, THIRD, "xa-2", beta_2023, wan(10))
    assert (no.code, no.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CENTRE_NOT_ACCEPTED")
    assert "chengdu-2023-31" in no.message and "nscc-cd, cd-icc" in no.message
    later_beta = later_voucher(env, beta, 2, wan(100))
    yes = claim(env, THIRD, "xa-3", later_beta, wan(10))
    assert (yes.subsidy_fen, yes.bound_by) == (wan(6), "rate")
    assert claim(env, "cd-icc", "icc-2", beta_2023, wan(10)).subsidy_fen == wan(3)

    counters = caps_book(env.service.ledger.refresh()).used
    assert counters[("scheme_entity", SCHEME, alpha, 2023)] == wan(500)
    assert counters[("scheme_pool", SCHEME, 2023)] == wan(500) + wan(6) + wan(3)

    # the bureau's months report: each month and the year by round as well as overall
    snapshot = Snapshot.at(env.service.ledger.refresh(), env.clock())
    months = bureau.report(snapshot, "months", 2023)
    by_round = {"chengdu-2023-31": wan(300) + wan(3), LATER: wan(200) + wan(6)}
    assert months["by_round"] == by_round
    assert sum(by_round.values()) == months["totals"]["total_fen"]

    # the auditor replays every entry of both rounds through the same fold
    db = str(env.service.settings.database_url())
    code, out = audit_verify(db, env.service.ledger.keys.log.verifier.vkey)
    assert code == 0, out
    assert out.startswith("OK:"), out
    assert "full audit: every entry replayed through the fold" in out
