"""Which voucher pays for which centre account: the centre's account-mapping file.

A centre knows its users by its own names (the Slurm ``Account`` of a job, the ``subject``
of a usage event); the ledger knows vouchers. The mapping file, kept by the centre and
loaded by its agent, joins the two. JSON (any extension but ``.toml``) or TOML::

    {
      "accounts": {"dspumpkins": "V-2023-0001", "chaff": "V-2023-0002"},
      "instance_types": {"910b.8x": {"resource": "gpu:910b", "units": 8}}
    }

    # the same in TOML
    [accounts]
    dspumpkins = "V-2023-0001"
    [instance_types."910b.8x"]
    resource = "gpu:910b"
    units = 8

``accounts`` (required) maps an account, matched exactly (Slurm lower-cases account
names, so write them as sacct prints them), to a voucher id. An account missing from it
is *unmapped*: the parsers skip its usage with the reason
``account X has no voucher mapping`` when given the map, and ``suanli centre preview``
still prints the usage, flagged ``"unmapped": true``.

``instance_types`` (optional) tells the event parser what one instance of an instance
type is in ledger units: ``resource`` (a key of ``ledger.usage.RESOURCE_UNITS``) and
``units`` (a positive integer: cards or cores per instance); only per-second resources
(cpu, gpu*) qualify, since an event prices an instance by its running time. See
``adapters.events``.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import InvalidInput
from ledger.usage import RESOURCE_UNITS


@dataclass(frozen=True)
class InstanceType:
    """One instance of a centre's instance type, in ledger units."""

    resource: str  # a key of RESOURCE_UNITS
    units: int  # cards (GPU) or cores (CPU) per instance, > 0


@dataclass(frozen=True)
class AccountMap:
    """Centre account -> voucher id, plus the centre's instance types (may be empty)."""

    accounts: Mapping[str, str]
    instance_types: Mapping[str, InstanceType] = field(default_factory=dict)

    def voucher_for(self, account: str) -> str | None:
        """The voucher id that pays for ``account``'s usage, or None when it is unmapped."""
        return self.accounts.get(account)

    @classmethod
    def from_dict(cls, doc: object, *, origin: str = "mapping") -> AccountMap:
        """Validate a decoded mapping document; raise InvalidInput naming the bad entry."""
        if not isinstance(doc, dict):
            raise InvalidInput(f"{origin}: the mapping must be an object with an 'accounts' table")
        unknown = set(doc) - {"accounts", "instance_types"}
        if unknown:
            raise InvalidInput(
                f"{origin}: unknown key(s) {', '.join(sorted(unknown))};"
                " expected 'accounts' and optionally 'instance_types'"
            )
        raw_accounts = doc.get("accounts")
        if not isinstance(raw_accounts, dict):
            raise InvalidInput(f"{origin}: 'accounts' must be a table of account -> voucher id")
        accounts: dict[str, str] = {}
        for account, voucher in raw_accounts.items():
            if not account:
                raise InvalidInput(f"{origin}: an account name is empty")
            if not isinstance(voucher, str) or not voucher.strip():
                raise InvalidInput(
                    f"{origin}: account {account!r} must map to a voucher id string,"
                    f" got {voucher!r}"
                )
            accounts[account] = voucher.strip()
        raw_types = doc.get("instance_types", {})
        if not isinstance(raw_types, dict):
            raise InvalidInput(f"{origin}: 'instance_types' must be a table")
        types = {name: _instance_type(origin, name, spec) for name, spec in raw_types.items()}
        return cls(accounts=accounts, instance_types=types)

    @classmethod
    def load(cls, path: str | Path) -> AccountMap:
        """Read a JSON or TOML (``.toml``) mapping file."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read mapping file {file}: {exc}") from exc
        doc: Any
        try:
            doc = tomllib.loads(text) if file.suffix.lower() == ".toml" else json.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise InvalidInput(f"mapping file {file} is not valid: {exc}") from exc
        return cls.from_dict(doc, origin=str(file))


def _instance_type(origin: str, name: str, spec: object) -> InstanceType:
    where = f"{origin}: instance type {name!r}"
    if not isinstance(spec, dict):
        raise InvalidInput(f"{where} must be a table with 'resource' and 'units'")
    resource = spec.get("resource")
    units = spec.get("units")
    if not isinstance(resource, str) or resource not in RESOURCE_UNITS:
        known = ", ".join(sorted(RESOURCE_UNITS))
        raise InvalidInput(f"{where}: resource {resource!r} is not one of {known}")
    if not RESOURCE_UNITS[resource].endswith("-second"):
        raise InvalidInput(
            f"{where}: resource {resource!r} is metered in {RESOURCE_UNITS[resource]},"
            " not per second, so it cannot be priced by running time"
        )
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
        raise InvalidInput(f"{where}: units must be a positive integer, got {units!r}")
    return InstanceType(resource=resource, units=units)
