"""Redemption (issue 4's domain): claim, hold, capture, void — every refusal reason.

Every refusal goes through ``World.refuse``, which also checks that the state is exactly
as it was. Vouchers are (四) 算力券 (二、(四): 30 % of compute cost, 300 万 / 150 万) unless
said otherwise; (六) vouchers are used where a usage window still runs (holds are for jobs
about to run).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from domain_helpers import World, local, sha, wan

from ledger.claims import (
    capture_body,
    claim_body,
    claims_of_centre,
    claims_of_voucher,
    hold_body,
    lookup_claim,
    rate_card_view,
    ratecard_body,
    void_body,
)
from ledger.errors import InvalidInput
from ledger.policy import Policy, Price
from ledger.vouchers import status_body, voucher_view

POLICY_FILE = Path(__file__).parent.parent / "ledger" / "policies" / "chengdu-2023-31.json"


@pytest.fixture
def world() -> World:
    return World()


def test_claim_result_shape(world: World) -> None:
    """二、(四): 30 % of the rate card's cost; the result the centre gets back."""
    voucher = world.voucher()
    result = world.claim(voucher, wan(100), record_id="slurm-1001.0")
    assert result == {
        "subsidy_fen": wan(30),
        "cost_fen": wan(100),
        "rate_bp": 3000,
        "bound_by": "rate",
        "voucher_balance_fen": wan(270),
        "policy_version": world.policy.version,
        "voucher": voucher,
        "record_id": "slurm-1001.0",
    }
    index, body, first = lookup_claim(world.state, "nscc-cd", "slurm-1001.0") or (0, {}, {})
    assert index == len(world.entries) - 1 and first == result and body["cost_fen"] == wan(100)
    assert lookup_claim(world.state, "cd-icc", "slurm-1001.0") is None
    assert [c["record_id"] for c in claims_of_voucher(world.state, voucher)] == ["slurm-1001.0"]
    assert [c["record_id"] for c in claims_of_centre(world.state, "nscc-cd")] == ["slurm-1001.0"]
    assert claims_of_centre(world.state, "cd-icc") == []
    assert voucher_view(world.state, voucher)["last_bound_by"] == "rate"


def test_gpu_priced_by_rate_card(world: World) -> None:
    """Cost = floor(quantity × price_fen / per_units): 4 A100 for 10 h = 144000 card-seconds."""
    voucher = world.voucher()
    body = world.claim_body(voucher, 0, resource="gpu:a100")
    body.update(quantity=144_000, cost_fen=144_000 * 800 // 3600)
    result = world.apply("claim", body, world.centre())
    assert result["cost_fen"] == 32_000 and result["subsidy_fen"] == 9_600


# --- refusals ------------------------------------------------------------------------------


def test_centre_mismatch(world: World) -> None:
    voucher = world.voucher()
    body = world.claim_body(voucher, wan(1), centre="cd-icc")
    err = world.refuse("claim", body, world.centre("nscc-cd"), reason="CENTRE_MISMATCH")
    assert err.kind == "denied" and err.details == {"signed_by": "nscc-cd", "body": "cd-icc"}


def test_only_centre_keys_may_claim(world: World) -> None:
    voucher = world.voucher()
    world.refuse("claim", world.claim_body(voucher, wan(1)), world.service, reason="WRONG_SIGNER")


def test_unknown_voucher(world: World) -> None:
    world.voucher()
    err = world.refuse(
        "claim", world.claim_body("V-nope", wan(1)), world.centre(), reason="UNKNOWN_VOUCHER"
    )
    assert err.kind == "not_found"


def test_voucher_not_yet_valid(world: World) -> None:
    voucher = world.voucher(valid_from=local("2023-10-01 00:00"))
    err = world.refuse(
        "claim", world.claim_body(voucher, wan(1)), world.centre(), reason="VOUCHER_NOT_YET_VALID"
    )
    assert "2023-10-01 00:00" in err.message
    world.at("2023-10-01 00:00")
    world.claim(voucher, wan(1))


def test_voucher_expired_without_an_entry(world: World) -> None:
    """Valid until 12 months after the usage window (policy validity, a development default)."""
    voucher = world.voucher()
    assert voucher_view(world.state, voucher)["valid"]["until"] == "2024-07-31T16:00:00.000000Z"
    world.at("2024-07-31 23:59:59")
    world.claim(voucher, wan(1))
    world.at("2024-08-01 00:00")
    world.refuse(
        "claim", world.claim_body(voucher, wan(1)), world.centre(), reason="VOUCHER_EXPIRED"
    )
    assert voucher_view(world.state, voucher, world.clock)["status"] == "expired"


def test_voucher_expired_by_entry(world: World) -> None:
    voucher = world.voucher(valid_until=local("2023-12-31 00:00"))
    world.refuse(
        "voucher.expire", status_body(voucher, "not yet"), world.service, reason="NOT_YET_EXPIRED"
    )
    world.at("2024-01-02 00:00")
    world.apply("voucher.expire", status_body(voucher, "validity ended"), world.service)
    world.refuse(
        "claim", world.claim_body(voucher, wan(1)), world.centre(), reason="VOUCHER_EXPIRED"
    )


def test_voucher_suspended(world: World) -> None:
    voucher = world.voucher()
    world.apply("voucher.suspend", status_body(voucher, "材料核查"), world.issuer)
    world.refuse(
        "claim", world.claim_body(voucher, wan(1)), world.centre(), reason="VOUCHER_SUSPENDED"
    )
    world.apply("voucher.reinstate", status_body(voucher, "核查通过"), world.issuer)
    world.claim(voucher, wan(1))


def test_voucher_suspended_by_blacklisting(world: World) -> None:
    voucher = world.voucher()
    holder = voucher_view(world.state, voucher)["holder"]
    assert world.blacklist(holder)["suspended"] == [voucher]
    err = world.refuse(
        "claim", world.claim_body(voucher, wan(1)), world.centre(), reason="VOUCHER_SUSPENDED"
    )
    assert "blacklisted" in err.message


def test_voucher_revoked(world: World) -> None:
    voucher = world.voucher()
    world.apply("voucher.revoke", status_body(voucher, "撤销", sha("evidence")), world.issuer)
    world.refuse(
        "claim", world.claim_body(voucher, wan(1)), world.centre(), reason="VOUCHER_REVOKED"
    )


def test_centre_not_accepted(world: World) -> None:
    voucher = world.voucher(centres=["nscc-cd"])
    err = world.refuse(
        "claim",
        world.claim_body(voucher, wan(1), centre="cd-icc"),
        world.centre("cd-icc"),
        reason="CENTRE_NOT_ACCEPTED",
    )
    assert err.details == {"centre": "cd-icc", "accepted": "nscc-cd"}


@pytest.mark.parametrize("start", ["2023-01-09 23:00", "2023-07-31 23:30", "2023-08-05 09:00"])
def test_usage_outside_window(world: World, start: str) -> None:
    """二、(四) 1.(4): usage inside 2023-01-10 … 2023-07-31 (Asia/Shanghai), start and end."""
    voucher = world.voucher()
    err = world.refuse(
        "claim",
        world.claim_body(voucher, wan(1), start=local(start)),
        world.centre(),
        reason="USAGE_OUTSIDE_WINDOW",
    )
    assert err.details["window_start"] == "2023-01-09T16:00:00.000000Z"


def test_usage_at_the_window_edges(world: World) -> None:
    voucher = world.voucher()
    world.claim(voucher, wan(1), start=local("2023-01-10 00:00"))
    world.claim(voucher, wan(1), start=local("2023-07-31 23:00"))  # ends at 24:00


@pytest.mark.parametrize("resource", ["tpu", "gpu:v100", "", 7])
def test_unknown_resource(world: World, resource: object) -> None:
    """Not in the catalogue, or not priced on the centre's rate card (gpu:v100)."""
    voucher = world.voucher()
    body = world.claim_body(voucher, wan(1))
    body["resource"] = resource
    world.refuse("claim", body, world.centre(), reason="UNKNOWN_RESOURCE")


@pytest.mark.parametrize("quantity", [0, -3600, "3600", True, None, [3600]])
def test_malformed_quantity(world: World, quantity: object) -> None:
    """(Floats and integers beyond ±(2^53-1) cannot even be signed: the canonical form
    refuses them before the fold sees the entry, see test_unsignable_quantities.)"""
    voucher = world.voucher()
    body = world.claim_body(voucher, wan(1))
    body["quantity"] = quantity
    world.refuse("claim", body, world.centre(), reason="MALFORMED_QUANTITY")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("start", "yesterday"),
        ("end", "2023-03-01 10:00"),
        ("start", "2023-02-30T10:00:00Z"),
        ("end", "2023-03-01T08:59:59+08:00"),
        ("start", 1677632400),
    ],
)
def test_malformed_time(world: World, field: str, value: object) -> None:
    voucher = world.voucher()
    body = world.claim_body(voucher, wan(1), start=local("2023-03-01 09:00"))
    body[field] = value
    world.refuse("claim", body, world.centre(), reason="MALFORMED_TIME")


def test_cost_mismatch_gives_both_figures(world: World) -> None:
    voucher = world.voucher()
    body = world.claim_body(voucher, wan(1))
    body["cost_fen"] = wan(1) + 1
    err = world.refuse("claim", body, world.centre(), reason="COST_MISMATCH")
    assert err.details == {
        "claimed_fen": str(wan(1) + 1),
        "rate_card_fen": str(wan(1)),
        "rate_card_version": "1",
    }
    assert str(wan(1) + 1) in err.message and str(wan(1)) in err.message


def test_rate_card_in_force_at_usage_start(world: World) -> None:
    """Rate cards are versioned entries; usage is priced by the card in force at its start."""
    cheaper = {"cpu": Price(5, 3600)}
    world.apply(
        "ratecard.publish",
        ratecard_body("nscc-cd", 2, local("2023-05-01 00:00"), cheaper),
        world.issuer,
    )
    voucher = world.voucher()
    before = world.claim_body(voucher, wan(1), start=local("2023-04-30 23:00"))
    assert world.apply("claim", before, world.centre())["cost_fen"] == wan(1)  # card 1
    after = world.claim_body(voucher, 0, start=local("2023-05-01 00:00"))
    after.update(quantity=3600 * 1000, cost_fen=10 * 1000)  # priced as card 1 would
    err = world.refuse("claim", after, world.centre(), reason="COST_MISMATCH")
    assert err.details["rate_card_fen"] == "5000" and err.details["rate_card_version"] == "2"
    after["cost_fen"] = 5000
    world.apply("claim", after, world.centre())
    assert rate_card_view(world.state, "nscc-cd")["version"] == 2
    world.refuse(
        "ratecard.publish",
        ratecard_body("nscc-cd", 2, local("2023-06-01 00:00"), cheaper),
        world.issuer,
        reason="RATECARD_VERSION",
    )
    world.refuse(
        "ratecard.publish",
        ratecard_body("nscc-cd", 3, local("2023-04-01 00:00"), cheaper),
        world.issuer,
        reason="RATECARD_VERSION",
    )


def test_no_rate_card_in_force() -> None:
    obj = json.loads(POLICY_FILE.read_text(encoding="utf-8"))
    obj["rate_cards"][0]["effective_from"] = "2023-03-01"
    world = World(policy=Policy.from_json(obj))
    voucher = world.voucher()
    world.refuse(
        "claim",
        world.claim_body(voucher, wan(1), centre="cd-icc", start=local("2023-02-01 09:00"))
        | {"centre": "nscc-cd"},
        world.centre(),
        reason="NO_RATE_CARD",
    )


def test_cap_exhausted_names_the_cap(world: World) -> None:
    voucher = world.voucher(amount_fen=wan(1))
    assert world.claim(voucher, wan(10))["bound_by"] == "voucher"
    err = world.refuse(
        "claim", world.claim_body(voucher, wan(1)), world.centre(), reason="CAP_EXHAUSTED"
    )
    assert err.kind == "exhausted" and err.details["cap"] == "voucher"


def test_entity_cap_is_shared_by_the_entitys_vouchers(world: World) -> None:
    """二、(四): 总额不超过300万元 for the lead entity, whatever number of vouchers it holds."""
    uscc = world.register()
    v1 = world.voucher(uscc=uscc, amount_fen=wan(200))
    v2 = world.voucher(uscc=uscc, amount_fen=wan(200))
    assert world.claim(v1, wan(1000))["subsidy_fen"] == wan(200)
    second = world.claim(v2, wan(1000))
    assert second["subsidy_fen"] == wan(100) and second["bound_by"] == "entity_programme"
    err = world.refuse(
        "claim", world.claim_body(v2, wan(1)), world.centre(), reason="CAP_EXHAUSTED"
    )
    assert err.details["cap"] == "entity_programme"


# --- exactly once ------------------------------------------------------------------------


def test_exact_duplicate_is_refused_by_the_fold(world: World) -> None:
    voucher = world.voucher()
    body = world.claim_body(voucher, wan(1), record_id="job-7")
    first = world.apply("claim", body, world.centre())
    err = world.refuse("claim", body, world.centre(), reason="ALREADY_CLAIMED")
    assert err.kind == "conflict" and err.details["identical"] == "true"
    assert lookup_claim(world.state, "nscc-cd", "job-7") == (len(world.entries) - 1, body, first)


def test_same_record_different_body_is_a_conflict_with_the_difference(world: World) -> None:
    uscc = world.register()
    v1, v2 = world.voucher(uscc=uscc), world.voucher(uscc=uscc)
    world.apply("claim", world.claim_body(v1, wan(1), record_id="job-8"), world.centre())
    other = world.claim_body(v2, wan(2), record_id="job-8")  # another voucher, another cost
    err = world.refuse("claim", other, world.centre(), reason="ALREADY_CLAIMED")
    assert err.details["identical"] == "false"
    assert err.details["differs"] == "cost_fen,quantity,voucher"
    assert err.details["first.voucher"] == v1 and err.details["this.voucher"] == v2
    # the same record id at another centre is another record
    world.apply(
        "claim",
        world.claim_body(v2, wan(1), centre="cd-icc", record_id="job-8"),
        world.centre("cd-icc"),
    )


@pytest.mark.parametrize("quantity", [1.5, 2**60])
def test_unsignable_quantities(world: World, quantity: object) -> None:
    voucher = world.voucher()
    body = world.claim_body(voucher, wan(1)) | {"quantity": quantity}
    with pytest.raises(InvalidInput):
        world.entry("claim", body, world.centre())


def test_malformed_record_id(world: World) -> None:
    voucher = world.voucher()
    with pytest.raises(InvalidInput) as caught:
        world.claim_body(voucher, wan(1), record_id="job 1")  # the builder refuses it
    assert caught.value.reason == "MALFORMED_RECORD"
    body = world.claim_body(voucher, wan(1)) | {"record_id": "job 1"}
    world.refuse("claim", body, world.centre(), reason="MALFORMED_RECORD")


def test_unknown_member_is_refused(world: World) -> None:
    voucher = world.voucher()
    body = world.claim_body(voucher, wan(1)) | {"discount": 1}
    world.refuse("claim", body, world.centre(), reason="INVALID_ARGUMENT")


# --- holds -------------------------------------------------------------------------------


def ai_voucher(world: World, amount_fen: int | None = None) -> str:
    """A (六) voucher: its usage window runs three years, so jobs can be held now."""
    return world.voucher("ai-model", amount_fen=amount_fen)


def hold(
    world: World,
    voucher: str,
    estimate: int,
    hold_id: str = "h-1",
    centre: str = "nscc-cd",
    minutes: int = 60,
) -> dict[str, Any]:
    body = hold_body(
        centre=centre,
        hold_id=hold_id,
        voucher=voucher,
        estimated_cost_fen=estimate,
        expires_at=world.clock + timedelta(minutes=minutes),
    )
    return world.apply("hold", body, world.centre(centre))


def capture(
    world: World, hold_id: str, cost_fen: int, record_id: str = "job-h1", centre: str = "nscc-cd"
) -> dict[str, Any]:
    usage = world.usage(centre, cost_fen, start=world.clock - timedelta(hours=2))
    body = capture_body(centre=centre, hold_id=hold_id, record_id=record_id, **usage)
    return world.apply("capture", body, world.centre(centre))


def test_hold_reserves_against_every_cap_and_capture_releases_the_rest(world: World) -> None:
    voucher = ai_voucher(world)
    held = hold(world, voucher, wan(400))  # 50 % of 400 万 = 200 万 held
    assert held["held_fen"] == wan(200) and held["voucher_balance_fen"] == wan(1300)
    view = voucher_view(world.state, voucher)
    assert view["held_fen"] == wan(200) and view["caps"]["period"] == wan(300)
    result = capture(world, "h-1", wan(100))
    assert result["subsidy_fen"] == wan(50) and result["held_fen"] == wan(200)
    view = voucher_view(world.state, voucher)
    assert (view["held_fen"], view["used_fen"], view["balance_fen"]) == (0, wan(50), wan(1450))


def test_capture_can_exceed_the_hold_when_caps_allow(world: World) -> None:
    voucher = ai_voucher(world)
    hold(world, voucher, wan(100))
    assert capture(world, "h-1", wan(600))["subsidy_fen"] == wan(300)


def test_capture_beyond_the_caps_is_capped(world: World) -> None:
    voucher = ai_voucher(world)
    hold(world, voucher, wan(100))
    result = capture(world, "h-1", wan(2000))
    assert result["subsidy_fen"] == wan(500) and result["bound_by"] == "period"


def test_hold_blocks_other_claims_until_released(world: World) -> None:
    voucher = ai_voucher(world)
    hold(world, voucher, wan(1000))  # holds the whole 500 万 of the year
    err = world.refuse(
        "hold",
        hold_body(
            centre="nscc-cd",
            hold_id="h-2",
            voucher=voucher,
            estimated_cost_fen=wan(10),
            expires_at=world.clock + timedelta(hours=1),
        ),
        world.centre(),
        reason="CAP_EXHAUSTED",
    )
    assert err.details["cap"] == "period"
    world.apply("void", void_body(centre="nscc-cd", hold_id="h-1"), world.centre())
    assert hold(world, voucher, wan(10), hold_id="h-2")["held_fen"] == wan(5)


def test_hold_expires_by_itself(world: World) -> None:
    voucher = ai_voucher(world)
    hold(world, voucher, wan(1000), minutes=30)
    world.tick(minutes=30)
    assert voucher_view(world.state, voucher, world.clock)["held_fen"] == 0
    # the period's 500 万 is free again without any entry
    body = world.claim_body(voucher, wan(1000), start=world.clock - timedelta(hours=3))
    assert world.apply("claim", body, world.centre())["subsidy_fen"] == wan(500)
    late = world.clock - timedelta(hours=2)
    body = world.capture_body("h-1", wan(1), "late", start=late)
    world.refuse("capture", body, world.centre(), reason="HOLD_EXPIRED")
    world.refuse(
        "void", void_body(centre="nscc-cd", hold_id="h-1"), world.centre(), reason="HOLD_EXPIRED"
    )


def test_unknown_hold_and_other_centres_holds(world: World) -> None:
    voucher = ai_voucher(world)
    hold(world, voucher, wan(10))
    world.refuse(
        "void", void_body(centre="nscc-cd", hold_id="h-9"), world.centre(), reason="UNKNOWN_HOLD"
    )
    # cd-icc cannot see or touch nscc-cd's hold h-1
    world.refuse(
        "void",
        void_body(centre="cd-icc", hold_id="h-1"),
        world.centre("cd-icc"),
        reason="UNKNOWN_HOLD",
    )
    world.refuse(
        "void",
        void_body(centre="nscc-cd", hold_id="h-1"),
        world.centre("cd-icc"),
        reason="CENTRE_MISMATCH",
    )
    usage = world.usage("cd-icc", wan(1), start=world.clock - timedelta(hours=2))
    world.refuse(
        "capture",
        capture_body(centre="cd-icc", hold_id="h-1", record_id="x", **usage),
        world.centre("cd-icc"),
        reason="UNKNOWN_HOLD",
    )


def test_hold_closed(world: World) -> None:
    voucher = ai_voucher(world)
    hold(world, voucher, wan(10))
    capture(world, "h-1", wan(1))
    world.refuse(
        "void", void_body(centre="nscc-cd", hold_id="h-1"), world.centre(), reason="HOLD_CLOSED"
    )
    hold(world, voucher, wan(10), hold_id="h-2")
    world.apply("void", void_body(centre="nscc-cd", hold_id="h-2"), world.centre())
    late = world.clock - timedelta(hours=2)
    body = world.capture_body("h-2", wan(1), "y", start=late)
    world.refuse("capture", body, world.centre(), reason="HOLD_CLOSED")


def test_hold_exists_and_malformed_expiry(world: World) -> None:
    voucher = ai_voucher(world)
    hold(world, voucher, wan(10))
    world.refuse("hold", world.hold_body(voucher, 1), world.centre(), reason="HOLD_EXISTS")
    for expires in (world.clock, world.clock + timedelta(days=32)):
        body = hold_body(
            centre="nscc-cd",
            hold_id="h-3",
            voucher=voucher,
            estimated_cost_fen=1,
            expires_at=expires,
        )
        world.refuse("hold", body, world.centre(), reason="MALFORMED_TIME")


def test_hold_outside_the_usage_window(world: World) -> None:
    """A (四) voucher of the 2023 round covers past usage only: nothing can be held now."""
    voucher = world.voucher()
    body = world.hold_body(voucher, wan(1))
    world.refuse("hold", body, world.centre(), reason="USAGE_OUTSIDE_WINDOW")


def test_capture_record_is_deduplicated_with_claims(world: World) -> None:
    voucher = ai_voucher(world)
    world.claim(voucher, wan(1), record_id="job-c", start=world.clock - timedelta(hours=2))
    hold(world, voucher, wan(10))
    late = world.clock - timedelta(hours=2)
    body = world.capture_body("h-1", wan(1), "job-c", start=late)
    err = world.refuse("capture", body, world.centre(), reason="ALREADY_CLAIMED")
    assert "hold_id" in err.details["differs"]


def test_capture_on_a_suspended_voucher_is_refused_and_the_hold_stays(world: World) -> None:
    voucher = ai_voucher(world)
    hold(world, voucher, wan(10))
    world.apply("voucher.suspend", status_body(voucher, "核查"), world.issuer)
    late = world.clock - timedelta(hours=2)
    body = world.capture_body("h-1", wan(1), "z", start=late)
    world.refuse("capture", body, world.centre(), reason="VOUCHER_SUSPENDED")
    assert voucher_view(world.state, voucher)["held_fen"] == wan(5)


def test_revoking_releases_open_holds(world: World) -> None:
    voucher = ai_voucher(world)
    hold(world, voucher, wan(10))
    result = world.apply("voucher.revoke", status_body(voucher, "撤销"), world.issuer)
    assert result["holds_released"] == ["h-1"]
    assert voucher_view(world.state, voucher)["held_fen"] == 0


# --- docs/claims.md: canonical forms and signature test vectors ---------------------------


def _doc_vectors() -> dict[str, Any]:
    text = (Path(__file__).parent.parent / "docs" / "claims.md").read_text(encoding="utf-8")
    block = text.split("```json vectors\n", 1)[1].split("\n```", 1)[0]
    return json.loads(block)


def test_signature_vectors_in_the_docs() -> None:
    """docs/claims.md: what a centre signs, byte for byte (Ed25519 is deterministic)."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger.canonical import canonical_bytes
    from ledger.entry import Entry
    from ledger.keys import Signer

    doc = _doc_vectors()
    key = Signer(doc["key"]["name"], bytes.fromhex(doc["key"]["seed_hex"]))
    assert key.seed == bytes(range(32))
    assert (key.key_id, key.verifier.vkey) == (doc["key"]["key_id"], doc["key"]["vkey"])
    assert key.verifier.public.hex() == doc["key"]["public_hex"]
    assert [v["kind"] for v in doc["vectors"]] == ["claim", "hold", "capture", "void"]
    plain = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    for v in doc["vectors"]:
        entry = Entry(v["kind"], v["at"], v["body"]).signed(key)
        message = entry.message()
        assert message.decode() == v["message_utf8"]
        assert hashlib.sha256(message).hexdigest() == v["message_sha256"]
        assert base64.b64encode(entry.sigs[0].sig).decode() == v["signature_base64"]
        assert canonical_bytes(entry.to_json()).decode() == v["entry"]
        assert Entry.from_bytes(v["entry"].encode()) == entry
        # the snippet in the doc: JCS with json.dumps for these ASCII member names
        unsigned = {"v": 1, "kind": v["kind"], "at": v["at"], "body": v["body"]}
        snippet = (
            b"suanli-entry/v1\n"
            + json.dumps(
                unsigned, ensure_ascii=False, separators=(",", ":"), sort_keys=True
            ).encode()
        )
        assert snippet == message
        assert base64.b64encode(plain.sign(snippet)).decode() == v["signature_base64"]


def test_vector_bodies_are_what_the_builders_make() -> None:
    """The vectors' bodies are valid: the builders make exactly them from typed arguments."""
    from ledger.timeutil import parse_time

    doc = {v["kind"]: v["body"] for v in _doc_vectors()["vectors"]}

    def typed(body: dict[str, Any]) -> dict[str, Any]:
        """The body's arguments as the builders take them (times as datetimes)."""
        times = ("start", "end", "expires_at")
        return {k: parse_time(v) if k in times else v for k, v in body.items()}

    claim, held, cap = doc["claim"], doc["hold"], doc["capture"]
    assert claim_body(**typed(claim)) == claim
    assert hold_body(**typed(held)) == held
    assert capture_body(**typed(cap)) == cap
    assert void_body(centre="nscc-cd", hold_id=doc["void"]["hold_id"]) == doc["void"]
    # and the costs are the development rate card's
    card = Policy.load().rate_cards[0].prices
    assert card["gpu:a100"].cost(claim["quantity"]) == claim["cost_fen"]
    assert card["gpu:910b"].cost(cap["quantity"]) == cap["cost_fen"]


def test_a_centres_claims_page_from_any_index() -> None:
    """``centre_claims`` (gRPC ListClaims) pages a centre's claims in log order from any
    index: the same as filtering and sorting every claim of the ledger, page by page."""
    from ledger.claims import book
    from ledger.usecases.views.centres import centre_claims

    world = World()
    vouchers = [world.voucher(), world.voucher()]
    for n in range(24):
        world.claim(vouchers[n % 2], wan(1), centre="nscc-cd" if n % 3 else "cd-icc")
    every = sorted(book(world.state).claims.values(), key=lambda r: r.index)
    for centre in ("nscc-cd", "cd-icc"):
        mine = [r.index for r in every if r.centre == centre]
        for start in (0, mine[0], mine[0] + 1, mine[len(mine) // 2], mine[-1], mine[-1] + 1):
            for limit in (0, 1, 5):
                got = [x.index for x in centre_claims(world.state, centre, from_index=start,
                                                       limit=limit)]  # fmt: skip
                want = [i for i in mine if i >= start]
                assert got == (want[:limit] if limit else want), (centre, start, limit)
        of_voucher = centre_claims(world.state, centre, voucher=vouchers[1], from_index=mine[1])
        assert [x.index for x in of_voucher] == [
            r.index for r in every
            if r.centre == centre and r.voucher == vouchers[1] and r.index >= mine[1]
        ]  # fmt: skip
