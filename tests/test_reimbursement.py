"""Post-hoc reimbursement (model B, 事后奖补): the policy language, the example round, the
claims through review to payment, duplicates (查重) across rounds and models, the
related-party check, and the caps to the fen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from domain_helpers import W, World, local, make_uscc, sha
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import reimbursement
from ledger.errors import InvalidInput, LedgerError
from ledger.money import apply_rate
from ledger.policy import Policy
from ledger.usecases.commands.applications import submit_application
from ledger.usecases.commands.reimbursement import (
    decide_reimbursement,
    pay_reimbursement,
    review_reimbursement,
    submit_reimbursement,
)
from ledger.usecases.commands.round import publish_round
from ledger.usecases.views.reimbursement import reimbursement_page

EXAMPLE_FILE = Path(__file__).parent.parent / "ledger" / "policies" / "posthoc-example-2025.json"
EXAMPLE = json.loads(EXAMPLE_FILE.read_text("utf-8"))
ROUND = "posthoc-example-2025"
PROVIDER_USCC = make_uscc(7001, "110108")  # a provider elsewhere: any named provider


def posthoc_policy(year: int, round_id: str | None = None, **figures: Any) -> dict[str, Any]:
    """The example round moved to ``year`` (usage in that year, claims from 1 August to the
    end of the next January), with ``figures`` replacing the programme's."""
    doc = json.loads(json.dumps(EXAMPLE))
    doc["round"] = round_id or f"posthoc-test-{year}"
    doc["windows"] = {
        "applications": {"from": f"{year}-08-01", "to": f"{year + 1}-01-31"},
        "online_submission": {"from": f"{year}-08-01T00:00", "to": f"{year + 1}-01-31T24:00"},
        "district_review": {"to": f"{year + 1}-02-28T24:00"},
        "project_activity": {"from": f"{year}-01-01", "to": f"{year}-12-31"},
    }
    programme = doc["programmes"][0]
    programme["usage_window"] = {"from": f"{year}-01-01", "to": f"{year}-12-31"}
    for name, value in figures.items():
        if name == "entity_cap_fen":
            programme["caps"]["entity"]["amount_fen"] = value
        elif name == "pool_fen":
            programme["caps"]["pool"]["amount_fen"] = value
        else:
            programme[name] = value
    return doc


def invoice(number: str, amount_fen: int, issuer: str = PROVIDER_USCC) -> dict[str, Any]:
    return {"number": number, "issuer": issuer, "amount_fen": amount_fen, "sha256": sha(number)}


def reimbursement_request(claim: str, year: int = 2023) -> dict[str, Any]:
    """A claim as the grantee's client sends it (``POST /v1/apply/reimbursements``)."""
    return {
        "claim": claim,
        "round": f"posthoc-test-{year}",
        "programme": "compute-use",
        "provider": {"name": "某算力服务有限公司", "uscc": PROVIDER_USCC},
        "period": {"from": f"{year}-03-01", "to": f"{year}-03-31"},
        "amount_paid_fen": 10 * W,
        "invoices": [invoice(f"INV-{claim}", 10 * W)],
        "evidence": {"contract": sha(f"contract {claim}"), "payment": sha(f"paid {claim}")},
    }


def reimbursement_claim(uow: Any, claim: str, claimant: str, year: int = 2023) -> None:
    """Submit the claim of :func:`reimbursement_request` for ``claimant``."""
    sent = reimbursement_request(claim, year)
    submit_reimbursement(
        uow,
        claim=claim,
        round=sent["round"],
        programme=sent["programme"],
        claimant=claimant,
        provider=sent["provider"],
        period=(sent["period"]["from"], sent["period"]["to"]),
        amount_paid_fen=sent["amount_paid_fen"],
        invoices=sent["invoices"],
        evidence=sent["evidence"],
    )


class Claims:
    """The path of one claim through the use cases, on a World's unit of work."""

    def __init__(self, world: World, round_id: str) -> None:
        self.world, self.round = world, round_id

    def submit(
        self,
        claim: str,
        claimant: str,
        amount_fen: int,
        invoices: list[dict[str, Any]] | None = None,
        period: tuple[str, str] = ("2025-03-01", "2025-03-31"),
        provider: dict[str, Any] | None = None,
        related: list[str] | None = None,
    ) -> dict[str, Any]:
        done = submit_reimbursement(
            self.world.uow,
            claim=claim,
            round=self.round,
            programme="compute-use",
            claimant=claimant,
            provider=provider or {"name": "某算力服务有限公司", "uscc": PROVIDER_USCC},
            period=period,
            amount_paid_fen=amount_fen,
            invoices=invoices or [invoice(f"INV-{claim}", amount_fen)],
            evidence={"contract": sha(f"contract {claim}"), "payment": sha(f"paid {claim}")},
            related_parties=related or [],
        )
        return done.result

    def through(self, claim: str, amount_fen: int | None = None) -> dict[str, Any]:
        """Review (approve), decide (approve) and pay; the decision's result."""
        found = reimbursement.claim_of(self.world.state, claim)
        review_reimbursement(
            self.world.uow, claim=claim, district=found.district, reviewer="r-1", opinion="approve"
        )
        decided = decide_reimbursement(
            self.world.uow, claim=claim, decision="approve", amount_fen=amount_fen
        ).result
        pay_reimbursement(self.world.uow, claim=claim)
        return decided

    def refused(self, reason: str, *args: Any, **kw: Any) -> LedgerError:
        with pytest.raises(LedgerError) as caught:
            self.submit(*args, **kw)
        assert caught.value.reason == reason, caught.value.message
        return caught.value


def example_world() -> tuple[World, Claims]:
    """The 2023 Chengdu round (point of sale) and the example post-hoc round in one log."""
    world = World()
    publish_round(world.uow, EXAMPLE)
    world.at("2025-06-10 10:00")
    return world, Claims(world, ROUND)


# --- the policy language and the example file ----------------------------------------------


def test_the_example_round_cites_its_sections_and_marks_its_figures() -> None:
    policy = Policy.from_json(EXAMPLE)
    assert policy.settlement_model == "post_hoc"
    programme = policy.programme("compute-use")
    assert programme.kind == "reimbursement" and programme.section == "二、(一)"
    assert programme.rate_bp == 2000 and "Development default" in (programme.rate_note or "")
    assert programme.reimbursement is not None
    assert programme.reimbursement.evidence == ("contract", "invoice", "payment")
    assert programme.reimbursement.related_party_check
    assert "四、审核程序 (二) 查重与关联交易审查" in (programme.reimbursement.cite or "")
    assert programme.entity_cap is not None and programme.entity_cap.amount_fen == 500 * W
    assert "二、(一)" in (programme.entity_cap.cite or "")
    assert "development default" in (programme.entity_cap.cite or "")
    assert programme.pool is not None and programme.pool.amount_fen == 10_000 * W
    assert "二、(二)" in (programme.pool.cite or "")
    assert {c.cite for c in programme.conditions} >= {"四、审核程序 (二)", "一、支持对象 (二)"}
    assert policy.window("district_review").cite == "四、审核程序 (一) 区县初审"
    assert not policy.centres and not policy.voucher_pools
    assert Policy.load().settlement_model == "point_of_sale"  # the 2023 round, as before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.update(
                settlement_model="point_of_sale",
                centres=[{"id": "x-icc", "name": "某智算中心", "kind": "intelligent"}],
            ),
            "needs settlement_model post_hoc",
        ),
        (lambda d: d.update(settlement_model="point_of_sale"), "$.centres: must not be empty"),
        (lambda d: d.update(settlement_model="later"), "must be one of"),
        (
            lambda d: d["programmes"][0]["reimbursement"].update(evidence=["contract"]),
            "always carries its invoices",
        ),
        (
            lambda d: d["programmes"][0]["reimbursement"].update(evidence=["invoice", "cheque"]),
            "evidence[1]",
        ),
        (lambda d: d["programmes"][0].pop("usage_window"), "usage_window"),
        (lambda d: d["programmes"][0].pop("reimbursement"), "reimbursement"),
        (lambda d: d["programmes"][0].update(rate_bp=None, rate_note=None), "rate_bp"),
    ],
)
def test_a_malformed_post_hoc_round_is_refused_naming_the_field(change: Any, message: str) -> None:
    doc = json.loads(json.dumps(EXAMPLE))
    change(doc)
    with pytest.raises(InvalidInput) as caught:
        Policy.from_json(doc)
    assert message in caught.value.message


def test_a_voucher_programme_needs_a_point_of_sale_round() -> None:
    doc = json.loads(json.dumps(Policy.load().to_json())) | {"settlement_model": "post_hoc"}
    with pytest.raises(InvalidInput, match="needs settlement_model point_of_sale"):
        Policy.from_json(doc)


# --- done means: review to payment, a duplicate refused, the cap to the fen ---------------


def test_claims_pass_through_review_to_payment_beside_the_2023_round() -> None:
    world, claims = example_world()
    assert set(world.state.parts["policy"].current) == {"chengdu-2023-31", ROUND}
    grantee = world.register(1)
    assert claims.submit("R-1", grantee, 100 * W)["status"] == "submitted"
    decided = claims.through("R-1")
    assert decided["approved_fen"] == 20 * W and decided["bound_by"] == "requested"
    view = reimbursement.claim_view(world.state, "R-1")
    assert view["status"] == "paid" and view["approved_fen"] == 20 * W
    assert world.entries[-1].kind == "reimbursement.pay"
    assert world.entries[-1].body == {"claim": "R-1", "amount_fen": 20 * W}  # public (公示)
    submitted = next(e for e in world.entries if e.kind == "reimbursement.submit")
    assert "claimant" not in submitted.body and "invoices" not in submitted.body  # concealed

    # the same invoice, by another entity, in the same round: refused naming the first claim
    other = world.register(2)
    error = claims.refused("DUPLICATE_INVOICE", "R-2", other, 50 * W, [invoice("INV-R-1", 50 * W)])
    assert "R-1" in error.message and str(view["index"]) in error.message
    # or the same document under another number (its hash)
    copy = invoice("INV-OTHER", 50 * W) | {"sha256": sha("INV-R-1")}
    claims.refused("DUPLICATE_INVOICE", "R-2", other, 50 * W, [copy])


def test_a_claim_over_the_entity_cap_is_cut_to_the_fen() -> None:
    world, claims = example_world()
    grantee = world.register(3)
    claims.submit("R-big", grantee, 2_200 * W + 7)  # 20 % = 440 万元 and 1.4 fen
    assert claims.through("R-big")["approved_fen"] == 440 * W + 1
    claims.submit("R-more", grantee, 400 * W, period=("2025-04-01", "2025-04-30"))
    decided = claims.through("R-more")  # 80 万元 asked, 59.9999 万元 left under 500 万元
    assert decided["requested_fen"] == 80 * W
    assert decided["approved_fen"] == 500 * W - (440 * W + 1)
    assert decided["bound_by"] == "entity_programme"
    claims.submit("R-none", grantee, W, period=("2025-05-01", "2025-05-31"))
    with pytest.raises(LedgerError) as caught:
        claims.through("R-none")
    assert caught.value.reason == "CAP_EXHAUSTED" and caught.value.details["cap"] == (
        "entity_programme"
    )


# --- duplicates across rounds and models -----------------------------------------------------


def test_usage_subsidised_at_the_point_of_sale_is_not_reimbursed_again() -> None:
    world = World()  # the 2023 round: a voucher, and a claim at nscc-cd on 2023-03-01
    voucher = world.voucher("industry")
    holder = world.state.parts["vouchers"].vouchers[voucher].holder
    world.claim(voucher, 10_000)
    publish_round(world.uow, posthoc_policy(2023))
    claims = Claims(world, "posthoc-test-2023")
    centre = {"name": "国家超算成都中心", "uscc": PROVIDER_USCC, "centre": "nscc-cd"}
    error = claims.refused(
        "ALREADY_SUBSIDISED", "R-a", holder, W, period=("2023-02-15", "2023-03-31"),
        provider=centre,
    )  # fmt: skip
    assert voucher in error.message and "nscc-cd" in error.message
    # the months after the voucher's claims, at the same centre: reimbursable
    claims.submit("R-a", holder, W, period=("2023-04-01", "2023-05-31"), provider=centre)
    claims.through("R-a")
    # and its invoice is never reimbursed again in a later round either
    publish_round(world.uow, EXAMPLE)
    world.at("2025-06-10 10:00")
    later = Claims(world, ROUND)
    error = later.refused("DUPLICATE_INVOICE", "R-b", holder, W, [invoice("INV-R-a", W)])
    assert "posthoc-test-2023" in error.message


def test_usage_reimbursed_post_hoc_is_not_subsidised_at_the_point_of_sale() -> None:
    """The other direction: a voucher claim at a centre for usage its holder already
    claimed back there is refused, naming the reimbursement; other months are claimed."""
    world = World()
    voucher = world.voucher("industry")
    holder = world.state.parts["vouchers"].vouchers[voucher].holder
    publish_round(world.uow, posthoc_policy(2023))
    claims = Claims(world, "posthoc-test-2023")
    centre = {"name": "国家超算成都中心", "uscc": PROVIDER_USCC, "centre": "nscc-cd"}
    claims.submit("R-m", holder, W, period=("2023-03-01", "2023-03-31"), provider=centre)
    error = world.claim_refused(voucher, 10_000, "ALREADY_REIMBURSED")
    assert "R-m" in error.message
    world.claim(voucher, 10_000, "cd-icc")  # another centre: not the same usage
    world.claim(voucher, 10_000, start=local("2023-04-03 09:00"))  # another month
    district = reimbursement.claim_of(world.state, "R-m").district
    review_reimbursement(world.uow, claim="R-m", district=district, reviewer="r", opinion="reject")
    world.claim(voucher, 10_000)  # the rejected claim covers nothing


def test_a_rejected_claim_releases_its_invoices() -> None:
    world, claims = example_world()
    grantee = world.register(4)
    claims.submit("R-x", grantee, 10 * W)
    district = reimbursement.claim_of(world.state, "R-x").district
    review_reimbursement(world.uow, claim="R-x", district=district, reviewer="r", opinion="reject")
    with pytest.raises(LedgerError) as caught:
        decide_reimbursement(world.uow, claim="R-x", decision="approve")
    assert caught.value.reason == "DISTRICT_REJECTED"
    claims.submit("R-y", grantee, 10 * W, [invoice("INV-R-x", 10 * W)])  # corrected, again
    assert reimbursement.claim_of(world.state, "R-x").status == "rejected"


def test_related_parties_are_refused_and_remembered() -> None:
    world, claims = example_world()
    grantee = world.register(5)
    itself = make_uscc(5, "110108")  # the same organisation code, registered elsewhere
    own = {"name": "自家算力公司", "uscc": itself}
    claims.refused("RELATED_PARTY", "R-s", grantee, W, provider=own)
    sister = make_uscc(5001)
    declared = {"name": "兄弟公司", "uscc": sister}
    claims.refused("RELATED_PARTY", "R-d", grantee, W, provider=declared, related=[sister])
    claims.submit("R-ok", grantee, W, related=[sister])  # declared, buying from a third party
    error = claims.refused("RELATED_PARTY", "R-d2", grantee, W, provider=declared)
    assert "declared" in error.message  # a declaration once made is remembered


def test_claims_are_refused_with_specific_reasons_and_write_nothing() -> None:
    world, claims = example_world()
    grantee = world.register(6)
    size = world.state.size
    claims.refused("OUTSIDE_USAGE_WINDOW", "R-1", grantee, W, period=("2024-12-01", "2025-01-31"))
    claims.refused("INVALID_ARGUMENT", "R-1", grantee, W, period=("2025-03-02", "2025-03-01"))
    twice = [invoice("INV-1", W), invoice("INV-1", W)]
    claims.refused("DUPLICATE_INVOICE", "R-1", grantee, 2 * W, twice)
    chengdu = Claims(world, "chengdu-2023-31")
    chengdu.refused("NOT_POST_HOC", "R-1", grantee, W)
    assert world.state.size == size
    world.at("2026-03-01 10:00")
    claims.refused("OUTSIDE_SUBMISSION_WINDOW", "R-1", grantee, W)


def test_the_queue_pages_by_cursor() -> None:
    world, claims = example_world()
    grantee = world.register(7)
    for n in range(5):
        claims.submit(f"R-{n}", grantee, W, [invoice(f"P-{n}", W)])
    first = reimbursement_page(world.state, limit=2)
    assert [i["claim"] for i in first["items"]] == ["R-0", "R-1"]
    second = reimbursement_page(world.state, after=first["next_after"], limit=2)
    third = reimbursement_page(world.state, after=second["next_after"], limit=2)
    assert [i["claim"] for i in second["items"] + third["items"]] == ["R-2", "R-3", "R-4"]
    assert third["next_after"] is None
    assert reimbursement_page(world.state, status="paid")["items"] == []


# --- the arithmetic ----------------------------------------------------------------------------


@given(st.integers(0, 10**13), st.integers(0, 10_000), st.integers(0, 10**10))
def test_entitlement_is_the_rate_within_the_entity_cap(base: int, rate: int, cap: int) -> None:
    doc = posthoc_policy(2025, rate_bp=rate, entity_cap_fen=cap)
    programme = Policy.from_json(doc).programme("compute-use")
    assert reimbursement.entitlement(programme, base) == min(base * rate // 10_000, cap)
    assert reimbursement.entitlement(programme, base) == min(apply_rate(base, rate), cap)


@settings(deadline=None, max_examples=30)  # each example builds a ledger
@given(st.lists(st.integers(1, 300 * W), min_size=1, max_size=6), st.integers(1, 100 * W))
def test_approvals_never_pass_the_entity_cap(paid: list[int], cap: int) -> None:
    world = World()
    publish_round(world.uow, posthoc_policy(2025, "posthoc-prop", entity_cap_fen=cap))
    world.at("2025-09-01 10:00")
    claims = Claims(world, "posthoc-prop")
    grantee = world.register(8)
    total = 0
    for n, amount in enumerate(paid):
        claims.submit(f"R-{n}", grantee, amount, [invoice(f"Q-{n}", amount)])
        wanted = min(apply_rate(amount, 2000), cap)
        left = cap - total
        if left == 0 or wanted == 0:
            break
        approved = claims.through(f"R-{n}")["approved_fen"]
        assert approved == min(wanted, left)
        total += approved
    assert total <= cap


def test_a_post_hoc_programme_takes_no_applications() -> None:
    world, _ = example_world()
    grantee = world.register(9)
    programme = world.state.parts["policy"]
    policy = Policy.from_json(EXAMPLE)
    with pytest.raises(LedgerError) as caught:
        submit_application(
            world.uow,
            application="A-posthoc",
            programme="compute-use",
            applicant=grantee,
            inputs={},
            materials={m.id: sha(m.id) for m in policy.programme("compute-use").materials},
            attestations={c.id: True for c in policy.programme("compute-use").conditions},
            round=ROUND,
        )
    assert caught.value.reason == "NOT_POST_HOC_APPLICATION"
    assert programme is world.state.parts["policy"]  # nothing written
