"""The bureau's reports (主管部门/财政): budget used and remaining, per entity, centre, month.

Every figure is for one **budget year**, the year (Asia/Shanghai) of the entry that paid (a
claim's or grant's effective time), which is how the caps count pools (``ledger.caps``).
Subsidies are net of reversals and clawbacks, which are counted against the year of what
they correct; held amounts are open holds. ``ledger.reports`` decides which year and month
an entry counts in, and the fold keeps each year's tallies there, so a report never walks
the claims. Across the reports for one year the totals agree to the fen: the programmes'
``used_fen`` (claims and grants), the entities' ``total_fen`` and the months'
``total_fen``; the centres' ``subsidy_fen`` is the claims part of it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ledger import claims as claims_mod
from ledger import entities as entities_mod
from ledger import reports, settlement, vouchers
from ledger.caps import book as cap_book
from ledger.caps import programme_budget
from ledger.policy import book as policy_book
from ledger.state import LedgerState
from ledger.timeutil import format_time
from ledger.usecases.views import Snapshot


def budget_report(state: LedgerState, year: int, now: datetime) -> dict[str, Any]:
    figures = programme_budget(state, now)
    books = policy_book(state)
    programmes: list[dict[str, Any]] = []
    pools: list[dict[str, Any]] = []
    y = str(year)
    for round_id, version in sorted(books.current.items()):
        policy = books.versions[version]
        for pid, programme in policy.programmes.items():
            row = figures["programmes"].get(f"{round_id}/{pid}", {}).get(y, {})
            limit = programme.pool.amount_fen if programme.pool is not None else None
            used, held = int(row.get("paid_fen") or 0), int(row.get("held_fen") or 0)
            pool = policy.pool_for(pid)
            programmes.append(
                {
                    "id": pid,
                    "round": round_id,
                    "label": f"({programme.number}) {programme.title}",
                    "kind": "programme",
                    "period": y,
                    "limit_fen": limit,
                    "used_fen": used,
                    "held_fen": held,
                    "remaining_fen": None if limit is None else limit - used - held,
                    "pool": pool.id if pool else None,
                    "programmes": [],
                }
            )
        for pool in policy.voucher_pools.values():
            row = figures["pools"].get(pool.id, {}).get(y, {})
            used, held = int(row.get("paid_fen") or 0), int(row.get("held_fen") or 0)
            pools.append(
                {
                    "id": pool.id,
                    "round": round_id,
                    "label": pool.name,
                    "kind": "pool",
                    "period": y,
                    "limit_fen": pool.amount_fen,
                    "used_fen": used,
                    "held_fen": held,
                    "remaining_fen": pool.amount_fen - used - held,
                    "pool": None,
                    "programmes": list(pool.programmes),
                }
            )
    pools.extend(_scheme_rows(state, year, now))
    years = sorted({int(k[3]) for k in cap_book(state).seen if k[0] == "programme" and len(k) == 4})
    return {
        "size": state.size,
        "as_of": format_time(now),
        "year": year,
        "period": y,
        "years": years,
        "pools": pools,
        "programmes": programmes,
        "totals": {
            "used_fen": sum(p["used_fen"] for p in programmes),
            "held_fen": sum(p["held_fen"] for p in programmes),
        },
    }


def _scheme_rows(state: LedgerState, year: int, now: datetime) -> list[dict[str, Any]]:
    """A row per scheme of rounds (docs/policy.md, "Rounds and schemes"): its yearly pool
    shared by the rounds (``limit_fen`` null while no figure is in force) and what the
    rounds' claims, holds and reimbursements drew on it in the year, whichever round."""
    books, caps = policy_book(state), cap_book(state)
    adjust = caps.adjustments(now)
    rows = []
    for scheme, figures in sorted(books.schemes.items()):
        key = ("scheme_pool", scheme, year)
        used, held = caps.used.get(key, 0), caps.held.get(key, 0) - adjust.get(key, 0)
        limit = figures.pool_yearly_fen
        members = [
            f"{round_id}/{pid}"
            for round_id, version in sorted(books.current.items())
            if books.versions[version].scheme == scheme
            for pid in books.versions[version].scheme_programmes
        ]
        rows.append(
            {
                "id": scheme,
                "round": None,
                "label": f"{scheme} (all its rounds)",
                "kind": "scheme_pool",
                "period": str(year),
                "limit_fen": limit,
                "used_fen": used,
                "held_fen": held,
                "remaining_fen": None if limit is None else limit - used - held,
                "pool": None,
                "programmes": members,
            }
        )
    return rows


def _tallies(state: LedgerState, year: int) -> reports.YearTally:
    return reports.book(state).years.get(year) or reports.YearTally()


def _figures(tally: reports.Tally) -> dict[str, int]:
    return {
        "claims": tally.claims,
        "cost_fen": tally.cost_fen,
        "subsidy_fen": tally.subsidy_fen,
        "grants_fen": tally.grants_fen,
        "total_fen": tally.total_fen,
    }


def _totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    keys = ("claims", "cost_fen", "subsidy_fen", "grants_fen", "total_fen")
    return {k: sum(int(r[k]) for r in rows) for k in keys}


def _entity_row(state: LedgerState, uscc: str, paid: reports.Tally) -> dict[str, Any]:
    vbook = vouchers.book(state)
    found = entities_mod.book(state).entities.get(uscc)
    held = [vbook.vouchers[v] for v in vbook.by_holder.get(uscc, [])]
    used, on_hold = cap_book(state).used, cap_book(state).held
    return {
        "uscc": uscc,
        "name": found.name if found else "",
        "district": found.district if found else "",
        "vouchers": len(held),
        "face_value_fen": sum(v.face_value_fen for v in held),
        "balance_fen": sum(
            v.face_value_fen - used.get(("voucher", v.id), 0) - on_hold.get(("voucher", v.id), 0)
            for v in held
        ),
        **_figures(paid),
    }


def entity_report(state: LedgerState, year: int) -> dict[str, Any]:
    """A row per entity that holds a voucher or was paid in the year."""
    paid = _tallies(state, year).entities
    usccs = sorted({*vouchers.book(state).by_holder, *paid})
    listed = [_entity_row(state, uscc, paid.get(uscc) or reports.Tally()) for uscc in usccs]
    return {"size": state.size, "year": year, "entities": listed, "totals": _totals(listed)}


def centre_report(state: LedgerState, year: int) -> dict[str, Any]:
    paid = _tallies(state, year).centres
    centres = claims_mod.book(state).centres
    rows: list[dict[str, Any]] = []
    for cid in sorted(centres):
        mine = paid.get(cid) or reports.Tally()
        position = settlement.centre_settlement(state, cid)
        rows.append(
            {
                "centre": cid,
                "name": centres[cid].name,
                "claims": mine.claims,
                "cost_fen": mine.cost_fen,
                "subsidy_fen": mine.subsidy_fen,
                "granted_fen": position["granted_fen"],
                "settled_fen": position["settled_fen"],
                "due_fen": position["due_fen"],
                "statements": position["statements"],
            }
        )
    keys = ("claims", "cost_fen", "subsidy_fen", "granted_fen", "settled_fen", "due_fen")
    return {
        "size": state.size,
        "year": year,
        "centres": rows,
        "totals": {k: sum(int(r[k]) for r in rows) for k in keys},
    }


def month_report(state: LedgerState, year: int) -> dict[str, Any]:
    tallies = _tallies(state, year)
    by_month: dict[int, dict[str, int]] = {}
    for (month, programme), net in sorted(tallies.programmes.items()):
        by_month.setdefault(month, {})[programme] = net
    rows: list[dict[str, Any]] = [
        {
            "month": f"{year:04d}-{m:02d}",
            **_figures(tallies.months.get(m) or reports.Tally()),
            "by_programme": by_month.get(m, {}),
            "by_round": _by_round(by_month.get(m, {})),
        }
        for m in range(1, 13)
    ]
    year_by_round: dict[str, int] = {}
    for row in rows:
        for round_id, net in row["by_round"].items():
            year_by_round[round_id] = year_by_round.get(round_id, 0) + net
    return {
        "size": state.size,
        "year": year,
        "months": rows,
        "totals": _totals(rows),
        "by_round": year_by_round,
    }


def _by_round(by_programme: dict[str, int]) -> dict[str, int]:
    """Totals by round of totals keyed ``round/programme``: one ledger holds several rounds."""
    out: dict[str, int] = {}
    for key, net in by_programme.items():
        round_id = key.split("/", 1)[0]
        out[round_id] = out.get(round_id, 0) + net
    return out


REPORTS: dict[str, Callable[[LedgerState, int, datetime], dict[str, Any]]] = {
    "budget": budget_report,
    "entities": lambda state, year, _now: entity_report(state, year),
    "centres": lambda state, year, _now: centre_report(state, year),
    "months": lambda state, year, _now: month_report(state, year),
}


def report(snapshot: Snapshot, name: str, year: int | None = None) -> dict[str, Any]:
    """Report ``name`` (budget, entities, centres, months) for ``year`` (default: the
    current budget year)."""
    chosen = year if year is not None else vouchers.budget_year(snapshot.now)
    return REPORTS[name](snapshot.state, chosen, snapshot.now)
