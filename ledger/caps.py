"""Stacked caps: the subsidy is the rate's amount or the smallest remaining cap, whichever is less.

    subsidy = min(floor(cost × rate_bp / 10000), remaining of every cap that applies)

The caps (their names are what a result's ``bound_by`` says):

============== ======================================================== =========================
name           what                                                     counter key
============== ======================================================== =========================
voucher        the voucher's face value (its balance)                   voucher id
period         a cap per period: (六) 500 万元 per voucher year for      voucher id + year number,
               three years (years counted from the voucher's usage      or round + programme +
               start); or per calendar year where the policy says so    holder + calendar year
               (period of the *usage start*)
entity_programme the entity's cap in the programme (300 万 national /   round + programme + holder
               150 万 provincial for (四) …); the limit is the one for
               the voucher's own application, the counter is shared by
               all of the entity's vouchers and grants in the programme
entity_round   the optional cross-programme cap per entity and year     round + holder + year
programme_pool the programme's pool for the budget year ((一) 500 万)   round + programme + year
voucher_pool   the yearly 算力券 pool the programme draws on            pool id + year
scheme_entity  the entity's cap per year over every round of the        scheme + holder + year
               scheme (e.g. 500 万元 a year over all 算力券 rounds),
               point-of-sale claims and post-hoc reimbursements alike
scheme_pool    the scheme's pool per year, shared by its rounds         scheme + year
               (the city's yearly 算力券 pool over all rounds)
============== ======================================================== =========================

A round that names a scheme counts every claim, hold and reimbursement against the
scheme's counters even while the scheme states no figure (a line without a limit), so that
a figure published later in a year finds the year's earlier payments on its counter. The
figure is the one in force for the scheme (``ledger.policy.scheme_terms``), whichever of its
rounds the payment is under. Grants are not compute subsidies and stay outside the scheme.

Pools and the cross-programme cap count per *budget year*: the Asia/Shanghai calendar
year of the entry that pays (a claim's or grant's effective time). A ``programme`` tally
(round + programme + year, no limit) counts everything paid, for the budget view.

``rate`` is the answer when no cap bound. When caps tie, the first in the order above
(narrowest first) is named; a cap that ties with the rate's amount did not bind.

Nothing left under a cap (remaining 0) refuses the claim: ``CapExhausted`` with
``details["cap"]`` naming it — a voucher with a zero balance answers "exhausted", never a
subsidy of 0. A claim whose rate amount is 0 (a tiny cost) is accepted with 0.

The :class:`CapBook` holds the counters. Every amount counted against caps is a
*charge* (a claim, a grant, an open hold, or a forfeit left by a clawback) with the cap
lines it counts against, so ``audit`` can recompute every counter from the charges.
Holds count until captured, voided or expired; an expired hold stops counting at its
``expires_at`` without any entry (the book accounts for it when asked at a later time and
drops it at the next change).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from immutables import Map

from ledger.errors import CapExhausted
from ledger.money import format_fen
from ledger.state import LedgerState

CAP_ORDER = (
    "voucher",
    "period",
    "entity_programme",
    "entity_round",
    "scheme_entity",
    "programme_pool",
    "voucher_pool",
    "scheme_pool",
)
TALLY = "programme"
# Caps that belong to the holder: a clawback leaves the clawed amount counted here (forfeit),
# and returns it only to the budget (pools and tallies). See ledger.corrections.
HOLDER_CAPS = frozenset({"voucher", "period", "entity_programme", "entity_round", "scheme_entity"})

Key = tuple[str | int, ...]


@dataclass(frozen=True)
class CapLine:
    """One cap a charge counts against: ``key[0]`` is the cap's name; ``limit`` None is a tally."""

    key: Key
    limit: int | None

    @property
    def name(self) -> str:
        return str(self.key[0])


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`decide`: the amount, the cap that bound it, what remained."""

    amount: int
    wanted: int
    bound_by: str
    remaining: Mapping[str, int]  # remaining before the charge, by cap name (tallies left out)


def decide(
    wanted: int, remaining: Sequence[tuple[CapLine, int | None]], unbound: str = "rate"
) -> Decision:
    """min(``wanted``, every remaining); raise CapExhausted if any cap has nothing left.

    ``bound_by`` is ``unbound`` ("rate" for a claim, "requested" for a grant) when no cap
    is below ``wanted``.
    """
    if wanted < 0:
        raise ValueError("a wanted amount is never negative")
    ordered = sorted(
        ((line, rem) for line, rem in remaining if rem is not None),
        key=lambda item: CAP_ORDER.index(item[0].name),
    )
    for line, rem in ordered:
        if rem is not None and rem <= 0:
            raise CapExhausted(
                f"nothing remains under the {line.name} cap ({'/'.join(map(str, line.key[1:]))}: "
                f"limit {format_fen(line.limit or 0)})",
                reason="CAP_EXHAUSTED",
                details={
                    "cap": line.name,
                    "key": "/".join(map(str, line.key[1:])),
                    "limit_fen": line.limit,
                },
            )
    amount, bound_by = wanted, unbound
    for line, rem in ordered:
        assert rem is not None
        if rem < amount:
            amount, bound_by = rem, line.name
    return Decision(
        amount, wanted, bound_by, {line.name: rem for line, rem in ordered if rem is not None}
    )


# --- the lines a claim or a grant counts against --------------------------------------------


def voucher_year(anchor: datetime, moment: datetime) -> int:
    """The 1-based voucher year of ``moment``, years counted from ``anchor`` (0 if before)."""
    from ledger.timeutil import add_years

    if moment < anchor:
        return 0
    year = 1
    while add_years(anchor, year) <= moment:
        year += 1
    return year


@functools.lru_cache(maxsize=1 << 16)
def lines_for(
    *,
    round_id: str,
    programme: str,
    holder: str,
    budget_year: int,
    voucher: tuple[str, int] | None = None,
    period: tuple[Key, int] | None = None,
    entity_cap: int | None = None,
    entity_round_cap: int | None = None,
    programme_pool: int | None = None,
    voucher_pool: tuple[str, int] | None = None,
    scheme: tuple[str, int | None, int | None] | None = None,
) -> tuple[CapLine, ...]:
    """The cap lines of one charge. Caps that do not apply are left out (None).
    ``scheme`` is (scheme id, entity yearly cap, yearly pool), a None figure counted only.

    Cached: the many claims on one voucher in one period and budget year share one tuple
    of lines (a pure function of its arguments; the cache only saves memory and time)."""
    lines = []
    if voucher is not None:
        lines.append(CapLine(("voucher", voucher[0]), voucher[1]))
    if period is not None:
        lines.append(CapLine(("period", *period[0]), period[1]))
    if entity_cap is not None:
        lines.append(CapLine(("entity_programme", round_id, programme, holder), entity_cap))
    if entity_round_cap is not None:
        lines.append(CapLine(("entity_round", round_id, holder, budget_year), entity_round_cap))
    if programme_pool is not None:
        lines.append(CapLine(("programme_pool", round_id, programme, budget_year), programme_pool))
    if voucher_pool is not None:
        lines.append(CapLine(("voucher_pool", voucher_pool[0], budget_year), voucher_pool[1]))
    if scheme is not None:
        scheme_id, entity_yearly, pool_yearly = scheme
        lines.append(CapLine(("scheme_entity", scheme_id, holder, budget_year), entity_yearly))
        lines.append(CapLine(("scheme_pool", scheme_id, budget_year), pool_yearly))
    lines.append(CapLine((TALLY, round_id, programme, budget_year), None))
    return tuple(lines)


# --- the book ----------------------------------------------------------------------------


class Charge(NamedTuple):
    """An amount counted against ``lines``: a claim, a grant, a hold or a forfeit (a tuple:
    there is one per claim)."""

    id: str
    kind: str  # claim | grant | hold | forfeit
    lines: tuple[CapLine, ...]
    amount: int
    expires_at: datetime | None = None  # holds only

    def counts_at(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass
class CapBook:
    """The counters. Persistent collections: a draft's copy changes them by putting new
    values in (see ``ledger.state``)."""

    used: Map[Key, int] = field(default_factory=Map)  # claims, grants, forfeits
    held: Map[Key, int] = field(default_factory=Map)  # open holds (including expired, unswept)
    charges: Map[str, Charge] = field(default_factory=Map)
    expiring: tuple[tuple[datetime, str], ...] = ()  # open holds, sorted by expiry
    seen: Map[Key, int | None] = field(default_factory=Map)  # every key ever counted: limit

    # reading ----------------------------------------------------------------------------

    def expired(self, now: datetime) -> list[Charge]:
        """Open holds that have expired at ``now`` but are still counted (not yet swept)."""
        end = bisect.bisect_right(self.expiring, (now, "\U0010ffff"))
        return [self.charges[cid] for _, cid in self.expiring[:end]]

    def adjustments(self, now: datetime, releasing: Iterable[str] = ()) -> dict[Key, int]:
        """Amounts to take off the counters at ``now``: expired holds and ``releasing``."""
        out: dict[Key, int] = {}
        seen: set[str] = set()
        for charge in [
            *self.expired(now),
            *(self.charges[c] for c in releasing if c in self.charges),
        ]:
            if charge.id in seen:
                continue
            seen.add(charge.id)
            for line in charge.lines:
                out[line.key] = out.get(line.key, 0) + charge.amount
        return out

    def counted(self, key: Key, adjust: Mapping[Key, int] | None = None) -> int:
        return self.used.get(key, 0) + self.held.get(key, 0) - (adjust or {}).get(key, 0)

    def remaining(self, line: CapLine, adjust: Mapping[Key, int] | None = None) -> int | None:
        if line.limit is None:
            return None
        return line.limit - self.counted(line.key, adjust)

    def decide(
        self,
        wanted: int,
        lines: Sequence[CapLine],
        now: datetime,
        releasing: Iterable[str] = (),
        unbound: str = "rate",
    ) -> Decision:
        """:func:`decide` against this book at ``now``, as if ``releasing`` were released."""
        adjust = self.adjustments(now, releasing)
        return decide(wanted, [(line, self.remaining(line, adjust)) for line in lines], unbound)

    # changing (call only after every check has passed) ------------------------------------

    def sweep(self, now: datetime) -> list[str]:
        """Stop counting holds that have expired at ``now``; return their charge ids."""
        gone = [c.id for c in self.expired(now)]
        for cid in gone:
            self.release(cid)
        return gone

    def charge(
        self,
        charge_id: str,
        kind: str,
        lines: Sequence[CapLine],
        amount: int,
        expires_at: datetime | None = None,
    ) -> Charge:
        """Count ``amount`` against ``lines``. The caller has decided it within the caps
        (:meth:`decide`); the checks here are a last line of defence against a bug."""
        if charge_id in self.charges:
            raise RuntimeError(f"charge {charge_id} exists")  # ids are unique by construction
        if amount < 0:
            raise RuntimeError("negative charge")
        if kind != "forfeit":  # a forfeit moves an amount already counted (see reduce)
            for line in lines:
                if line.limit is not None and self.counted(line.key) + amount > line.limit:
                    raise RuntimeError(f"charge {charge_id} would exceed cap {line.key}")
        self._count(kind, lines, amount)
        with self.seen.mutate() as seen:
            for line in lines:
                seen[line.key] = line.limit
            self.seen = seen.finish()
        charge = Charge(charge_id, kind, tuple(lines), amount, expires_at)
        self.charges = self.charges.set(charge_id, charge)
        if kind == "hold":
            assert expires_at is not None
            item = (expires_at, charge_id)
            at = bisect.bisect(self.expiring, item)
            self.expiring = (*self.expiring[:at], item, *self.expiring[at:])
        return charge

    def _count(self, kind: str, lines: Iterable[CapLine], delta: int) -> None:
        """Add ``delta`` to the counter of every line (held for holds, else used); a
        counter at zero is dropped, so that equal books have equal maps."""
        counter = self.held if kind == "hold" else self.used
        with counter.mutate() as changed:
            for line in lines:
                value = changed.get(line.key, 0) + delta
                if value:
                    changed[line.key] = value
                else:
                    changed.pop(line.key, None)
            counter = changed.finish()
        if kind == "hold":
            self.held = counter
        else:
            self.used = counter

    def release(self, charge_id: str) -> int:
        """Stop counting a charge entirely; return its amount."""
        charge = self.charges[charge_id]
        self.charges = self.charges.delete(charge_id)
        self._count(charge.kind, charge.lines, -charge.amount)
        if charge.kind == "hold":
            assert charge.expires_at is not None
            at = bisect.bisect_left(self.expiring, (charge.expires_at, charge_id))
            self.expiring = self.expiring[:at] + self.expiring[at + 1 :]
        return charge.amount

    def reduce(self, charge_id: str, amount: int, forfeit_id: str | None) -> None:
        """Take ``amount`` off a claim or grant; with ``forfeit_id``, keep it counted against
        the holder's caps (a forfeit charge) and return it to the budget only."""
        charge = self.charges[charge_id]
        if not 0 <= amount <= charge.amount or charge.kind not in ("claim", "grant"):
            raise RuntimeError("bad reduction")
        if forfeit_id is not None and forfeit_id in self.charges:
            raise RuntimeError(f"charge {forfeit_id} exists")
        self._count(charge.kind, charge.lines, -amount)
        self.charges = self.charges.set(charge_id, charge._replace(amount=charge.amount - amount))
        if forfeit_id is not None and amount:
            holder = [line for line in charge.lines if line.name in HOLDER_CAPS]
            self.charge(forfeit_id, "forfeit", holder, amount)

    # auditing ---------------------------------------------------------------------------

    def audit(self) -> list[str]:
        """Recompute every counter from the charges; list every difference and overrun.

        A counter may carry different limits on different charges (the entity's cap in
        (四) is 300 万 for a national project and 150 万 for a provincial one, on one
        counter); each charge was checked against its own limit when it was made, so the
        counter can never exceed the largest of them, which is what is checked here.
        """
        used: dict[Key, int] = {}
        held: dict[Key, int] = {}
        limits: dict[Key, int] = {}
        problems = []
        for charge in self.charges.values():
            if charge.amount < 0:
                problems.append(f"charge {charge.id} is negative")
            counter = held if charge.kind == "hold" else used
            for line in charge.lines:
                counter[line.key] = counter.get(line.key, 0) + charge.amount
                if line.limit is not None:  # each charge was checked against its own limit
                    limits[line.key] = max(limits.get(line.key, line.limit), line.limit)
        if {k: v for k, v in used.items() if v} != dict(self.used):
            problems.append("used counters differ from the charges")
        if {k: v for k, v in held.items() if v} != dict(self.held):
            problems.append("held counters differ from the charges")
        for key, limit in limits.items():
            if used.get(key, 0) + held.get(key, 0) > limit:
                problems.append(
                    f"cap {key} exceeded: {used.get(key, 0) + held.get(key, 0)} > {limit}"
                )
        return problems


def book(state: LedgerState) -> CapBook:
    part: CapBook = state.part("caps", CapBook)
    return part


def key_text(key: Key) -> str:
    return "/".join(str(k) for k in key)


# --- read side ---------------------------------------------------------------------------


def programme_budget(state: LedgerState, at: datetime | None = None) -> dict[str, Any]:
    """Used and remaining per programme and per pool, per budget year.

    ``programmes[round/programme][year]``: ``paid_fen`` (claims and grants, net of
    reversals and clawbacks), ``held_fen`` (open holds), and, where the programme has a
    pool, ``pool_fen`` and ``remaining_fen``. ``pools[pool][year]`` likewise for the
    voucher pools.
    """
    from ledger.policy import book as policies

    caps = book(state)
    now = at or state.time
    adjust = caps.adjustments(now) if now is not None else {}
    programmes: dict[str, dict[str, dict[str, int | None]]] = {}
    pools: dict[str, dict[str, dict[str, int | None]]] = {}
    # the budget's own keys only: every voucher, period and entity has keys too, and the
    # scans below would walk them per programme
    budget = (TALLY, "programme_pool", "voucher_pool")
    limits: dict[Key, int | None] = {k: v for k, v in caps.seen.items() if k[0] in budget}
    for round_id, version in policies(state).current.items():
        policy = policies(state).versions[version]
        for pid, programme in policy.programmes.items():
            programmes.setdefault(f"{round_id}/{pid}", {})
            if programme.pool is not None:
                for key in [k for k in limits if k[:3] == ("programme_pool", round_id, pid)]:
                    limits[key] = programme.pool.amount_fen
        for pool in policy.voucher_pools.values():
            pools.setdefault(pool.id, {})
            for key in [k for k in limits if k[:2] == ("voucher_pool", pool.id)]:
                limits[key] = pool.amount_fen
    for key in sorted(limits, key=key_text):
        name = key[0]
        counted = caps.used.get(key, 0)
        held = caps.held.get(key, 0) - adjust.get(key, 0)
        if name == TALLY:
            row = programmes.setdefault(f"{key[1]}/{key[2]}", {}).setdefault(str(key[3]), {})
            row["paid_fen"] = counted
            row["held_fen"] = held
        elif name == "programme_pool":
            row = programmes.setdefault(f"{key[1]}/{key[2]}", {}).setdefault(str(key[3]), {})
            row["pool_fen"] = limits[key]
            row["remaining_fen"] = (limits[key] or 0) - counted - held
        elif name == "voucher_pool":
            row = pools.setdefault(str(key[1]), {}).setdefault(str(key[2]), {})
            row["pool_fen"] = limits[key]
            row["paid_fen"] = counted
            row["held_fen"] = held
            row["remaining_fen"] = (limits[key] or 0) - counted - held
    return {"programmes": programmes, "pools": pools}
