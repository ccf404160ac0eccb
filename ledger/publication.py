"""What the log publishes, and who may read the rest (docs/publication.md).

Anyone may verify the log: every leaf, signature, tree and checkpoint is public. What a
leaf must not show in clear is concealed (``ledger.disclosure``): for each entry kind,
:data:`RESTRICTED` names the body members that are, and :func:`audience` says who may open
them. The rule follows the notice and the Personal Information Protection Law (个人信息保护法):
approved recipients, their programme and amount are published (公示); applicants' identity
and project data, district opinions and reviewers, rejected decisions, reasons and
job-level usage records are not. The fold refuses an entry that shows a restricted member
in clear (NOT_CONCEALED), so nothing restricted can be published, by any author.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.disclosure import conceal, salted_by
from ledger.entry import Entry
from ledger.errors import InvalidInput

# Every entry kind, and the body members a leaf of it must conceal (an empty tuple: all
# public). Kinds missing here cannot be appended (the test walks ledger.fold.RULES).
RESTRICTED: Mapping[str, tuple[str, ...]] = {
    # the log and its keys, the round: public
    "log.genesis": (),
    "log.rotate": (),
    "key.register": (),
    "key.retire": (),
    "log.note": (),
    "policy.publish": (),
    "centre.register": (),
    "ratecard.publish": (),
    # who applies, with what, and what the district and the bureau said: not public
    "entity.register": ("uscc", "name", "type", "district", "records"),
    "application.submit": ("applicant", "inputs", "materials", "attestations"),
    "application.review": ("district", "reviewer", "opinion", "note"),
    "application.decide": ("decision", "amount_fen", "note"),
    # an erasure names the application, its entries and why: public (the reason says why,
    # never whose)
    "erase": (),
    # sanctions are public; their reasons are not
    "entity.blacklist": ("reason",),
    "entity.unblacklist": ("reason",),
    # approved recipients, programme and amount: public (公示); a status change's reason not
    "voucher.issue": (),
    "voucher.suspend": ("reason",),
    "voucher.reinstate": ("reason",),
    "voucher.revoke": ("reason",),
    "voucher.expire": ("reason",),
    "grant.pay": (),
    # post-hoc reimbursement: who claims, from whom, for what and with which documents is
    # not public, nor the district's opinion or a rejection; an approved amount and its
    # payment are (公示), as for grants
    "reimbursement.submit": (
        "claimant",
        "provider",
        "period",
        "amount_paid_fen",
        "invoices",
        "evidence",
        "related_parties",
    ),
    "reimbursement.review": ("district", "reviewer", "opinion", "note"),
    "reimbursement.decide": ("decision", "amount_fen", "note"),
    "reimbursement.pay": (),
    # redemption: the centre, the voucher and the cost are public; the job is not
    "claim": ("record_id", "resource", "quantity", "start", "end"),
    "capture": ("record_id", "resource", "quantity", "start", "end"),
    "hold": (),
    "void": (),
    # corrections: which claim (a job) and why are not public; an amount clawed back is
    "claim.reverse": ("record_id", "reason"),
    "clawback": ("target", "reason"),
    # settlement: public (a line points at its claim by log index)
    "statement.open": (),
    "statement.lines": (),
    "statement.close": (),
}


def restricted(kind: str) -> tuple[str, ...]:
    found = RESTRICTED.get(kind)
    if found is None:
        raise InvalidInput(f"entry kind {kind!r} has no publication rule", reason="UNKNOWN_KIND")
    return found


def concealed(kind: str, at: str, body: Mapping[str, Any]) -> Entry:
    """A new (unsigned) entry of ``kind`` with its restricted members concealed and their
    disclosures beside it: how every author writes an entry."""
    published, disclosures = conceal(body, restricted(kind))
    return Entry(kind, at, published).disclosed(disclosures, clear=body)


def conceal_as_signed(
    kind: str, body: Mapping[str, Any], salts: Mapping[str, str]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The published body and disclosures of a body another party concealed with ``salts``
    (one per restricted member, by name) and signed: what it signed is rebuilt here."""
    names = [n for n in restricted(kind) if n in body]
    missing = [n for n in names if not isinstance(salts.get(n), str) or not salts[n]]
    if missing:
        raise InvalidInput(
            f"{kind}: no salt for concealed member {missing[0]!r} (docs/publication.md)",
            reason="MISSING_SALT",
            details={"field": missing[0]},
        )
    extra = sorted(set(salts) - set(names))
    if extra:
        raise InvalidInput(
            f"{kind}: a salt for {extra[0]!r}, which is not concealed", reason="MISSING_SALT"
        )
    return conceal(body, names, salted_by(salts, names))


def check_concealed(kind: str, body: Mapping[str, Any]) -> None:
    """Refuse a published body that shows a restricted member in clear."""
    shown = [name for name in restricted(kind) if name in body]
    if shown:
        raise InvalidInput(
            f"{kind}: body.{shown[0]} may not be published in clear; conceal it "
            "(docs/publication.md: a salted digest under _sd, its disclosure beside the entry)",
            reason="NOT_CONCEALED",
            details={"field": f"body.{shown[0]}"},
        )


@dataclass(frozen=True)
class Audience:
    """Who besides the bureau (admin) and auditors may open an entry's concealed members:
    entities (by 统一社会信用代码), district reviewers (by 区县) and centres (by id)."""

    entities: frozenset[str] = field(default_factory=frozenset)
    districts: frozenset[str] = field(default_factory=frozenset)
    centres: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(
        cls,
        entities: Iterable[str | None] = (),
        districts: Iterable[str | None] = (),
        centres: Iterable[str | None] = (),
    ) -> Audience:
        def keep(values: Iterable[str | None]) -> frozenset[str]:
            return frozenset(v for v in values if v)

        return cls(keep(entities), keep(districts), keep(centres))


def may_open(
    audience: Audience,
    role: str,
    *,
    entity: str | None = None,
    district: str | None = None,
    centre: str | None = None,
) -> bool:
    """May a caller of ``role`` (with its scope) open what ``audience`` may?"""
    if role in ("admin", "auditor"):
        return True
    if role == "grantee":
        return entity is not None and entity in audience.entities
    if role == "reviewer":
        return district is not None and district in audience.districts
    if role == "centre":
        return centre is not None and centre in audience.centres
    return False
