"""The round as data: a policy file, typed and validated, and its publication in the log.

A policy file (``ledger/policies/chengdu-2023-31.json`` for 成经信财〔2023〕31号) states a
round: its windows (Asia/Shanghai local times), its programmes (一)…(七) with their rates
or calculators, caps, pools, periods, usage windows, inputs, eligibility conditions and
required materials, the accepted centres, the pools and options that the notice leaves to
the city (a yearly 算力券 pool, a per-entity cross-programme cap, a minimum voucher, a
validity period, a settlement cadence), and development-default rate cards.

``Policy.from_json`` refuses anything malformed with an error that names the JSON path
(``$.programmes[3].caps.entity.amounts_fen.national: ...``). ``policy_version`` is the
SHA-256 (hex) of the policy's RFC 8785 canonical JSON: the same file always has the same
version, and any change, even of a note, is a new version.

``policy.publish`` (issuer) records a version in the log and makes it the round's current
policy; applications, decisions, vouchers and claims record the version they were decided
under. A figure the notice leaves open is ``null`` with a note, and what needs it is
refused with ``POLICY_FIGURE_OPEN`` until a later version sets it.

Fields are read with :class:`ledger.reader.Reader`, as in every entry body, so that a bad
field is reported the same way in a policy file and in an entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from immutables import Map

from ledger.canonical import MAX_SAFE_INT, canonical_bytes
from ledger.entry import Entry
from ledger.errors import Conflict, InvalidInput, NotFound, Refused
from ledger.money import BP_PER_UNIT, apply_rate, is_int
from ledger.reader import Reader, body_reader, sha256_hex
from ledger.state import Context, LedgerState, Result

DEFAULT_POLICY = "chengdu-2023-31"


# --- local times and windows -------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A half-open interval of time, [start, end), with the local texts it was written as."""

    start: datetime | None
    end: datetime | None
    start_text: str | None
    end_text: str | None
    cite: str | None = None

    def contains(self, moment: datetime) -> bool:
        return (self.start is None or moment >= self.start) and (
            self.end is None or moment < self.end
        )

    def describe(self) -> str:
        lo = (self.start_text or "the start").replace("T", " ")
        hi = (self.end_text or "no end").replace("T", " ")
        return f"from {lo} to {hi} (Asia/Shanghai)"

    def to_json(self) -> dict[str, str | None]:
        return {"from": self.start_text, "to": self.end_text}

    @classmethod
    def read(cls, r: Reader, *, need_start: bool = True) -> Window:
        r.obj(["to"] + (["from"] if need_start else []), ["cite", "from", "note"])
        lo = r.opt_text("from", max_len=16)
        hi = r.text("to", max_len=16)
        start = r.local("from", lo, end=False) if lo else None
        end = r.local("to", hi, end=True)
        if start is not None and start >= end:
            raise r.fail(f"starts at {lo} but ends at {hi}")
        return cls(start, end, lo, hi, r.opt_text("cite"))


# --- the policy's parts ------------------------------------------------------------------

INPUT_TYPES = ("fen", "int", "bp", "enum", "date", "bool", "text")
CHECK_OPS = ("<", "<=", ">", ">=", "==", "in")
BUILTINS = ("clean_record", "activity_window")
CALCULATORS = ("rank_tiers", "per_rack", "investment_share")
ENTITY_TYPES = ("enterprise", "university", "research_institute", "talent_team")
CENTRE_KINDS = ("supercomputing", "intelligent")
PERIOD_KINDS = ("calendar_year", "voucher_year")
# How a round pays (docs/reimbursement.md): deducted at the point of sale through vouchers
# the centres claim (model A), or reimbursed after the grantee has paid in full (model B).
SETTLEMENT_MODELS = ("point_of_sale", "post_hoc")
EVIDENCE = ("contract", "invoice", "payment")


@dataclass(frozen=True)
class InputSpec:
    """One figure an application states (``compute_cost_fen``, ``level``, ``pue_milli`` ...)."""

    name: str
    type: str
    text: str
    required: bool = True
    minimum: int | None = None
    maximum: int | None = None
    values: tuple[str, ...] = ()

    def read(self, r: Reader) -> Any:
        """Read this input from the application's ``inputs`` object."""
        if self.type in ("fen", "int", "bp"):
            hi = BP_PER_UNIT if self.type == "bp" else MAX_SAFE_INT
            lo = 0 if self.minimum is None else self.minimum
            value: Any = r.integer(
                self.name, minimum=lo, maximum=hi if self.maximum is None else self.maximum
            )
        elif self.type == "enum":
            value = r.choice(self.name, self.values)
        elif self.type == "date":
            value = r.day(self.name).isoformat()
        elif self.type == "bool":
            value = r.boolean(self.name)
        else:
            value = r.text(self.name, max_len=500)
        return value


@dataclass(frozen=True)
class Check:
    """What the ledger can check of a condition: a comparison of an input, or a builtin."""

    builtin: str | None = None
    input: str | None = None
    op: str | None = None
    value: Any = None
    inputs: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.builtin == "activity_window":
            return f"{' and '.join(self.inputs)} inside the project activity window"
        if self.builtin == "clean_record":
            return "no criminal, administrative-penalty or dishonesty record and not blacklisted"
        return f"{self.input} {self.op} {self.value}"

    def compare(self, actual: Any) -> bool:
        op, want = self.op, self.value
        if op == "in":
            return bool(actual in want)
        if op == "==":
            return bool(actual == want)
        if not is_int(actual):
            return False
        return bool(
            (op == "<" and actual < want)
            or (op == "<=" and actual <= want)
            or (op == ">" and actual > want)
            or (op == ">=" and actual >= want)
        )


@dataclass(frozen=True)
class Condition:
    """An eligibility condition (申报条件): checked, attested by the applicant, or both."""

    id: str
    text: str
    cite: str
    attested: bool
    check: Check | None


@dataclass(frozen=True)
class Material:
    """One item of the programme's 申报材料 list; ``required`` false for 其他补充材料."""

    id: str
    text: str
    required: bool


@dataclass(frozen=True)
class EntityCap:
    """The entity's cap in the programme: one amount, or one per value of an input."""

    amount_fen: int | None
    by_input: str | None
    amounts_fen: Mapping[str, int]
    cite: str | None

    def for_inputs(self, inputs: Mapping[str, Any]) -> int:
        if self.amount_fen is not None:
            return self.amount_fen
        assert self.by_input is not None
        return self.amounts_fen[str(inputs[self.by_input])]


@dataclass(frozen=True)
class PeriodCap:
    """A cap per period: ``voucher_year`` counts years from the voucher's usage start."""

    kind: str
    count: int | None
    amount_fen: int
    cite: str | None


@dataclass(frozen=True)
class PoolCap:
    """A programme's pool per budget year (the Asia/Shanghai calendar year of payment)."""

    amount_fen: int
    cite: str | None


@dataclass(frozen=True)
class Tier:
    first: int
    last: int
    amount_fen: int


@dataclass(frozen=True)
class Calculator:
    """How a one-time grant is computed from the application's inputs (see ledger.grants)."""

    kind: str
    tiers: tuple[Tier, ...] = ()
    rank_input: str = "rank"
    racks_input: str = "racks_in_use"
    cost_input: str = "avg_renovation_cost_per_rack_fen"
    share_of_average_bp: int = 0
    per_rack_max_fen: int = 0
    amount_input: str = "investment_fen"
    rate_bp: int = 0


@dataclass(frozen=True)
class UsageWindowRule:
    """Where a voucher's usage window may lie: from ``earliest``, to ``latest`` (if set),
    at most ``max_years`` long (if set)."""

    earliest: datetime
    latest: datetime | None
    max_years: int | None
    earliest_text: str
    latest_text: str | None


@dataclass(frozen=True)
class ReimbursementRule:
    """A post-hoc programme's rule: the evidence a claim must carry (``invoice`` always: the
    duplicate check keys on it) and whether related-party deals are refused."""

    evidence: tuple[str, ...]
    related_party_check: bool
    cite: str | None


@dataclass(frozen=True)
class Programme:
    id: str
    number: str  # 一 … 七
    section: str  # "二、(四)"
    title: str
    kind: str  # "voucher" (compute-cost subsidy, claimed by centres) or "grant" (one-time)
    rate_bp: int | None
    rate_note: str | None
    cost_input: str | None
    calculator: Calculator | None
    entity_cap: EntityCap | None
    period_cap: PeriodCap | None
    pool: PoolCap | None
    voucher_pool: str | None
    centres: tuple[str, ...]
    usage_window: UsageWindowRule | None
    inputs: Mapping[str, InputSpec]
    conditions: tuple[Condition, ...]
    materials: tuple[Material, ...]
    reimbursement: ReimbursementRule | None = None

    @property
    def label(self) -> str:
        return f"({self.number}) {self.title} [{self.id}]"

    def entitlement(self, inputs: Mapping[str, Any]) -> int:
        """The most a decision may approve for an application with ``inputs``.

        Voucher programmes: rate × stated compute cost (when the rate is set), within the
        entity cap and, for a per-period programme, the period cap times the number of
        periods (later years' costs are not known when applying). Grant programmes: the
        calculator (``ledger.grants``), within the entity cap.
        """
        limits: list[int] = []
        if self.kind == "grant":
            from ledger.grants import calculate

            limits.append(calculate(self, inputs))
        elif self.period_cap is not None and self.period_cap.count is not None:
            limits.append(self.period_cap.amount_fen * self.period_cap.count)
        elif self.rate_bp is not None and self.cost_input is not None:
            limits.append(apply_rate(int(inputs[self.cost_input]), self.rate_bp))
        elif self.cost_input is not None:
            limits.append(int(inputs[self.cost_input]))
        if self.entity_cap is not None:
            limits.append(self.entity_cap.for_inputs(inputs))
        return min(limits) if limits else 0


@dataclass(frozen=True)
class VoucherPool:
    """A yearly pool shared by voucher programmes (Chengdu's 算力券 pool)."""

    id: str
    name: str
    amount_fen: int
    programmes: tuple[str, ...]
    stated_in_notice: bool
    note: str | None


@dataclass(frozen=True)
class SchemeCaps:
    """The caps a scheme's rounds share (docs/policy.md, "Rounds and schemes"): the entity's
    cap per budget year over every round of the scheme, and the scheme's pool per budget
    year. None: not stated by this version (the figure in force stays what it was)."""

    entity_yearly_fen: int | None
    pool_yearly_fen: int | None


@dataclass(frozen=True)
class Centre:
    id: str
    name: str
    kind: str


@dataclass(frozen=True)
class Price:
    """``price_fen`` per ``per_units`` of the resource's smallest unit."""

    price_fen: int
    per_units: int

    def cost(self, quantity: int) -> int:
        """``floor(quantity × price_fen / per_units)`` (ledger.usage's pricing rule)."""
        return (quantity * self.price_fen) // self.per_units


@dataclass(frozen=True)
class RateCardSpec:
    centre: str
    version: int
    effective_from: datetime
    prices: Mapping[str, Price]
    development_default: bool
    note: str | None


@dataclass(frozen=True)
class Policy:
    round: str
    notice: str
    title: str
    windows: Mapping[str, Window]
    clean_record_years: int
    programmes: Mapping[str, Programme]
    voucher_pools: Mapping[str, VoucherPool]
    entity_yearly_cap_fen: int | None
    voucher_minimum_fen: int | None
    validity_months_after_usage: int | None
    settlement_cadence: str
    centres: Mapping[str, Centre]
    rate_cards: tuple[RateCardSpec, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    version: str = ""
    settlement_model: str = "point_of_sale"
    scheme: str | None = None  # the scheme of rounds this one belongs to (city 算力券 …)
    scheme_caps: SchemeCaps | None = None
    scheme_programmes: tuple[str, ...] = ()  # the programmes that count on the scheme's caps

    def programme(self, programme_id: str) -> Programme:
        try:
            return self.programmes[programme_id]
        except KeyError:
            raise NotFound(
                f"policy {self.round} has no programme {programme_id!r}; "
                f"known: {sorted(self.programmes)}",
                reason="UNKNOWN_PROGRAMME",
            ) from None

    def window(self, name: str) -> Window:
        return self.windows[name]

    def pool_for(self, programme_id: str) -> VoucherPool | None:
        for pool in self.voucher_pools.values():
            if programme_id in pool.programmes:
                return pool
        return None

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.raw))  # type: ignore[no-any-return]

    # --- loading ---------------------------------------------------------------------

    @classmethod
    def from_json(cls, obj: Any) -> Policy:
        """Read a policy document (``ledger.policy_read``), refusing anything malformed."""
        from ledger.policy_read import read_policy

        return read_policy(obj)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Policy:
        """Load a policy file (the packaged ``chengdu-2023-31`` when ``path`` is None)."""
        if path is None:
            text = (
                resources.files("ledger")
                .joinpath("policies", f"{DEFAULT_POLICY}.json")
                .read_text(encoding="utf-8")
            )
        else:
            text = Path(path).read_text(encoding="utf-8")
        try:
            obj = json.loads(text, parse_float=no_float)
        except ValueError as exc:
            raise InvalidInput(
                f"policy file is not valid JSON: {exc}", reason="INVALID_POLICY"
            ) from None
        return cls.from_json(obj)


WINDOWS = ("applications", "online_submission", "district_review", "project_activity")


def no_float(text: str) -> Any:
    raise ValueError(f"float {text} in a policy file: use integers (fen, basis points)")


def policy_version(obj: Any) -> str:
    """SHA-256 hex of the policy's RFC 8785 canonical JSON."""
    return sha256_hex(canonical_bytes(obj))


# --- the policy in the log ---------------------------------------------------------------


NO_SCHEMES: Map[str, SchemeCaps] = Map()


@dataclass
class PolicyBook:
    """Every published version, and the current one of each round."""

    versions: Map[str, Policy] = field(default_factory=Map)
    current: Map[str, str] = field(default_factory=Map)  # round -> version
    # version -> the index where it last came into force
    published_at: Map[str, int] = field(default_factory=Map)
    # scheme -> its caps in force: each figure as the latest version stating it set it. A
    # class-level default (a Map is immutable): a fold snapshot pickled before schemes
    # existed (ledger.store.snapshots) loads without the attribute and reads this one.
    schemes: Map[str, SchemeCaps] = NO_SCHEMES


def book(state: LedgerState) -> PolicyBook:
    part: PolicyBook = state.part("policy", PolicyBook)
    return part


def _read(state: LedgerState) -> PolicyBook:
    """The policy part, to read only (``LedgerState.read``)."""
    part: PolicyBook = state.read("policy", PolicyBook)
    return part


def current_policy(state: LedgerState, round_id: str = DEFAULT_POLICY) -> Policy:
    """The round's policy in force; NotFound(POLICY_NOT_PUBLISHED) before any is published."""
    found = _read(state)
    version = found.current.get(round_id)
    if version is None:
        raise NotFound(
            f"no policy has been published for round {round_id!r}", reason="POLICY_NOT_PUBLISHED"
        )
    return found.versions[version]


def policy_at(state: LedgerState, version: str) -> Policy:
    try:
        return _read(state).versions[version]
    except KeyError:
        raise NotFound(
            f"policy version {version} is not published", reason="POLICY_NOT_PUBLISHED"
        ) from None


def publish_body(
    policy: Policy | Mapping[str, Any], supersedes: str | None = None
) -> dict[str, Any]:
    """Body of ``policy.publish``: ``{policy, version}``, and ``supersedes`` (the version in
    force that this one replaces) when the publisher names it."""
    obj = policy.to_json() if isinstance(policy, Policy) else dict(policy)
    parsed = Policy.from_json(obj)
    body: dict[str, Any] = {"policy": parsed.to_json(), "version": parsed.version}
    if supersedes is not None:
        body["supersedes"] = supersedes
    return body


def apply_publish(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    """A new version comes into force. A version published before may come back into force
    only by naming the version it supersedes (which must be the one in force): so that a
    bad version can be undone by republishing an earlier one, and never by accident."""
    r = body_reader(entry).obj(["policy", "version"], ["supersedes"])
    policy = Policy.from_json(r.child("policy").value)
    stated = r.sha256("version")
    if stated != policy.version:
        raise InvalidInput(
            f"policy.publish: body.version is {stated} but the policy's SHA-256 is "
            f"{policy.version}",
            reason="POLICY_VERSION_MISMATCH",
            details={"stated": stated, "computed": policy.version},
        )
    found = book(state)
    supersedes = r.sha256("supersedes") if r.has("supersedes") else None
    in_force = found.current.get(policy.round)
    if supersedes is not None:
        _check_supersedes(policy, supersedes, in_force)
    elif policy.version in found.versions:
        raise Conflict(
            f"policy version {policy.version} was already published at entry "
            f"{found.published_at[policy.version]}; to bring it back into force, "
            f"publish it again naming the version it supersedes ({in_force})",
            reason="POLICY_EXISTS",
        )
    # mutate
    found.versions = found.versions.set(policy.version, policy)
    found.current = found.current.set(policy.round, policy.version)
    found.published_at = found.published_at.set(policy.version, ctx.index)
    if policy.scheme is not None:
        found.schemes = found.schemes.set(
            policy.scheme, _scheme_caps_after(found.schemes.get(policy.scheme), policy)
        )
    result: Result = {"round": policy.round, "policy_version": policy.version}
    if supersedes is not None:
        result["supersedes"] = supersedes
    return result


def _scheme_caps_after(before: SchemeCaps | None, policy: Policy) -> SchemeCaps:
    """The scheme's caps once ``policy`` is in force. One city-wide figure binds every round
    of the scheme at a time, so a version that states a figure sets it for all of them (a
    later notice revising the yearly cap revises it for the earlier rounds' claims too); a
    version that states none leaves the figure in force as it was."""
    stated = policy.scheme_caps or SchemeCaps(None, None)
    was = before or SchemeCaps(None, None)
    return SchemeCaps(
        stated.entity_yearly_fen if stated.entity_yearly_fen is not None else was.entity_yearly_fen,
        stated.pool_yearly_fen if stated.pool_yearly_fen is not None else was.pool_yearly_fen,
    )


def scheme_terms(
    state: LedgerState, policy: Policy, programme: str
) -> tuple[str, int | None, int | None] | None:
    """(scheme, entity yearly cap, yearly pool) in force for a payment in ``programme`` of
    ``policy``'s round, for ``ledger.caps.lines_for``; None when the programme counts on no
    scheme. A figure not (yet) stated is None: the payment is still counted, so that a
    figure stated later in the year finds the year's earlier payments on its counter."""
    if policy.scheme is None or programme not in policy.scheme_programmes:
        return None
    caps = _read(state).schemes.get(policy.scheme) or SchemeCaps(None, None)
    return (policy.scheme, caps.entity_yearly_fen, caps.pool_yearly_fen)


def _check_supersedes(policy: Policy, supersedes: str, in_force: str | None) -> None:
    """``supersedes`` must name the round's version in force, and not the new one."""
    if in_force is None or supersedes != in_force:
        raise Conflict(
            f"policy.publish: body.supersedes is {supersedes} but the version in force of "
            f"round {policy.round} is {in_force or 'none'}",
            reason="POLICY_SUPERSEDES_MISMATCH",
            details={"supersedes": supersedes, "in_force": in_force or ""},
        )
    if supersedes == policy.version:
        raise Conflict(
            f"policy.publish: version {policy.version} is already in force; it cannot "
            "supersede itself",
            reason="POLICY_EXISTS",
        )


def require_rate(programme: Programme) -> int:
    """The programme's rate, or Refused(POLICY_FIGURE_OPEN) while the policy leaves it open."""
    if programme.rate_bp is None:
        raise Refused(
            f"the rate of programme {programme.label} is open in this policy version "
            f"({programme.rate_note}); publish a policy version that sets it first",
            reason="POLICY_FIGURE_OPEN",
            details={"programme": programme.id, "figure": "rate_bp"},
        )
    return programme.rate_bp
