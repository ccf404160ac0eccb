"""One-time grants of 二、(一), (二), (七): calculators and ``grant.pay``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from domain_helpers import YUAN, World, wan
from hypothesis import given
from hypothesis import strategies as st

from ledger.caps import programme_budget
from ledger.grants import (
    calculate,
    grant_amount,
    grant_view,
    investment_grant,
    pay_body,
    rack_subsidy,
    rank_award,
)
from ledger.policy import Policy

POLICY_FILE = Path(__file__).parent.parent / "ledger" / "policies" / "chengdu-2023-31.json"
POLICY = Policy.load()
RANKS = POLICY.programmes["adaptation"]
RACKS = POLICY.programmes["cloud-upgrade"]
PLATFORM = POLICY.programmes["scheduling-platform"]


def test_rank_tiers() -> None:
    """二、(一) 2.: 前10名共分为四档（第1名、2~3名、4~6名、7~10名）→ 100/75/50/25 万元."""
    assert RANKS.calculator is not None
    assert sum(rank_award(RANKS.calculator, r) for r in range(1, 11)) == wan(500)
    assert rank_award(RANKS.calculator, 0) == rank_award(RANKS.calculator, 11) == 0


@given(st.integers(0, 100_000), st.integers(0, 10_000_000))
def test_per_rack_never_exceeds_1000_yuan_or_half_the_average(racks: int, avg_fen: int) -> None:
    """二、(二) 2.: per rack min(1000 元, 50 % of the average renovation cost); total ≤ 200 万元."""
    assert RACKS.calculator is not None
    subsidy = rack_subsidy(RACKS.calculator, racks, avg_fen)
    assert subsidy <= racks * 1000 * YUAN
    assert subsidy <= racks * avg_fen // 2
    assert subsidy == racks * min(1000 * YUAN, avg_fen * 5000 // 10000)
    inputs = {"racks_in_use": racks, "avg_renovation_cost_per_rack_fen": avg_fen}
    assert grant_amount(RACKS, inputs) == min(subsidy, wan(200))


@given(st.integers(0, 10**13))
def test_investment_share(investment: int) -> None:
    """二、(七) 2.: 30 % of the platform investment, at most 1000 万元 (floor to the fen)."""
    assert PLATFORM.calculator is not None
    assert investment_grant(PLATFORM.calculator, investment) == investment * 3000 // 10000
    assert grant_amount(PLATFORM, {"investment_fen": investment}) == min(
        investment * 3 // 10, wan(1000)
    )


def test_calculate_refuses_voucher_programmes() -> None:
    with pytest.raises(Exception) as caught:
        calculate(POLICY.programmes["industry"], {})
    assert getattr(caught.value, "reason", "") == "NOT_A_GRANT_PROGRAMME"


def test_pay_once() -> None:
    """一次性奖励: a grant application is paid once."""
    world = World()
    app = world.approved("adaptation", {"rank": 4})
    result = world.pay(app, grant="G-1")
    assert result == {
        "grant": "G-1",
        "application": app,
        "payee": result["payee"],
        "programme": "adaptation",
        "requested_fen": wan(50),
        "paid_fen": wan(50),
        "bound_by": "requested",
        "policy_version": world.policy.version,
    }
    assert grant_view(world.state, "G-1")["net_fen"] == wan(50)
    body = pay_body(
        grant="G-2", application=app, amount_fen=wan(50), policy_version=world.policy.version
    )
    world.refuse("grant.pay", body, world.issuer, reason="ALREADY_PAID")
    world.refuse("grant.pay", body | {"grant": "G-1"}, world.issuer, reason="GRANT_EXISTS")


def test_pay_refusals() -> None:
    world = World()
    app = world.approved("scheduling-platform", {"investment_fen": wan(1000)})  # 300 万
    version = world.policy.version

    def body(**kw: Any) -> dict[str, Any]:
        return pay_body(
            **(
                {
                    "grant": "G-1",
                    "application": app,
                    "amount_fen": wan(300),
                    "policy_version": version,
                }
                | kw
            )
        )

    world.refuse(
        "grant.pay", body(amount_fen=wan(300) + 1), world.issuer, reason="AMOUNT_EXCEEDS_APPROVAL"
    )
    world.refuse(
        "grant.pay", body(policy_version="0" * 64), world.issuer, reason="POLICY_VERSION_MISMATCH"
    )
    world.refuse(
        "grant.pay", body(application="A-none"), world.issuer, reason="UNKNOWN_APPLICATION"
    )
    world.refuse("grant.pay", body(), world.service, reason="WRONG_SIGNER")
    voucher_app = world.approved("industry")
    world.refuse(
        "grant.pay", body(application=voucher_app), world.issuer, reason="NOT_A_GRANT_PROGRAMME"
    )
    pending = world.submit("adaptation", world.register(), {"rank": 2})
    world.refuse("grant.pay", body(application=pending), world.issuer, reason="NOT_APPROVED")
    holder = world.state.parts["applications"].applications[app].applicant
    world.blacklist(holder)
    world.refuse("grant.pay", body(), world.issuer, reason="HOLDER_BLACKLISTED")


def test_rank_taken() -> None:
    """二、(一): each rank is one unit's; a second approval of rank 1 is a conflict."""
    world = World()
    world.approved("adaptation", {"rank": 1})
    second = world.submit("adaptation", world.register(), {"rank": 1})
    world.review(second)
    from ledger.applications import decide_body

    body = decide_body(
        application=second, decision="approve", amount_fen=wan(100), policy=world.policy
    )
    world.refuse("application.decide", body, world.issuer, reason="RANK_TAKEN")


def test_pool_binds_and_then_is_exhausted() -> None:
    """每年累计不超过 … (二、(一)): a smaller pool (a later policy version) binds and runs out."""
    obj = json.loads(POLICY_FILE.read_text(encoding="utf-8"))
    obj["programmes"][0]["caps"]["pool"]["amount_fen"] = wan(150)
    world = World(policy=Policy.from_json(obj))
    first = world.pay(world.approved("adaptation", {"rank": 1}))
    second = world.pay(world.approved("adaptation", {"rank": 2}))
    assert (first["paid_fen"], second["paid_fen"]) == (wan(100), wan(50))
    assert second["bound_by"] == "programme_pool"
    third = world.approved("adaptation", {"rank": 3})
    app = world.state.parts["applications"].applications[third]
    err = world.refuse(
        "grant.pay",
        pay_body(
            grant="G-3",
            application=third,
            amount_fen=app.approved_fen,
            policy_version=world.policy.version,
        ),
        world.issuer,
        reason="CAP_EXHAUSTED",
    )
    assert err.details["cap"] == "programme_pool"
    budget = programme_budget(world.state)["programmes"]["chengdu-2023-31/adaptation"]["2023"]
    assert budget["remaining_fen"] == 0 and budget["paid_fen"] == wan(150)
