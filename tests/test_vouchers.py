"""Applications and vouchers: submit, district review, decision, issue, status changes.

The notice's steps: 一、申报时间 (online submission), 三、(二) (district opinion by
2023-08-30 24:00), then the city's decision and the 算力券 of 二、(四).
"""

from __future__ import annotations

from typing import Any

import pytest
from domain_helpers import DEFAULT_INPUTS, World, attest_all, local, materials_for, sha, wan

from ledger.applications import (
    application_view,
    applications_in_district,
    applications_of,
    decide_body,
    review_body,
    submit_body,
)
from ledger.credential import sign_voucher
from ledger.entities import entity_view, register_body
from ledger.errors import InvalidInput
from ledger.uscc import complete
from ledger.vouchers import entity_vouchers, issue_body, status_body, voucher_view


@pytest.fixture
def world() -> World:
    return World()


def submit(world: World, uscc: str, programme: str = "industry", **change: Any) -> dict[str, Any]:
    return submit_body(
        application=change.pop("application", world.next_id("A")),
        programme=programme,
        applicant=uscc,
        inputs={**DEFAULT_INPUTS[programme], **change.pop("inputs", {})},
        materials=change.pop("materials", materials_for(world.policy, programme)),
        attestations=change.pop("attestations", attest_all(world.policy, programme)),
        policy=world.policy,
    )


# --- entities ----------------------------------------------------------------------------


def test_entity_register_and_refusals(world: World) -> None:
    uscc = world.register(district="武侯区", name="成都示例科技有限公司")
    view = entity_view(world.state, uscc)
    assert view["district"] == "武侯区" and view["district_code"] == "510107"
    assert view["blacklisted"] is None
    world.refuse(
        "entity.register",
        register_body(uscc, "again", "enterprise", "武侯区"),
        world.service,
        reason="ENTITY_EXISTS",
    )
    bad = {
        "uscc": uscc[:-1] + ("0" if uscc[-1] != "0" else "1"),
        "name": "x",
        "type": "enterprise",
        "district": "武侯区",
    }
    err = world.refuse("entity.register", bad, world.service, reason="INVALID_USCC")
    assert "character 18" in err.message
    other = complete("91510100MA7654321")
    body = register_body(other, "x", "enterprise", "武侯区") | {"district": "海淀区"}
    err = world.refuse("entity.register", body, world.service, reason="INVALID_ARGUMENT")
    assert "body.district" in err.message  # a 区县 of Chengdu (or a functional zone)
    body = register_body(other, "x", "enterprise", "武侯区") | {"type": "company"}
    world.refuse("entity.register", body, world.service, reason="INVALID_ARGUMENT")
    with pytest.raises(InvalidInput) as caught:
        register_body("91510100MA7654321X", "x", "enterprise", "武侯区")
    assert caught.value.reason == "INVALID_USCC"
    world.refuse(
        "entity.register",
        register_body(uscc, "x", "enterprise", "武侯区"),
        world.centre(),
        reason="WRONG_SIGNER",
    )


# --- applications ------------------------------------------------------------------------


def test_submit_records_materials_and_eligibility(world: World) -> None:
    uscc = world.register()
    body = submit(world, uscc)
    result = world.apply("application.submit", body, world.service)
    assert result["checked"] == ["joint_project", "clean_record", "activity_window"]
    assert result["attested"] == ["clean_record", "joint_project", "qualified"]
    assert result["entitlement_fen"] == wan(300)
    view = application_view(world.state, body["application"])
    assert view["status"] == "submitted" and view["materials"] == body["materials"]
    assert view["policy_version"] == world.policy.version
    assert applications_of(world.state, uscc) == [body["application"]]
    assert applications_in_district(world.state, "成都高新区") == [body["application"]]
    assert applications_in_district(world.state, "武侯区") == []


def test_submit_refusals(world: World) -> None:
    uscc = world.register()
    bad = submit(world, uscc)
    del bad["materials"]["3"]  # the builder would refuse this too
    err = world.refuse("application.submit", bad, world.service, reason="MATERIALS_MISSING")
    assert err.details["missing"] == "3" and "承接国家省级重大项目证明材料" in err.message
    bad = submit(world, uscc)
    bad["materials"]["9"] = sha("x")
    world.refuse("application.submit", bad, world.service, reason="UNKNOWN_MATERIAL")
    bad = submit(world, uscc)
    bad["materials"]["1"] = "not-a-hash"
    world.refuse("application.submit", bad, world.service, reason="INVALID_ARGUMENT")
    attest = attest_all(world.policy, "industry") | {"qualified": False}
    err = world.refuse(
        "application.submit",
        submit(world, uscc, attestations=attest),
        world.service,
        reason="NOT_ELIGIBLE",
    )
    assert err.details["condition"] == "qualified" and "attested" in err.message
    bad = submit(world, uscc)
    bad["inputs"]["level"] = "municipal"
    err = world.refuse("application.submit", bad, world.service, reason="INVALID_ARGUMENT")
    assert "body.inputs.level" in err.message
    bad = submit(world, uscc)
    bad["inputs"]["colour"] = "red"
    world.refuse("application.submit", bad, world.service, reason="INVALID_ARGUMENT")
    bad = submit(world, uscc)
    bad["policy_version"] = "0" * 64
    world.refuse("application.submit", bad, world.service, reason="POLICY_VERSION_MISMATCH")
    bad = submit(world, uscc)
    bad["programme"] = "quantum"
    world.refuse("application.submit", bad, world.service, reason="UNKNOWN_PROGRAMME")
    world.refuse(
        "application.submit",
        submit(world, "91350100M000100Y43"),
        world.service,
        reason="UNKNOWN_ENTITY",
    )
    body = submit(world, uscc)
    world.apply("application.submit", body, world.service)
    world.refuse("application.submit", body, world.service, reason="APPLICATION_EXISTS")
    world.refuse("application.submit", submit(world, uscc), world.issuer, reason="WRONG_SIGNER")


@pytest.mark.parametrize(
    ("programme", "inputs", "condition"),
    [
        ("ai-model", {"parameters": 99_999_999_999}, "parameters"),  # 参数量不低于千亿
        ("ai-model", {"scenarios": 4}, "scenarios"),  # 典型应用场景不少于5个
        ("talent", {"chengdu_contribution_months": 5}, "chengdu_six_months"),  # 连续6个月以上
        ("scheduling-platform", {"scheduling_cases": 0}, "cross_scheduling"),  # 已有算力调度案例
        ("industry", {"project_end": "2023-08-01"}, "activity_window"),
    ],
)
def test_checked_conditions(
    world: World, programme: str, inputs: dict[str, Any], condition: str
) -> None:
    """二、(五) 1.(2), 二、(六), 二、(六) 1.(4), 二、(七) 1.(2), 二、(四) 1.(4)."""
    uscc = world.register()
    err = world.refuse(
        "application.submit",
        submit(world, uscc, programme, inputs=inputs),
        world.service,
        reason="NOT_ELIGIBLE",
    )
    assert err.details["condition"] == condition


def test_review_is_for_the_applicants_district_only(world: World) -> None:
    app = world.submit("industry", world.register(district="武侯区"))
    body = review_body(
        application=app, district="锦江区", reviewer="锦江区新经济局", opinion="approve"
    )
    err = world.refuse("application.review", body, world.service, reason="WRONG_DISTRICT")
    assert err.kind == "denied"
    world.refuse(
        "application.review",
        body | {"application": "A-none"},
        world.service,
        reason="UNKNOWN_APPLICATION",
    )
    world.review(app)
    world.refuse(
        "application.review",
        review_body(application=app, district="武侯区", reviewer="r", opinion="approve"),
        world.service,
        reason="ALREADY_REVIEWED",
    )


def test_decision(world: World) -> None:
    app = world.submit(
        "industry", world.register(), {"compute_cost_fen": wan(400), "level": "provincial"}
    )
    approve = decide_body(
        application=app, decision="approve", amount_fen=wan(120), policy=world.policy
    )
    world.refuse("application.decide", approve, world.issuer, reason="NOT_REVIEWED")
    world.review(app)
    too_much = decide_body(
        application=app, decision="approve", amount_fen=wan(120) + 1, policy=world.policy
    )
    err = world.refuse(
        "application.decide", too_much, world.issuer, reason="AMOUNT_EXCEEDS_ENTITLEMENT"
    )
    assert err.details == {"amount_fen": str(wan(120) + 1), "entitlement_fen": str(wan(120))}
    world.refuse("application.decide", approve, world.service, reason="WRONG_SIGNER")
    world.apply("application.decide", approve, world.issuer)
    assert application_view(world.state, app)["decision"]["policy_version"] == world.policy.version
    world.refuse("application.decide", approve, world.issuer, reason="ALREADY_DECIDED")


def test_district_rejection_blocks_approval(world: World) -> None:
    app = world.submit("industry", world.register())
    world.review(app, "reject")
    world.refuse(
        "application.decide",
        decide_body(application=app, decision="approve", amount_fen=wan(1), policy=world.policy),
        world.issuer,
        reason="DISTRICT_REJECTED",
    )
    world.apply(
        "application.decide",
        decide_body(application=app, decision="reject", policy=world.policy),
        world.issuer,
    )
    assert application_view(world.state, app)["status"] == "rejected"
    with pytest.raises(InvalidInput):
        decide_body(application=app, decision="reject", amount_fen=1, policy=world.policy)


# --- vouchers ----------------------------------------------------------------------------


def test_issue_binds_the_holder_and_records_the_log_index(world: World) -> None:
    uscc = world.register()
    voucher = world.voucher(uscc=uscc)
    view = voucher_view(world.state, voucher)
    assert view["holder"] == uscc and view["status"] == "active"
    assert view["log_index"] == len(world.entries) - 1
    assert view["issuer_key"] == world.issuer.key_id
    assert view["caps"] == {
        "voucher": wan(300),
        "entity_programme": wan(300),
        "voucher_pool": wan(1000),
    }
    assert [v["voucher"] for v in entity_vouchers(world.state, uscc)] == [voucher]
    assert application_view(world.state, view["application"])["voucher"] == voucher


def _issue(world: World, app: str, **kw: Any) -> dict[str, Any]:
    return issue_body(
        world.state,
        application=app,
        voucher=kw.pop("voucher", "V-X"),
        issuer=world.issuer,
        log_index=world.state.size,
        **kw,
    )


def _resign(world: World, body: dict[str, Any]) -> dict[str, Any]:
    payload = {k: v for k, v in body.items() if k != "credential"}
    return payload | {"credential": sign_voucher(payload, world.issuer)}


def test_issue_refusals(world: World) -> None:
    app = world.approved("industry")
    stranger = world.register()
    body = _issue(world, app)
    world.refuse(
        "voucher.issue",
        body | {"log_index": world.state.size + 1},
        world.issuer,
        reason="LOG_INDEX_MISMATCH",
    )
    world.refuse(
        "voucher.issue",
        body | {"face_value_fen": wan(1)},
        world.issuer,
        reason="CREDENTIAL_MISMATCH",
    )  # the payload no longer matches the body
    periods = {"kind": "voucher_year", "count": 3, "cap_fen": wan(500)}
    late = {"start": body["usage_window"]["start"], "end": "2023-08-01T16:00:00.000000Z"}
    long = {"from": body["valid"]["from"], "until": "2024-08-01T16:00:00.000000Z"}
    for change, reason in (
        ({"face_value_fen": wan(301)}, "AMOUNT_EXCEEDS_APPROVAL"),
        ({"face_value_fen": 99_999}, "BELOW_MINIMUM_VOUCHER"),
        ({"rate_bp": 5000}, "RATE_MISMATCH"),
        ({"holder": stranger}, "APPLICATION_MISMATCH"),  # not transferable: the applicant's
        ({"periods": periods}, "PERIODS_MISMATCH"),
        ({"centres": ["nscc-cd", "sz-hpc"]}, "CENTRE_NOT_ACCEPTED"),
        ({"usage_window": late}, "WINDOW_NOT_ALLOWED"),
        ({"valid": long}, "WINDOW_NOT_ALLOWED"),
        ({"policy_version": "0" * 64}, "POLICY_VERSION_MISMATCH"),
    ):
        world.refuse("voucher.issue", _resign(world, body | change), world.issuer, reason=reason)
    world.refuse("voucher.issue", body, world.service, reason="WRONG_SIGNER")
    other = World()  # a credential signed by a key the log does not know as this entry's signer
    forged = body | {
        "credential": sign_voucher(
            {k: v for k, v in body.items() if k != "credential"}, other.issuer
        )
    }
    world.refuse("voucher.issue", forged, world.issuer, reason="CREDENTIAL_MISMATCH")
    world.apply("voucher.issue", body, world.issuer)
    world.refuse("voucher.issue", _issue(world, app), world.issuer, reason="VOUCHER_EXISTS")
    world.refuse(
        "voucher.issue", _issue(world, app, voucher="V-Y"), world.issuer, reason="ALREADY_ISSUED"
    )


def test_issue_needs_an_approved_voucher_programme(world: World) -> None:
    app = world.submit("industry", world.register())
    world.refuse("voucher.issue", _issue_unchecked(world, app), world.issuer, reason="NOT_APPROVED")
    grant_app = world.approved("adaptation", {"rank": 3})
    world.refuse(
        "voucher.issue",
        _issue_unchecked(world, grant_app, programme="adaptation"),
        world.issuer,
        reason="NOT_A_VOUCHER_PROGRAMME",
    )


def _issue_unchecked(world: World, app: str, programme: str = "industry") -> dict[str, Any]:
    """A well-formed body for an application the builder would not accept."""
    return world.voucher_body_unchecked(app, "V-U", programme, wan(10))


def test_blacklisted_holder_gets_no_voucher(world: World) -> None:
    uscc = world.register()
    app = world.approved("industry", uscc=uscc)
    world.blacklist(uscc)
    world.refuse("voucher.issue", _issue(world, app), world.issuer, reason="HOLDER_BLACKLISTED")


def test_status_transitions(world: World) -> None:
    voucher = world.voucher()
    world.refuse(
        "voucher.reinstate", status_body(voucher, "x"), world.issuer, reason="VOUCHER_STATUS"
    )
    world.apply("voucher.suspend", status_body(voucher, "核查"), world.service)
    world.refuse(
        "voucher.suspend", status_body(voucher, "again"), world.issuer, reason="VOUCHER_STATUS"
    )
    world.apply("voucher.reinstate", status_body(voucher, "通过"), world.issuer)
    world.apply("voucher.revoke", status_body(voucher, "撤销", sha("decision")), world.issuer)
    for kind in ("voucher.suspend", "voucher.reinstate", "voucher.revoke", "voucher.expire"):
        world.refuse(kind, status_body(voucher, "x"), world.issuer, reason="VOUCHER_STATUS")
    world.refuse(
        "voucher.suspend", status_body("V-none", "x"), world.issuer, reason="UNKNOWN_VOUCHER"
    )
    world.refuse(
        "voucher.suspend", status_body(voucher, "x"), world.centre(), reason="WRONG_SIGNER"
    )
    history = voucher_view(world.state, voucher)["history"]
    assert [h["status"] for h in history] == ["active", "suspended", "active", "revoked"]
    assert history[-1]["evidence_sha256"] == sha("decision")


def test_reinstate_needs_the_holder_off_the_blacklist(world: World) -> None:
    uscc = world.register()
    voucher = world.voucher(uscc=uscc)
    world.blacklist(uscc)
    world.refuse(
        "voucher.reinstate", status_body(voucher, "x"), world.issuer, reason="HOLDER_BLACKLISTED"
    )


def test_voucher_view_at_a_time(world: World) -> None:
    voucher = world.voucher()
    assert voucher_view(world.state, voucher, local("2024-08-01 00:00"))["status"] == "expired"
