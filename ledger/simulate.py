"""What-if: run claims and grant requests through a policy without writing anything.

``simulate(lines, policy)`` builds an in-memory ledger (its own throw-away keys), publishes
the policy, registers its centres and rate cards, and then applies each JSON line with
the service's own use cases and the real rules of the fold (``ledger.fold.apply``), in a
``MemoryUnitOfWork``, so what it answers is what the ledger would answer: the subsidy in
fen and the cap that bound it, or the refusal and its reason. The line format is
documented in ``docs/policy.md``; in short, one JSON object a line with ``"type"``:

* ``voucher`` — ``{type, id, programme, holder?, district?, inputs?, face_value_fen?,
  centres?}``: an approved application and its voucher (the application is submitted,
  reviewed and approved inside the policy's windows). ``face_value_fen`` defaults to the
  programme's entitlement for the inputs.
* ``claim`` — ``{type, voucher, cost_fen | resource + quantity, centre?, usage_start?,
  usage_end?, at?, record_id?}``: usage redeemed by a centre. A claim may instead carry
  the voucher's ``programme``/``holder``/``inputs``/``face_value_fen`` to declare its
  voucher on first use.
* ``grant`` — ``{type, programme, holder?, district?, inputs, amount_fen?, at?}``: a
  one-time grant (一)(二)(七), approved and paid.
* ``reimbursement`` — ``{type, round, programme, amount_paid_fen, holder?, district?,
  invoice?, provider?, period?, at?}``: a post-hoc claim (model B) submitted, approved by
  its 区县 and the bureau for its entitlement (the caps may cut it) and paid. ``invoice``
  (its number; default one of its own) lets a what-if present one invoice twice
  (``DUPLICATE_INVOICE``); ``provider`` a USCC; ``period`` ``{from, to}`` (default: the
  first day of the programme's usage window).

Defaults: inputs not given are filled where the policy allows it (project dates: the
project activity window; the compute cost of a voucher programme: unbounded, so that the
approval is the programme's cap); every attestation true and every required material
present. ``holder`` is a 统一社会信用代码 or any label (a valid code is made from it).
Applications happen first (at the start of online submission), then claims and payments
in line order at their ``at`` (default: the end of the district-review window); the
ledger's time never runs backwards, so an earlier ``at`` than the line before counts as
the same time. Nothing here does I/O: ``api/policy_cli.py`` reads and prints.

Several policies run their rounds side by side (``simulate(lines, [p1, p2])``): a line
names its ``round``; round by round in the order of their online submission, each round's
applications first, then its claims and payments; the summary adds the cost per round and
what each pool counter paid.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ledger import claims, providers, reimbursement, vouchers
from ledger.caps import book as caps_book
from ledger.caps import key_text
from ledger.errors import InvalidInput, LedgerError
from ledger.keys import ServiceKeys, Signer
from ledger.money import format_fen
from ledger.policy import Policy, Programme
from ledger.publication import concealed
from ledger.reader import Reader
from ledger.state import LedgerState, Result
from ledger.timeutil import format_time, shanghai_date
from ledger.uscc import ALPHABET, complete, validate
from ledger.usecases import MemoryUnitOfWork
from ledger.usecases.commands.applications import Approval, approve_application
from ledger.usecases.commands.entities import register_entity
from ledger.usecases.commands.log import start_log
from ledger.usecases.commands.reimbursement import (
    decide_reimbursement,
    pay_reimbursement,
    review_reimbursement,
    submit_reimbursement,
)
from ledger.usecases.commands.round import publish_round
from ledger.usecases.commands.vouchers import issue_voucher, pay_grant

TYPES = ("voucher", "claim", "grant", "reimbursement")
_PROVIDER = "91510100MA6CGFQ309"  # a provider's USCC for lines that name none
POOLS = ("programme_pool", "voucher_pool", "scheme_pool")  # the budget's caps, for the summary
_UNBOUNDED_COST = 10**13  # fen: large enough that a voucher's approval is the programme's cap


@dataclass
class Outcome:
    """What one input line came to."""

    line: int
    type: str
    ok: bool
    subsidy_fen: int | None = None  # claims: the subsidy; grants: the amount paid; vouchers: face
    bound_by: str | None = None
    reason: str | None = None
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line, "type": self.type, "ok": self.ok}
        if self.ok:
            out.update(subsidy_fen=self.subsidy_fen, bound_by=self.bound_by, result=self.result)
        else:
            out.update(reason=self.reason, message=self.message)
        return out

    def text(self) -> str:
        head = f"line {self.line:>4}  {self.type:<7}"
        if not self.ok:
            return f"{head}  refused {self.reason}: {self.message}"
        if self.type == "voucher":
            return (
                f"{head}  issued {self.result.get('voucher')}: face value {self.subsidy_fen} fen "
                f"({format_fen(self.subsidy_fen or 0)})"
            )
        what = "subsidy" if self.type == "claim" else "paid"
        return (
            f"{head}  {what} {self.subsidy_fen} fen ({format_fen(self.subsidy_fen or 0)}), "
            f"bound by {self.bound_by}"
        )


@dataclass
class Summary:
    claims_fen: int = 0
    grants_fen: int = 0
    reimbursed_fen: int = 0
    refused: int = 0
    by_programme: dict[str, int] = field(default_factory=dict)  # "round/programme" if several
    by_round: dict[str, int] = field(default_factory=dict)
    pools: dict[str, dict[str, int | None]] = field(default_factory=dict)  # counter: paid, limit
    several_rounds: bool = False

    def text(self) -> str:
        parts = ", ".join(f"{p} {v} fen" for p, v in sorted(self.by_programme.items()))
        out = (
            f"total: subsidies {self.claims_fen} fen ({format_fen(self.claims_fen)}), grants "
            f"{self.grants_fen} fen ({format_fen(self.grants_fen)}), "
            + (
                f"reimbursed {self.reimbursed_fen} fen ({format_fen(self.reimbursed_fen)}), "
                if self.reimbursed_fen
                else ""
            )
            + f"refused {self.refused}"
            + (f"; by programme: {parts}" if parts else "")
        )
        if not self.several_rounds:  # one round: the programmes say it all
            return out
        rounds = ", ".join(f"{r} {v} fen" for r, v in sorted(self.by_round.items()))
        pools = ", ".join(
            f"{name} {row['paid_fen']} fen"
            + (f" of {row['limit_fen']}" if row["limit_fen"] is not None else " (no limit)")
            for name, row in self.pools.items()
        )
        return out + f"\nby round: {rounds or 'nothing paid'}\npools: {pools or 'none drawn'}"

    def to_json(self) -> dict[str, Any]:
        return {
            "claims_fen": self.claims_fen,
            "grants_fen": self.grants_fen,
            "reimbursed_fen": self.reimbursed_fen,
            "refused": self.refused,
            "by_programme": self.by_programme,
            "by_round": self.by_round,
            "pools": self.pools,
        }


def _signer(name: str) -> Signer:
    """Deterministic throw-away keys: a simulation signs nothing anyone else will see."""
    return Signer(name, hashlib.sha256(f"suanli-simulate/{name}".encode()).digest())


def setup_at(policy: Policy) -> datetime:
    """When a round's applications are made: the start of its online submission."""
    submission = policy.window("online_submission")
    assert submission.start is not None
    return submission.start


def claim_at(policy: Policy) -> datetime:
    """When a round's claims and payments are made unless a line says: the end of its
    district review (or, without one, the start of its online submission)."""
    review = policy.window("district_review").end
    return review if review is not None else setup_at(policy)


class Simulation:
    """An in-memory ledger for one what-if run, written through the service's use cases.
    Several rounds may run in it side by side: a line names its ``round`` (default: the
    first policy's)."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.rounds = {p.round: p for p in policies}
        if len(self.rounds) != len(policies):
            raise InvalidInput("two policies of one round", reason="INVALID_POLICY")
        self.policy = policies[0]  # the round of a line that names none
        self.moment = min(setup_at(p) for p in policies)  # the time of the next entries
        keys = ServiceKeys(
            _signer("simulate-log"), _signer("simulate-issuer"), _signer("simulate-service")
        )
        self.uow = MemoryUnitOfWork(keys, lambda: self.moment)
        self.centres = {c: _signer(c) for p in policies for c in p.centres}
        self.vouchers: dict[str, str] = {}  # label -> voucher id
        self.holders: dict[str, str] = {}  # label -> uscc
        self.grant_apps: dict[int, tuple[str, Policy]] = {}  # line -> application, round
        self.counter = 0
        start_log(self.uow, origin="suanli.simulate", centre_keys=self.centres, policy=self.policy)
        for later in policies[1:]:
            publish_round(self.uow, later)

    def round_of(self, r: Reader) -> Policy:
        """The policy of the round a line names (``round``), or the first one."""
        name = r.opt_text("round") or self.policy.round
        if name not in self.rounds:
            raise InvalidInput(
                f"round {name!r} is not simulated here (give its policy); known: "
                f"{sorted(self.rounds)}",
                reason="UNKNOWN_ROUND",
            )
        return self.rounds[name]

    @property
    def state(self) -> LedgerState:
        return self.uow.state

    def _next(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter:05d}"

    # --- setup: entities, applications, vouchers ------------------------------------------

    def holder(self, label: str | None, district: str) -> str:
        label = label or self._next("holder")
        if label in self.holders:
            return self.holders[label]
        try:
            uscc = validate(label)
        except InvalidInput:
            digest = int(hashlib.sha256(label.encode()).hexdigest(), 16)
            org = "".join(ALPHABET[(digest >> (5 * i)) % 31] for i in range(7))
            uscc = complete(f"91510100QM{org}")
        name = f"模拟单位 {label}"
        register_entity(self.uow, uscc=uscc, name=name, type="enterprise", district=district)
        self.holders[label] = uscc
        return uscc

    def _inputs(self, r: Reader, programme: Programme, policy: Policy) -> dict[str, Any]:
        """The line's inputs, with the required ones it leaves out filled in where the
        policy allows (the project dates: the activity window; the compute cost: unbounded)."""
        inputs = dict(r.child("inputs").value) if r.has("inputs") else {}
        if not isinstance(inputs, dict):
            raise r.fail("must be an object", name="inputs")
        activity = policy.window("project_activity")
        for name, spec in programme.inputs.items():
            if name in inputs or not spec.required:
                continue
            if spec.type == "date" and name == "project_start" and activity.start_text:
                inputs[name] = activity.start_text[:10]
            elif spec.type == "date" and name == "project_end" and activity.end_text:
                inputs[name] = activity.end_text[:10]
            elif name == programme.cost_input:
                inputs[name] = _UNBOUNDED_COST
        return inputs

    def approve(self, r: Reader, programme_id: str, amount_name: str) -> tuple[str, int]:
        """Register the holder, submit, review and approve; return (application, amount)."""
        policy = self.round_of(r)
        programme = policy.programme(programme_id)
        uscc = self.holder(r.opt_text("holder"), r.opt_text("district") or "成都高新区")
        app_id = self._next("A")
        self.moment = setup_at(policy)
        approval = Approval(
            application=app_id,
            programme=programme_id,
            applicant=uscc,
            inputs=self._inputs(r, programme, policy),
            amount_fen=r.opt_integer(amount_name),
            reviewer="simulate",
            round=policy.round,
        )
        decided = approve_application(self.uow, approval)
        return app_id, int(decided.result["amount_fen"])

    def declare_voucher(self, r: Reader, label: str) -> Result:
        if label in self.vouchers:
            raise InvalidInput(f"voucher {label!r} is declared twice", reason="INVALID_LINE")
        app_id, _ = self.approve(r, r.ident("programme"), "face_value_fen")
        voucher_id = f"SIM-{label}" if len(label) < 60 else self._next("SIM")
        centres = [c.value for c in r.items("centres")] if r.has("centres") else None
        done = issue_voucher(self.uow, application=app_id, voucher=voucher_id, centres=centres)
        self.vouchers[label] = voucher_id
        return done.result

    # --- claims and payments ----------------------------------------------------------

    def claim(self, r: Reader, line: int) -> Result:
        label = r.text("voucher")
        if label not in self.vouchers:
            if not r.has("programme"):
                raise InvalidInput(
                    f"voucher {label!r} is not declared; declare it on an earlier line or give "
                    "its programme here",
                    reason="UNKNOWN_VOUCHER",
                )
            raise InvalidInput("internal: voucher not set up")  # set up in the first pass
        voucher = vouchers.voucher_of(self.state, self.vouchers[label])
        default = next((c for c in self.centres if providers.accepts(voucher.centres, c)), "")
        centre = r.opt_text("centre") or default
        if centre not in self.centres:
            raise InvalidInput(f"unknown centre {centre!r}", reason="UNKNOWN_CENTRE")
        at = r.written_time("at") if r.has("at") else claim_at(self.rounds[voucher.round])
        start = r.written_time("usage_start") if r.has("usage_start") else voucher.usage_start
        end = (
            r.written_time("usage_end")
            if r.has("usage_end")
            else min(start + timedelta(hours=1), voucher.usage_end)
        )
        if r.has("resource"):
            resource = r.text("resource")
            quantity = r.integer("quantity", minimum=1, reason="MALFORMED_QUANTITY")
            cost = (
                r.fen("cost_fen")
                if r.has("cost_fen")
                else self._price(centre, resource, quantity, start)
            )
        else:
            cost = r.fen("cost_fen")
            resource, quantity = self._quantity_for(centre, cost, start)
        body = {
            "centre": centre,
            "record_id": r.opt_text("record_id") or f"line-{line}",
            "voucher": voucher.id,
            "resource": resource,
            "quantity": quantity,
            "start": format_time(start),
            "end": format_time(end),
            "cost_fen": cost,
        }
        self.moment = at
        entry = concealed("claim", self.uow.now(), body).signed(self.centres[centre])
        return self.uow.append(entry, signatures_checked=True).result

    def _card(self, centre: str, start: datetime) -> claims.RateCard:
        card = claims.centre_of(self.state, centre).card_at(start)
        if card is None:
            raise InvalidInput(
                f"centre {centre} has no rate card at {format_time(start)}", reason="NO_RATE_CARD"
            )
        return card

    def _price(self, centre: str, resource: str, quantity: int, start: datetime) -> int:
        price = self._card(centre, start).prices.get(resource)
        return 0 if price is None else price.cost(quantity)  # the fold names a missing price

    def _quantity_for(self, centre: str, cost: int, start: datetime) -> tuple[str, int]:
        """A resource and quantity that the centre's rate card prices at exactly ``cost``."""
        card = self._card(centre, start)
        for resource in ("cpu", *sorted(card.prices)):
            price = card.prices.get(resource)
            if price is None or price.price_fen == 0:
                continue
            quantity = max(1, math.ceil(cost * price.per_units / price.price_fen))
            if price.cost(quantity) == cost:
                return resource, quantity
        raise InvalidInput(
            f"no resource on {centre}'s rate card prices at exactly {cost} fen; give resource "
            "and quantity",
            reason="INVALID_LINE",
        )

    def pay(self, r: Reader, line: int) -> Result:
        application, policy = self.grant_apps[line]
        self.moment = r.written_time("at") if r.has("at") else claim_at(policy)
        paid = pay_grant(self.uow, application=application, grant=f"G-line-{line}")
        return paid.entry.result

    def reimburse(self, r: Reader, line: int) -> Result:
        """Submit a post-hoc claim, approve it at the district and the bureau, pay it."""
        policy = self.round_of(r)
        programme = policy.programme(r.ident("programme"))
        claimant = self.holder(r.opt_text("holder"), r.opt_text("district") or "成都高新区")
        self.moment = r.written_time("at") if r.has("at") else setup_at(policy)
        paid = r.fen("amount_paid_fen")
        number = r.opt_text("invoice") or f"INV-line-{line}"
        provider = r.opt_text("provider") or _PROVIDER
        first = programme.usage_window.earliest if programme.usage_window else self.moment
        default_day = shanghai_date(first).isoformat()
        period = r.child("period").obj(["from", "to"]) if r.has("period") else None
        claim = f"R-line-{line}"
        wanted = programme.reimbursement.evidence if programme.reimbursement else ()
        submit_reimbursement(
            self.uow,
            claim=claim,
            round=policy.round,
            programme=programme.id,
            claimant=claimant,
            provider={"name": f"算力服务机构 {provider}", "uscc": provider},
            period=(period.text("from"), period.text("to")) if period else (default_day,) * 2,
            amount_paid_fen=paid,
            invoices=[{"number": number, "issuer": provider, "amount_fen": paid,
                       "sha256": _sha(f"invoice {provider} {number}")}],
            evidence={k: _sha(f"{k} {claim}") for k in wanted if k != "invoice"},
        )  # fmt: skip
        district = reimbursement.claim_of(self.state, claim).district
        review_reimbursement(
            self.uow, claim=claim, district=district, reviewer="simulate", opinion="approve"
        )
        decided = decide_reimbursement(self.uow, claim=claim, decision="approve").result
        pay_reimbursement(self.uow, claim=claim)
        return {**decided, "paid_fen": decided["approved_fen"]}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _read_line(raw: str | Mapping[str, Any], line: int) -> Reader:
    if isinstance(raw, str):
        try:
            obj = json.loads(raw, parse_float=_no_float)
        except ValueError as exc:
            raise InvalidInput(f"not a JSON object: {exc}", reason="INVALID_LINE") from None
    else:
        obj = dict(raw)
    r = Reader(obj, f"line {line}", "INVALID_LINE")
    if not isinstance(obj, dict):
        raise r.fail("must be a JSON object")
    r.choice("type", TYPES)
    return r


def _no_float(text: str) -> Any:
    raise ValueError(f"float {text}: money is integer fen")


_FIELDS = {
    "voucher": (["type", "id", "programme"],
                ["holder", "district", "inputs", "face_value_fen", "centres", "note", "round"]),
    "claim": (["type", "voucher"],
              ["cost_fen", "resource", "quantity", "centre", "usage_start", "usage_end", "at",
               "record_id", "programme", "holder", "district", "inputs", "face_value_fen",
               "centres", "note", "round"]),
    "grant": (["type", "programme"],
              ["holder", "district", "inputs", "amount_fen", "at", "note", "round"]),
    "reimbursement": (["type", "programme", "amount_paid_fen"],
                      ["round", "holder", "district", "invoice", "provider", "period", "at",
                       "note"]),
}  # fmt: skip


def simulate(
    lines: Iterable[str | Mapping[str, Any]], policy: Policy | Sequence[Policy] | None = None
) -> tuple[list[Outcome], Summary]:
    """Apply ``lines`` (JSON text or parsed objects) to a fresh in-memory ledger.

    With several policies their rounds run side by side in the one ledger (shared caps of a
    scheme included): round by round in the order of their online submission, each round's
    applications first, then its claims and payments in line order."""
    if policy is None:
        policies = [Policy.load()]
    else:
        policies = [policy] if isinstance(policy, Policy) else list(policy)
    sim = Simulation(policies)
    numbered = [
        (n, raw)
        for n, raw in enumerate(lines, start=1)
        if not (isinstance(raw, str) and (not raw.strip() or raw.lstrip().startswith("#")))
    ]
    outcomes: dict[int, Outcome] = {}
    readers: dict[int, Reader] = {}
    for n, raw in numbered:
        try:
            r = _read_line(raw, n)
            r.obj(*_FIELDS[str(r.value["type"])])
            readers[n] = r
        except LedgerError as exc:
            outcomes[n] = Outcome(n, _kind_of(raw), False, reason=exc.reason, message=exc.message)
    rounds = _rounds_of(sim, readers, outcomes)
    for current in sorted(policies, key=setup_at):
        mine = [n for n in readers if rounds.get(n) is current]
        _set_up(sim, readers, mine, outcomes)
        _redeem(sim, readers, mine, outcomes)
    ordered = [outcomes[n] for n, _ in numbered]
    return ordered, _summarise(sim, ordered)


def _rounds_of(
    sim: Simulation, readers: Mapping[int, Reader], outcomes: dict[int, Outcome]
) -> dict[int, Policy]:
    """The round of each line: the one it names, or, for a claim on a voucher declared on
    another line, that voucher's round."""
    rounds: dict[int, Policy] = {}
    declared: dict[str, Policy] = {}
    for n, r in readers.items():
        kind = str(r.value["type"])
        try:
            rounds[n] = sim.round_of(r)
        except LedgerError as exc:
            outcomes[n] = Outcome(n, kind, False, reason=exc.reason, message=exc.message)
            continue
        if kind == "voucher" or (kind == "claim" and r.has("programme")):
            declared.setdefault(str(r.value.get("id") or r.value.get("voucher")), rounds[n])
    for n, r in readers.items():
        label = r.value.get("voucher")
        on_declared = isinstance(label, str) and label in declared and not r.has("round")
        if n in rounds and r.value["type"] == "claim" and not r.has("programme") and on_declared:
            rounds[n] = declared[str(label)]
    return rounds


def _set_up(
    sim: Simulation, readers: Mapping[int, Reader], lines: list[int], outcomes: dict[int, Outcome]
) -> None:
    """The applications and vouchers of ``lines``, inside their round's windows."""
    for n in lines:
        r = readers[n]
        kind = str(r.value["type"])
        try:
            if kind == "voucher":
                result = sim.declare_voucher(r, r.text("id"))
                outcomes[n] = Outcome(
                    n, kind, True, result["face_value_fen"], None, result=dict(result)
                )
            elif kind == "claim" and r.has("programme") and r.text("voucher") not in sim.vouchers:
                sim.declare_voucher(r, r.text("voucher"))
            elif kind == "grant":
                application, _ = sim.approve(r, r.ident("programme"), "amount_fen")
                sim.grant_apps[n] = (application, sim.round_of(r))
        except LedgerError as exc:
            outcomes[n] = Outcome(n, kind, False, reason=exc.reason, message=exc.message)


def _redeem(
    sim: Simulation, readers: Mapping[int, Reader], lines: list[int], outcomes: dict[int, Outcome]
) -> None:
    """The claims and payments of ``lines``, in order."""
    for n in lines:
        if n in outcomes:
            continue
        r = readers[n]
        kind = str(r.value["type"])
        try:
            if kind == "claim":
                result = sim.claim(r, n)
                outcomes[n] = Outcome(
                    n, kind, True, result["subsidy_fen"], result["bound_by"], result=dict(result)
                )
            else:
                result = sim.reimburse(r, n) if kind == "reimbursement" else sim.pay(r, n)
                outcomes[n] = Outcome(
                    n, kind, True, result["paid_fen"], result["bound_by"], result=dict(result)
                )
        except LedgerError as exc:
            outcomes[n] = Outcome(n, kind, False, reason=exc.reason, message=exc.message)


def _summarise(sim: Simulation, outcomes: Iterable[Outcome]) -> Summary:
    several = len(sim.rounds) > 1
    summary = Summary(several_rounds=several)
    for outcome in outcomes:
        if not outcome.ok:
            summary.refused += 1
        elif outcome.type in ("claim", "grant", "reimbursement"):
            amount = outcome.subsidy_fen or 0
            if outcome.type == "claim":
                summary.claims_fen += amount
                voucher = vouchers.voucher_of(sim.state, str(outcome.result["voucher"]))
                round_id, programme = voucher.round, voucher.programme
            elif outcome.type == "reimbursement":
                summary.reimbursed_fen += amount
                found = reimbursement.claim_of(sim.state, str(outcome.result["claim"]))
                round_id, programme = found.round, found.programme
            else:
                summary.grants_fen += amount
                round_id = sim.grant_apps[outcome.line][1].round
                programme = str(outcome.result["programme"])
            key = f"{round_id}/{programme}" if several else programme
            summary.by_programme[key] = summary.by_programme.get(key, 0) + amount
            summary.by_round[round_id] = summary.by_round.get(round_id, 0) + amount
    book = caps_book(sim.state)
    for counter, used in sorted(book.used.items(), key=lambda item: key_text(item[0])):
        if counter[0] in POOLS:
            summary.pools[key_text(counter)] = {
                "paid_fen": used,
                "limit_fen": book.seen.get(counter),
            }
    return summary


def _kind_of(raw: str | Mapping[str, Any]) -> str:
    try:
        obj = json.loads(raw) if isinstance(raw, str) else raw
        kind = obj.get("type") if isinstance(obj, dict) else None
    except ValueError:
        kind = None
    return kind if kind in TYPES else "invalid"
