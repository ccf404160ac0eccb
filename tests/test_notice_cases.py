"""The cases of 成经信财〔2023〕31号, computed through the fold with signed entries.

Each test cites the section of the notice it checks. Money in fen: 1 万元 = 1,000,000 fen.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from domain_helpers import DEFAULT_INPUTS, YUAN, World, attest_all, local, materials_for, wan

from ledger.applications import submit_body
from ledger.caps import programme_budget
from ledger.entities import BadRecord, register_body
from ledger.grants import rack_subsidy, rank_award
from ledger.policy import Policy
from ledger.uscc import complete
from ledger.vouchers import voucher_view

# --- 二、(四) 推进算力赋能产业发展: 30 %, 300 万 national / 150 万 provincial ------------------


def test_industry_national_1200_wan_gets_300_wan() -> None:
    """二、(四) 2.: 30 % of 1,200 万元 is 360 万元; a national project gets at most 300 万元."""
    world = World()
    app = world.approved("industry", {"compute_cost_fen": wan(1200), "level": "national"})
    assert world.state.parts["applications"].applications[app].approved_fen == wan(300)
    voucher = world.issue(app)
    result = world.claim(voucher, wan(1200))
    assert result["subsidy_fen"] == wan(300)
    assert result["cost_fen"] == wan(1200) and result["rate_bp"] == 3000
    assert result["bound_by"] == "voucher"  # the face value, which is the 300 万 entity cap
    assert result["voucher_balance_fen"] == 0
    caps = voucher_view(world.state, voucher)["caps"]
    assert caps["entity_programme"] == 0 and caps["voucher"] == 0


def test_industry_provincial_400_wan_gets_120_wan() -> None:
    """二、(四) 2.: 30 % of 400 万元 = 120 万元, under the provincial cap of 150 万元."""
    world = World()
    voucher = world.voucher("industry", {"compute_cost_fen": wan(400), "level": "provincial"})
    assert voucher_view(world.state, voucher)["face_value_fen"] == wan(120)
    result = world.claim(voucher, wan(400))
    assert result["subsidy_fen"] == wan(120)
    assert result["bound_by"] == "rate"  # 30 % of the cost; no cap was below it
    assert voucher_view(world.state, voucher)["caps"]["entity_programme"] == wan(30)


def test_industry_provincial_cap_150_wan_binds_the_entity() -> None:
    """二、(四) 2.: a provincial project's lead entity gets at most 150 万元 in total."""
    world = World()
    v = world.voucher("industry", {"compute_cost_fen": wan(1000), "level": "provincial"})
    assert voucher_view(world.state, v)["face_value_fen"] == wan(150)
    assert world.claim(v, wan(300))["subsidy_fen"] == wan(90)
    second = world.claim(v, wan(300))
    assert second["subsidy_fen"] == wan(60) and second["bound_by"] == "voucher"
    world.refuse("claim", world.claim_body(v, wan(10)), world.centre(), reason="CAP_EXHAUSTED")


def test_industry_claims_draw_on_the_yearly_voucher_pool() -> None:
    """The 1000 万元 yearly 算力券 pool (not in the notice; Chengdu's general pool)."""
    world = World()
    vouchers = [world.voucher("industry") for _ in range(4)]  # 4 national projects, 300 万 each
    paid = [world.claim(v, wan(1200)) for v in vouchers]
    assert [p["subsidy_fen"] for p in paid] == [wan(300), wan(300), wan(300), wan(100)]
    assert paid[-1]["bound_by"] == "voucher_pool"
    pools = programme_budget(world.state)["pools"]["chengdu-compute-voucher"]["2023"]
    assert pools == {
        "pool_fen": wan(1000),
        "paid_fen": wan(1000),
        "held_fen": 0,
        "remaining_fen": 0,
    }


# --- 二、(六) AI 大模型: 50 %, at most 500 万元 a year for the first 3 years -------------------


def test_ai_model_1500_wan_first_year_gets_500_wan_and_year_two_starts_fresh() -> None:
    """二、(六) 2.: 前3年…算力使用成本的50%，每年不超过500万元 (years from the usage start)."""
    world = World()
    voucher = world.voucher("ai-model", {"compute_cost_fen": wan(1500)})
    view = voucher_view(world.state, voucher)
    assert view["face_value_fen"] == wan(1500)  # 3 years × 500 万元
    assert view["periods"] == {"kind": "voucher_year", "count": 3, "cap_fen": wan(500)}
    assert view["usage_window"]["start"] == "2023-01-09T16:00:00.000000Z"  # 2023-01-10 00:00 CST
    year1 = world.claim(voucher, wan(1500), start=local("2023-03-01 09:00"))
    assert year1["subsidy_fen"] == wan(500) and year1["bound_by"] == "period"
    world.refuse(
        "claim",
        world.claim_body(voucher, wan(10), start=local("2023-06-01 09:00")),
        world.centre(),
        reason="CAP_EXHAUSTED",
    )
    # Year 1 ends at 2024-01-10 00:00 CST: usage just before that is still year 1.
    world.at("2024-03-10 10:00")
    err = world.claim_refused(voucher, wan(10), "CAP_EXHAUSTED", start=local("2024-01-09 22:00"))
    assert err.details["cap"] == "period" and err.details["key"] == f"{voucher}/1"
    year2 = world.claim(voucher, wan(1500), start=local("2024-01-10 00:00"))
    assert year2["subsidy_fen"] == wan(500) and year2["bound_by"] == "period"
    err = world.claim_refused(voucher, wan(10), "CAP_EXHAUSTED", start=local("2024-06-01 09:00"))
    assert err.details["key"] == f"{voucher}/2"
    world.at("2025-03-10 10:00")
    year3 = world.claim(voucher, wan(2000), start=local("2025-03-01 09:00"))
    assert year3["subsidy_fen"] == wan(500) and year3["voucher_balance_fen"] == 0
    # 前3年 only: the usage window ends three years after it starts.
    world.refuse(
        "claim",
        world.claim_body(voucher, wan(10), start=local("2026-01-10 00:00")),
        world.centre(),
        reason="USAGE_OUTSIDE_WINDOW",
    )


def test_ai_model_year_two_partial() -> None:
    """二、(六): in year 2, 50 % of 600 万元 = 300 万元, under the 500 万元 of that year."""
    world = World()
    voucher = world.voucher("ai-model")
    world.claim(voucher, wan(1500), start=local("2023-03-01 09:00"))
    world.at("2024-06-01 10:00")
    result = world.claim(voucher, wan(600), start=local("2024-05-01 09:00"))
    assert result["subsidy_fen"] == wan(300) and result["bound_by"] == "rate"
    assert result["voucher_balance_fen"] == wan(700)


# --- 二、(一) 超算适配: ranks 1–10, 100/75/50/25 万元, at most 500 万元 a year ------------------


def test_ranks_one_to_ten_take_exactly_500_wan() -> None:
    """二、(一) 2.: 第1名、2~3名、4~6名、7~10名 → 100、75、50、25 万元; 每年累计不超过500万元."""
    policy = Policy.load()
    calc = policy.programmes["adaptation"].calculator
    assert calc is not None
    assert [rank_award(calc, r) for r in range(1, 12)] == [
        wan(100),
        wan(75),
        wan(75),
        wan(50),
        wan(50),
        wan(50),
        wan(25),
        wan(25),
        wan(25),
        wan(25),
        0,
    ]
    world = World()
    paid = []
    for rank in range(1, 11):
        app = world.approved("adaptation", {"rank": rank})
        result = world.pay(app)
        assert result["bound_by"] == "requested"
        paid.append(result["paid_fen"])
    assert sum(paid) == wan(500)
    budget = programme_budget(world.state)["programmes"]["chengdu-2023-31/adaptation"]["2023"]
    assert budget == {"paid_fen": wan(500), "held_fen": 0, "pool_fen": wan(500), "remaining_fen": 0}


def test_rank_eleven_is_not_eligible() -> None:
    """二、(一) 1.(2): 综合排名前10."""
    world = World()
    uscc = world.register()
    err = world.refuse(
        "application.submit",
        _submit_body(world, "adaptation", uscc, {"rank": 11}),
        world.service,
        reason="NOT_ELIGIBLE",
    )
    assert err.details["condition"] == "top10"


# --- 二、(二) 云计算中心提档升级 -------------------------------------------------------------


def _upgrade(racks: int, yuan_per_rack: int) -> tuple[World, str, int]:
    """A 提档升级 application for ``racks`` racks (all in use) renovated at ``yuan_per_rack``
    each, approved; and what the calculator gives for it before the entity cap."""
    calc = Policy.load().programmes["cloud-upgrade"].calculator
    assert calc is not None
    cost = yuan_per_rack * YUAN
    world = World()
    inputs = {"racks_total": racks, "racks_in_use": racks, "avg_renovation_cost_per_rack_fen": cost}
    return world, world.approved("cloud-upgrade", inputs), rack_subsidy(calc, racks, cost)


def test_upgrade_1200_racks_at_1500_yuan_gets_90_wan() -> None:
    """二、(二) 2.: 50 % of 1,500 元 = 750 元 per rack (< 1000 元) × 1,200 racks = 90 万元."""
    world, app, calculated = _upgrade(1200, 1500)
    assert calculated == wan(90)
    assert world.pay(app)["paid_fen"] == wan(90)


def test_upgrade_3000_racks_at_3000_yuan_gets_200_wan() -> None:
    """二、(二) 2.: min(1000 元, 50 % of 3,000 元) × 3,000 = 300 万元, capped at 200 万元."""
    world, app, calculated = _upgrade(3000, 3000)
    assert calculated == wan(300)
    assert world.state.parts["applications"].applications[app].approved_fen == wan(200)
    assert world.pay(app)["paid_fen"] == wan(200)


@pytest.mark.parametrize(
    ("inputs", "condition"),
    [
        ({"pue_milli": 1250}, "pue"),  # PUE 低于 1.25: 1.25 itself fails
        ({"racks_total": 999}, "racks"),  # 机架数不低于 1000 架
        ({"compute_share_bp": 7000}, "compute_share"),  # 计算功能占比大于 70 %: 70 % fails
        ({"project_end": "2023-08-01"}, "activity_window"),  # 结项 2023-01-10 … 2023-07-31
        ({"project_start": "2023-01-09"}, "activity_window"),
    ],
)
def test_upgrade_eligibility_is_checked(inputs: dict[str, object], condition: str) -> None:
    """二、(二) 1.(2)/(4): checked against the stated figures."""
    world = World()
    uscc = world.register()
    err = world.refuse(
        "application.submit",
        _submit_body(world, "cloud-upgrade", uscc, inputs),
        world.service,
        reason="NOT_ELIGIBLE",
    )
    assert err.details["condition"] == condition


def test_upgrade_boundaries_that_pass() -> None:
    """二、(二) 1.(2): PUE 1.249, 1000 racks, 70.01 % pass."""
    world = World()
    uscc = world.register()
    world.apply(
        "application.submit",
        _submit_body(
            world,
            "cloud-upgrade",
            uscc,
            {
                "pue_milli": 1249,
                "racks_total": 1000,
                "compute_share_bp": 7001,
                "project_start": "2023-01-10",
                "project_end": "2023-07-31",
            },
        ),
        world.service,
    )


# --- 二、(三) 超算 only; 二、(七) 30 % up to 1000 万元 -----------------------------------------


def test_national_strategy_is_supercomputing_only() -> None:
    """二、(三): 鼓励超算中心…使用超算算力 — the 成都智算中心 is not accepted."""
    world = World()
    voucher = world.voucher("national-strategy", {"compute_cost_fen": wan(500)})
    assert voucher_view(world.state, voucher)["centres"] == ["nscc-cd"]
    assert world.claim(voucher, wan(500))["subsidy_fen"] == wan(150)
    err = world.refuse(
        "claim",
        world.claim_body(voucher, wan(10), centre="cd-icc"),
        world.centre("cd-icc"),
        reason="CENTRE_NOT_ACCEPTED",
    )
    assert err.details["centre"] == "cd-icc"


def test_national_strategy_caps_at_300_wan() -> None:
    """二、(三) 2.: 30 % of 2,000 万元 = 600 万元, at most 300 万元."""
    world = World()
    voucher = world.voucher("national-strategy", {"compute_cost_fen": wan(2000)})
    assert world.claim(voucher, wan(2000))["subsidy_fen"] == wan(300)


@pytest.mark.parametrize(("investment", "grant"), [(2000, 600), (3000, 900), (5000, 1000)])
def test_scheduling_platform_30_percent_up_to_1000_wan(investment: int, grant: int) -> None:
    """二、(七) 2.: 按平台建设投资额的30%给予最高1000万元."""
    world = World()
    app = world.approved("scheduling-platform", {"investment_fen": wan(investment)})
    assert world.pay(app)["paid_fen"] == wan(grant)


# --- 一、申报时间 and 三、(二) ---------------------------------------------------------------


def _submit_body(
    world: World, programme: str, uscc: str, inputs: dict[str, object]
) -> dict[str, Any]:
    return submit_body(
        application=world.next_id("A"),
        programme=programme,
        applicant=uscc,
        inputs={**DEFAULT_INPUTS[programme], **inputs},
        materials=materials_for(world.policy, programme),
        attestations=attest_all(world.policy, programme),
        policy=world.policy,
    )


@pytest.mark.parametrize(
    ("when", "accepted"),
    [
        ("2023-08-17 23:59:59", False),
        ("2023-08-18 00:00:00", True),
        ("2023-08-27 23:59:59", True),
        ("2023-08-28 00:00:00", False),
    ],
)
def test_online_submission_window(when: str, accepted: bool) -> None:
    """一、申报时间: 系统开放时间为8月18日至8月27日24:00，逾期系统将自动关闭."""
    world = World(clock=local("2023-08-01 09:00"))
    uscc = world.register()
    body = _submit_body(world, "industry", uscc, {})
    refused = None if accepted else "OUTSIDE_SUBMISSION_WINDOW"
    err = world.attempt("application.submit", body, world.service, at=local(when), refused=refused)
    if err is not None:
        assert "2023-08-18 00:00 to 2023-08-27 24:00 (Asia/Shanghai)" in err.message
        assert when[:16] in err.message


@pytest.mark.parametrize(
    ("when", "accepted"), [("2023-08-30 23:59:59", True), ("2023-08-31 00:00:00", False)]
)
def test_district_opinion_deadline(when: str, accepted: bool) -> None:
    """三、(二): 于2023年8月30日24:00前登录系统出具审核意见."""
    world = World()
    app = world.submit("industry", world.register())
    district = world.state.parts["applications"].applications[app].district
    body = {
        "application": app,
        "district": district,
        "reviewer": "高新区新经济局",
        "opinion": "approve",
    }
    refused = None if accepted else "REVIEW_DEADLINE_PASSED"
    err = world.attempt("application.review", body, world.service, at=local(when), refused=refused)
    if err is not None:
        assert "2023-08-30 24:00" in err.message


def test_clean_record_within_three_years() -> None:
    """三年内无犯罪、行政处罚记录和失信等不良记录 (二、(四) 1.(3)), checked at submission."""
    world = World()
    recent, old = complete("91510100MA0000099"), complete("91510100MA0000098")
    for uscc, day in ((recent, date(2021, 9, 1)), (old, date(2020, 8, 1))):
        record = BadRecord("administrative_penalty", day)
        body = register_body(uscc, f"单位{uscc[-4:]}", "enterprise", "武侯区", [record])
        world.apply("entity.register", body, world.service)
    err = world.refuse(
        "application.submit",
        _submit_body(world, "industry", recent, {}),
        world.service,
        reason="NOT_ELIGIBLE",
    )
    assert err.details["condition"] == "clean_record"
    assert "2021-09-01" in err.message
    world.apply("application.submit", _submit_body(world, "industry", old, {}), world.service)


def test_blacklisted_applicant_is_not_eligible() -> None:
    world = World()
    uscc = world.register()
    world.blacklist(uscc)
    err = world.refuse(
        "application.submit",
        _submit_body(world, "industry", uscc, {}),
        world.service,
        reason="NOT_ELIGIBLE",
    )
    assert err.details["condition"] == "clean_record"
    assert "blacklisted" in err.message
