"""Applications (申报): submission in the window, district review, the city's decision.

* ``application.submit`` (service, on behalf of the applicant): refused outside the online
  submission window (二 of the notice: 2023-08-18 00:00 to 2023-08-27 24:00, Asia/Shanghai)
  with the window in the message; carries the programme's inputs, the SHA-256 of each
  required material (申报材料) and the applicant's attestations; eligibility (申报条件) is
  checked where the inputs or the ledger allow it and must be attested where they do not.
* ``application.review`` (service, for a reviewer of the applicant's 区县): an opinion
  (approve / reject) and a note, before the review deadline (三、(二): 2023-08-30 24:00).
* ``application.decide`` (issuer): approve with an amount, at most the programme's
  entitlement for the application's inputs (:meth:`ledger.policy.Programme.entitlement`),
  or reject. Approval needs a district opinion that approves.

Each records the policy version it was made under.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from immutables import Map

from ledger.entities import entity_of
from ledger.entry import Entry
from ledger.errors import Conflict, Denied, InvalidInput, NotFound, Refused
from ledger.money import format_fen
from ledger.policy import Condition, Policy, Programme, current_policy
from ledger.reader import Reader, body_reader
from ledger.state import Context, LedgerState, Result
from ledger.timeutil import format_time, local_text

OPINIONS = ("approve", "reject")


@dataclass(frozen=True)
class Review:
    index: int
    at: datetime
    district: str
    reviewer: str
    opinion: str
    note: str


@dataclass(frozen=True)
class Decision:
    index: int
    at: datetime
    decision: str
    amount_fen: int
    entitlement_fen: int
    note: str
    policy_version: str


@dataclass(frozen=True)
class Application:
    id: str
    round: str
    programme: str
    applicant: str
    district: str
    inputs: dict[str, Any]
    materials: dict[str, str]
    attestations: dict[str, bool]
    index: int
    at: datetime
    policy_version: str
    review: Review | None = None
    decision: Decision | None = None
    voucher: str | None = None  # the voucher issued on it
    grant: str | None = None  # the grant paid on it

    @property
    def status(self) -> str:
        if self.decision is not None:
            return "approved" if self.decision.decision == "approve" else "rejected"
        if self.review is not None:
            return "reviewed"
        return "submitted"

    @property
    def approved_fen(self) -> int:
        if self.decision is None or self.decision.decision != "approve":
            return 0
        return self.decision.amount_fen


@dataclass
class ApplicationBook:
    applications: Map[str, Application] = field(default_factory=Map)
    erased: Map[str, int] = field(default_factory=Map)  # id -> the erase entry's index

    def put(self, application: Application) -> None:
        self.applications = self.applications.set(application.id, application)

    def forget(self, application_id: str, erased_by: int) -> None:
        """Drop an erased application, remembering only that it was (``ledger.erasure``)."""
        if application_id in self.applications:
            self.applications = self.applications.delete(application_id)
        self.erased = self.erased.set(application_id, erased_by)


def book(state: LedgerState) -> ApplicationBook:
    part: ApplicationBook = state.part("applications", ApplicationBook)
    return part


def application_of(state: LedgerState, application_id: str) -> Application:
    applications: ApplicationBook = state.read("applications", ApplicationBook)
    found = applications.applications.get(application_id)
    if found is None:
        if application_id in applications.erased:
            raise NotFound(
                f"application {application_id!r} was erased by entry "
                f"{applications.erased[application_id]}: its personal data is deleted",
                reason="APPLICATION_ERASED",
            )
        raise NotFound(f"no application {application_id!r}", reason="UNKNOWN_APPLICATION")
    return found


def _check_policy_version(policy: Policy, stated: str) -> None:
    if stated != policy.version:
        raise Refused(
            f"the body was made under policy version {stated}, but the version in force for "
            f"round {policy.round} is {policy.version}; rebuild it",
            reason="POLICY_VERSION_MISMATCH",
            details={"stated": stated, "current": policy.version},
        )


# --- submit ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitBody:
    application: str
    round: str
    programme: str
    applicant: str
    inputs: Mapping[str, Any]
    materials: Mapping[str, str]
    attestations: Mapping[str, bool]
    policy_version: str

    @classmethod
    def read(cls, r: Reader) -> SubmitBody:
        r.obj(
            [
                "application",
                "round",
                "programme",
                "applicant",
                "inputs",
                "materials",
                "attestations",
                "policy_version",
            ]
        )
        materials = {}
        for mid, mr in r.members("materials").items():
            if (
                not isinstance(mr.value, str)
                or len(mr.value) != 64
                or not all(c in "0123456789abcdef" for c in mr.value)
            ):
                raise mr.fail("must be the document's SHA-256, 64 lower-case hex digits")
            materials[mid] = mr.value
        attestations = {}
        for cid, ar in r.members("attestations").items():
            if not isinstance(ar.value, bool):
                raise ar.fail("must be true or false")
            attestations[cid] = ar.value
        inputs = r.child("inputs")
        inputs.obj([], list(inputs.value) if isinstance(inputs.value, dict) else [])
        return cls(
            application=r.ident("application"),
            round=r.ident("round"),
            programme=r.ident("programme"),
            applicant=r.uscc("applicant"),
            inputs=dict(inputs.value),
            materials=materials,
            attestations=attestations,
            policy_version=r.sha256("policy_version"),
        )

    def to_body(self) -> dict[str, Any]:
        return {
            "application": self.application,
            "round": self.round,
            "programme": self.programme,
            "applicant": self.applicant,
            "inputs": dict(self.inputs),
            "materials": dict(self.materials),
            "attestations": dict(self.attestations),
            "policy_version": self.policy_version,
        }


def read_inputs(programme: Programme, inputs: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The programme's inputs, typed and range-checked; unknown or missing ones refused."""
    r = Reader(dict(inputs), path)
    r.obj(
        [n for n, s in programme.inputs.items() if s.required],
        [n for n, s in programme.inputs.items() if not s.required],
    )
    out = {name: spec.read(r) for name, spec in programme.inputs.items() if r.has(name)}
    start, end = out.get("project_start"), out.get("project_end")
    if isinstance(start, str) and isinstance(end, str) and end < start:
        raise r.fail(f"project_end {end} is before project_start {start}")
    return out


def check_materials(programme: Programme, materials: Mapping[str, str]) -> None:
    known = {m.id: m for m in programme.materials}
    for mid in materials:
        if mid not in known:
            raise InvalidInput(
                f"material {mid!r} is not on the list of {programme.label}; "
                f"items are {sorted(known)}",
                reason="UNKNOWN_MATERIAL",
            )
    missing = [m for m in programme.materials if m.required and m.id not in materials]
    if missing:
        listing = "; ".join(f"({m.id}) {m.text}" for m in missing)
        raise InvalidInput(
            f"{programme.section} 申报材料 missing: {listing}",
            reason="MATERIALS_MISSING",
            details={"missing": ",".join(m.id for m in missing)},
        )


def _not_eligible(programme: Programme, condition: Condition, why: str) -> Refused:
    return Refused(
        f"not eligible for {programme.label}: {condition.cite} {condition.text} — {why}",
        reason="NOT_ELIGIBLE",
        details={"condition": condition.id, "cite": condition.cite, "why": why},
    )


def check_eligibility(
    state: LedgerState,
    policy: Policy,
    programme: Programme,
    applicant: str,
    inputs: Mapping[str, Any],
    attestations: Mapping[str, bool],
    now: datetime,
) -> list[str]:
    """Check every condition; return the ids of those checked against data, in order.

    Raises Refused(NOT_ELIGIBLE) naming the first condition that fails or that needs an
    attestation the applicant did not give.
    """
    known = {c.id for c in programme.conditions}
    for cid in attestations:
        if cid not in known:
            raise InvalidInput(
                f"attestation {cid!r} is not a condition of {programme.label}; "
                f"conditions are {sorted(known)}",
                reason="UNKNOWN_CONDITION",
            )
    checked = []
    for condition in programme.conditions:
        check = condition.check
        if check is not None:
            if check.builtin == "clean_record":
                entity = entity_of(state, applicant)
                if entity.blacklisted is not None:
                    raise _not_eligible(
                        programme,
                        condition,
                        "the applicant is blacklisted since "
                        f"{local_text(entity.blacklisted.since)}",
                    )
                record = entity.bad_record_within(now, policy.clean_record_years)
                if record is not None:
                    raise _not_eligible(
                        programme,
                        condition,
                        f"a {record.kind} record dated {record.date.isoformat()} is within "
                        f"{policy.clean_record_years} years",
                    )
            elif check.builtin == "activity_window":
                window = policy.window("project_activity")
                lo, hi = (date.fromisoformat(str(inputs[n])) for n in check.inputs)
                assert window.start is not None and window.end is not None
                from ledger.timeutil import shanghai_end, shanghai_start

                if shanghai_start(lo) < window.start or shanghai_end(hi) > window.end:
                    raise _not_eligible(
                        programme,
                        condition,
                        f"the project runs {lo} to {hi}, not inside {window.describe()}",
                    )
            else:
                assert check.input is not None
                actual = inputs.get(check.input)
                if not check.compare(actual):
                    raise _not_eligible(
                        programme,
                        condition,
                        f"{check.input} is {actual!r}; required {check.describe()}",
                    )
            checked.append(condition.id)
        if condition.attested and attestations.get(condition.id) is not True:
            raise _not_eligible(
                programme, condition, "the applicant has not attested this condition"
            )
    return checked


def apply_submit(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    body = SubmitBody.read(body_reader(entry))
    policy = current_policy(state, body.round)
    programme = policy.programme(body.programme)
    _check_policy_version(policy, body.policy_version)
    if programme.kind == "reimbursement":
        raise Refused(
            f"{programme.label} is post-hoc: claim reimbursement (reimbursement.submit) after "
            "paying, no application first (docs/reimbursement.md)",
            reason="NOT_POST_HOC_APPLICATION",
        )
    window = policy.window("online_submission")
    if not window.contains(ctx.time):
        raise Refused(
            f"online submission is open {window.describe()}; this submission is at "
            f"{local_text(ctx.time)} (Asia/Shanghai)",
            reason="OUTSIDE_SUBMISSION_WINDOW",
            details={"from": window.start_text, "to": window.end_text, "at": format_time(ctx.time)},
        )
    apps = book(state).applications
    if body.application in apps:
        raise Conflict(
            f"application {body.application} already exists (entry {apps[body.application].index})",
            reason="APPLICATION_EXISTS",
        )
    entity = entity_of(state, body.applicant)
    inputs = read_inputs(programme, body.inputs, f"{entry.kind}: body.inputs")
    check_materials(programme, body.materials)
    checked = check_eligibility(
        state, policy, programme, body.applicant, inputs, body.attestations, ctx.time
    )
    # mutate
    book(state).put(Application(
        id=body.application,
        round=body.round,
        programme=body.programme,
        applicant=body.applicant,
        district=entity.district,
        inputs=inputs,
        materials=dict(body.materials),
        attestations=dict(body.attestations),
        index=ctx.index,
        at=ctx.time,
        policy_version=policy.version,
    ))  # fmt: skip
    return {
        "application": body.application,
        "district": entity.district,
        "checked": checked,
        "attested": sorted(c for c, v in body.attestations.items() if v),
        "entitlement_fen": programme.entitlement(inputs),
        "policy_version": policy.version,
    }


def submit_body(
    *,
    application: str,
    programme: str,
    applicant: str,
    inputs: Mapping[str, Any],
    materials: Mapping[str, str],
    attestations: Mapping[str, bool],
    policy: Policy,
) -> dict[str, Any]:
    """Body of ``application.submit``; validates inputs and materials against ``policy``."""
    body = SubmitBody(
        application,
        policy.round,
        programme,
        applicant,
        dict(inputs),
        dict(materials),
        dict(attestations),
        policy.version,
    ).to_body()
    parsed = SubmitBody.read(Reader(body, "body"))
    prog = policy.programme(programme)
    read_inputs(prog, parsed.inputs, "body.inputs")
    check_materials(prog, parsed.materials)
    return body


# --- review ------------------------------------------------------------------------------


def apply_review(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(["application", "district", "reviewer", "opinion"], ["note"])
    app = application_of(state, r.ident("application"))
    district, reviewer = r.text("district", max_len=50), r.text("reviewer", max_len=200)
    opinion, note = r.choice("opinion", OPINIONS), r.opt_text("note") or ""
    if district != app.district:
        raise Denied(
            f"application {app.id} is from {app.district}; "
            f"a reviewer of {district} may not review it",
            reason="WRONG_DISTRICT",
            details={"application_district": app.district, "reviewer_district": district},
        )
    policy = current_policy(state, app.round)
    deadline = policy.window("district_review")
    if not deadline.contains(ctx.time):
        raise Refused(
            f"district opinions are due by {(deadline.end_text or '').replace('T', ' ')} "
            f"(Asia/Shanghai); it is {local_text(ctx.time)}",
            reason="REVIEW_DEADLINE_PASSED",
            details={"deadline": deadline.end_text, "at": format_time(ctx.time)},
        )
    if app.review is not None:
        raise Conflict(
            f"application {app.id} was already reviewed at entry {app.review.index}",
            reason="ALREADY_REVIEWED",
        )
    # mutate
    review = Review(ctx.index, ctx.time, district, reviewer, opinion, note)
    book(state).put(replace(app, review=review))
    return {"application": app.id, "opinion": opinion}


def review_body(
    *, application: str, district: str, reviewer: str, opinion: str, note: str = ""
) -> dict[str, Any]:
    """Body of ``application.review``."""
    body: dict[str, Any] = {
        "application": application,
        "district": district,
        "reviewer": reviewer,
        "opinion": opinion,
    }
    if note:
        body["note"] = note
    r = Reader(body, "body").obj(["application", "district", "reviewer", "opinion"], ["note"])
    r.ident("application")
    r.choice("opinion", OPINIONS)
    return body


# --- decide ------------------------------------------------------------------------------


def apply_decide(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(
        ["application", "decision", "policy_version"], ["amount_fen", "note"]
    )
    app = application_of(state, r.ident("application"))
    decision = r.choice("decision", OPINIONS)
    note = r.opt_text("note") or ""
    stated_version = r.sha256("policy_version")
    amount = r.fen("amount_fen") if decision == "approve" else 0
    if decision == "reject" and r.has("amount_fen"):
        raise r.fail("a rejection has no amount", name="amount_fen")
    if app.decision is not None:
        raise Conflict(
            f"application {app.id} was already decided at entry {app.decision.index}",
            reason="ALREADY_DECIDED",
        )
    policy = current_policy(state, app.round)
    _check_policy_version(policy, stated_version)
    programme = policy.programme(app.programme)
    entitlement = programme.entitlement(app.inputs)
    if decision == "approve":
        if app.review is None:
            raise Refused(
                f"application {app.id} has no district opinion yet", reason="NOT_REVIEWED"
            )
        if app.review.opinion != "approve":
            raise Refused(
                f"the {app.district} reviewer rejected application {app.id}: {app.review.note}",
                reason="DISTRICT_REJECTED",
            )
        if amount <= 0:
            raise InvalidInput("an approval needs an amount above 0 fen", reason="INVALID_AMOUNT")
        if amount > entitlement:
            raise Refused(
                f"approved amount {format_fen(amount)} exceeds the entitlement "
                f"{format_fen(entitlement)} of {programme.label} for this application",
                reason="AMOUNT_EXCEEDS_ENTITLEMENT",
                details={"amount_fen": amount, "entitlement_fen": entitlement},
            )
        entity = entity_of(state, app.applicant)
        if entity.blacklisted is not None:
            raise Refused(f"applicant {app.applicant} is blacklisted", reason="HOLDER_BLACKLISTED")
        calc = programme.calculator
        if calc is not None and calc.kind == "rank_tiers":
            rank = app.inputs[calc.rank_input]
            for other in book(state).applications.values():
                if (
                    other.round == app.round
                    and other.programme == app.programme
                    and other.status == "approved"
                    and other.inputs.get(calc.rank_input) == rank
                ):
                    raise Conflict(
                        f"rank {rank} of {programme.label} is already approved for application "
                        f"{other.id}",
                        reason="RANK_TAKEN",
                    )
    # mutate
    decided = Decision(ctx.index, ctx.time, decision, amount, entitlement, note, policy.version)
    book(state).put(replace(app, decision=decided))
    return {
        "application": app.id,
        "decision": decision,
        "amount_fen": amount,
        "entitlement_fen": entitlement,
        "policy_version": policy.version,
    }


def decide_body(
    *,
    application: str,
    decision: str,
    policy: Policy,
    amount_fen: int | None = None,
    note: str = "",
) -> dict[str, Any]:
    """Body of ``application.decide``: ``decision`` approve (with ``amount_fen``) or reject."""
    body: dict[str, Any] = {
        "application": application,
        "decision": decision,
        "policy_version": policy.version,
    }
    if amount_fen is not None:
        body["amount_fen"] = amount_fen
    if note:
        body["note"] = note
    r = Reader(body, "body").obj(
        ["application", "decision", "policy_version"], ["amount_fen", "note"]
    )
    if r.choice("decision", OPINIONS) == "approve":
        r.fen("amount_fen")
    elif amount_fen is not None:
        raise InvalidInput("a rejection has no amount")
    return body


# --- read side ---------------------------------------------------------------------------


def application_view(state: LedgerState, application_id: str) -> dict[str, Any]:
    app = application_of(state, application_id)
    review, decision = app.review, app.decision
    return {
        "application": app.id,
        "round": app.round,
        "programme": app.programme,
        "applicant": app.applicant,
        "district": app.district,
        "status": app.status,
        "inputs": dict(app.inputs),
        "materials": dict(app.materials),
        "attestations": dict(app.attestations),
        "index": app.index,
        "submitted_at": format_time(app.at),
        "policy_version": app.policy_version,
        "review": None
        if review is None
        else {
            "index": review.index,
            "at": format_time(review.at),
            "reviewer": review.reviewer,
            "opinion": review.opinion,
            "note": review.note,
        },
        "decision": None
        if decision is None
        else {
            "index": decision.index,
            "at": format_time(decision.at),
            "decision": decision.decision,
            "amount_fen": decision.amount_fen,
            "entitlement_fen": decision.entitlement_fen,
            "note": decision.note,
            "policy_version": decision.policy_version,
        },
        "voucher": app.voucher,
        "grant": app.grant,
    }


def applications_of(state: LedgerState, uscc: str) -> list[str]:
    """The entity's applications, in log order."""
    found = [a for a in book(state).applications.values() if a.applicant == uscc]
    return [a.id for a in sorted(found, key=lambda a: a.index)]


def applications_in_district(state: LedgerState, district: str) -> list[str]:
    """What a district reviewer sees: the applications from its own 区县, in log order."""
    found = [a for a in book(state).applications.values() if a.district == district]
    return [a.id for a in sorted(found, key=lambda a: a.index)]
