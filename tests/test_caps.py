"""Stacked caps (ledger.caps): property tests.

The rule (DESIGN.md "How money moves", 3.; the notice's 最高/不超过 figures): the subsidy
is min(floor(rate × cost), every remaining cap). Properties checked, with hypothesis:

* no cap is ever exceeded, and no subsidy is negative;
* every fen is accounted for: for every cap, what it has lost is exactly the sum of the
  subsidies (net of reversals and clawbacks, plus forfeits on the holder's caps) and open
  holds counted against it;
* replaying the same entries into a fresh state gives the same balances;
* holds, captures, voids and expiries never overspend;
* a refused entry leaves the state unchanged.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from domain_helpers import World, local, sha, snapshot, wan
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.caps import CAP_ORDER, CapBook, CapLine, decide, programme_budget, voucher_year
from ledger.caps import book as caps_book
from ledger.claims import book as claims_book
from ledger.claims import capture_body, hold_body, void_body
from ledger.corrections import clawback_body, reverse_body
from ledger.errors import CapExhausted, LedgerError
from ledger.fold import apply
from ledger.money import apply_rate
from ledger.policy import Policy
from ledger.state import LedgerState
from ledger.vouchers import voucher_view

POLICY_FILE = Path(__file__).parent.parent / "ledger" / "policies" / "chengdu-2023-31.json"
T0 = local("2023-08-20 10:00")

# --- the pure decision -------------------------------------------------------------------


@given(
    wanted=st.integers(0, 10**12),
    remaining=st.lists(
        st.tuples(st.sampled_from(CAP_ORDER), st.one_of(st.none(), st.integers(0, 10**12))),
        max_size=6,
        unique_by=lambda item: item[0],
    ),
)
def test_decide_is_the_minimum(wanted: int, remaining: list[tuple[str, int | None]]) -> None:
    lines = [
        (CapLine((name, "k"), None if rem is None else 10**12), rem) for name, rem in remaining
    ]
    bounded = [rem for _, rem in remaining if rem is not None]
    if any(rem <= 0 for rem in bounded):
        with pytest.raises(CapExhausted) as caught:
            decide(wanted, lines)
        first = min((CAP_ORDER.index(n) for n, r in remaining if r is not None and r <= 0))
        assert caught.value.details["cap"] == CAP_ORDER[first]
        return
    result = decide(wanted, lines)
    assert result.amount == min([wanted, *bounded]) >= 0
    if result.bound_by == "rate":
        assert all(rem >= wanted for rem in bounded)
    else:
        assert dict(remaining)[result.bound_by] == result.amount < wanted
        # ties go to the first cap in CAP_ORDER
        tied = [n for n, r in remaining if r == result.amount]
        assert result.bound_by == min(tied, key=CAP_ORDER.index)


def test_voucher_years() -> None:
    """二、(六) 前3年: years counted from the voucher's usage start (Asia/Shanghai)."""
    anchor = local("2023-01-10 00:00")
    assert voucher_year(anchor, local("2023-01-09 23:59")) == 0
    assert voucher_year(anchor, anchor) == 1
    assert voucher_year(anchor, local("2024-01-09 23:59:59")) == 1
    assert voucher_year(anchor, local("2024-01-10 00:00")) == 2
    assert voucher_year(anchor, local("2026-01-10 00:00")) == 4
    leap = local("2024-02-29 12:00")
    assert voucher_year(leap, local("2025-02-28 11:59")) == 1
    assert voucher_year(leap, local("2025-02-28 12:00")) == 2


def test_rounding_is_floor_to_the_fen() -> None:
    assert apply_rate(333, 3000) == 99  # 99.9 fen -> 99
    assert apply_rate(1, 5000) == 0
    assert apply_rate(wan(1200), 3000) == wan(360)


# --- the book, directly --------------------------------------------------------------------

KEYS = [
    ("voucher", "v1"),
    ("period", "v1", 1),
    ("entity_programme", "r", "p", "e"),
    ("voucher_pool", "x", 2023),
]

book_ops = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), st.sets(st.integers(0, 3), min_size=1), st.integers(0, 5000)),
        st.tuples(
            st.just("hold"),
            st.sets(st.integers(0, 3), min_size=1),
            st.integers(0, 5000),
            st.integers(1, 100),
        ),
        st.tuples(st.just("release"), st.integers(0, 50)),
        st.tuples(st.just("reduce"), st.integers(0, 50), st.integers(0, 100)),
        st.tuples(st.just("tick"), st.integers(1, 60)),
    ),
    max_size=60,
)


@given(limits=st.lists(st.integers(0, 8000), min_size=4, max_size=4), ops=book_ops)
def test_book_never_exceeds_and_accounts_for_every_fen(limits: list[int], ops: list[Any]) -> None:
    caps = CapBook()
    now = T0
    made: list[str] = []
    forfeits = 0
    for n, op in enumerate(ops):
        if op[0] in ("claim", "hold"):
            lines = [CapLine(KEYS[i], limits[i]) for i in sorted(op[1])]
            try:
                decision = caps.decide(op[2], lines, now)
            except CapExhausted:
                continue
            assert 0 <= decision.amount <= op[2]
            caps.sweep(now)
            expires = now + timedelta(minutes=op[3]) if op[0] == "hold" else None
            caps.charge(f"c{n}", op[0], lines, decision.amount, expires)
            made.append(f"c{n}")
        elif op[0] == "release" and made:
            cid = made[op[1] % len(made)]
            if cid in caps.charges:
                caps.sweep(now)
                if cid in caps.charges:
                    caps.release(cid)
        elif op[0] == "reduce" and made:
            cid = made[op[1] % len(made)]
            charge = caps.charges.get(cid)
            if charge is not None and charge.kind == "claim":
                amount = charge.amount * op[2] // 100
                caps.reduce(cid, amount, f"f{n}")
                forfeits += amount
        elif op[0] == "tick":
            now += timedelta(minutes=op[1])
        assert caps.audit() == []
        adjust = caps.adjustments(now)
        for key, limit in zip(KEYS, limits, strict=True):
            counted = caps.counted(key, adjust)
            assert 0 <= counted <= limit
            live = sum(
                c.amount
                for c in caps.charges.values()
                if c.counts_at(now) and any(line.key == key for line in c.lines)
            )
            assert counted == live


# --- through the fold ----------------------------------------------------------------------


def small_world() -> tuple[World, list[str]]:
    """Four vouchers that share caps: (六) 800 万 for entity A (holds possible); (四) national
    300 万 and provincial 150 万 for A (one entity counter, two limits); (四) national 200 万
    for B. The 算力券 pool is cut to 250 万 so that it binds too."""
    obj = json.loads(POLICY_FILE.read_text(encoding="utf-8"))
    obj["voucher_pools"][0]["amount_fen"] = wan(250)
    world = World(policy=Policy.from_json(obj), clock=T0)
    a, b = world.register(1), world.register(2)
    vouchers = [
        world.voucher("ai-model", amount_fen=wan(800), uscc=a),
        world.voucher("industry", {"level": "national"}, amount_fen=wan(300), uscc=a),
        world.voucher(
            "industry",
            {"level": "provincial", "compute_cost_fen": wan(500)},
            amount_fen=wan(150),
            uscc=a,
        ),
        world.voucher("industry", {"level": "national"}, amount_fen=wan(200), uscc=b),
    ]
    return world, vouchers


centres = st.sampled_from(["nscc-cd", "cd-icc"])
# Costs in whole 万元 most of the time (so that caps bind within a few claims), any fen otherwise.
costs = st.one_of(st.integers(0, 1500).map(wan), st.integers(0, wan(1500)))
claim_op = st.tuples(st.just("claim"), st.integers(0, 3), costs, centres)
fold_ops = st.lists(
    st.one_of(
        claim_op,
        claim_op,  # twice as likely as the others
        st.tuples(st.just("hold"), st.sampled_from([0, 0, 0, 1]), costs, st.integers(1, 180)),
        st.tuples(st.just("capture"), st.integers(0, 30), costs),
        st.tuples(st.just("void"), st.integers(0, 30)),
        st.tuples(st.just("tick"), st.integers(1, 240)),
        st.tuples(st.just("reverse"), st.integers(0, 30)),
        st.tuples(st.just("clawback"), st.integers(0, 30), st.integers(1, 100)),
    ),
    min_size=5,
    max_size=40,
)


def _entry_for(
    world: World, vouchers: list[str], op: tuple[Any, ...], n: int
) -> tuple[str, dict[str, Any], Any] | None:
    kind = op[0]
    claimed = list(claims_book(world.state).claims)
    holds = list(claims_book(world.state).holds)
    if kind == "claim":
        voucher, cost, centre = vouchers[op[1]], op[2], op[3]
        start = world.clock - timedelta(hours=3) if op[1] == 0 else local("2023-03-01 09:00")
        body = world.claim_body(voucher, cost, centre=centre, record_id=f"job-{n}", start=start)
        return "claim", body, world.centre(centre)
    if kind == "hold":
        body = hold_body(
            centre="nscc-cd",
            hold_id=f"h-{n}",
            voucher=vouchers[op[1]],
            estimated_cost_fen=op[2],
            expires_at=world.clock + timedelta(minutes=op[3]),
        )
        return "hold", body, world.centre()
    if kind == "capture" and holds:
        centre, hold_id = holds[op[1] % len(holds)]
        usage = world.usage(centre, op[2], start=world.clock - timedelta(hours=2))
        body = capture_body(centre=centre, hold_id=hold_id, record_id=f"cap-{n}", **usage)
        return "capture", body, world.centre(centre)
    if kind == "void" and holds:
        centre, hold_id = holds[op[1] % len(holds)]
        return "void", void_body(centre=centre, hold_id=hold_id), world.centre(centre)
    if kind == "reverse" and claimed:
        centre, record = claimed[op[1] % len(claimed)]
        return (
            "claim.reverse",
            reverse_body(centre=centre, record_id=record, reason="r"),
            world.issuer,
        )
    if kind == "clawback" and claimed:
        centre, record = claimed[op[1] % len(claimed)]
        net = claims_book(world.state).claims[(centre, record)].net_fen
        amount = max(1, net * op[2] // 100)
        body = clawback_body(
            claim=(centre, record), amount_fen=amount, reason="c", evidence_sha256=sha("e")
        )
        return "clawback", body, world.issuer
    return None


def _check_accounts(world: World, vouchers: list[str]) -> None:
    now = world.clock
    caps = caps_book(world.state)
    assert caps.audit() == []
    claims = claims_book(world.state)
    pool_paid = 0
    for voucher in vouchers:
        view = voucher_view(world.state, voucher, now)
        records = [claims.claims[k] for k in claims.by_voucher.get(voucher, [])]
        # holder's caps keep forfeits; a reversed claim keeps only what was clawed back
        spent = sum(
            c.clawed_back_fen if c.reversed_index is not None else c.subsidy_fen for c in records
        )
        held = sum(
            h.amount_fen
            for h in claims.holds.values()
            if h.voucher == voucher and h.status == "open" and now < h.expires_at
        )
        assert view["used_fen"] == spent and view["held_fen"] == held
        assert 0 <= view["balance_fen"] == view["face_value_fen"] - spent - held
        assert all(rem >= 0 for rem in view["caps"].values())
        if voucher != vouchers[0]:
            pool_paid += sum(c.net_fen for c in records)
    pool = programme_budget(world.state, now)["pools"]["chengdu-compute-voucher"].get("2023")
    assert (pool or {"paid_fen": 0})["paid_fen"] == pool_paid <= wan(250)
    entity_a = (
        "entity_programme",
        "chengdu-2023-31",
        "industry",
        world.state.parts["vouchers"].vouchers[vouchers[1]].holder,
    )
    assert caps.counted(entity_a, caps.adjustments(now)) <= wan(300)
    period = ("period", vouchers[0], 1)
    assert caps.counted(period, caps.adjustments(now)) <= wan(500)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=fold_ops)
def test_fold_never_overspends_and_replays_the_same(ops: list[tuple[Any, ...]]) -> None:
    world, vouchers = small_world()
    for n, op in enumerate(ops):
        if op[0] == "tick":
            world.tick(minutes=op[1])
            continue
        made = _entry_for(world, vouchers, op, n)
        if made is None:
            continue
        kind, body, signer = made
        before = snapshot(world.state)
        try:
            result = world.apply(kind, body, signer)
        except LedgerError:
            assert snapshot(world.state) == before, f"refused {kind} changed the state"
            continue
        if kind in ("claim", "capture"):
            assert 0 <= result["subsidy_fen"] <= apply_rate(result["cost_fen"], result["rate_bp"])
        if kind == "hold":
            assert result["held_fen"] >= 0
        _check_accounts(world, vouchers)
    # replay the log into a fresh state: the same balances, caps and budget
    fresh = LedgerState()
    for entry in world.entries:
        fresh, _ = apply(fresh, entry)
    for voucher in vouchers:
        assert voucher_view(fresh, voucher, world.clock) == voucher_view(
            world.state, voucher, world.clock
        )
    assert programme_budget(fresh, world.clock) == programme_budget(world.state, world.clock)
    assert caps_book(fresh).used == caps_book(world.state).used
    assert caps_book(fresh).held == caps_book(world.state).held


# --- policy variants: the cross-programme cap and calendar-year periods --------------------


def _variant(**change: Any) -> Policy:
    obj = json.loads(POLICY_FILE.read_text(encoding="utf-8"))
    if "entity_yearly_cap_fen" in change:
        obj["entity_yearly_cap_fen"] = change["entity_yearly_cap_fen"]
    if "ai_period" in change:
        next(p for p in obj["programmes"] if p["id"] == "ai-model")["caps"]["period"] = change[
            "ai_period"
        ]
    return Policy.from_json(obj)


def test_cross_programme_yearly_cap_per_entity() -> None:
    """A round may cap an entity across programmes per year (null in 成经信财〔2023〕31号)."""
    world = World(policy=_variant(entity_yearly_cap_fen=wan(400)))
    uscc = world.register()
    industry = world.voucher("industry", uscc=uscc)
    model = world.voucher("ai-model", uscc=uscc)
    assert world.claim(industry, wan(1000))["subsidy_fen"] == wan(300)
    second = world.claim(model, wan(1000), start=local("2023-03-01 09:00"))
    assert second["subsidy_fen"] == wan(100) and second["bound_by"] == "entity_round"
    err = world.refuse(
        "claim", world.claim_body(model, wan(10)), world.centre(), reason="CAP_EXHAUSTED"
    )
    assert err.details["cap"] == "entity_round"
    assert voucher_view(world.state, model)["caps"]["entity_round"] == 0
    # the next budget year starts fresh
    world.at("2024-02-01 10:00")
    third = world.claim(model, wan(100), start=local("2024-01-20 09:00"))
    assert third["subsidy_fen"] == wan(50)
    assert caps_book(world.state).audit() == []


def test_calendar_year_periods() -> None:
    """Where a policy says 'per calendar year', the period is the usage start's year."""
    period = {"kind": "calendar_year", "count": 3, "amount_fen": wan(500)}
    world = World(policy=_variant(ai_period=period))
    voucher = world.voucher("ai-model", amount_fen=wan(1500))
    assert voucher_view(world.state, voucher)["periods"] == {
        "kind": "calendar_year",
        "count": 3,
        "cap_fen": wan(500),
    }
    late_2023 = world.claim(voucher, wan(1200), start=local("2023-07-01 09:00"))
    assert late_2023["subsidy_fen"] == wan(500) and late_2023["bound_by"] == "period"
    world.at("2024-02-01 10:00")
    early_2024 = world.claim(voucher, wan(1200), start=local("2024-01-02 09:00"))
    assert early_2024["subsidy_fen"] == wan(500)  # a voucher year would still be year 1
    err = world.claim_refused(voucher, wan(10), "CAP_EXHAUSTED", start=local("2023-12-31 23:00"))
    assert err.details["cap"] == "period" and err.details["key"].endswith("/2023")
    # count 3: 2023, 2024, 2025; usage in early 2026 (still inside the window) gets nothing
    world.at("2026-01-08 10:00")
    err = world.claim_refused(voucher, wan(10), "CAP_EXHAUSTED", start=local("2026-01-05 09:00"))
    assert err.details["key"].endswith("/2026")


def test_budget_view_counts_open_holds() -> None:
    world = World()
    voucher = world.voucher("ai-model")
    world.apply("hold", world.hold_body(voucher, wan(100)), world.centre())
    row = programme_budget(world.state)["programmes"]["chengdu-2023-31/ai-model"]["2023"]
    assert row == {"paid_fen": 0, "held_fen": wan(50)}
    later = programme_budget(world.state, world.clock + timedelta(hours=2))
    assert later["programmes"]["chengdu-2023-31/ai-model"]["2023"]["held_fen"] == 0
