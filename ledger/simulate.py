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

Defaults: inputs not given are filled where the policy allows it (project dates: the
project activity window; the compute cost of a voucher programme: unbounded, so that the
approval is the programme's cap); every attestation true and every required material
present. ``holder`` is a 统一社会信用代码 or any label (a valid code is made from it).
Applications happen first (at the start of online submission), then claims and payments
in line order at their ``at`` (default: the end of the district-review window); the
ledger's time never runs backwards, so an earlier ``at`` than the line before counts as
the same time. Nothing here does I/O: ``api/policy_cli.py`` reads and prints.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ledger import claims, providers, vouchers
from ledger.errors import InvalidInput, LedgerError
from ledger.keys import ServiceKeys, Signer
from ledger.money import format_fen
from ledger.policy import Policy, Programme
from ledger.publication import concealed
from ledger.reader import Reader
from ledger.state import LedgerState, Result
from ledger.timeutil import format_time
from ledger.uscc import ALPHABET, complete, validate
from ledger.usecases import MemoryUnitOfWork
from ledger.usecases.commands.applications import Approval, approve_application
from ledger.usecases.commands.entities import register_entity
from ledger.usecases.commands.log import start_log
from ledger.usecases.commands.vouchers import issue_voucher, pay_grant

TYPES = ("voucher", "claim", "grant")
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
        what = "paid" if self.type == "grant" else "subsidy"
        return (
            f"{head}  {what} {self.subsidy_fen} fen ({format_fen(self.subsidy_fen or 0)}), "
            f"bound by {self.bound_by}"
        )


@dataclass
class Summary:
    claims_fen: int = 0
    grants_fen: int = 0
    refused: int = 0
    by_programme: dict[str, int] = field(default_factory=dict)

    def text(self) -> str:
        parts = ", ".join(f"{p} {v} fen" for p, v in sorted(self.by_programme.items()))
        return (
            f"total: subsidies {self.claims_fen} fen ({format_fen(self.claims_fen)}), grants "
            f"{self.grants_fen} fen ({format_fen(self.grants_fen)}), refused {self.refused}"
            + (f"; by programme: {parts}" if parts else "")
        )


def _signer(name: str) -> Signer:
    """Deterministic throw-away keys: a simulation signs nothing anyone else will see."""
    return Signer(name, hashlib.sha256(f"suanli-simulate/{name}".encode()).digest())


class Simulation:
    """An in-memory ledger for one what-if run, written through the service's use cases."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        submission = policy.window("online_submission")
        assert submission.start is not None
        self.setup_at = submission.start
        review = policy.window("district_review").end
        self.claim_at = review if review is not None else submission.start
        self.moment = self.setup_at  # the time of the entries signed next
        keys = ServiceKeys(
            _signer("simulate-log"), _signer("simulate-issuer"), _signer("simulate-service")
        )
        self.uow = MemoryUnitOfWork(keys, lambda: self.moment)
        self.centres = {c: _signer(c) for c in policy.centres}
        self.vouchers: dict[str, str] = {}  # label -> voucher id
        self.holders: dict[str, str] = {}  # label -> uscc
        self.grant_apps: dict[int, str] = {}  # line -> application id
        self.counter = 0
        start_log(self.uow, origin="suanli.simulate", centre_keys=self.centres, policy=policy)

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

    def _inputs(self, r: Reader, programme: Programme) -> dict[str, Any]:
        """The line's inputs, with the required ones it leaves out filled in where the
        policy allows (the project dates: the activity window; the compute cost: unbounded)."""
        inputs = dict(r.child("inputs").value) if r.has("inputs") else {}
        if not isinstance(inputs, dict):
            raise r.fail("must be an object", name="inputs")
        activity = self.policy.window("project_activity")
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
        programme = self.policy.programme(programme_id)
        uscc = self.holder(r.opt_text("holder"), r.opt_text("district") or "成都高新区")
        app_id = self._next("A")
        self.moment = self.setup_at
        approval = Approval(
            application=app_id,
            programme=programme_id,
            applicant=uscc,
            inputs=self._inputs(r, programme),
            amount_fen=r.opt_integer(amount_name),
            reviewer="simulate",
            round=self.policy.round,
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
        at = r.written_time("at") if r.has("at") else self.claim_at
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
        self.moment = r.written_time("at") if r.has("at") else self.claim_at
        paid = pay_grant(self.uow, application=self.grant_apps[line], grant=f"G-line-{line}")
        return paid.entry.result


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
                ["holder", "district", "inputs", "face_value_fen", "centres", "note"]),
    "claim": (["type", "voucher"],
              ["cost_fen", "resource", "quantity", "centre", "usage_start", "usage_end", "at",
               "record_id", "programme", "holder", "district", "inputs", "face_value_fen",
               "centres", "note"]),
    "grant": (["type", "programme"], ["holder", "district", "inputs", "amount_fen", "at", "note"]),
}  # fmt: skip


def simulate(
    lines: Iterable[str | Mapping[str, Any]], policy: Policy | None = None
) -> tuple[list[Outcome], Summary]:
    """Apply ``lines`` (JSON text or parsed objects) to a fresh in-memory ledger."""
    policy = policy or Policy.load()
    sim = Simulation(policy)
    numbered = [
        (n, raw)
        for n, raw in enumerate(lines, start=1)
        if not (isinstance(raw, str) and (not raw.strip() or raw.lstrip().startswith("#")))
    ]
    outcomes: dict[int, Outcome] = {}
    readers: dict[int, Reader] = {}
    # First pass: parse, and make the applications and vouchers inside the windows.
    for n, raw in numbered:
        try:
            r = _read_line(raw, n)
            kind = str(r.value["type"])
            r.obj(*_FIELDS[kind])
            readers[n] = r
            if kind == "voucher":
                result = sim.declare_voucher(r, r.text("id"))
                outcomes[n] = Outcome(
                    n, kind, True, result["face_value_fen"], None, result=dict(result)
                )
            elif kind == "claim" and r.has("programme") and r.text("voucher") not in sim.vouchers:
                sim.declare_voucher(r, r.text("voucher"))
            elif kind == "grant":
                sim.grant_apps[n], _ = sim.approve(r, r.ident("programme"), "amount_fen")
        except LedgerError as exc:
            outcomes[n] = Outcome(n, _kind_of(raw), False, reason=exc.reason, message=exc.message)
    # Second pass: claims and payments, in order.
    for n, _ in numbered:
        if n in outcomes or n not in readers:
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
                result = sim.pay(r, n)
                outcomes[n] = Outcome(
                    n, kind, True, result["paid_fen"], result["bound_by"], result=dict(result)
                )
        except LedgerError as exc:
            outcomes[n] = Outcome(n, kind, False, reason=exc.reason, message=exc.message)
    ordered = [outcomes[n] for n, _ in numbered]
    return ordered, _summarise(sim, ordered)


def _summarise(sim: Simulation, outcomes: Iterable[Outcome]) -> Summary:
    summary = Summary()
    for outcome in outcomes:
        if not outcome.ok:
            summary.refused += 1
        elif outcome.type in ("claim", "grant"):
            amount = outcome.subsidy_fen or 0
            if outcome.type == "claim":
                summary.claims_fen += amount
                programme = vouchers.voucher_of(sim.state, str(outcome.result["voucher"])).programme
            else:
                summary.grants_fen += amount
                programme = str(outcome.result["programme"])
            summary.by_programme[programme] = summary.by_programme.get(programme, 0) + amount
    return summary


def _kind_of(raw: str | Mapping[str, Any]) -> str:
    try:
        obj = json.loads(raw) if isinstance(raw, str) else raw
        kind = obj.get("type") if isinstance(obj, dict) else None
    except ValueError:
        kind = None
    return kind if kind in TYPES else "invalid"
