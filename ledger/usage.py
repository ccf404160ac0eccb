"""Metered usage as centres report it, and the resource catalogue that prices it.

Quantities are integers in the resource's smallest unit (CPU core-seconds, GPU
card-seconds, storage GiB-hours), so that no fraction is ever rounded before pricing.
A rate card prices a resource as ``price_fen`` per ``per_units`` units; cost is
``floor(quantity * price_fen / per_units)`` fen (the centre never bills a part of a fen).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from ledger.errors import InvalidInput

# resource id -> smallest unit. GPU models are lower-case, as Slurm's gres types are.
RESOURCE_UNITS: dict[str, str] = {
    "cpu": "core-second",
    "gpu": "card-second",  # GPU of unspecified model (Slurm `gres/gpu=N` without a type)
    "gpu:a100": "card-second",
    "gpu:a800": "card-second",
    "gpu:h100": "card-second",
    "gpu:h800": "card-second",
    "gpu:v100": "card-second",
    "gpu:910b": "card-second",  # Ascend 910B (成都智算中心)
    "storage": "GiB-hour",
}

_RECORD_ID = re.compile(r"^[A-Za-z0-9_.:+\-/@]{1,128}$")
CENTRE_ID = re.compile(r"^[a-z0-9][a-z0-9\-]{1,31}$")


def check_resource(resource: str) -> None:
    if resource not in RESOURCE_UNITS:
        known = ", ".join(sorted(RESOURCE_UNITS))
        raise InvalidInput(
            f"unknown resource {resource!r}; known: {known}",
            reason="UNKNOWN_RESOURCE",
            details={"resource": resource},
        )


def check_centre_id(centre: str) -> None:
    if not CENTRE_ID.fullmatch(centre):
        raise InvalidInput(f"centre id {centre!r} must be 2-32 of a-z 0-9 '-'")


@dataclass(frozen=True)
class UsageRecord:
    """One job's (or event's) usage of one resource at one centre.

    centre: the centre's id in the ledger (e.g. ``nscc-cd``).
    record_id: the centre's own id for this usage (Slurm job id, event id); with ``centre``
        and ``resource`` it is the idempotency key, so it must be stable across exports.
    account: the centre-side account the usage was billed to (Slurm account, tenant).
    resource: a key of RESOURCE_UNITS.
    quantity: integer count of the resource's smallest unit, > 0.
    start, end: aware datetimes, start <= end.
    """

    centre: str
    record_id: str
    account: str
    resource: str
    quantity: int
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        check_centre_id(self.centre)
        if not _RECORD_ID.fullmatch(self.record_id):
            raise InvalidInput(
                f"record id {self.record_id!r} must be 1-128 of A-Z a-z 0-9 _ . : + - / @",
                reason="MALFORMED_RECORD",
            )
        check_resource(self.resource)
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int):
            raise InvalidInput("quantity must be an integer", reason="MALFORMED_QUANTITY")
        if self.quantity <= 0:
            raise InvalidInput(
                f"quantity must be > 0, got {self.quantity}", reason="MALFORMED_QUANTITY"
            )
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InvalidInput("start and end must carry a time zone", reason="MALFORMED_TIME")
        if self.end < self.start:
            raise InvalidInput(
                f"end {self.end.isoformat()} is before start {self.start.isoformat()}",
                reason="MALFORMED_TIME",
            )
