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
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from ledger.errors import InvalidInput
from ledger.usage import RESOURCE_UNITS


@dataclass(frozen=True)
class InstanceType:
    """One instance of a centre's instance type, in ledger units."""

    resource: str  # a key of RESOURCE_UNITS
    units: int  # cards (GPU) or cores (CPU) per instance, > 0


class JobKeys(NamedTuple):
    """What a job is known by at the centre, for choosing its voucher (empty: not known).
    A named tuple: the parser makes one per job, by the million."""

    account: str = ""
    user: str = ""
    partition: str = ""
    qos: str = ""
    wckey: str = ""

    def to_json(self) -> str:
        return _keys_json(self)

    @classmethod
    def from_json(cls, text: str | None, account: str = "") -> JobKeys:
        if not text:
            return cls(account=account)
        return cls(**{k: str(v) for k, v in json.loads(text).items() if k in _KEY_NAMES})

    def describe(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self._asdict().items() if v) or "no account"


@lru_cache(maxsize=4096)  # a centre's jobs share a few thousand key combinations at most
def _keys_json(keys: JobKeys) -> str:
    return json.dumps({k: v for k, v in keys._asdict().items() if v}, sort_keys=True)


_KEY_NAMES = ("account", "user", "partition", "qos", "wckey")
# The voucher tables of a mapping file, in the order they are consulted (most specific
# first), and the JobKeys field each is keyed by.
VOUCHER_TABLES = (
    ("wckeys", "wckey"),
    ("account_users", ""),
    ("users", "user"),
    ("accounts", "account"),
    ("qos", "qos"),
    ("partitions", "partition"),
)
GPU_TABLES = (("gpu_by_partition", "partition"), ("gpu_by_qos", "qos"))


@dataclass(frozen=True)
class AccountMap:
    """Which voucher pays for which job, the GPU model of a partition or QOS, and the
    centre's instance types (each may be empty)."""

    accounts: Mapping[str, str]
    instance_types: Mapping[str, InstanceType] = field(default_factory=dict)
    users: Mapping[str, str] = field(default_factory=dict)
    account_users: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    partitions: Mapping[str, str] = field(default_factory=dict)
    qos: Mapping[str, str] = field(default_factory=dict)
    wckeys: Mapping[str, str] = field(default_factory=dict)
    gpu_by_partition: Mapping[str, str] = field(default_factory=dict)
    gpu_by_qos: Mapping[str, str] = field(default_factory=dict)

    def voucher_for(self, account: str) -> str | None:
        """The voucher id that pays for ``account``'s usage, or None when it is unmapped."""
        return self.accounts.get(account)

    def voucher_of(self, keys: JobKeys) -> str | None:
        """The voucher that pays for a job: the first table (``VOUCHER_TABLES`` order) that
        names the job's key; None when none does."""
        if keys.wckey and keys.wckey in self.wckeys:
            return self.wckeys[keys.wckey]
        by_user = self.account_users.get(keys.account, {})
        if keys.user and keys.user in by_user:
            return by_user[keys.user]
        for table, value in (
            (self.users, keys.user),
            (self.accounts, keys.account),
            (self.qos, keys.qos),
            (self.partitions, keys.partition),
        ):
            if value and value in table:
                return table[value]
        return None

    def vouchers(self) -> dict[str, str]:
        """Every voucher the mapping names, with the first entry that names it."""
        named: dict[str, str] = {}
        for table, key in VOUCHER_TABLES:
            if table == "account_users":
                for account, users in self.account_users.items():
                    for user, voucher in users.items():
                        named.setdefault(voucher, f"account {account} user {user}")
                continue
            for name, voucher in getattr(self, table).items():
                named.setdefault(voucher, f"{key} {name}")
        return named

    def gpu_resource(self, keys: JobKeys) -> str | None:
        """The GPU model (a ``gpu:<model>`` resource) the job's partition or QOS says."""
        if keys.partition in self.gpu_by_partition:
            return self.gpu_by_partition[keys.partition]
        return self.gpu_by_qos.get(keys.qos)

    def fingerprint_doc(self) -> dict[str, Any]:
        """Everything that decides a record's voucher or resource, for change detection."""
        doc: dict[str, Any] = {
            name: dict(sorted(getattr(self, name).items()))
            for name in ("accounts", "users", "partitions", "qos", "wckeys", *_GPU_NAMES)
        }
        doc["account_users"] = {a: dict(sorted(u.items())) for a, u in self.account_users.items()}
        doc["types"] = {k: [v.resource, v.units] for k, v in sorted(self.instance_types.items())}
        return doc

    @classmethod
    def from_dict(cls, doc: object, *, origin: str = "mapping") -> AccountMap:
        """Validate a decoded mapping document; raise InvalidInput naming the bad entry."""
        if not isinstance(doc, dict):
            raise InvalidInput(f"{origin}: the mapping must be an object with an 'accounts' table")
        known = {name for name, _ in VOUCHER_TABLES} | set(_GPU_NAMES) | {"instance_types"}
        unknown = set(doc) - known
        if unknown:
            raise InvalidInput(
                f"{origin}: unknown key(s) {', '.join(sorted(unknown))};"
                f" expected some of {', '.join(sorted(known))}"
            )
        if not any(name in doc for name, _ in VOUCHER_TABLES):
            raise InvalidInput(
                f"{origin}: 'accounts' must be a table of account -> voucher id"
                " (or give users, account_users, partitions, qos or wckeys)"
            )
        tables = {
            name: _vouchers(origin, name, doc.get(name, {}))
            for name, _ in VOUCHER_TABLES
            if name != "account_users"
        }
        raw_pairs = doc.get("account_users", {})
        if not isinstance(raw_pairs, dict):
            raise InvalidInput(f"{origin}: 'account_users' must be a table of account -> users")
        pairs = {
            account: _vouchers(origin, f"account_users.{account}", users)
            for account, users in raw_pairs.items()
        }
        gpus = {name: _gpu_models(origin, name, doc.get(name, {})) for name in _GPU_NAMES}
        raw_types = doc.get("instance_types", {})
        if not isinstance(raw_types, dict):
            raise InvalidInput(f"{origin}: 'instance_types' must be a table")
        types = {name: _instance_type(origin, name, spec) for name, spec in raw_types.items()}
        return cls(instance_types=types, account_users=pairs, **tables, **gpus)

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


_GPU_NAMES = tuple(name for name, _ in GPU_TABLES)


def _vouchers(origin: str, table: str, raw: object) -> dict[str, str]:
    """A table of name -> voucher id."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"{origin}: '{table}' must be a table of name -> voucher id")
    out: dict[str, str] = {}
    for name, voucher in raw.items():
        if not name:
            raise InvalidInput(f"{origin}: a name in '{table}' is empty")
        if not isinstance(voucher, str) or not voucher.strip():
            raise InvalidInput(
                f"{origin}: {table} {name!r} must map to a voucher id string, got {voucher!r}"
            )
        out[name] = voucher.strip()
    return out


def _gpu_models(origin: str, table: str, raw: object) -> dict[str, str]:
    """A table of partition (or QOS) -> ``gpu:<model>`` resource."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"{origin}: '{table}' must be a table of name -> gpu resource")
    gpus = sorted(r for r in RESOURCE_UNITS if r.startswith("gpu"))
    for name, resource in raw.items():
        if resource not in gpus:
            raise InvalidInput(
                f"{origin}: {table} {name!r} must be one of {', '.join(gpus)}, got {resource!r}"
            )
    return dict(raw)
