"""Post-hoc reimbursement (事后奖补, model B): the grantee pays its provider in full and is
reimbursed afterwards on a contract, invoices and proof of payment (docs/reimbursement.md).

Four entry kinds, in order:

* ``reimbursement.submit`` (service, for the grantee): the claim — round, programme,
  claimant, provider (any named compute provider: name, 统一社会信用代码, and the registered
  centre id when it is one), period of use (Asia/Shanghai days, inclusive), amount paid,
  the SHA-256 of the contract and the payment evidence, and each invoice (number, issuer,
  amount, SHA-256), the related parties the claimant declares. Duplicate detection (查重)
  and the related-party check run here, so a duplicate is never even recorded.
* ``reimbursement.review`` (service, for the claimant's 区县): approve or reject, a note.
* ``reimbursement.decide`` (issuer): approve with an amount, at most the policy's rate of
  the reimbursable base (min(amount paid, invoiced)) within the programme's entity cap;
  the stacked caps (``ledger.caps``: entity in the programme, entity across the round,
  programme pool per budget year) are charged here and cut the amount to the fen, naming
  the cap that bound it. Or reject.
* ``reimbursement.pay`` (issuer): the approved amount paid, once.

Duplicates: an invoice (its issuer and number, or its SHA-256) counts in one live claim at
a time, across rounds, programmes and entities; a claim the district or the bureau
rejected releases its invoices so that a corrected claim can be made. Usage a voucher
already subsidised at the point of sale (model A: a claim by a registered centre on one of
the claimant's vouchers, whose usage overlaps the period) is not reimbursed again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from immutables import Map

from ledger import caps as caps_mod
from ledger import claims as claims_mod
from ledger import vouchers as vouchers_mod
from ledger.entities import entity_of
from ledger.entry import Entry
from ledger.errors import Conflict, Denied, NotFound, Refused
from ledger.money import apply_rate, format_fen
from ledger.policy import Policy, Programme, current_policy, require_rate, scheme_terms
from ledger.reader import Reader, body_reader
from ledger.seq import Seq
from ledger.state import Context, LedgerState, Result
from ledger.timeutil import SHANGHAI, format_time, local_text, shanghai_end, shanghai_start

OPINIONS = ("approve", "reject")
MAX_INVOICES = 100
MAX_RELATED = 50
_SUBMIT = (
    "claim", "round", "programme", "claimant", "provider", "period", "amount_paid_fen",
    "invoices", "evidence", "related_parties", "policy_version",
)  # fmt: skip


# --- the claim as the fold keeps it --------------------------------------------------------


@dataclass(frozen=True)
class Invoice:
    number: str
    issuer: str  # 统一社会信用代码 of the issuing seller
    amount_fen: int
    sha256: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.issuer, self.number)


@dataclass(frozen=True)
class Provider:
    name: str
    uscc: str
    centre: str | None  # a registered centre id, when the provider is one


@dataclass(frozen=True)
class Step:
    """A review or a decision: who, when, what."""

    index: int
    at: datetime
    outcome: str  # approve | reject
    by: str  # the reviewer (district review) or "bureau"
    note: str
    amount_fen: int = 0  # approvals by the bureau: the amount after the caps
    requested_fen: int = 0
    bound_by: str = ""


@dataclass(frozen=True)
class Claim:
    id: str
    round: str
    programme: str
    claimant: str
    district: str
    provider: Provider
    first_day: date
    last_day: date
    amount_paid_fen: int
    invoices: tuple[Invoice, ...]
    evidence: tuple[tuple[str, str], ...]  # (contract|payment, sha256)
    related_parties: tuple[str, ...]
    policy_version: str
    index: int
    at: datetime
    review: Step | None = None
    decision: Step | None = None
    paid_index: int | None = None

    @property
    def status(self) -> str:
        if self.paid_index is not None:
            return "paid"
        if self.decision is not None:
            return "approved" if self.decision.outcome == "approve" else "rejected"
        if self.review is not None:
            return "reviewed" if self.review.outcome == "approve" else "rejected"
        return "submitted"

    @property
    def base_fen(self) -> int:
        """What the rate applies to: the amount paid, but no more than was invoiced."""
        return min(self.amount_paid_fen, sum(i.amount_fen for i in self.invoices))

    @property
    def charge_id(self) -> str:
        return f"reimbursement:{self.id}"

    @property
    def approved_fen(self) -> int:
        return (
            self.decision.amount_fen if self.decision and self.decision.outcome == "approve" else 0
        )


@dataclass
class ReimbursementBook:
    claims: Map[str, Claim] = field(default_factory=Map)
    order: Seq[str] = field(default_factory=Seq)  # claim ids in log order
    invoices: Map[tuple[str, str], str] = field(default_factory=Map)  # live claims' invoices
    invoice_hashes: Map[str, str] = field(default_factory=Map)  # sha256 -> claim id
    related: Map[str, frozenset[str]] = field(default_factory=Map)  # declared, ever
    # claims naming a registered centre as provider, by (claimant, centre): what a voucher
    # claim at that centre must not cover again
    at_centre: Map[tuple[str, str], Seq[str]] = field(default_factory=Map)

    def put(self, claim: Claim) -> None:
        if claim.id not in self.claims:
            self.order = self.order.append(claim.id)
            if claim.provider.centre is not None:
                key = (claim.claimant, claim.provider.centre)
                listed = self.at_centre.get(key, Seq())
                self.at_centre = self.at_centre.set(key, listed.append(claim.id))
        self.claims = self.claims.set(claim.id, claim)


def book(state: LedgerState) -> ReimbursementBook:
    part: ReimbursementBook = state.part("reimbursements", ReimbursementBook)
    return part


def claim_of(state: LedgerState, claim_id: str) -> Claim:
    found = book(state).claims.get(claim_id)
    if found is None:
        raise NotFound(f"no reimbursement claim {claim_id!r}", reason="UNKNOWN_REIMBURSEMENT")
    return found


def reimbursed_at(
    state: LedgerState, holder: str, centre: str, start: datetime, end: datetime
) -> Claim | None:
    """A claim (not rejected) of ``holder`` for usage at ``centre`` whose period overlaps
    [start, end): a voucher claim there must not subsidise that usage again. Reads the
    part without copying it (a claim's hot path)."""
    found: ReimbursementBook | None = state.parts.get("reimbursements")
    if found is None:
        return None
    for claim_id in found.at_centre.get((holder, centre), ()):
        claim = found.claims[claim_id]
        if claim.status != "rejected" and overlaps(claim.first_day, claim.last_day, start, end):
            return claim
    return None


# --- rules (pure) ---------------------------------------------------------------------------


def entitlement(programme: Programme, base_fen: int) -> int:
    """The most the bureau may approve: the rate's share of the base, within the
    programme's entity cap (the other caps are charged at the decision)."""
    amount = apply_rate(base_fen, require_rate(programme))
    if programme.entity_cap is not None and programme.entity_cap.amount_fen is not None:
        amount = min(amount, programme.entity_cap.amount_fen)
    return amount


def organisation_code(uscc: str) -> str:
    """Characters 9–17 of a 统一社会信用代码: the organisation's own code (the first eight
    are the registering authority, the type and the division, shared by many)."""
    return uscc[8:17]


def related_reason(claimant: str, provider: str, declared: frozenset[str]) -> str | None:
    """Why the provider counts as related to the claimant, or None (docs/reimbursement.md):
    the same legal person (same organisation code), or declared related by the claimant,
    in this claim or any earlier one."""
    if organisation_code(provider) == organisation_code(claimant):
        return "the provider and the claimant share the organisation code (one legal person)"
    if provider in declared:
        return "the claimant declared the provider a related party"
    return None


def overlaps(first_day: date, last_day: date, start: datetime, end: datetime) -> bool:
    """Does usage [start, end) fall in part within the local days first..last?"""
    return start < shanghai_end(last_day) and end > shanghai_start(first_day)


# --- reimbursement.submit -------------------------------------------------------------------


def _read_provider(r: Reader) -> Provider:
    r.obj(["name", "uscc"], ["centre"])
    return Provider(r.text("name", max_len=200), r.uscc("uscc"), r.opt_text("centre", max_len=32))


def _read_invoices(r: Reader) -> tuple[Invoice, ...]:
    items = r.items("invoices", nonempty=True)
    if len(items) > MAX_INVOICES:
        raise r.fail(f"at most {MAX_INVOICES} invoices per claim", name="invoices")
    invoices: list[Invoice] = []
    for ir in items:
        ir.obj(["number", "issuer", "amount_fen", "sha256"])
        invoice = Invoice(
            ir.text("number", max_len=40).strip().upper(),
            ir.uscc("issuer"),
            ir.fen("amount_fen"),
            ir.sha256("sha256"),
        )
        if any(i.key == invoice.key or i.sha256 == invoice.sha256 for i in invoices):
            raise ir.fail("the same invoice is listed twice", reason="DUPLICATE_INVOICE")
        invoices.append(invoice)
    return tuple(invoices)


def _read_evidence(r: Reader, programme: Programme) -> tuple[tuple[str, str], ...]:
    rule = programme.reimbursement
    assert rule is not None
    wanted = [e for e in rule.evidence if e != "invoice"]  # invoices carry their own hashes
    er = r.child("evidence").obj(wanted, [])
    return tuple((name, er.sha256(name)) for name in wanted)


def _check_period(r: Reader, programme: Programme) -> tuple[date, date]:
    pr = r.child("period").obj(["from", "to"])
    first, last = pr.day("from"), pr.day("to")
    if first > last:
        raise pr.fail(f"starts on {first} but ends on {last}", name="to")
    rule = programme.usage_window
    assert rule is not None
    if shanghai_start(first) < rule.earliest or (
        rule.latest is not None and shanghai_end(last) > rule.latest
    ):
        raise Refused(
            f"the period {first}..{last} is outside the programme's usage window "
            f"({rule.earliest_text} to {rule.latest_text or 'open'}, Asia/Shanghai)",
            reason="OUTSIDE_USAGE_WINDOW",
            details={"field": "body.period"},
        )
    return first, last


def _check_duplicates(state: LedgerState, claim: Claim) -> None:
    found = book(state)
    for invoice in claim.invoices:
        earlier = found.invoices.get(invoice.key) or found.invoice_hashes.get(invoice.sha256)
        if earlier is not None:
            other = found.claims[earlier]
            raise Conflict(
                f"invoice {invoice.number} of {invoice.issuer} is already claimed in "
                f"reimbursement {earlier} (entry {other.index}, round {other.round}, "
                f"programme {other.programme}, claimant {other.claimant})",
                reason="DUPLICATE_INVOICE",
                details={"invoice": invoice.number, "claim": earlier, "index": other.index},
            )
    centre = claim.provider.centre
    if centre is None:
        return
    records = claims_mod.book(state)
    for voucher in vouchers_mod.vouchers_of(state, claim.claimant):
        for key in records.by_voucher.get(voucher.id, ()):
            record = records.claims[key]
            if (
                record.centre == centre
                and record.net_fen > 0
                and overlaps(claim.first_day, claim.last_day, record.start, record.end)
            ):
                raise Conflict(
                    f"usage at {centre} from {claim.first_day} to {claim.last_day} was already "
                    f"subsidised at the point of sale: claim {record.record_id} on voucher "
                    f"{record.voucher} (entry {record.index})",
                    reason="ALREADY_SUBSIDISED",
                    details={"centre": centre, "voucher": record.voucher, "index": record.index},
                )


def _check_related(state: LedgerState, claim: Claim, programme: Programme) -> None:
    rule = programme.reimbursement
    if rule is None or not rule.related_party_check:
        return
    declared = book(state).related.get(claim.claimant, frozenset()) | set(claim.related_parties)
    why = related_reason(claim.claimant, claim.provider.uscc, frozenset(declared))
    if why is not None:
        raise Refused(
            f"{programme.label} does not reimburse related-party deals: {why} "
            f"(provider {claim.provider.uscc})",
            reason="RELATED_PARTY",
            details={"provider": claim.provider.uscc},
        )


def _check_policy(r: Reader, state: LedgerState, round_id: str) -> Policy:
    policy = current_policy(state, round_id)
    stated = r.sha256("policy_version")
    if stated != policy.version:
        raise Refused(
            f"the claim names policy version {stated}; in force is {policy.version}",
            reason="POLICY_VERSION_MISMATCH",
        )
    if policy.settlement_model != "post_hoc":
        raise Refused(
            f"round {round_id} pays at the point of sale; it takes no reimbursement claims",
            reason="NOT_POST_HOC",
        )
    return policy


def apply_submit(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(_SUBMIT)
    claim_id, round_id = r.ident("claim"), r.ident("round")
    policy = _check_policy(r, state, round_id)
    programme = policy.programme(r.text("programme", max_len=64))
    if programme.kind != "reimbursement":
        raise Refused(f"{programme.label} takes no reimbursement claims", reason="NOT_POST_HOC")
    window = policy.window("online_submission")
    if not window.contains(ctx.time):
        raise Refused(
            f"claims are taken {window.describe()}; it is {local_text(ctx.time)}",
            reason="OUTSIDE_SUBMISSION_WINDOW",
        )
    if claim_id in book(state).claims:
        raise Conflict(f"reimbursement claim {claim_id} exists", reason="REIMBURSEMENT_EXISTS")
    claimant = r.uscc("claimant")
    entity = entity_of(state, claimant)
    if entity.blacklisted is not None:
        raise Refused(f"claimant {claimant} is blacklisted", reason="HOLDER_BLACKLISTED")
    first, last = _check_period(r, programme)
    related = r.items("related_parties")
    if len(related) > MAX_RELATED:
        raise r.fail(f"at most {MAX_RELATED} related parties", name="related_parties")
    claim = Claim(
        claim_id,
        round_id,
        programme.id,
        claimant,
        entity.district,
        _read_provider(r.child("provider")),
        first,
        last,
        r.fen("amount_paid_fen"),
        _read_invoices(r),
        _read_evidence(r, programme),
        tuple(sorted({_uscc_item(ir) for ir in related})),
        policy.version,
        ctx.index,
        ctx.time,
    )
    if claim.amount_paid_fen == 0:
        raise r.fail("must be more than 0", name="amount_paid_fen")
    _check_related(state, claim, programme)
    _check_duplicates(state, claim)
    # mutate
    found = book(state)
    found.put(claim)
    _hold_invoices(found, claim, claim.id)
    if claim.related_parties:
        known = found.related.get(claimant, frozenset())
        found.related = found.related.set(claimant, known | set(claim.related_parties))
    return {"claim": claim_id, "round": round_id, "programme": programme.id, "status": "submitted"}


def _uscc_item(r: Reader) -> str:
    return Reader({"uscc": r.value}, r.path).uscc("uscc")


def _hold_invoices(found: ReimbursementBook, claim: Claim, holder: str | None) -> None:
    """Count the claim's invoices as taken (``holder`` its id) or release them (None)."""
    with found.invoices.mutate() as keys, found.invoice_hashes.mutate() as hashes:
        for invoice in claim.invoices:
            if holder is None:
                keys.pop(invoice.key, None)
                hashes.pop(invoice.sha256, None)
            else:
                keys[invoice.key] = holder
                hashes[invoice.sha256] = holder
        found.invoices, found.invoice_hashes = keys.finish(), hashes.finish()


def submit_body(
    *,
    claim: str,
    policy: Policy,
    programme: str,
    claimant: str,
    provider: dict[str, Any],
    period: tuple[str, str],
    amount_paid_fen: int,
    invoices: list[dict[str, Any]],
    evidence: dict[str, str],
    related_parties: list[str] = [],  # noqa: B006 - never changed
) -> dict[str, Any]:
    """Body of ``reimbursement.submit`` (the hashes computed by the grantee's client)."""
    return {
        "claim": claim,
        "round": policy.round,
        "programme": programme,
        "claimant": claimant,
        "provider": dict(provider),
        "period": {"from": period[0], "to": period[1]},
        "amount_paid_fen": amount_paid_fen,
        "invoices": [dict(i) for i in invoices],
        "evidence": dict(evidence),
        "related_parties": list(related_parties),
        "policy_version": policy.version,
    }


# --- reimbursement.review -------------------------------------------------------------------


def apply_review(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(["claim", "district", "reviewer", "opinion"], ["note"])
    claim = claim_of(state, r.ident("claim"))
    district, reviewer = r.text("district", max_len=50), r.text("reviewer", max_len=200)
    opinion, note = r.choice("opinion", OPINIONS), r.opt_text("note") or ""
    if district != claim.district:
        raise Denied(
            f"reimbursement {claim.id} is from {claim.district}; a reviewer of {district} "
            "may not review it",
            reason="WRONG_DISTRICT",
        )
    deadline = current_policy(state, claim.round).window("district_review")
    if not deadline.contains(ctx.time):
        raise Refused(
            f"district opinions are taken {deadline.describe()}; it is {local_text(ctx.time)}",
            reason="REVIEW_DEADLINE_PASSED",
        )
    if claim.review is not None:
        raise Conflict(
            f"reimbursement {claim.id} was already reviewed at entry {claim.review.index}",
            reason="ALREADY_REVIEWED",
        )
    # mutate
    found = book(state)
    reviewed = replace(claim, review=Step(ctx.index, ctx.time, opinion, reviewer, note))
    found.put(reviewed)
    if opinion == "reject":
        _hold_invoices(found, claim, None)
    return {"claim": claim.id, "opinion": opinion, "status": reviewed.status}


def review_body(
    *, claim: str, district: str, reviewer: str, opinion: str, note: str = ""
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "claim": claim,
        "district": district,
        "reviewer": reviewer,
        "opinion": opinion,
    }
    if note:
        body["note"] = note
    return body


# --- reimbursement.decide -------------------------------------------------------------------


def cap_lines(
    state: LedgerState, policy: Policy, programme: Programme, claimant: str, now: datetime
) -> Any:
    """The caps a reimbursement counts against (``ledger.caps``): those of its round, and
    those its round's scheme shares with the point-of-sale rounds."""
    return caps_mod.lines_for(
        round_id=policy.round,
        programme=programme.id,
        holder=claimant,
        budget_year=now.astimezone(SHANGHAI).year,
        entity_cap=None if programme.entity_cap is None else programme.entity_cap.amount_fen,
        entity_round_cap=policy.entity_yearly_cap_fen,
        programme_pool=None if programme.pool is None else programme.pool.amount_fen,
        scheme=scheme_terms(state, policy, programme.id),
    )


def apply_decide(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(["claim", "decision", "policy_version"], ["amount_fen", "note"])
    claim = claim_of(state, r.ident("claim"))
    decision, note = r.choice("decision", OPINIONS), r.opt_text("note") or ""
    policy = _check_policy(r, state, claim.round)
    programme = policy.programme(claim.programme)
    if claim.review is None:
        raise Refused(
            f"reimbursement {claim.id} has no district opinion yet", reason="NOT_REVIEWED"
        )
    if claim.decision is not None:
        raise Conflict(
            f"reimbursement {claim.id} was already decided at entry {claim.decision.index}",
            reason="ALREADY_DECIDED",
        )
    found = book(state)
    if decision == "reject":
        if r.has("amount_fen"):
            raise r.fail("a rejection states no amount", name="amount_fen")
        found.put(replace(claim, decision=Step(ctx.index, ctx.time, "reject", "bureau", note)))
        _hold_invoices(found, claim, None)
        return {"claim": claim.id, "decision": "reject", "status": "rejected"}
    if claim.review.outcome != "approve":
        raise Refused(
            f"the district rejected reimbursement {claim.id} (entry {claim.review.index})",
            reason="DISTRICT_REJECTED",
        )
    most = entitlement(programme, claim.base_fen)
    wanted = r.fen("amount_fen") if r.has("amount_fen") else most
    if wanted > most:
        raise Refused(
            f"amount {format_fen(wanted)} exceeds the entitlement {format_fen(most)} "
            f"(rate of {format_fen(claim.base_fen)} within the entity cap)",
            reason="AMOUNT_EXCEEDS_ENTITLEMENT",
            details={"field": "body.amount_fen", "amount_fen": wanted, "entitlement_fen": most},
        )
    if entity_of(state, claim.claimant).blacklisted is not None:
        raise Refused(f"claimant {claim.claimant} is blacklisted", reason="HOLDER_BLACKLISTED")
    lines = cap_lines(state, policy, programme, claim.claimant, ctx.time)
    caps = caps_mod.book(state)
    outcome = caps.decide(wanted, lines, ctx.time, unbound="requested")
    # mutate
    caps.sweep(ctx.time)
    caps.charge(claim.charge_id, "grant", lines, outcome.amount)
    step = Step(
        ctx.index, ctx.time, "approve", "bureau", note, outcome.amount, wanted, outcome.bound_by
    )
    found.put(replace(claim, decision=step))
    return {
        "claim": claim.id,
        "decision": "approve",
        "status": "approved",
        "requested_fen": wanted,
        "approved_fen": outcome.amount,
        "bound_by": outcome.bound_by,
        "policy_version": policy.version,
    }


def decide_body(
    *, claim: str, decision: str, policy: Policy, amount_fen: int | None = None, note: str = ""
) -> dict[str, Any]:
    body: dict[str, Any] = {"claim": claim, "decision": decision, "policy_version": policy.version}
    if amount_fen is not None:
        body["amount_fen"] = amount_fen
    if note:
        body["note"] = note
    return body


# --- reimbursement.pay ----------------------------------------------------------------------


def apply_pay(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(["claim", "amount_fen"])
    claim = claim_of(state, r.ident("claim"))
    amount = r.fen("amount_fen")
    if claim.paid_index is not None:
        raise Conflict(
            f"reimbursement {claim.id} was already paid at entry {claim.paid_index}",
            reason="ALREADY_PAID",
        )
    if claim.status != "approved":
        raise Refused(f"reimbursement {claim.id} is {claim.status}", reason="NOT_APPROVED")
    if amount != claim.approved_fen:
        raise Refused(
            f"amount {format_fen(amount)} is not the approved {format_fen(claim.approved_fen)}",
            reason="AMOUNT_NOT_APPROVED",
            details={"field": "body.amount_fen", "approved_fen": claim.approved_fen},
        )
    book(state).put(replace(claim, paid_index=ctx.index))
    return {"claim": claim.id, "payee": claim.claimant, "paid_fen": amount, "status": "paid"}


def pay_body(*, claim: str, amount_fen: int) -> dict[str, Any]:
    return {"claim": claim, "amount_fen": amount_fen}


# --- views ----------------------------------------------------------------------------------


def _step_view(step: Step | None) -> dict[str, Any] | None:
    if step is None:
        return None
    view: dict[str, Any] = {
        "index": step.index,
        "at": format_time(step.at),
        "outcome": step.outcome,
        "by": step.by,
        "note": step.note,
    }
    if step.by == "bureau" and step.outcome == "approve":
        view |= {
            "requested_fen": step.requested_fen,
            "approved_fen": step.amount_fen,
            "bound_by": step.bound_by,
        }
    return view


def claim_view(state: LedgerState, claim_id: str) -> dict[str, Any]:
    c = claim_of(state, claim_id)
    return {
        "claim": c.id,
        "round": c.round,
        "programme": c.programme,
        "claimant": c.claimant,
        "district": c.district,
        "status": c.status,
        "provider": {"name": c.provider.name, "uscc": c.provider.uscc, "centre": c.provider.centre},
        "period": {"from": c.first_day.isoformat(), "to": c.last_day.isoformat()},
        "amount_paid_fen": c.amount_paid_fen,
        "base_fen": c.base_fen,
        "invoices": [
            {"number": i.number, "issuer": i.issuer, "amount_fen": i.amount_fen, "sha256": i.sha256}
            for i in c.invoices
        ],
        "evidence": dict(c.evidence),
        "related_parties": list(c.related_parties),
        "index": c.index,
        "at": format_time(c.at),
        "policy_version": c.policy_version,
        "review": _step_view(c.review),
        "decision": _step_view(c.decision),
        "approved_fen": c.approved_fen,
        "paid_index": c.paid_index,
    }
