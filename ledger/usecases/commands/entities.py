"""Entities: registering them, blacklisting and lifting a blacklisting."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ledger import corrections, entities
from ledger.entities import BadRecord
from ledger.uscc import validate as validate_uscc
from ledger.usecases.unit_of_work import Appended, UnitOfWork


@dataclass(frozen=True)
class NewEntity:
    """An entity to register on the way to a voucher (simulations, seeding, tests)."""

    uscc: str
    name: str
    type: str
    district: str


def register_entity(
    uow: UnitOfWork,
    *,
    uscc: str,
    name: str,
    type: str,
    district: str,
    records: Iterable[BadRecord] = (),
    by_issuer: bool = False,
) -> Appended:
    """Register an entity by its 统一社会信用代码 (its GB 32100 check character is checked
    first, so that a typo is named before anything else): signed by the issuer when the
    bureau registers it, by the service when an applicant registers itself."""
    validate_uscc(uscc)
    body = entities.register_body(uscc, name, type, district, records)
    signer = uow.keys.issuer if by_issuer else uow.keys.service
    return uow.append(uow.sign("entity.register", body, signer))


def blacklist_entity(uow: UnitOfWork, *, uscc: str, reason: str, evidence_sha256: str) -> Appended:
    """Blacklist an entity: its active vouchers are suspended (``result["suspended"]``)."""
    body = corrections.blacklist_body(uscc=uscc, reason=reason, evidence_sha256=evidence_sha256)
    return uow.append(uow.sign("entity.blacklist", body, uow.keys.issuer))


def unblacklist_entity(uow: UnitOfWork, *, uscc: str, reason: str) -> Appended:
    """Lift a blacklisting: the vouchers it suspended are reinstated (``result["reinstated"]``)."""
    body = corrections.unblacklist_body(uscc=uscc, reason=reason)
    return uow.append(uow.sign("entity.unblacklist", body, uow.keys.issuer))
