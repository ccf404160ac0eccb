"""Corrections: reversal, clawback (追回), blacklisting. Nothing is edited.

The notice requires 申报主体三年内无…失信等不良记录 and that enterprises answer for the
truth of their materials (三、(一)); corrections are how the ledger records what happens
when they did not.
"""

from __future__ import annotations

from domain_helpers import World, sha, wan

from ledger.caps import book as caps_book
from ledger.caps import programme_budget
from ledger.claims import claim_view
from ledger.corrections import clawback_body, reverse_body, unblacklist_body
from ledger.entities import entity_view
from ledger.grants import grant_view
from ledger.vouchers import status_body, voucher_view


def pool(world: World) -> dict[str, int | None]:
    return programme_budget(world.state)["pools"]["chengdu-compute-voucher"]["2023"]


def test_reverse_restores_every_cap() -> None:
    world = World()
    voucher = world.voucher()
    world.claim(voucher, wan(1000), record_id="job-1")
    assert voucher_view(world.state, voucher)["balance_fen"] == 0
    result = world.apply(
        "claim.reverse",
        reverse_body(
            centre="nscc-cd", record_id="job-1", reason="计量错误", evidence_sha256=sha("x")
        ),
        world.issuer,
    )
    assert result["restored_fen"] == wan(300)
    view = voucher_view(world.state, voucher)
    assert view["balance_fen"] == wan(300) and view["caps"]["entity_programme"] == wan(300)
    assert pool(world)["paid_fen"] == 0
    assert claim_view(world.state, "nscc-cd", "job-1")["net_fen"] == 0
    # the record stays taken: a record, once claimed, is never claimed again
    world.refuse(
        "claim",
        world.claim_body(voucher, wan(1), record_id="job-1"),
        world.centre(),
        reason="ALREADY_CLAIMED",
    )
    for record, signer, reason in (
        ("job-1", world.issuer, "ALREADY_REVERSED"),
        ("job-2", world.issuer, "UNKNOWN_CLAIM"),
        ("job-1", world.service, "WRONG_SIGNER"),
    ):
        body = reverse_body(centre="nscc-cd", record_id=record, reason="again")
        world.refuse("claim.reverse", body, signer, reason=reason)
    assert caps_book(world.state).audit() == []


def test_clawback_of_a_claim_returns_money_to_the_budget_not_to_the_holder() -> None:
    world = World()
    voucher = world.voucher()
    world.claim(voucher, wan(500), record_id="job-1")  # 150 万
    body = clawback_body(
        claim=("nscc-cd", "job-1"),
        amount_fen=wan(50),
        reason="虚报算力成本",
        evidence_sha256=sha("audit report"),
    )
    result = world.apply("clawback", body, world.issuer)
    assert result["clawed_back_fen"] == wan(50) and result["net_fen"] == wan(100)
    view = voucher_view(world.state, voucher)
    assert view["balance_fen"] == wan(150)  # the holder's allowance is not given back
    assert view["caps"]["entity_programme"] == wan(150)
    assert pool(world)["paid_fen"] == wan(100)  # the budget is
    assert claim_view(world.state, "nscc-cd", "job-1")["net_fen"] == wan(100)
    too_much = clawback_body(
        claim=("nscc-cd", "job-1"), amount_fen=wan(100) + 1, reason="x", evidence_sha256=sha("x")
    )
    err = world.refuse("clawback", too_much, world.issuer, reason="CLAWBACK_EXCEEDS_SUBSIDY")
    assert err.details == {"amount_fen": str(wan(100) + 1), "net_fen": str(wan(100))}
    world.apply("clawback", too_much | {"amount_fen": wan(100)}, world.issuer)
    assert claim_view(world.state, "nscc-cd", "job-1")["net_fen"] == 0
    assert caps_book(world.state).audit() == []


def test_clawback_then_reverse() -> None:
    """A reversal after a clawback restores what the claim still counted; the forfeit stays."""
    world = World()
    voucher = world.voucher()
    world.claim(voucher, wan(500), record_id="job-1")
    world.apply(
        "clawback",
        clawback_body(
            claim=("nscc-cd", "job-1"), amount_fen=wan(50), reason="x", evidence_sha256=sha("x")
        ),
        world.issuer,
    )
    result = world.apply(
        "claim.reverse", reverse_body(centre="nscc-cd", record_id="job-1", reason="y"), world.issuer
    )
    assert result["restored_fen"] == wan(100)
    assert voucher_view(world.state, voucher)["balance_fen"] == wan(250)
    world.refuse(
        "clawback",
        clawback_body(
            claim=("nscc-cd", "job-1"), amount_fen=1, reason="x", evidence_sha256=sha("x")
        ),
        world.issuer,
        reason="ALREADY_REVERSED",
    )
    assert caps_book(world.state).audit() == []


def test_clawback_of_a_grant_refills_the_programme_pool() -> None:
    """二、(一): the 500 万元 yearly pool gets back what is recovered."""
    world = World()
    app = world.approved("adaptation", {"rank": 1})
    world.pay(app, grant="G-1")
    world.apply(
        "clawback",
        clawback_body(
            grant="G-1", amount_fen=wan(100), reason="排名材料不实", evidence_sha256=sha("x")
        ),
        world.issuer,
    )
    assert grant_view(world.state, "G-1")["net_fen"] == 0
    budget = programme_budget(world.state)["programmes"]["chengdu-2023-31/adaptation"]["2023"]
    assert budget["remaining_fen"] == wan(500)
    world.refuse(
        "clawback",
        clawback_body(grant="G-9", amount_fen=1, reason="x", evidence_sha256=sha("x")),
        world.issuer,
        reason="UNKNOWN_GRANT",
    )
    world.refuse(
        "clawback",
        clawback_body(grant="G-1", amount_fen=1, reason="x", evidence_sha256=sha("x")),
        world.issuer,
        reason="CLAWBACK_EXCEEDS_SUBSIDY",
    )
    bad = clawback_body(grant="G-1", amount_fen=1, reason="x", evidence_sha256=sha("x"))
    world.refuse(
        "clawback",
        bad | {"target": {"grant": "G-1", "claim": {}}},
        world.issuer,
        reason="INVALID_ARGUMENT",
    )
    world.refuse("clawback", bad | {"amount_fen": 0}, world.issuer, reason="INVALID_ARGUMENT")


def test_blacklisting_suspends_and_unblacklisting_reinstates_only_its_own() -> None:
    world = World()
    uscc = world.register()
    v1, v2, v3 = (world.voucher(uscc=uscc, amount_fen=wan(100)) for _ in range(3))
    world.apply("voucher.suspend", status_body(v2, "核查"), world.issuer)
    world.apply("voucher.revoke", status_body(v3, "撤销"), world.issuer)
    result = world.blacklist(uscc, "失信被执行人")
    assert result["suspended"] == [v1]
    black = entity_view(world.state, uscc)["blacklisted"]
    assert black["reason"] == "失信被执行人" and black["evidence_sha256"] == sha("失信被执行人")
    world.refuse(
        "entity.blacklist",
        {"uscc": uscc, "reason": "x", "evidence_sha256": sha("x")},
        world.issuer,
        reason="ALREADY_BLACKLISTED",
    )
    result = world.apply(
        "entity.unblacklist", unblacklist_body(uscc=uscc, reason="信用修复"), world.issuer
    )
    assert result["reinstated"] == [v1]
    statuses = [voucher_view(world.state, v)["status"] for v in (v1, v2, v3)]
    assert statuses == ["active", "suspended", "revoked"]
    world.refuse(
        "entity.unblacklist",
        unblacklist_body(uscc=uscc, reason="x"),
        world.issuer,
        reason="NOT_BLACKLISTED",
    )
    world.refuse(
        "entity.blacklist",
        {"uscc": uscc, "reason": "x", "evidence_sha256": sha("x")},
        world.service,
        reason="WRONG_SIGNER",
    )


def test_clawback_on_a_shared_entity_counter_past_this_vouchers_tier() -> None:
    """二、(四): one lead entity with a provincial (150 万) and a national (300 万) project.
    The national voucher takes the shared entity counter past 150 万; clawing back the
    provincial claim afterwards must still work (found by the property test)."""
    world = World()
    uscc = world.register()
    national = world.voucher(uscc=uscc, amount_fen=wan(300))
    provincial = world.voucher(
        "industry", {"level": "provincial", "compute_cost_fen": wan(500)}, uscc=uscc
    )
    assert world.claim(provincial, wan(500), record_id="p-1")["subsidy_fen"] == wan(150)
    second = world.claim(national, wan(1000), record_id="n-1")
    assert second["subsidy_fen"] == wan(150) and second["bound_by"] == "entity_programme"
    body = clawback_body(
        claim=("nscc-cd", "p-1"), amount_fen=wan(50), reason="x", evidence_sha256=sha("x")
    )
    world.apply("clawback", body, world.issuer)
    assert pool(world)["paid_fen"] == wan(250)
    assert voucher_view(world.state, provincial)["caps"]["entity_programme"] == 0
    assert caps_book(world.state).audit() == []
