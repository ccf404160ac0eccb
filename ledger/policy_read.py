"""Reading a policy file: every member of ``suanli-policy/v1`` checked and typed.

Split from ``ledger.policy`` (which keeps the typed parts and the policy's life in the log)
so that each stays a size one can read; ``Policy.from_json`` calls :func:`read_policy`.
An error names the JSON path of the member at fault.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ledger.canonical import MAX_SAFE_INT, canonical_bytes
from ledger.errors import InvalidInput
from ledger.money import is_int
from ledger.policy import (
    BUILTINS,
    CALCULATORS,
    CENTRE_KINDS,
    CHECK_OPS,
    EVIDENCE,
    INPUT_TYPES,
    PERIOD_KINDS,
    SETTLEMENT_MODELS,
    WINDOWS,
    Calculator,
    Centre,
    Check,
    Condition,
    EntityCap,
    InputSpec,
    Material,
    PeriodCap,
    Policy,
    PoolCap,
    Price,
    Programme,
    RateCardSpec,
    ReimbursementRule,
    SchemeCaps,
    Tier,
    UsageWindowRule,
    VoucherPool,
    Window,
    no_float,
)
from ledger.providers import ANY_REGISTERED, ProviderSpec
from ledger.reader import Reader, kind_of, sha256_hex
from ledger.usage import CENTRE_ID, RESOURCE_UNITS


def read_policy(obj: Any) -> Policy:
    """The policy ``obj`` states; InvalidInput(INVALID_POLICY) naming the path if malformed."""
    r = Reader(obj, "$", "INVALID_POLICY").obj(_POLICY_MEMBERS, _POLICY_OPTIONAL)
    if r.child("format").value != "suanli-policy/v1":
        raise r.fail("must be 'suanli-policy/v1'", name="format")
    if r.child("timezone").value != "Asia/Shanghai":
        raise r.fail(
            "must be 'Asia/Shanghai' (the notice's dates are Beijing time)", name="timezone"
        )
    wr = r.child("windows").obj(WINDOWS)
    windows = {
        name: Window.read(wr.child(name), need_start=name != "district_review") for name in WINDOWS
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
    return Policy(
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
        **_read_scheme(r, programmes),
    )


_POLICY_MEMBERS = (
    "format", "round", "notice", "title", "timezone", "windows", "clean_record_years",
    "programmes", "voucher_pools", "entity_yearly_cap_fen", "voucher_minimum_fen",
    "voucher_validity", "settlement", "centres", "rate_cards",
)  # fmt: skip
_POLICY_OPTIONAL = (
    "issued", "issuers", "basis", "notes", "url", "settlement_model", "scheme",
)  # fmt: skip
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


def _read_scheme(r: Reader, programmes: Mapping[str, Programme]) -> dict[str, Any]:
    """``scheme``: ``{id, name?, programmes?, caps?: {entity_yearly?: {amount_fen, note?},
    pool_yearly?: …}, note?}`` — the scheme of rounds this one belongs to, the programmes
    that count on its caps (by default every voucher and reimbursement programme: the
    compute subsidies) and the caps it states for the whole scheme."""
    sr = r.opt_child("scheme")
    if sr is None:
        return {}
    sr.obj(["id"], ["name", "programmes", "caps", "note", "cite"])
    counted = [p.id for p in programmes.values() if p.kind in ("voucher", "reimbursement")]
    if sr.has("programmes"):
        counted = []
        for i, pr in enumerate(sr.items("programmes", nonempty=True)):
            pid = _str_item(pr)
            if pid not in programmes or programmes[pid].kind == "grant" or pid in counted:
                raise sr.fail(
                    f"{pid!r} is not a voucher or reimbursement programme of the round "
                    "(or is listed twice)",
                    name=f"programmes[{i}]",
                )
            counted.append(pid)
    figures: dict[str, int | None] = {"entity_yearly": None, "pool_yearly": None}
    if (cr := sr.opt_child("caps")) is not None:
        cr.obj([], ["entity_yearly", "pool_yearly", "note"])
        for name in figures:
            if (fr := cr.opt_child(name)) is not None:
                fr.obj(["amount_fen"], ["note", "cite", "development_default"])
                figures[name] = fr.fen("amount_fen")
    return {
        "scheme": sr.ident("id"),
        "scheme_caps": SchemeCaps(figures["entity_yearly"], figures["pool_yearly"]),
        "scheme_programmes": tuple(counted),
    }


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
    programme_centres = _read_accepted(pr, centres)
    for i, centre in enumerate(c for c in programme_centres if c != ANY_REGISTERED):
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


def _read_accepted(pr: Reader, centres: Mapping[str, Centre]) -> tuple[str, ...]:
    """A programme's ``centres``: a list of the round's centres (a whitelist), or the word
    ``any_registered`` (``ledger.providers``)."""
    if pr.child("centres").value == ANY_REGISTERED:
        return (ANY_REGISTERED,)
    return tuple(_str_item(c) for c in pr.items("centres"))


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


def read_provider(obj: Any) -> ProviderSpec:
    """A ``suanli-provider/v1`` document: ``{format, id, name, kind, rate_card: {version,
    effective_from, prices, development_default?, note?}, note?}``; InvalidInput
    (INVALID_PROVIDER) naming the path if malformed."""
    r = Reader(obj, "$", "INVALID_PROVIDER").obj(
        ["format", "id", "name", "kind", "rate_card"], ["note"]
    )
    if r.child("format").value != "suanli-provider/v1":
        raise r.fail("must be 'suanli-provider/v1'", name="format")
    centre_id = r.text("id", max_len=32, pattern=CENTRE_ID)
    centre = Centre(centre_id, r.text("name"), r.choice("kind", CENTRE_KINDS))
    card = r.child("rate_card")
    if not isinstance(card.value, dict) or "centre" in card.value:
        raise card.fail("must be an object without 'centre' (the provider's id is its centre)")
    with_centre = Reader({**card.value, "centre": centre.id}, card.path, "INVALID_PROVIDER")
    return ProviderSpec(centre, _read_rate_card(with_centre))


def load_provider(path: str | Path) -> ProviderSpec:
    """Read a ``suanli-provider/v1`` file (integers only, as a policy file)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"), parse_float=no_float)
    except ValueError as exc:
        raise InvalidInput(
            f"provider file is not valid JSON: {exc}", reason="INVALID_PROVIDER"
        ) from None
    return read_provider(obj)
