"""Several rounds in one ledger (issue #17): caps a scheme's rounds share (the entity's
yearly cap and the yearly pool over every round of the scheme, point-of-sale claims and
post-hoc reimbursements alike), which figure binds, and a property test that no counter
ever exceeds its limit across random claims under two rounds."""

from __future__ import annotations

import json
import pickle
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from domain_helpers import World, snapshot, wan
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reimbursement import Claims, posthoc_policy

from ledger import vouchers
from ledger.caps import book as caps_book
from ledger.errors import LedgerError
from ledger.fold import apply
from ledger.keys import Signer
from ledger.policy import Policy
from ledger.policy_read import read_provider
from ledger.state import LedgerState
from ledger.usecases.commands.centres import register_provider
from ledger.usecases.views.bureau import budget_report
from ledger.usecases.views.entities import entity_caps
from ledger.vouchers import voucher_view

POLICIES = Path(__file__).parent.parent / "ledger" / "policies"
SCHEME = "test-scheme"


def round_of_scheme(
    round_id: str, entity_yearly: int | None = None, pool_yearly: int | None = None
) -> Policy:
    """The 2023 round under another id, in ``SCHEME``, stating the figures given."""
    obj = json.loads((POLICIES / "chengdu-2023-31.json").read_text("utf-8"))
    obj["round"] = round_id
    obj["scheme"] = {"id": SCHEME, "programmes": ["industry"]}
    caps: dict[str, Any] = {}
    if entity_yearly is not None:
        caps["entity_yearly"] = {"amount_fen": entity_yearly}
    if pool_yearly is not None:
        caps["pool_yearly"] = {"amount_fen": pool_yearly}
    if caps:
        obj["scheme"]["caps"] = caps
    return Policy.from_json(obj)


def two_rounds(entity_yearly: int, pool_yearly: int) -> tuple[World, Policy, Policy]:
    """Round A states the scheme's caps; round B, published after, states none."""
    first = round_of_scheme("round-a", entity_yearly, pool_yearly)
    world = World(policy=first)
    second = round_of_scheme("round-b")
    world.publish(second)
    return world, first, second


def voucher_in(world: World, policy: Policy, uscc: str, face_fen: int = wan(300)) -> str:
    world.policy = policy  # the round the application is made under
    return world.voucher("industry", {"level": "national"}, amount_fen=face_fen, uscc=uscc)


def test_the_entity_yearly_cap_spans_the_rounds_of_a_scheme() -> None:
    world, a, b = two_rounds(entity_yearly=wan(400), pool_yearly=wan(10_000))
    uscc = world.register()
    in_a, in_b = voucher_in(world, a, uscc), voucher_in(world, b, uscc)
    assert world.claim(in_a, wan(1100))["bound_by"] == "voucher"  # 300 万 of the 400
    second = world.claim(in_b, wan(1000))
    # each round's own entity cap (300 万) would allow it: the scheme's 400 万 binds
    assert (second["subsidy_fen"], second["bound_by"]) == (wan(100), "scheme_entity")
    refused = world.claim_refused(in_b, wan(10), "CAP_EXHAUSTED")
    assert refused.details["cap"] == "scheme_entity"
    assert refused.details["key"] == f"{SCHEME}/{uscc}/2023"
    # what the grantee sees: nothing left under the scheme's cap, on both rounds' vouchers
    assert voucher_view(world.state, in_a)["caps"]["scheme_entity"] == 0
    held = [vouchers.voucher_of(world.state, v) for v in (in_a, in_b)]
    row = next(
        c for c in entity_caps(world.state, held, world.clock, None) if c["cap"] == "scheme_entity"
    )
    assert (row["limit_fen"], row["used_fen"], row["vouchers"]) == (
        wan(400),
        wan(400),
        [in_a, in_b],
    )
    assert row["label"] == f"单位跨轮次年度上限 {SCHEME} 2023年"
    # another entity is not touched, and the next budget year starts afresh
    other = voucher_in(world, b, world.register())
    assert world.claim(other, wan(100))["bound_by"] == "rate"
    world.at("2024-02-01 10:00")
    assert world.claim(in_b, wan(100))["subsidy_fen"] == wan(30)


def test_the_yearly_pool_is_shared_by_the_rounds() -> None:
    world, a, b = two_rounds(entity_yearly=wan(10_000), pool_yearly=wan(500))
    first = voucher_in(world, a, world.register())
    second = voucher_in(world, b, world.register())
    assert world.claim(first, wan(1000))["subsidy_fen"] == wan(300)
    last = world.claim(second, wan(1000))
    assert (last["subsidy_fen"], last["bound_by"]) == (wan(200), "scheme_pool")
    assert world.claim_refused(second, wan(1), "CAP_EXHAUSTED").details["cap"] == "scheme_pool"


def test_the_latest_version_stating_a_figure_sets_it_for_every_round() -> None:
    """Round B revises the scheme's entity cap down to 200 万: claims under round A, published
    earlier with 400 万, are held to it from then on, and what was paid before counts."""
    world, a, _ = two_rounds(entity_yearly=wan(400), pool_yearly=wan(10_000))
    uscc = world.register()
    in_a = voucher_in(world, a, uscc)
    assert world.claim(in_a, wan(500))["subsidy_fen"] == wan(150)
    world.publish(round_of_scheme("round-c", entity_yearly=wan(200)))
    after = world.claim(in_a, wan(500))
    assert (after["subsidy_fen"], after["bound_by"]) == (wan(50), "scheme_entity")


def test_a_round_stating_no_figure_counts_its_payments_all_the_same() -> None:
    """Payments before any figure is stated are on the counter when one is."""
    world = World(policy=round_of_scheme("round-a"))
    uscc = world.register()
    voucher = world.voucher("industry", {"level": "national"}, amount_fen=wan(300), uscc=uscc)
    assert world.claim(voucher, wan(500))["bound_by"] == "rate"  # 150 万, no scheme cap yet
    world.publish(round_of_scheme("round-b", entity_yearly=wan(200)))
    after = world.claim(voucher, wan(500))
    assert (after["subsidy_fen"], after["bound_by"]) == (wan(50), "scheme_entity")
    assert world.claim_refused(voucher, wan(10), "CAP_EXHAUSTED").details["cap"] == "scheme_entity"


def test_reimbursements_share_the_scheme_cap_with_point_of_sale_claims() -> None:
    """A post-hoc round of the same scheme: the entity's reimbursement decision stops at what
    its voucher claims left under the scheme's yearly cap."""
    world, a, _ = two_rounds(entity_yearly=wan(400), pool_yearly=wan(10_000))
    doc = posthoc_policy(2023) | {"scheme": {"id": SCHEME}}  # its one programme counts
    world.publish(Policy.from_json(doc))
    uscc = world.register()
    assert world.claim(voucher_in(world, a, uscc), wan(1000))["subsidy_fen"] == wan(300)
    claims = Claims(world, doc["round"])
    claims.submit("R-1", uscc, wan(1000), period=("2023-03-01", "2023-03-31"))
    decided = claims.through("R-1")  # 20 % of 1000 万 would be 200 万
    assert (decided["approved_fen"], decided["bound_by"]) == (wan(100), "scheme_entity")
    # and the other way round: nothing is left for the next voucher claim in 2023
    assert world.claim_refused(voucher_in(world, a, uscc), wan(10), "CAP_EXHAUSTED")


def test_a_scheme_counts_the_programmes_it_lists() -> None:
    """(六) is in the round but not in the scheme's programmes: its claims leave the
    scheme's counters alone; and a grant programme cannot be listed."""
    world = World(policy=round_of_scheme("round-a", entity_yearly=wan(100)))
    uscc = world.register()
    model = world.voucher("ai-model", uscc=uscc)
    assert world.claim(model, wan(1000))["subsidy_fen"] == wan(500)  # the period cap binds
    assert not [k for k in caps_book(world.state).used if str(k[0]).startswith("scheme")]
    obj = json.loads((POLICIES / "chengdu-2023-31.json").read_text("utf-8"))
    obj["scheme"] = {"id": SCHEME, "programmes": ["industry", "adaptation"]}
    with pytest.raises(LedgerError) as caught:
        Policy.from_json(obj)
    assert caught.value.reason == "INVALID_POLICY"
    assert "$.scheme.programmes[1]" in caught.value.message


# --- property: no counter over its limit, whatever the claims under two rounds -------------

ENTITY_YEARLY, POOL_YEARLY = wan(400), wan(700)


def property_world() -> tuple[World, list[str]]:
    """Two entities, each with a voucher in both rounds; the scheme's caps cut low enough
    that they bind within a few claims."""
    world, a, b = two_rounds(ENTITY_YEARLY, POOL_YEARLY)
    one, two = world.register(1), world.register(2)
    vouchers = [voucher_in(world, policy, uscc) for uscc in (one, two) for policy in (a, b)]
    return world, vouchers


costs = st.one_of(st.integers(0, 1200).map(wan), st.integers(0, wan(1200)))
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("claim"), st.integers(0, 3), costs, st.sampled_from(["nscc-cd", "cd-icc"])
        ),
        st.tuples(st.just("year"), st.just(0), st.just(0), st.just("")),
    ),
    min_size=3,
    max_size=25,
)


def _over_limit(world: World) -> list[str]:
    book = caps_book(world.state)
    limits = {"scheme_entity": ENTITY_YEARLY, "scheme_pool": POOL_YEARLY}
    return [
        f"{key}: {book.counted(key)}"
        for key in set(book.used) | set(book.held)
        if key[0] in limits and book.counted(key) > limits[str(key[0])]
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops)
def test_no_scheme_counter_ever_exceeds_its_limit(ops: list[tuple[Any, ...]]) -> None:
    world, vouchers = property_world()
    paid: dict[tuple[str, int], int] = {}
    for n, (kind, which, cost, centre) in enumerate(ops):
        if kind == "year":  # 2023-08-20, 2024-01-27, 2024-07-05: the next budget year
            world.tick(days=160)
            continue
        body = world.claim_body(vouchers[which], cost, centre, record_id=f"job-{n}")
        before = snapshot(world.state)
        try:
            result = world.apply("claim", body, world.centre(centre))
        except LedgerError as error:
            assert error.reason == "CAP_EXHAUSTED" or error.reason == "VOUCHER_EXPIRED"
            assert snapshot(world.state) == before
            continue
        year = (world.clock + timedelta(hours=8)).year
        holder = world.state.parts["vouchers"].vouchers[vouchers[which]].holder
        paid[(holder, year)] = paid.get((holder, year), 0) + result["subsidy_fen"]
        assert _over_limit(world) == [] and caps_book(world.state).audit() == []
    for (_, year), amount in paid.items():
        assert amount <= ENTITY_YEARLY
        assert sum(v for (_, y), v in paid.items() if y == year) <= POOL_YEARLY
    fresh = LedgerState()
    for entry in world.entries:
        fresh, _ = apply(fresh, entry)
    assert caps_book(fresh).used == caps_book(world.state).used


# --- providers as data ------------------------------------------------------------------

THIRD = "xinan-ai"
THIRD_PROVIDER = {
    "format": "suanli-provider/v1",
    "id": THIRD,
    "name": "某算力服务有限公司",
    "kind": "intelligent",
    "rate_card": {
        "version": 1,
        "effective_from": "2023-01-01",
        "development_default": True,
        "prices": {"cpu": {"price_fen": 8, "per_units": 3600}},
    },
}


def register_third(world: World) -> None:
    """The third provider, registered as data: no policy version names it."""
    signer = Signer.generate(THIRD)
    world.centre_keys[THIRD] = signer
    register_provider(world.uow, provider=read_provider(THIRD_PROVIDER), vkey=signer.verifier.vkey)


def open_round(round_id: str = "round-open") -> Policy:
    """The 2023 round under another id, its (四) open to any registered provider."""
    obj = json.loads((POLICIES / "chengdu-2023-31.json").read_text("utf-8"))
    obj["round"] = round_id
    next(p for p in obj["programmes"] if p["id"] == "industry")["centres"] = "any_registered"
    return Policy.from_json(obj)


def test_a_registered_provider_redeems_where_its_round_accepts_any() -> None:
    world = World()
    whitelisting = world.policy
    register_third(world)
    world.publish(open_round())
    uscc = world.register()
    opened = voucher_in(world, world.policy, uscc)
    assert vouchers.voucher_of(world.state, opened).centres == ("any_registered",)
    paid = world.claim(opened, wan(10), centre=THIRD)
    assert (paid["subsidy_fen"], paid["bound_by"]) == (wan(3), "rate")
    assert world.claim(opened, wan(10), centre="cd-icc")["subsidy_fen"] == wan(3)
    # the 2023 round names its two centres: the third provider is refused there, by reason
    whitelisted = voucher_in(world, whitelisting, uscc)
    refused = world.claim_refused(whitelisted, wan(10), "CENTRE_NOT_ACCEPTED", centre=THIRD)
    assert refused.details == {"centre": THIRD, "accepted": "nscc-cd,cd-icc"}
    assert "round chengdu-2023-31" in refused.message and "nscc-cd, cd-icc" in refused.message


def test_a_whitelisting_round_issues_no_voucher_for_another_provider() -> None:
    world = World()
    register_third(world)
    app = world.approved("industry")
    with pytest.raises(LedgerError) as caught:
        world.issue(app, centres=[THIRD])
    assert caught.value.reason == "CENTRE_NOT_ACCEPTED"
    assert "nscc-cd" in caught.value.message


def test_a_provider_file_is_checked_member_by_member() -> None:
    assert read_provider(THIRD_PROVIDER).rate_card.prices["cpu"].price_fen == 8
    for change, path in [
        ({"id": "any_registered"}, "$.id"),
        ({"kind": "cloud"}, "$.kind"),
        ({"rate_card": {**THIRD_PROVIDER["rate_card"], "centre": "x"}}, "$.rate_card"),
        ({"rate_card": {**THIRD_PROVIDER["rate_card"], "prices": {}}}, "$.rate_card"),
    ]:
        with pytest.raises(LedgerError) as caught:
            read_provider({**THIRD_PROVIDER, **change})
        assert caught.value.reason == "INVALID_PROVIDER", caught.value.message
        assert path in caught.value.message


def test_a_provider_registered_twice_is_refused_whole() -> None:
    world = World()
    register_third(world)
    size = world.state.size
    with pytest.raises(LedgerError) as caught:
        register_provider(
            world.uow,
            provider=read_provider(THIRD_PROVIDER),
            vkey=Signer.generate(THIRD).verifier.vkey,
        )
    assert caught.value.reason == "CENTRE_EXISTS"
    assert world.state.size == size


# --- the later round's file ---------------------------------------------------------------

ISSUE_FIGURES = {
    "rate_bp": 6000,  # "let the voucher cover up to 60 % of a bill"
    "entity_yearly_fen": 500 * 1_000_000,  # "capped each entity at 500 万元 a year"
    "pool_yearly_fen": 10_000_000_000,  # "raised the yearly pool (reported as 1 亿元 in 2025)"
}


def test_the_later_round_states_the_issues_figures_and_says_where_each_comes_from() -> None:
    raw = json.loads((POLICIES / "chengdu-2025-example.json").read_text("utf-8"))
    policy = Policy.load(POLICIES / "chengdu-2025-example.json")
    programme = policy.programme("compute-voucher")
    assert (policy.round, policy.settlement_model) == ("chengdu-2025-example", "point_of_sale")
    assert programme.rate_bp == ISSUE_FIGURES["rate_bp"]
    assert policy.scheme == Policy.load().scheme == "chengdu-suanliquan-scheme"  # one scheme
    assert policy.scheme_caps is not None
    assert policy.scheme_caps.entity_yearly_fen == ISSUE_FIGURES["entity_yearly_fen"]
    assert policy.scheme_caps.pool_yearly_fen == ISSUE_FIGURES["pool_yearly_fen"]
    assert programme.centres == ("any_registered",)
    # every figure from the issue quotes it; every other one says it is a development default
    caps = raw["scheme"]["caps"]
    quoted = [
        (caps["entity_yearly"]["note"], "capped each entity at 500 万元 a year"),
        (caps["pool_yearly"]["note"], "reported as 1 亿元 in 2025"),
        (raw["programmes"][0]["rate_note"], "up to 60 % of a bill"),
        (raw["programmes"][0]["note"], "registered 算力服务机构 beyond the two centres"),
    ]
    for note, words in quoted:
        assert "issue #17" in note and words in note
    defaults = [w["note"] for w in raw["windows"].values()]
    defaults += [raw["voucher_validity"]["note"], raw["settlement"]["note"]]
    defaults += [raw["programmes"][0]["usage_window"]["note"]]
    assert all("Development default" in note for note in defaults)
    assert all(card["development_default"] for card in raw["rate_cards"])


def test_the_budget_report_shows_the_scheme_pool_of_every_round() -> None:
    """The bureau's budget for 2023: the scheme's pool, what both rounds drew on it."""
    world, a, b = two_rounds(entity_yearly=wan(10_000), pool_yearly=wan(500))
    world.claim(voucher_in(world, a, world.register()), wan(100))
    world.claim(voucher_in(world, b, world.register()), wan(200))
    report = budget_report(world.state, 2023, world.clock)
    row = next(p for p in report["pools"] if p["kind"] == "scheme_pool")
    assert (row["id"], row["limit_fen"], row["used_fen"]) == (SCHEME, wan(500), wan(90))
    assert row["remaining_fen"] == wan(410)
    assert row["programmes"] == ["round-a/industry", "round-b/industry"]
    assert report["totals"]["used_fen"] == wan(90)  # the programmes' total, not counted twice


def test_a_fold_snapshot_from_before_schemes_still_folds() -> None:
    """A snapshot pickled by the code before this change has no ``PolicyBook.schemes``: the
    state it loads publishes a round of a scheme and claims under it all the same."""
    world = World()
    books = world.state.parts["policy"]
    del books.__dict__["schemes"]  # as pickled before the field existed
    world.uow.state = pickle.loads(pickle.dumps(world.state))
    world.publish(round_of_scheme("round-b", entity_yearly=wan(100)))
    voucher = voucher_in(world, world.policy, world.register())
    assert world.claim(voucher, wan(1000))["bound_by"] == "scheme_entity"
