"""Entities: the applicants and holders, registered by 统一社会信用代码.

``entity.register`` (issuer or service) records an entity: its 统一社会信用代码 (checked
with the GB 32100-2015 check character, :mod:`ledger.uscc`), name, type (enterprise,
university, research_institute, talent_team), 区县 (one of Chengdu's 20 区(市)县 or the
three functional zones, which is what a district reviewer's scope is matched against),
and its record flags: criminal, administrative-penalty or dishonesty records with their
dates (the notice's "三年内无犯罪、行政处罚记录和失信等不良记录").

Blacklisting (``entity.blacklist`` / ``entity.unblacklist``) is a correction and lives in
:mod:`ledger.corrections`; this module keeps the flag it sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from immutables import Map

from ledger.entry import Entry
from ledger.errors import Conflict, NotFound
from ledger.policy import ENTITY_TYPES
from ledger.reader import Reader, body_reader
from ledger.state import Context, LedgerState, Result
from ledger.timeutil import format_time, local_text, shanghai_date

# 成都市 区(市)县 (GB/T 2260 codes 510104-510185), and the three functional zones that
# run their own 新经济 departments and review applications like a district.
DISTRICTS: Mapping[str, str | None] = {
    "锦江区": "510104",
    "青羊区": "510105",
    "金牛区": "510106",
    "武侯区": "510107",
    "成华区": "510108",
    "龙泉驿区": "510112",
    "青白江区": "510113",
    "新都区": "510114",
    "温江区": "510115",
    "双流区": "510116",
    "郫都区": "510117",
    "新津区": "510118",
    "金堂县": "510121",
    "大邑县": "510129",
    "蒲江县": "510131",
    "都江堰市": "510181",
    "彭州市": "510182",
    "邛崃市": "510183",
    "崇州市": "510184",
    "简阳市": "510185",
    "成都高新区": None,
    "天府新区成都直管区": None,
    "成都东部新区": None,
}
RECORD_KINDS = ("criminal", "administrative_penalty", "dishonesty")


@dataclass(frozen=True)
class BadRecord:
    """A criminal, administrative-penalty or dishonesty record, dated (Asia/Shanghai)."""

    kind: str
    date: date
    ref: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "date": self.date.isoformat()}
        if self.ref is not None:
            out["ref"] = self.ref
        return out


@dataclass(frozen=True)
class Blacklisting:
    since: datetime
    index: int
    reason: str
    evidence_sha256: str


@dataclass(frozen=True)
class Entity:
    uscc: str
    name: str
    type: str
    district: str
    records: tuple[BadRecord, ...]
    registered_index: int
    blacklisted: Blacklisting | None = None
    blacklist_history: tuple[tuple[int, str, str], ...] = ()  # index, action, reason

    def bad_record_within(self, now: datetime, years: int) -> BadRecord | None:
        """A record dated within ``years`` years before ``now`` (Asia/Shanghai dates)."""
        today = shanghai_date(now)
        try:
            horizon = today.replace(year=today.year - years)
        except ValueError:  # 29 February
            horizon = today.replace(year=today.year - years, day=28)
        return next((r for r in self.records if horizon <= r.date <= today), None)


@dataclass
class EntityBook:
    entities: Map[str, Entity] = field(default_factory=Map)

    def put(self, entity: Entity) -> None:
        self.entities = self.entities.set(entity.uscc, entity)


def book(state: LedgerState) -> EntityBook:
    part: EntityBook = state.part("entities", EntityBook)
    return part


def entity_of(state: LedgerState, uscc: str) -> Entity:
    """The registered entity, or NotFound(UNKNOWN_ENTITY)."""
    found = state.read("entities", EntityBook).entities.get(uscc)
    if found is None:
        raise NotFound(
            f"no entity with 统一社会信用代码 {uscc} is registered", reason="UNKNOWN_ENTITY"
        )
    return found


# --- the entry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisterBody:
    uscc: str
    name: str
    type: str
    district: str
    records: tuple[BadRecord, ...] = ()

    @classmethod
    def read(cls, r: Reader) -> RegisterBody:
        r.obj(["uscc", "name", "type", "district"], ["records"])
        records = []
        if r.has("records"):
            for rr in r.items("records"):
                rr.obj(["kind", "date"], ["ref"])
                records.append(
                    BadRecord(rr.choice("kind", RECORD_KINDS), rr.day("date"), rr.opt_text("ref"))
                )
        return cls(
            uscc=r.uscc("uscc"),
            name=r.text("name", max_len=200),
            type=r.choice("type", ENTITY_TYPES),
            district=r.choice("district", DISTRICTS),
            records=tuple(records),
        )

    def to_body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "uscc": self.uscc,
            "name": self.name,
            "type": self.type,
            "district": self.district,
        }
        if self.records:
            out["records"] = [r.to_json() for r in self.records]
        return out


def register_body(
    uscc: str, name: str, type: str, district: str, records: Iterable[BadRecord] = ()
) -> dict[str, Any]:
    """Body of ``entity.register`` (validated)."""
    body = RegisterBody(uscc, name, type, district, tuple(records)).to_body()
    RegisterBody.read(Reader(body, "body"))
    return body


def apply_register(state: LedgerState, entry: Entry, ctx: Context) -> Result:
    body = RegisterBody.read(body_reader(entry))
    found = book(state)
    entities = found.entities
    if body.uscc in entities:
        raise Conflict(
            f"entity {body.uscc} is already registered "
            f"(entry {entities[body.uscc].registered_index})",
            reason="ENTITY_EXISTS",
        )
    entity = Entity(body.uscc, body.name, body.type, body.district, body.records, ctx.index)
    found.entities = entities.set(body.uscc, entity)
    return {"uscc": body.uscc}


# --- read side ---------------------------------------------------------------------------


def entity_view(state: LedgerState, uscc: str) -> dict[str, Any]:
    entity = entity_of(state, uscc)
    black = entity.blacklisted
    return {
        "uscc": entity.uscc,
        "name": entity.name,
        "type": entity.type,
        "district": entity.district,
        "district_code": DISTRICTS[entity.district],
        "records": [r.to_json() for r in entity.records],
        "registered_index": entity.registered_index,
        "blacklisted": None
        if black is None
        else {
            "since": format_time(black.since),
            "since_local": local_text(black.since),
            "index": black.index,
            "reason": black.reason,
            "evidence_sha256": black.evidence_sha256,
        },
    }
