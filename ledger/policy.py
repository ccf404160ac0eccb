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
from ledger.reader import Reader, body_reader, kind_of, sha256_hex
from ledger.state import Context, LedgerState, Result
from ledger.usage import RESOURCE_UNITS

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
        r = Reader(obj, "$", "INVALID_POLICY").obj(_POLICY_MEMBERS, _POLICY_OPTIONAL)
        if r.child("format").value != "suanli-policy/v1":
            raise r.fail("must be 'suanli-policy/v1'", name="format")
        if r.child("timezone").value != "Asia/Shanghai":
            raise r.fail(
                "must be 'Asia/Shanghai' (the notice's dates are Beijing time)", name="timezone"
            )
        wr = r.child("windows").obj(WINDOWS)
        windows = {
            name: Window.read(wr.child(name), need_start=name != "district_review")
            for name in WINDOWS
        }
        model = (
            r.choice("settlement_model", SETTLEMENT_MODELS)
            if r.has("settlement_model")
            else "point_of_sale"
        )
        centres = _read_centres(r, nonempty=model == "point_of_sale")
        programmes: dict[str, Programme] = {}
        for pr in r.items("programmes", nonempty=True):
            programme = _read_programme(pr, centres)
            if programme.id in programmes:
                raise pr.fail(f"programme {programme.id} is listed twice")
            _check_model(pr, model, programme)
            programmes[programme.id] = programme
        pools = _read_pools(r, programmes)
        validity = r.child("voucher_validity").obj(["months_after_usage_end"], ["note"])
        settlement = r.child("settlement").obj(["cadence"], ["note"])
        cards: list[RateCardSpec] = []
        for cr in r.items("rate_cards"):
            card = _read_rate_card(cr)
            if card.centre not in centres:
                raise cr.fail(f"unknown centre {card.centre!r}", name="centre")
            cards.append(card)
        canonical = canonical_bytes(obj)
        return cls(
            round=r.ident("round"),
            notice=r.text("notice"),
            title=r.text("title"),
            windows=windows,
            clean_record_years=r.integer("clean_record_years", minimum=0, maximum=50),
            programmes=programmes,
            voucher_pools=pools,
            entity_yearly_cap_fen=r.opt_fen("entity_yearly_cap_fen"),
            voucher_minimum_fen=r.opt_fen("voucher_minimum_fen"),
            validity_months_after_usage=validity.opt_integer(
                "months_after_usage_end", minimum=0, maximum=120
            ),
            settlement_cadence=settlement.choice("cadence", ("monthly", "quarterly", "yearly")),
            centres=centres,
            rate_cards=tuple(cards),
            raw=json.loads(canonical),
            version=sha256_hex(canonical),
            settlement_model=model,
        )

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
            obj = json.loads(text, parse_float=_no_float)
        except ValueError as exc:
            raise InvalidInput(
                f"policy file is not valid JSON: {exc}", reason="INVALID_POLICY"
            ) from None
        return cls.from_json(obj)


WINDOWS = ("applications", "online_submission", "district_review", "project_activity")
_POLICY_MEMBERS = (
    "format", "round", "notice", "title", "timezone", "windows", "clean_record_years",
    "programmes", "voucher_pools", "entity_yearly_cap_fen", "voucher_minimum_fen",
    "voucher_validity", "settlement", "centres", "rate_cards",
)  # fmt: skip
_POLICY_OPTIONAL = ("issued", "issuers", "basis", "notes", "url", "settlement_model")
_PROGRAMME_MEMBERS = (
    "id", "number", "section", "title", "kind", "rate_bp", "caps", "centres", "inputs",
    "conditions", "materials",
)  # fmt: skip
_PROGRAMME_OPTIONAL = (
    "summary", "rate_note", "cost_input", "calculator", "voucher_pool", "usage_window", "note",
    "reimbursement",
)  # fmt: skip
_CALCULATOR_OPTIONAL = (
    "tiers", "rank_input", "racks_input", "cost_input", "share_of_average_bp",
    "per_rack_max_fen", "amount_input", "rate_bp", "cite",
)  # fmt: skip


def _no_float(text: str) -> Any:
    raise ValueError(f"float {text} in a policy file: use integers (fen, basis points)")


def policy_version(obj: Any) -> str:
    """SHA-256 hex of the policy's RFC 8785 canonical JSON."""
    return sha256_hex(canonical_bytes(obj))


def _check_model(pr: Reader, model: str, programme: Programme) -> None:
    """Voucher programmes belong to point-of-sale rounds, reimbursement programmes to
    post-hoc rounds; one-time grants to either."""
    if programme.kind == "voucher" and model != "point_of_sale":
        raise pr.fail("a voucher programme needs settlement_model point_of_sale", name="kind")
    if programme.kind == "reimbursement" and model != "post_hoc":
        raise pr.fail("a reimbursement programme needs settlement_model post_hoc", name="kind")


def _read_centres(r: Reader, *, nonempty: bool = True) -> dict[str, Centre]:
    centres: dict[str, Centre] = {}
    for cr in r.items("centres", nonempty=nonempty):
        cr.obj(["id", "name", "kind"], ["note"])
        centre = Centre(cr.ident("id"), cr.text("name"), cr.choice("kind", CENTRE_KINDS))
        if centre.id in centres:
            raise cr.fail(f"centre {centre.id} is listed twice")
        centres[centre.id] = centre
    return centres


def _read_pools(r: Reader, programmes: Mapping[str, Programme]) -> dict[str, VoucherPool]:
    pools: dict[str, VoucherPool] = {}
    for vr in r.items("voucher_pools"):
        vr.obj(
            ["id", "name", "period", "amount_fen", "programmes", "stated_in_notice"],
            ["note", "cite"],
        )
        vr.choice("period", ("calendar_year",))
        pool = VoucherPool(
            vr.ident("id"),
            vr.text("name"),
            vr.fen("amount_fen"),
            tuple(_str_item(p) for p in vr.items("programmes", nonempty=True)),
            vr.boolean("stated_in_notice"),
            vr.opt_text("note"),
        )
        for i, pid in enumerate(pool.programmes):
            if pid not in programmes or programmes[pid].kind != "voucher":
                raise vr.fail(f"{pid!r} is not a voucher programme", name=f"programmes[{i}]")
            if programmes[pid].voucher_pool != pool.id:
                raise vr.fail(f"programme {pid} does not name this pool", name=f"programmes[{i}]")
        pools[pool.id] = pool
    for programme in programmes.values():
        name = programme.voucher_pool
        if name is not None and (name not in pools or programme.id not in pools[name].programmes):
            raise r.fail(f"programme {programme.id} names pool {name!r}, which does not list it")
    return pools


def _read_programme(pr: Reader, centres: Mapping[str, Centre]) -> Programme:
    pr.obj(_PROGRAMME_MEMBERS, _PROGRAMME_OPTIONAL)
    kind = pr.choice("kind", ("voucher", "grant", "reimbursement"))
    inputs = _read_inputs(pr)
    rate_bp = pr.bp("rate_bp") if pr.has("rate_bp") else None
    rate_note = pr.opt_text("rate_note")
    cost_input = pr.opt_text("cost_input")
    calculator = None
    if kind == "voucher":
        if cost_input is None or cost_input not in inputs or inputs[cost_input].type != "fen":
            raise pr.fail(
                "a voucher programme names its compute-cost input (type fen)", name="cost_input"
            )
        if rate_bp is None and rate_note is None:
            raise pr.fail("an open rate (null) needs a rate_note saying why", name="rate_bp")
        if pr.has("calculator"):
            raise pr.fail("a voucher programme has a rate, not a calculator", name="calculator")
    elif kind == "grant":
        calculator = _read_calculator(pr.child("calculator"), inputs)
    elif rate_bp is None and rate_note is None:
        raise pr.fail("an open rate (null) needs a rate_note saying why", name="rate_bp")
    caps = pr.child("caps").obj([], ["entity", "period", "pool"])
    period_cap = _read_period_cap(caps.opt_child("period"), kind)
    pool = None
    if (pp := caps.opt_child("pool")) is not None:
        pp.obj(["period", "amount_fen"], ["cite"])
        pp.choice("period", ("calendar_year",))
        pool = PoolCap(pp.fen("amount_fen"), pp.opt_text("cite"))
    programme_centres = tuple(_str_item(c) for c in pr.items("centres"))
    for i, centre in enumerate(programme_centres):
        if centre not in centres:
            raise pr.fail(f"unknown centre {centre!r}", name=f"centres[{i}]")
    usage_window = None
    if kind in ("voucher", "reimbursement"):
        usage_window = _read_usage_window(pr.child("usage_window"))
    if kind == "voucher" and not programme_centres:
        raise pr.fail("a voucher programme accepts at least one centre", name="centres")
    entity_cap = _read_entity_cap(caps.opt_child("entity"), inputs)
    reimbursement = _read_reimbursement(pr, kind, entity_cap)
    return Programme(
        id=pr.ident("id"),
        number=pr.text("number", max_len=4),
        section=pr.text("section"),
        title=pr.text("title"),
        kind=kind,
        rate_bp=rate_bp,
        rate_note=rate_note,
        cost_input=cost_input,
        calculator=calculator,
        entity_cap=entity_cap,
        period_cap=period_cap,
        pool=pool,
        voucher_pool=pr.opt_text("voucher_pool"),
        centres=programme_centres,
        usage_window=usage_window,
        inputs=inputs,
        conditions=_read_conditions(pr, inputs),
        materials=_read_materials(pr),
        reimbursement=reimbursement,
    )


def _read_reimbursement(
    pr: Reader, kind: str, entity_cap: EntityCap | None
) -> ReimbursementRule | None:
    """A reimbursement programme's rule (and its entity cap is one amount); None for others."""
    if kind != "reimbursement":
        if pr.has("reimbursement"):
            raise pr.fail("only a reimbursement programme has this rule", name="reimbursement")
        return None
    if entity_cap is not None and entity_cap.amount_fen is None:
        raise pr.fail("a reimbursement programme's entity cap is one amount_fen", name="caps")
    rr = pr.child("reimbursement")
    rr.obj(["evidence", "related_party_check"], ["cite", "note"])
    evidence: list[str] = []
    for i, er in enumerate(rr.items("evidence", nonempty=True)):
        item = _str_item(er)
        if item not in EVIDENCE or item in evidence:
            raise rr.fail(f"must be distinct items of {list(EVIDENCE)}", name=f"evidence[{i}]")
        evidence.append(item)
    if "invoice" not in evidence:
        raise rr.fail("a reimbursement claim always carries its invoices", name="evidence")
    return ReimbursementRule(
        tuple(evidence), rr.boolean("related_party_check"), rr.opt_text("cite")
    )


def _read_inputs(pr: Reader) -> dict[str, InputSpec]:
    inputs: dict[str, InputSpec] = {}
    for name, ir in pr.members("inputs").items():
        ir.obj(["type", "text"], ["required", "min", "max", "values", "unit"])
        itype = ir.choice("type", INPUT_TYPES)
        values = tuple(_str_item(v) for v in ir.items("values")) if ir.has("values") else ()
        if itype == "enum" and not values:
            raise ir.fail("an enum input needs values")
        inputs[name] = InputSpec(
            name,
            itype,
            ir.text("text"),
            ir.boolean("required") if ir.has("required") else True,
            ir.opt_integer("min"),
            ir.opt_integer("max"),
            values,
        )
    return inputs


def _read_entity_cap(er: Reader | None, inputs: Mapping[str, InputSpec]) -> EntityCap | None:
    if er is None:
        return None
    er.obj([], ["amount_fen", "by_input", "amounts_fen", "cite"])
    if er.has("amount_fen") == er.has("by_input"):
        raise er.fail("give either amount_fen or by_input with amounts_fen")
    by_input = er.opt_text("by_input")
    amounts: dict[str, int] = {}
    if by_input is not None:
        spec = inputs.get(by_input)
        if spec is None or spec.type != "enum":
            raise er.fail(f"{by_input!r} is not an enum input of the programme", name="by_input")
        amounts = {k: _fen_item(v) for k, v in er.members("amounts_fen").items()}
        if set(amounts) != set(spec.values):
            raise er.fail(
                f"needs exactly one amount for each of {list(spec.values)}", name="amounts_fen"
            )
    return EntityCap(er.opt_fen("amount_fen"), by_input, amounts, er.opt_text("cite"))


def _read_period_cap(pc: Reader | None, kind: str) -> PeriodCap | None:
    if pc is None:
        return None
    pc.obj(["kind", "amount_fen"], ["count", "cite"])
    if kind != "voucher":
        raise pc.fail("a per-period cap applies to voucher programmes")
    return PeriodCap(
        pc.choice("kind", PERIOD_KINDS),
        pc.opt_integer("count", minimum=1, maximum=50),
        pc.fen("amount_fen"),
        pc.opt_text("cite"),
    )


def _read_usage_window(ur: Reader) -> UsageWindowRule:
    ur.obj(["from"], ["to", "max_years", "note"])
    lo, hi = ur.text("from", max_len=16), ur.opt_text("to", max_len=16)
    earliest = ur.local("from", lo, end=False)
    latest = ur.local("to", hi, end=True) if hi else None
    max_years = ur.opt_integer("max_years", minimum=1, maximum=50)
    if latest is None and max_years is None:
        raise ur.fail("needs a 'to' date or max_years")
    return UsageWindowRule(earliest, latest, max_years, lo, hi)


def _read_conditions(pr: Reader, inputs: Mapping[str, InputSpec]) -> tuple[Condition, ...]:
    conditions: list[Condition] = []
    for cr in pr.items("conditions", nonempty=True):
        cr.obj(["id", "text", "cite"], ["attested", "check"])
        check = None
        if (ck := cr.opt_child("check")) is not None:
            check = _read_check(ck, inputs)
        attested = cr.boolean("attested") if cr.has("attested") else False
        if check is None and not attested:
            raise cr.fail("a condition is checked, attested, or both")
        condition = Condition(cr.ident("id"), cr.text("text"), cr.text("cite"), attested, check)
        if any(c.id == condition.id for c in conditions):
            raise cr.fail(f"condition {condition.id} is listed twice")
        conditions.append(condition)
    return tuple(conditions)


def _read_materials(pr: Reader) -> tuple[Material, ...]:
    materials: list[Material] = []
    for mr in pr.items("materials", nonempty=True):
        mr.obj(["id", "text", "required"])
        material = Material(mr.ident("id"), mr.text("text"), mr.boolean("required"))
        if any(m.id == material.id for m in materials):
            raise mr.fail(f"material {material.id} is listed twice")
        materials.append(material)
    return tuple(materials)


def _str_item(r: Reader) -> str:
    if not isinstance(r.value, str) or not r.value:
        raise r.fail(f"must be a non-empty string, got {kind_of(r.value)}")
    return r.value


def _fen_item(r: Reader) -> int:
    if not is_int(r.value) or not 0 <= r.value <= MAX_SAFE_INT:
        raise r.fail(f"must be an integer number of fen, got {r.value!r}")
    return int(r.value)


def _read_check(ck: Reader, inputs: Mapping[str, InputSpec]) -> Check:
    ck.obj([], ["builtin", "input", "op", "value", "inputs"])
    if ck.has("builtin"):
        builtin = ck.choice("builtin", BUILTINS)
        names = tuple(_str_item(i) for i in ck.items("inputs")) if ck.has("inputs") else ()
        dates = [n for n in names if n in inputs and inputs[n].type == "date"]
        if builtin == "activity_window" and (len(names) != 2 or len(dates) != 2):
            raise ck.fail("activity_window needs two date inputs (start, end)", name="inputs")
        return Check(builtin=builtin, inputs=names)
    name = ck.text("input")
    if name not in inputs:
        raise ck.fail(f"{name!r} is not an input of the programme", name="input")
    op = ck.choice("op", CHECK_OPS)
    value = ck.child("value").value
    if op == "in":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ck.fail("'in' needs a list of strings", name="value")
        value = tuple(value)
    elif op != "==" and not is_int(value):
        raise ck.fail(f"{op!r} needs an integer", name="value")
    return Check(input=name, op=op, value=value)


def _read_calculator(cr: Reader, inputs: Mapping[str, InputSpec]) -> Calculator:
    cr.obj(["kind"], _CALCULATOR_OPTIONAL)
    kind = cr.choice("kind", CALCULATORS)

    def need(name: str) -> str:
        value = cr.text(name)
        if value not in inputs or inputs[value].type not in ("int", "fen"):
            raise cr.fail(f"{value!r} is not an integer input of the programme", name=name)
        return value

    if kind == "rank_tiers":
        tiers: list[Tier] = []
        for tr in cr.items("tiers", nonempty=True):
            tr.obj(["ranks", "amount_fen"])
            ranks = tr.items("ranks")
            if len(ranks) != 2 or not all(is_int(x.value) and x.value >= 1 for x in ranks):
                raise tr.fail("ranks is [first, last], integers >= 1", name="ranks")
            first, last = int(ranks[0].value), int(ranks[1].value)
            if last < first or (tiers and first != tiers[-1].last + 1):
                raise tr.fail("tiers must be contiguous and in order", name="ranks")
            tiers.append(Tier(first, last, tr.fen("amount_fen")))
        return Calculator(kind, tiers=tuple(tiers), rank_input=need("rank_input"))
    if kind == "per_rack":
        return Calculator(
            kind,
            racks_input=need("racks_input"),
            cost_input=need("cost_input"),
            share_of_average_bp=cr.bp("share_of_average_bp"),
            per_rack_max_fen=cr.fen("per_rack_max_fen"),
        )
    return Calculator(kind, amount_input=need("amount_input"), rate_bp=cr.bp("rate_bp"))


def _read_rate_card(cr: Reader) -> RateCardSpec:
    cr.obj(["centre", "version", "effective_from", "prices"], ["development_default", "note"])
    when = cr.text("effective_from", max_len=16)
    effective = cr.local("effective_from", when, end=False)
    return RateCardSpec(
        centre=cr.ident("centre"),
        version=cr.integer("version", minimum=1),
        effective_from=effective,
        prices=read_prices(cr),
        development_default=cr.boolean("development_default")
        if cr.has("development_default")
        else False,
        note=cr.opt_text("note"),
    )


def read_prices(r: Reader) -> dict[str, Price]:
    """A rate card's ``prices``: ``{resource: {price_fen, per_units}}``, known resources only."""
    prices: dict[str, Price] = {}
    members = r.members("prices")
    if not members:
        raise r.fail("prices must not be empty", name="prices")
    for resource, pr in members.items():
        if resource not in RESOURCE_UNITS:
            raise pr.fail(
                f"unknown resource; known: {sorted(RESOURCE_UNITS)}", reason="UNKNOWN_RESOURCE"
            )
        pr.obj(["price_fen", "per_units"], ["unit", "note"])
        prices[resource] = Price(pr.fen("price_fen"), pr.integer("per_units", minimum=1))
    return prices


# --- the policy in the log ---------------------------------------------------------------


@dataclass
class PolicyBook:
    """Every published version, and the current one of each round."""

    versions: Map[str, Policy] = field(default_factory=Map)
    current: Map[str, str] = field(default_factory=Map)  # round -> version
    # version -> the index where it last came into force
    published_at: Map[str, int] = field(default_factory=Map)


def book(state: LedgerState) -> PolicyBook:
    part: PolicyBook = state.part("policy", PolicyBook)
    return part


def current_policy(state: LedgerState, round_id: str = DEFAULT_POLICY) -> Policy:
    """The round's policy in force; NotFound(POLICY_NOT_PUBLISHED) before any is published."""
    found = book(state)
    version = found.current.get(round_id)
    if version is None:
        raise NotFound(
            f"no policy has been published for round {round_id!r}", reason="POLICY_NOT_PUBLISHED"
        )
    return found.versions[version]


def policy_at(state: LedgerState, version: str) -> Policy:
    try:
        return book(state).versions[version]
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
    result: Result = {"round": policy.round, "policy_version": policy.version}
    if supersedes is not None:
        result["supersedes"] = supersedes
    return result


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
