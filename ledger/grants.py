"""One-time grants (一次性奖励/补贴) for (一), (二) and (七): calculators and ``grant.pay``.

Calculators, from the inputs the notice names (all integers; :func:`ledger.money.apply_rate`
is the only rounding):

* (一) 超算适配 ``rank_tiers``: rank 1 → 100 万元, 2–3 → 75 万元, 4–6 → 50 万元, 7–10 →
  25 万元, otherwise 0 (二、(一) 2.). Ranks 1–10 together take 100 + 2×75 + 3×50 + 4×25 =
  500 万元, exactly the programme's yearly pool.
* (二) 云计算中心提档升级 ``per_rack``: per rack in use, min(1000 元, 50 % of the average
  renovation cost per rack); times the racks in use; the entity cap (200 万元) applies on
  top (二、(二) 2.). Eligibility (compute share > 70 %, ≥ 1000 racks, PUE < 1.25) is
  checked when applying (``ledger.applications``).
* (七) 算力调度平台 ``investment_share``: 30 % of the platform investment; the entity cap
  (1000 万元) applies on top (二、(七) 2.).

``grant.pay`` (issuer) ``{grant, application, amount_fen, policy_version}`` pays an
approved grant application once, against the programme's caps (entity cap in the
programme, the programme's pool for the budget year, the optional cross-programme cap):
it pays ``min(amount, every remaining cap)`` and names the cap that bound it, like a claim
(``requested`` when none did).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from immutables import Map

from ledger import applications, reports
from ledger import caps as caps_mod
from ledger.applications import application_of
from ledger.caps import lines_for
from ledger.entities import entity_of
from ledger.entry import Entry
from ledger.errors import Conflict, NotFound, Refused
from ledger.money import apply_rate, format_fen
from ledger.policy import Calculator, Programme, current_policy
from ledger.reader import Reader, body_reader
from ledger.state import Context, LedgerState, Result
from ledger.timeutil import format_time
from ledger.vouchers import budget_year


def rank_award(calc: Calculator, rank: int) -> int:
    """(一): the award for ``rank``, 0 outside the tiers."""
    return next((t.amount_fen for t in calc.tiers if t.first <= rank <= t.last), 0)


def rack_subsidy(calc: Calculator, racks_in_use: int, avg_cost_per_rack_fen: int) -> int:
    """(二): racks in use × min(per-rack maximum, share of the average cost per rack)."""
    per_rack = min(
        calc.per_rack_max_fen, apply_rate(avg_cost_per_rack_fen, calc.share_of_average_bp)
    )
    return racks_in_use * per_rack


def investment_grant(calc: Calculator, investment_fen: int) -> int:
    """(七): the rate's share of the investment."""
    return apply_rate(investment_fen, calc.rate_bp)


def calculate(programme: Programme, inputs: Mapping[str, Any]) -> int:
    """The grant a programme's calculator gives for ``inputs``, before the entity cap."""
    calc = programme.calculator
    if calc is None:
        raise Refused(f"{programme.label} has no grant calculator", reason="NOT_A_GRANT_PROGRAMME")
    if calc.kind == "rank_tiers":
        return rank_award(calc, int(inputs[calc.rank_input]))
    if calc.kind == "per_rack":
        return rack_subsidy(calc, int(inputs[calc.racks_input]), int(inputs[calc.cost_input]))
    return investment_grant(calc, int(inputs[calc.amount_input]))


def grant_amount(programme: Programme, inputs: Mapping[str, Any]) -> int:
    """The calculator's amount within the entity cap: what a grant application is worth."""
    amount = calculate(programme, inputs)
    if programme.entity_cap is not None:
        amount = min(amount, programme.entity_cap.for_inputs(inputs))
    return amount


# --- grant.pay ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    id: str
    application: str
    round: str
    programme: str
    payee: str
    index: int
    at: datetime
    requested_fen: int
    paid_fen: int
    bound_by: str
    policy_version: str
    clawed_back_fen: int = 0

    @property
    def charge_id(self) -> str:
        return f"grant:{self.id}"

    @property
    def net_fen(self) -> int:
        return self.paid_fen - self.clawed_back_fen


@dataclass
class GrantBook:
    grants: Map[str, Grant] = field(default_factory=Map)

    def put(self, grant: Grant) -> None:
        self.grants = self.grants.set(grant.id, grant)


def book(state: LedgerState) -> GrantBook:
    part: GrantBook = state.part("grants", GrantBook)
    return part


def grant_of(state: LedgerState, grant_id: str) -> Grant:
    found = book(state).grants.get(grant_id)
    if found is None:
        raise NotFound(f"no grant {grant_id!r}", reason="UNKNOWN_GRANT")
    return found


def grant_lines(
    state: LedgerState,
    round_id: str,
    programme: Programme,
    payee: str,
    inputs: Mapping[str, Any],
    now: datetime,
) -> tuple[caps_mod.CapLine, ...]:
    policy = current_policy(state, round_id)
    return lines_for(
        round_id=round_id,
        programme=programme.id,
        holder=payee,
        budget_year=budget_year(now),
        entity_cap=None
        if programme.entity_cap is None
        else programme.entity_cap.for_inputs(inputs),
        entity_round_cap=policy.entity_yearly_cap_fen,
        programme_pool=None if programme.pool is None else programme.pool.amount_fen,
    )


def apply_pay(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(["grant", "application", "amount_fen", "policy_version"])
    grant_id, amount = r.ident("grant"), r.fen("amount_fen")
    app = application_of(state, r.ident("application"))
    stated = r.sha256("policy_version")
    grants = book(state)
    if grant_id in grants.grants:
        raise Conflict(f"grant {grant_id} already exists", reason="GRANT_EXISTS")
    policy = current_policy(state, app.round)
    if stated != policy.version:
        raise Refused(
            f"grant.pay names policy version {stated}; in force is {policy.version}",
            reason="POLICY_VERSION_MISMATCH",
        )
    programme = policy.programme(app.programme)
    if programme.kind != "grant":
        raise Refused(
            f"{programme.label} is paid through vouchers and claims, not grant.pay",
            reason="NOT_A_GRANT_PROGRAMME",
        )
    if app.status != "approved":
        raise Refused(f"application {app.id} is {app.status}, not approved", reason="NOT_APPROVED")
    if app.grant is not None:
        raise Conflict(
            f"application {app.id} was already paid (grant {app.grant}); grants are one-time",
            reason="ALREADY_PAID",
        )
    if amount > app.approved_fen:
        raise Refused(
            f"amount {format_fen(amount)} exceeds the approved {format_fen(app.approved_fen)}",
            reason="AMOUNT_EXCEEDS_APPROVAL",
            details={"amount_fen": amount, "approved_fen": app.approved_fen},
        )
    if entity_of(state, app.applicant).blacklisted is not None:
        raise Refused(f"payee {app.applicant} is blacklisted", reason="HOLDER_BLACKLISTED")
    lines = grant_lines(state, app.round, programme, app.applicant, app.inputs, ctx.time)
    caps = caps_mod.book(state)
    decision = caps.decide(amount, lines, ctx.time, unbound="requested")
    # mutate
    caps.sweep(ctx.time)
    grant = Grant(
        grant_id,
        app.id,
        app.round,
        app.programme,
        app.applicant,
        ctx.index,
        ctx.time,
        amount,
        decision.amount,
        decision.bound_by,
        policy.version,
    )
    caps.charge(grant.charge_id, "grant", lines, decision.amount)
    book(state).put(grant)
    reports.count_grant(state, grant)
    applications.book(state).put(replace(app, grant=grant_id))
    return {
        "grant": grant_id,
        "application": app.id,
        "payee": app.applicant,
        "programme": app.programme,
        "requested_fen": amount,
        "paid_fen": decision.amount,
        "bound_by": decision.bound_by,
        "policy_version": policy.version,
    }


def pay_body(
    *, grant: str, application: str, amount_fen: int, policy_version: str
) -> dict[str, Any]:
    """Body of ``grant.pay``."""
    body = {
        "grant": grant,
        "application": application,
        "amount_fen": amount_fen,
        "policy_version": policy_version,
    }
    r = Reader(body, "body").obj(["grant", "application", "amount_fen", "policy_version"])
    r.ident("grant")
    r.ident("application")
    r.fen("amount_fen")
    r.sha256("policy_version")
    return body


def grant_view(state: LedgerState, grant_id: str) -> dict[str, Any]:
    g = grant_of(state, grant_id)
    return {
        "grant": g.id,
        "application": g.application,
        "round": g.round,
        "programme": g.programme,
        "payee": g.payee,
        "index": g.index,
        "at": format_time(g.at),
        "requested_fen": g.requested_fen,
        "paid_fen": g.paid_fen,
        "bound_by": g.bound_by,
        "clawed_back_fen": g.clawed_back_fen,
        "net_fen": g.net_fen,
        "policy_version": g.policy_version,
    }
