"""API tokens: created by the CLI, stored hashed, resolved to a principal per request."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update

from ledger import uscc
from ledger.entities import DISTRICTS
from ledger.errors import InvalidInput, NotFound, Unauthenticated
from ledger.store.schema import api_tokens
from ledger.timeutil import format_time

ROLES = ("admin", "reviewer", "grantee", "auditor", "centre")
PREFIX = "sl_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role and the scope it is confined to."""

    token_id: str
    role: str
    district: str | None = None  # reviewer: its 区县
    entity: str | None = None  # grantee: its 统一社会信用代码
    centre: str | None = None  # centre: its id
    label: str = ""


def check_scope(role: str, *, district: str | None, entity: str | None, centre: str | None) -> None:
    """Refuse a token that could never work: an unknown role, a missing scope, a
    统一社会信用代码 that fails its check character, a district that is not Chengdu's."""
    if role not in ROLES:
        raise InvalidInput(
            f"role must be one of {', '.join(ROLES)}, got {role!r}", reason="UNKNOWN_ROLE"
        )
    needs = {
        "reviewer": ("district", district),
        "grantee": ("entity", entity),
        "centre": ("centre", centre),
    }
    if role in needs and not needs[role][1]:
        raise InvalidInput(f"a {role} token needs --{needs[role][0]}", reason="SCOPE_MISSING")
    if entity is not None:
        uscc.validate(entity)
    if district is not None and district not in DISTRICTS:
        raise InvalidInput(
            f"district {district!r} is not one of Chengdu's: {', '.join(DISTRICTS)}",
            reason="UNKNOWN_DISTRICT",
        )


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        role: str,
        *,
        district: str | None = None,
        entity: str | None = None,
        centre: str | None = None,
        label: str = "",
    ) -> tuple[str, Principal]:
        """Make a token; returns it in clear (shown once) and its principal."""
        check_scope(role, district=district, entity=entity, centre=centre)
        token = PREFIX + secrets.token_urlsafe(32)
        principal = Principal(secrets.token_hex(8), role, district, entity, centre, label)
        with self.engine.begin() as conn:
            conn.execute(
                insert(api_tokens).values(
                    id=principal.token_id,
                    token_hash=_hash(token),
                    role=role,
                    district=district,
                    entity=entity,
                    centre=centre,
                    label=label,
                    created_at=format_time(datetime.now(UTC)),
                )
            )
        return token, principal

    def resolve(self, token: str) -> Principal:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_tokens).where(api_tokens.c.token_hash == _hash(token))
            ).first()
        if row is None or row.revoked_at is not None:
            raise Unauthenticated("unknown or revoked token")
        return Principal(row.id, row.role, row.district, row.entity, row.centre, row.label)

    def revoke(self, token_id: str) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=format_time(datetime.now(UTC)))
            )
        if done.rowcount == 0:
            raise NotFound(f"no active token {token_id}")

    def list(self) -> list[Principal]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(api_tokens)
                .where(api_tokens.c.revoked_at.is_(None))
                .order_by(api_tokens.c.created_at)
            ).all()
        return [Principal(r.id, r.role, r.district, r.entity, r.centre, r.label) for r in rows]
