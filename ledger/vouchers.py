"""Vouchers (算力券): issued on an approved application, bound to the holder, signed.

``voucher.issue`` (issuer) body::

    {"voucher": id, "application": id, "round": ..., "programme": ..., "holder": USCC,
     "face_value_fen": int, "rate_bp": int,
     "usage_window": {"start": RFC 3339, "end": RFC 3339},     # usage must lie inside
     "valid": {"from": RFC 3339, "until": RFC 3339},           # claims accepted inside
     "periods": null | {"kind": "voucher_year"|"calendar_year", "count": int|null, "cap_fen": int},
     "centres": [centre ids], "issuer_key": key id, "log_index": int,
     "policy_version": hex, "credential": compact JWS}

The credential (:mod:`ledger.credential`) is signed by ``issuer_key`` over the body without
``credential``; the fold verifies it with that key as registered in the log, checks that
the key signed the entry and that ``log_index`` is the entry's own index. The holder is the
application's applicant and never changes (vouchers are not transferable).

Status: ``active`` → ``suspended`` ⇄ ``active``; ``active``/``suspended`` → ``revoked`` or
``expired`` (terminal). ``voucher.suspend`` / ``voucher.reinstate`` / ``voucher.revoke`` /
``voucher.expire`` (issuer or service), body ``{"voucher": id, "reason": text}``.
Blacklisting the holder suspends every active voucher (``ledger.corrections``); a claim
after ``valid.until`` is refused as expired whether or not ``voucher.expire`` was written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from immutables import Map

from ledger import applications, providers
from ledger import caps as caps_mod
from ledger.applications import application_of
from ledger.caps import CapLine, lines_for, voucher_year
from ledger.credential import (
    IAT_SKEW_SECONDS,
    numeric_date,
    registered_claims,
    sign_voucher,
    verify_voucher,
)
from ledger.entities import entity_of
from ledger.entry import Entry
from ledger.errors import Conflict, InvalidInput, NotFound, Refused, VerificationError
from ledger.keys import Signer
from ledger.money import format_fen, is_int
from ledger.policy import (
    PERIOD_KINDS,
    Policy,
    Programme,
    current_policy,
    require_rate,
    scheme_terms,
)
from ledger.reader import Reader, body_reader
from ledger.seq import Seq
from ledger.state import Context, LedgerState, Result
from ledger.timeutil import (
    SHANGHAI,
    add_months,
    add_years,
    format_time,
    from_micros,
    local_text,
    parse_ledger_time,
)

STATUSES = ("active", "suspended", "revoked", "expired")
ISSUE_FIELDS = (
    "voucher",
    "application",
    "round",
    "programme",
    "holder",
    "face_value_fen",
    "rate_bp",
    "usage_window",
    "valid",
    "periods",
    "centres",
    "issuer_key",
    "log_index",
    "policy_version",
    "credential",
)


@dataclass(frozen=True)
class Periods:
    kind: str
    count: int | None
    cap_fen: int

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "cap_fen": self.cap_fen}


@dataclass(frozen=True)
class Voucher:
    id: str
    application: str
    round: str
    programme: str
    holder: str
    face_value_fen: int
    rate_bp: int
    usage_start: datetime
    usage_end: datetime
    valid_from: datetime
    valid_until: datetime
    periods: Periods | None
    centres: tuple[str, ...]
    issuer_key: str
    log_index: int
    policy_version: str
    credential: str
    status: str = "active"
    suspended_by_blacklist: bool = False
    history: tuple[Mapping[str, Any], ...] = ()

    def status_at(self, now: datetime) -> str:
        if self.status == "active" and now >= self.valid_until:
            return "expired"
        return self.status


@dataclass
class VoucherBook:
    vouchers: Map[str, Voucher] = field(default_factory=Map)
    by_holder: Map[str, Seq[str]] = field(default_factory=Map)
    last_bound_by: Map[str, str] = field(default_factory=Map)  # the cap that bound the last claim

    def put(self, voucher: Voucher) -> None:
        self.vouchers = self.vouchers.set(voucher.id, voucher)


def book(state: LedgerState) -> VoucherBook:
    part: VoucherBook = state.part("vouchers", VoucherBook)
    return part


def voucher_of(state: LedgerState, voucher_id: str) -> Voucher:
    found = state.read("vouchers", VoucherBook).vouchers.get(voucher_id)
    if found is None:
        raise NotFound(
            f"no voucher {voucher_id!r}", reason="UNKNOWN_VOUCHER", details={"voucher": voucher_id}
        )
    return found


def check_usable(state: LedgerState, voucher: Voucher, now: datetime) -> None:
    """Refuse unless ``voucher`` may be redeemed at ``now``: the claim-path status checks."""
    if voucher.status == "revoked":
        raise Refused(f"voucher {voucher.id} is revoked", reason="VOUCHER_REVOKED")
    if voucher.status == "suspended":
        cause = " (its holder is blacklisted)" if voucher.suspended_by_blacklist else ""
        raise Refused(f"voucher {voucher.id} is suspended{cause}", reason="VOUCHER_SUSPENDED")
    if entity_of(state, voucher.holder).blacklisted is not None:
        raise Refused(
            f"voucher {voucher.id}'s holder {voucher.holder} is blacklisted",
            reason="VOUCHER_SUSPENDED",
        )
    if voucher.status == "expired" or now >= voucher.valid_until:
        raise Refused(
            f"voucher {voucher.id} expired at {local_text(voucher.valid_until)} (Asia/Shanghai)",
            reason="VOUCHER_EXPIRED",
            details={"valid_until": format_time(voucher.valid_until)},
        )
    if now < voucher.valid_from:
        raise Refused(
            f"voucher {voucher.id} is valid from {local_text(voucher.valid_from)} (Asia/Shanghai)",
            reason="VOUCHER_NOT_YET_VALID",
            details={"valid_from": format_time(voucher.valid_from)},
        )


def budget_year(moment: datetime) -> int:
    """The budget year of a payment: its Asia/Shanghai calendar year."""
    return budget_year_and_month(moment)[0]


def budget_year_and_month(moment: datetime) -> tuple[int, int]:
    """The budget year of a payment and its month in it (1..12): Asia/Shanghai's."""
    local = moment.astimezone(SHANGHAI)
    return local.year, local.month


def cap_lines(
    state: LedgerState, voucher: Voucher, usage_start: datetime, now: datetime
) -> tuple[tuple[CapLine, ...], Policy]:
    """Every cap a payment on ``voucher`` for usage starting at ``usage_start``, paid at
    ``now``, counts against, under the round's current policy."""
    policy = current_policy(state, voucher.round)
    programme = policy.programme(voucher.programme)
    app = application_of(state, voucher.application)
    period: tuple[caps_mod.Key, int] | None = None
    if voucher.periods is not None:
        if voucher.periods.kind == "voucher_year":
            n = voucher_year(voucher.usage_start, usage_start)
            over = voucher.periods.count is not None and not 1 <= n <= voucher.periods.count
            period = ((voucher.id, n), 0 if over else voucher.periods.cap_fen)
        else:
            year = budget_year(usage_start)  # the usage start's Asia/Shanghai calendar year
            n = year - budget_year(voucher.usage_start) + 1
            over = voucher.periods.count is not None and not 1 <= n <= voucher.periods.count
            period = (
                (voucher.round, voucher.programme, voucher.holder, year),
                0 if over else voucher.periods.cap_fen,
            )
    pool = policy.pool_for(programme.id)
    lines = lines_for(
        round_id=voucher.round,
        programme=voucher.programme,
        holder=voucher.holder,
        budget_year=budget_year(now),
        voucher=(voucher.id, voucher.face_value_fen),
        period=period,
        entity_cap=None
        if programme.entity_cap is None
        else programme.entity_cap.for_inputs(app.inputs),
        entity_round_cap=policy.entity_yearly_cap_fen,
        programme_pool=None if programme.pool is None else programme.pool.amount_fen,
        voucher_pool=None if pool is None else (pool.id, pool.amount_fen),
        scheme=scheme_terms(state, policy, programme.id),
    )
    return lines, policy


# --- issue -------------------------------------------------------------------------------


def _read_issue(r: Reader) -> dict[str, Any]:
    """Validate the shape of a voucher.issue body; return it as typed values."""
    r.obj(ISSUE_FIELDS)
    uw = r.child("usage_window").obj(["start", "end"])
    va = r.child("valid").obj(["from", "until"])
    periods = None
    if r.has("periods"):
        pr = r.child("periods").obj(["kind", "count", "cap_fen"])
        count = pr.opt_integer("count", minimum=1, maximum=50)
        periods = Periods(pr.choice("kind", PERIOD_KINDS), count, pr.fen("cap_fen"))
    centres = []
    for cr in r.items("centres", nonempty=True):
        if not isinstance(cr.value, str) or not cr.value:
            raise cr.fail("must be a centre id")
        centres.append(cr.value)
    if len(set(centres)) != len(centres):
        raise r.fail("lists a centre twice", name="centres")
    return {
        "voucher": r.ident("voucher"),
        "application": r.ident("application"),
        "round": r.ident("round"),
        "programme": r.ident("programme"),
        "holder": r.uscc("holder"),
        "face_value_fen": r.fen("face_value_fen"),
        "rate_bp": r.bp("rate_bp"),
        "usage_start": uw.time("start"),
        "usage_end": uw.time("end"),
        "valid_from": va.time("from"),
        "valid_until": va.time("until"),
        "periods": periods,
        "centres": tuple(centres),
        "issuer_key": r.text("issuer_key"),
        "log_index": r.integer("log_index"),
        "policy_version": r.sha256("policy_version"),
        "credential": r.text("credential", max_len=16000),
    }


def _refuse(message: str, reason: str, **details: object) -> Refused:
    return Refused(message, reason=reason, details=details)


def apply_issue(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    v = _read_issue(body_reader(entry))
    vouchers = book(state)
    if v["voucher"] in vouchers.vouchers:
        raise Conflict(f"voucher {v['voucher']} already exists", reason="VOUCHER_EXISTS")
    if v["log_index"] != ctx.index:
        raise InvalidInput(
            f"voucher.issue: body.log_index is {v['log_index']} but this entry is {ctx.index}",
            reason="LOG_INDEX_MISMATCH",
            details={"stated": v["log_index"], "index": ctx.index},
        )
    app = application_of(state, v["application"])
    if app.status != "approved":
        raise _refuse(f"application {app.id} is {app.status}, not approved", "NOT_APPROVED")
    if app.voucher is not None:
        raise Conflict(
            f"application {app.id} already has voucher {app.voucher}", reason="ALREADY_ISSUED"
        )
    if (v["round"], v["programme"], v["holder"]) != (app.round, app.programme, app.applicant):
        raise InvalidInput(
            "voucher.issue: round, programme and holder must be the application's "
            f"({app.round}, {app.programme}, {app.applicant})",
            reason="APPLICATION_MISMATCH",
        )
    policy, _, rate = _check_terms(v, app.approved_fen, current_policy(state, app.round))
    holder = entity_of(state, v["holder"])
    if holder.blacklisted is not None:
        raise _refuse(f"holder {holder.uscc} is blacklisted", "HOLDER_BLACKLISTED")
    _check_credential(state, entry, ctx, v)
    face = v["face_value_fen"]
    # mutate
    voucher = Voucher(
        id=v["voucher"],
        application=app.id,
        round=app.round,
        programme=app.programme,
        holder=app.applicant,
        face_value_fen=face,
        rate_bp=rate,
        usage_start=v["usage_start"],
        usage_end=v["usage_end"],
        valid_from=v["valid_from"],
        valid_until=v["valid_until"],
        periods=v["periods"],
        centres=v["centres"],
        issuer_key=v["issuer_key"],
        log_index=ctx.index,
        policy_version=policy.version,
        credential=v["credential"],
    )
    voucher = replace(
        voucher, history=({"index": ctx.index, "action": "issue", "status": "active"},)
    )
    vouchers.put(voucher)
    held = vouchers.by_holder.get(voucher.holder, Seq())
    vouchers.by_holder = vouchers.by_holder.set(voucher.holder, held.append(voucher.id))
    applications.book(state).put(replace(app, voucher=voucher.id))
    return {"voucher": voucher.id, "holder": voucher.holder, "face_value_fen": face}


def _check_terms(
    v: dict[str, Any], approved_fen: int, policy: Policy
) -> tuple[Policy, Programme, int]:
    """The voucher's terms against the policy in force: version, rate, amount, window,
    periods, centres."""
    if v["policy_version"] != policy.version:
        raise _refuse(
            f"the voucher names policy version {v['policy_version']}; in force is {policy.version}",
            "POLICY_VERSION_MISMATCH",
            stated=v["policy_version"],
            current=policy.version,
        )
    programme = policy.programme(v["programme"])
    if programme.kind != "voucher":
        raise _refuse(
            f"{programme.label} pays one-time grants (grant.pay), not vouchers",
            "NOT_A_VOUCHER_PROGRAMME",
        )
    rate = require_rate(programme)
    if v["rate_bp"] != rate:
        raise InvalidInput(
            f"voucher rate {v['rate_bp']} bp is not the programme's {rate} bp",
            reason="RATE_MISMATCH",
        )
    face = v["face_value_fen"]
    if face > approved_fen:
        raise _refuse(
            f"face value {format_fen(face)} exceeds the approved {format_fen(approved_fen)}",
            "AMOUNT_EXCEEDS_APPROVAL",
            face_value_fen=face,
            approved_fen=approved_fen,
        )
    if policy.voucher_minimum_fen is not None and face < policy.voucher_minimum_fen:
        raise _refuse(
            f"face value {format_fen(face)} is below the round's minimum voucher "
            f"{format_fen(policy.voucher_minimum_fen)}",
            "BELOW_MINIMUM_VOUCHER",
        )
    _check_window(v, programme, policy)
    cap = programme.period_cap
    expected = None if cap is None else Periods(cap.kind, cap.count, cap.amount_fen)
    if v["periods"] != expected:
        shown = None if expected is None else expected.to_json()
        raise InvalidInput(
            f"voucher periods must be {shown} for {programme.label}", reason="PERIODS_MISMATCH"
        )
    for centre in v["centres"]:
        if not providers.accepts(programme.centres, centre):
            raise InvalidInput(
                f"centre {centre!r} is not accepted by {programme.label} "
                f"(accepted: {providers.describe(programme.centres)})",
                reason="CENTRE_NOT_ACCEPTED",
            )
    return policy, programme, rate


def _check_credential(state: LedgerState, entry: Entry, ctx: Context, v: dict[str, Any]) -> None:
    """The credential verifies with the issuing key (which signed this entry) and its
    payload is exactly the body without ``credential``."""
    if v["issuer_key"] not in {s.key for s in entry.sigs}:
        raise InvalidInput(
            f"issuer_key {v['issuer_key']} did not sign this entry", reason="CREDENTIAL_MISMATCH"
        )
    key = state.registry.get(v["issuer_key"])
    if "issuer" not in key.roles or not key.active_at(ctx.index):
        raise InvalidInput(
            f"key {v['issuer_key']} is not an active issuer key", reason="CREDENTIAL_MISMATCH"
        )
    try:
        signed = verify_voucher(v["credential"], key.verifier)
    except VerificationError as exc:
        raise InvalidInput(
            f"voucher credential does not verify: {exc.message}", reason="CREDENTIAL_MISMATCH"
        ) from None
    body = {k: entry.body[k] for k in ISSUE_FIELDS if k != "credential"}
    iat = signed.get("iat")
    entry_time = numeric_date(parse_ledger_time(entry.at))
    if not isinstance(iat, int) or not is_int(iat) or abs(iat - entry_time) > IAT_SKEW_SECONDS:
        raise InvalidInput(
            f"the voucher credential's iat {iat!r} is not within {IAT_SKEW_SECONDS} s of the "
            f"entry's time {entry.at}",
            reason="CREDENTIAL_MISMATCH",
        )
    origin = state.registry.origin or ""
    expected = body | registered_claims(body, origin, from_micros(iat * 1_000_000))
    if signed != expected:
        differs = sorted(k for k in set(signed) | set(expected) if signed.get(k) != expected.get(k))
        raise InvalidInput(
            "the voucher credential's payload is not the voucher.issue body and its registered "
            f"claims (differs in {', '.join(differs)})",
            reason="CREDENTIAL_MISMATCH",
            details={"differs": ",".join(differs)},
        )


def _check_window(v: dict[str, Any], programme: Programme, policy: Policy) -> None:
    rule_ = programme.usage_window
    assert rule_ is not None
    start, end = v["usage_start"], v["usage_end"]
    if end <= start:
        raise InvalidInput("usage_window.end must be after its start", reason="WINDOW_NOT_ALLOWED")
    if (
        start < rule_.earliest
        or (rule_.latest is not None and end > rule_.latest)
        or (rule_.max_years is not None and end > add_years(start, rule_.max_years))
    ):
        limit = (
            f"to {rule_.latest_text}" if rule_.latest_text else f"at most {rule_.max_years} years"
        )
        raise InvalidInput(
            f"usage window {local_text(start)} to {local_text(end)} is outside what "
            f"{programme.label} allows: from {rule_.earliest_text}, {limit} (Asia/Shanghai)",
            reason="WINDOW_NOT_ALLOWED",
        )
    if v["valid_until"] <= v["valid_from"]:
        raise InvalidInput("valid.until must be after valid.from", reason="WINDOW_NOT_ALLOWED")
    months = policy.validity_months_after_usage
    if months is not None and v["valid_until"] > add_months(end, months):
        raise InvalidInput(
            f"valid.until may be at most {months} months after the usage window ends "
            f"({local_text(add_months(end, months))})",
            reason="WINDOW_NOT_ALLOWED",
        )


def issue_body(
    state: LedgerState,
    *,
    application: str,
    voucher: str,
    issuer: Signer,
    log_index: int,
    face_value_fen: int | None = None,
    usage_start: datetime | None = None,
    usage_end: datetime | None = None,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    centres: Sequence[str] | None = None,
    issued_at: datetime | None = None,
) -> dict[str, Any]:
    """Body of ``voucher.issue`` with its credential signed by ``issuer`` at ``issued_at``
    (its ``iat``; default the ledger's time: it must be within 5 minutes of the entry's).

    Defaults come from the approved application and the policy in force: the approved
    amount as face value, the programme's rate, its widest usage window (for a per-year
    programme: ``max_years`` from the earliest start), valid from the usage start until
    the policy's validity after the usage end, every accepted centre. ``log_index`` must be
    the index the entry will get (the service knows it when it appends).
    """
    app = application_of(state, application)
    policy = current_policy(state, app.round)
    programme = policy.programme(app.programme)
    rate = require_rate(programme)
    window = programme.usage_window
    if window is None:
        raise Refused(f"{programme.label} has no vouchers", reason="NOT_A_VOUCHER_PROGRAMME")
    start = usage_start or window.earliest
    if usage_end is not None:
        end = usage_end
    elif window.latest is not None and window.max_years is not None:
        end = min(window.latest, add_years(start, window.max_years))
    elif window.latest is not None:
        end = window.latest
    else:
        assert window.max_years is not None
        end = add_years(start, window.max_years)
    months = policy.validity_months_after_usage
    until = valid_until or add_months(end, months if months is not None else 12)
    period = programme.period_cap
    payload: dict[str, Any] = {
        "voucher": voucher,
        "application": app.id,
        "round": app.round,
        "programme": app.programme,
        "holder": app.applicant,
        "face_value_fen": app.approved_fen if face_value_fen is None else face_value_fen,
        "rate_bp": rate,
        "usage_window": {"start": format_time(start), "end": format_time(end)},
        "valid": {"from": format_time(valid_from or start), "until": format_time(until)},
        "periods": None
        if period is None
        else {
            "kind": period.kind,
            "count": period.count,
            "cap_fen": period.amount_fen,
        },
        "centres": list(centres if centres is not None else programme.centres),
        "issuer_key": issuer.key_id,
        "log_index": log_index,
        "policy_version": policy.version,
    }
    claims = registered_claims(
        payload, state.registry.origin or "", issued_at or state.time or start
    )
    body = {**payload, "credential": sign_voucher(payload | claims, issuer)}
    _read_issue(Reader(body, "body"))
    return body


# --- status changes ----------------------------------------------------------------------

_TRANSITIONS = {
    "voucher.suspend": ({"active"}, "suspended"),
    "voucher.reinstate": ({"suspended"}, "active"),
    "voucher.revoke": ({"active", "suspended"}, "revoked"),
    "voucher.expire": ({"active", "suspended"}, "expired"),
}


def apply_status_change(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    r = body_reader(entry).obj(["voucher", "reason"], ["evidence_sha256"])
    voucher = voucher_of(state, r.ident("voucher"))
    reason = r.text("reason", max_len=1000)
    evidence = r.sha256("evidence_sha256") if r.has("evidence_sha256") else None
    allowed, target = _TRANSITIONS[entry.kind]
    if voucher.status not in allowed:
        raise Conflict(
            f"voucher {voucher.id} is {voucher.status}; {entry.kind} needs "
            f"{' or '.join(sorted(allowed))}",
            reason="VOUCHER_STATUS",
            details={"status": voucher.status},
        )
    if (
        entry.kind == "voucher.reinstate"
        and entity_of(state, voucher.holder).blacklisted is not None
    ):
        raise Refused(
            f"voucher {voucher.id}'s holder is blacklisted; unblacklist the holder first",
            reason="HOLDER_BLACKLISTED",
        )
    if entry.kind == "voucher.expire" and ctx.time < voucher.valid_until:
        raise Refused(
            f"voucher {voucher.id} is valid until {local_text(voucher.valid_until)}; "
            "revoke it to end it early",
            reason="NOT_YET_EXPIRED",
        )
    closed: list[str] = []
    if target in ("revoked", "expired"):
        from ledger.claims import close_holds_of

        closed = close_holds_of(state, voucher.id, ctx, "voided")  # mutates last
    book(state).put(set_status(voucher, target, ctx.index, entry.kind, reason, evidence))
    return {"voucher": voucher.id, "status": target, "holds_released": closed}


def set_status(
    voucher: Voucher,
    status: str,
    index: int,
    action: str,
    reason: str,
    evidence: str | None,
    *,
    by_blacklist: bool = False,
) -> Voucher:
    """The voucher in ``status`` after ``action`` (a new record; put it in the book)."""
    record: dict[str, Any] = {"index": index, "action": action, "status": status, "reason": reason}
    if evidence is not None:
        record["evidence_sha256"] = evidence
    return replace(
        voucher,
        status=status,
        suspended_by_blacklist=by_blacklist and status == "suspended",
        history=(*voucher.history, record),
    )


def status_body(voucher: str, reason: str, evidence_sha256: str | None = None) -> dict[str, Any]:
    """Body of ``voucher.suspend`` / ``reinstate`` / ``revoke`` / ``expire``."""
    body: dict[str, Any] = {"voucher": voucher, "reason": reason}
    if evidence_sha256 is not None:
        body["evidence_sha256"] = evidence_sha256
    r = Reader(body, "body").obj(["voucher", "reason"], ["evidence_sha256"])
    r.ident("voucher")
    r.text("reason", max_len=1000)
    if evidence_sha256 is not None:
        r.sha256("evidence_sha256")
    return body


# --- read side ---------------------------------------------------------------------------


def voucher_view(state: LedgerState, voucher_id: str, at: datetime | None = None) -> dict[str, Any]:
    """Balance, status, every remaining cap by name, and the cap that bound the last claim.

    ``caps`` gives what remains under each cap for a claim paid at ``at`` (default: the
    ledger's time) for usage starting then, open holds counted (expired ones not).
    """
    voucher = voucher_of(state, voucher_id)
    now = at or state.time or voucher.usage_start
    book_ = caps_mod.book(state)
    adjust = book_.adjustments(now)
    usage_at = min(max(now, voucher.usage_start), voucher.usage_end)
    lines, policy = cap_lines(state, voucher, usage_at, now)
    vkey: caps_mod.Key = ("voucher", voucher.id)
    used = book_.used.get(vkey, 0)
    held = book_.held.get(vkey, 0) - adjust.get(vkey, 0)
    # Never below 0: a shared counter can be past this voucher's own limit (the entity's
    # provincial 150 万 after its national project took more), which means "nothing left".
    remaining = {
        line.name: max(0, rem)
        for line in lines
        if (rem := book_.remaining(line, adjust)) is not None
    }
    return {
        "voucher": voucher.id,
        "application": voucher.application,
        "round": voucher.round,
        "programme": voucher.programme,
        "holder": voucher.holder,
        "status": voucher.status_at(now),
        "face_value_fen": voucher.face_value_fen,
        "used_fen": used,
        "held_fen": held,
        "balance_fen": voucher.face_value_fen - used - held,
        "rate_bp": voucher.rate_bp,
        "usage_window": {
            "start": format_time(voucher.usage_start),
            "end": format_time(voucher.usage_end),
        },
        "valid": {
            "from": format_time(voucher.valid_from),
            "until": format_time(voucher.valid_until),
        },
        "periods": None if voucher.periods is None else voucher.periods.to_json(),
        "centres": list(voucher.centres),
        "caps": remaining,
        "last_bound_by": book(state).last_bound_by.get(voucher.id),
        "issuer_key": voucher.issuer_key,
        "log_index": voucher.log_index,
        "policy_version": voucher.policy_version,
        "current_policy_version": policy.version,
        "credential": voucher.credential,
        "history": [dict(h) for h in voucher.history],
    }


def entity_vouchers(
    state: LedgerState, uscc: str, at: datetime | None = None
) -> list[dict[str, Any]]:
    """Every voucher the entity holds, as :func:`voucher_view`."""
    return [voucher_view(state, vid, at) for vid in book(state).by_holder.get(uscc, [])]


def vouchers_of(state: LedgerState, uscc: str) -> Iterable[Voucher]:
    books = book(state)
    return [books.vouchers[vid] for vid in books.by_holder.get(uscc, [])]
