"""The tallies the fold keeps for the reports and histories (``ledger.reports``) against a
brute-force recomputation from the claims, grants and log entries themselves.

A random ledger of claims at two centres, reversals, clawbacks of claims and of grants, and
grants, over 2023 and 2024 (the new year in Asia/Shanghai, not UTC, decides the budget
year), must give the same bureau reports and entity histories as counting them afresh.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from domain_helpers import World, local, sha, wan
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import claims, grants, reports, settlement
from ledger.corrections import clawback_body, reverse_body
from ledger.snapshot import holds_every_part
from ledger.state import LedgerState
from ledger.timeutil import SHANGHAI
from ledger.usecases.views.bureau import centre_report, entity_report, month_report
from ledger.usecases.views.history import HistoryFilter, history_page
from ledger.vouchers import voucher_of

# each step happens at one of these (Asia/Shanghai), in this order: two straddle the new year
MOMENTS = (
    "2023-08-20 10:00",
    "2023-12-31 23:30",
    "2024-01-01 00:30",
    "2024-03-15 12:00",
    "2024-07-30 10:00",
)
CENTRES = ("nscc-cd", "cd-icc")
FIGURES = ("claims", "cost_fen", "subsidy_fen", "grants_fen", "total_fen")


@dataclass(frozen=True)
class Step:
    moment: int
    action: str  # claim | reverse | clawback | pay | clawback-grant
    who: int  # an entity, or which claim or grant (modulo those there are)
    amount: int  # a claim's cost in fen, or what a clawback takes (modulo the net, plus 1)
    centre: int


steps = st.lists(
    st.builds(
        Step,
        moment=st.integers(0, len(MOMENTS) - 1),
        action=st.sampled_from(["claim", "claim", "claim", "reverse", "clawback", "pay"])
        | st.just("clawback-grant"),
        who=st.integers(0, 50),
        amount=st.integers(1, 400_000),
        centre=st.integers(0, 1),
    ),
    max_size=24,
).map(lambda found: sorted(found, key=lambda s: s.moment))


@dataclass
class Ledger:
    world: World
    holders: list[str]
    vouchers: list[str]
    grant_apps: list[str]  # approved, paid by "pay" steps in turn
    paid: list[str] = field(default_factory=list)


def _ledger() -> Ledger:
    world = World()
    holders = [world.register() for _ in range(3)]
    issued = [world.voucher(uscc=uscc) for uscc in holders]
    apps = [world.approved("cloud-upgrade", uscc=uscc) for uscc in holders[:2]]
    return Ledger(world, holders, issued, apps)


def _open_claims(state: LedgerState) -> list[claims.ClaimRecord]:
    found = sorted(claims.book(state).claims.values(), key=lambda r: r.index)
    return [r for r in found if r.reversed_index is None]


def _run(ledger: Ledger, step: Step) -> None:
    world = ledger.world
    world.at(MOMENTS[step.moment])
    live = _open_claims(world.state)
    if step.action == "claim":
        voucher = ledger.vouchers[step.who % len(ledger.vouchers)]
        start = local("2023-03-01 09:00")
        world.claim(voucher, step.amount, CENTRES[step.centre], start=start)
    elif step.action == "reverse" and live:
        claim = live[step.who % len(live)]
        body = reverse_body(centre=claim.centre, record_id=claim.record_id, reason="计量错误")
        world.apply("claim.reverse", body, world.issuer)
    elif step.action == "clawback" and [c for c in live if c.net_fen > 0]:
        taken = [c for c in live if c.net_fen > 0]
        claim = taken[step.who % len(taken)]
        body = clawback_body(
            amount_fen=1 + step.amount % claim.net_fen,
            reason="追回",
            evidence_sha256=sha("x"),
            claim=(claim.centre, claim.record_id),
        )
        world.apply("clawback", body, world.issuer)
    elif step.action == "pay" and len(ledger.paid) < len(ledger.grant_apps):
        app = ledger.grant_apps[len(ledger.paid)]
        ledger.paid.append(str(world.pay(app)["grant"]))
    elif step.action == "clawback-grant":
        book = grants.book(world.state).grants
        open_grants = [book[g] for g in ledger.paid if book[g].net_fen > 0]
        if open_grants:
            grant = open_grants[step.who % len(open_grants)]
            body = clawback_body(
                amount_fen=1 + step.amount % grant.net_fen,
                reason="追回",
                evidence_sha256=sha("y"),
                grant=grant.id,
            )
            world.apply("clawback", body, world.issuer)


# --- the brute force: every claim and grant, counted afresh ------------------------------


def _zero() -> dict[str, Any]:
    return dict.fromkeys(FIGURES, 0)


def _add(row: dict[str, Any], claims_: int, cost: int, subsidy: int, granted: int) -> None:
    row["claims"] += claims_
    row["cost_fen"] += cost
    row["subsidy_fen"] += subsidy
    row["grants_fen"] += granted
    row["total_fen"] += subsidy + granted


def _expected(state: LedgerState, year: int) -> dict[str, Any]:
    entities: dict[str, dict[str, Any]] = {}
    centres: dict[str, dict[str, Any]] = {}
    months: dict[int, dict[str, Any]] = {}
    programmes: dict[int, dict[str, int]] = {}
    for r in claims.book(state).claims.values():
        at = r.at.astimezone(SHANGHAI)
        if at.year != year:
            continue
        voucher = voucher_of(state, r.voucher)
        for row in (
            entities.setdefault(voucher.holder, _zero()),
            centres.setdefault(r.centre, _zero()),
            months.setdefault(at.month, _zero()),
        ):
            _add(row, 1, r.cost_fen, r.net_fen, 0)
        by = programmes.setdefault(at.month, {})
        key = f"{voucher.round}/{voucher.programme}"
        by[key] = by.get(key, 0) + r.net_fen
    for g in grants.book(state).grants.values():
        at = g.at.astimezone(SHANGHAI)
        if at.year != year:
            continue
        for row in (entities.setdefault(g.payee, _zero()), months.setdefault(at.month, _zero())):
            _add(row, 0, 0, 0, g.net_fen)
        by = programmes.setdefault(at.month, {})
        key = f"{g.round}/{g.programme}"
        by[key] = by.get(key, 0) + g.net_fen
    return {"entities": entities, "centres": centres, "months": months, "by": programmes}


def _figures(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in FIGURES if k in row}


def _check_reports(ledger: Ledger, year: int) -> None:
    state = ledger.world.state
    expected = _expected(state, year)
    by_entity = {row["uscc"]: _figures(row) for row in entity_report(state, year)["entities"]}
    assert set(by_entity) == set(ledger.holders) | set(expected["entities"])
    for uscc, row in by_entity.items():
        assert row == expected["entities"].get(uscc, _zero()), uscc
    for row in centre_report(state, year)["centres"]:
        want = _figures(expected["centres"].get(row["centre"], _zero()))
        assert _figures(row) == {k: v for k, v in want.items() if k in row}, row["centre"]
    for month, row in enumerate(month_report(state, year)["months"], start=1):
        assert _figures(row) == expected["months"].get(month, _zero()), month
        assert row["by_programme"] == expected["by"].get(month, {}), month


def _check_centres(state: LedgerState) -> None:
    for centre in CENTRES:
        mine = [r.net_fen for r in claims.book(state).claims.values() if r.centre == centre]
        position = settlement.centre_settlement(state, centre)
        assert position["granted_fen"] == sum(mine)
        assert position["settled_fen"] == position["statements"] == 0  # nothing settled here


# --- histories: the items the log itself names ---------------------------------------------


def _reader(world: World) -> Any:
    def read(indices: Sequence[int]) -> dict[int, Mapping[str, Any]]:
        return {i: world.entries[i].to_json() for i in indices}

    return read


def _expected_history(world: World, uscc: str) -> list[tuple[int, str, int, int]]:
    """(index, kind, cost, subsidy) of each of the entity's items, from the log entries."""
    state = world.state
    found: list[tuple[int, str, int, int]] = []
    clawed: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(world.entries):
        body = entry.clear_body()
        if entry.kind in ("claim", "capture", "claim.reverse"):
            key = (body["centre"], body["record_id"])
            record = claims.book(state).claims.get(key)
            if record is None or voucher_of(state, record.voucher).holder != uscc:
                continue
            if entry.kind == "claim.reverse":
                found.append((index, entry.kind, 0, clawed.get(key, 0) - record.subsidy_fen))
            else:
                found.append((index, entry.kind, record.cost_fen, record.subsidy_fen))
        elif entry.kind == "clawback":
            target = body["target"]
            if "claim" in target:
                key = (target["claim"]["centre"], target["claim"]["record_id"])
                clawed[key] = clawed.get(key, 0) + body["amount_fen"]
                holder = voucher_of(state, claims.book(state).claims[key].voucher).holder
            else:
                holder = grants.book(state).grants[target["grant"]].payee
            if holder == uscc:
                found.append((index, "clawback", 0, -body["amount_fen"]))
        elif entry.kind == "grant.pay":
            grant = grants.book(state).grants[body["grant"]]
            if grant.payee == uscc:
                found.append((index, entry.kind, 0, grant.paid_fen))
    return found


def _check_history(world: World, uscc: str) -> None:
    state, read = world.state, _reader(world)
    expected = _expected_history(world, uscc)
    whole = history_page(state, uscc, read, HistoryFilter())
    got = [(i["index"], i["kind"], i["cost_fen"], i["subsidy_fen"]) for i in whole["items"]]
    assert got == expected
    assert whole["overall_totals"] == {
        "items": len(expected),
        "cost_fen": sum(e[2] for e in expected),
        "subsidy_fen": sum(e[3] for e in expected),
    }
    # page by page (built from the page's own items) it is the same, and so is the
    # filtered answer (built from every item of the entity) whose range keeps everything
    pages, after = [], -1
    while True:
        page = history_page(state, uscc, read, HistoryFilter(), after=after, limit=2)
        assert page["overall_totals"] == whole["overall_totals"]
        pages += page["items"]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert pages == whole["items"]
    everything = HistoryFilter(
        start=local("2023-01-01 00:00").date(), end=local("2024-12-31 00:00").date()
    )
    assert history_page(state, uscc, read, everything) == whole


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_reports_and_histories_equal_a_recount(chosen: list[Step]) -> None:
    ledger = _ledger()
    for step in chosen:
        _run(ledger, step)
    state = ledger.world.state
    for year in (2023, 2024):
        _check_reports(ledger, year)
    _check_centres(state)
    for uscc in ledger.holders:
        _check_history(ledger.world, uscc)
    # a fold snapshot is the pickled state: the tallies come back whole
    restored = pickle.loads(pickle.dumps(state))
    assert reports.book(restored) == reports.book(state)


def test_a_state_with_claims_but_no_tallies_is_not_complete() -> None:
    """A fold snapshot taken before the fold kept the tallies must not be loaded
    (``ledger.store.snapshots`` asks this)."""
    ledger = _ledger()
    assert holds_every_part(ledger.world.state)  # nothing paid yet: nothing to count
    ledger.world.claim(ledger.vouchers[0], wan(1))
    state = ledger.world.state
    assert holds_every_part(state)
    older = LedgerState(state.size, state.time, state.registry, dict(state.parts))
    del older.parts["reports"]
    assert not holds_every_part(older)
