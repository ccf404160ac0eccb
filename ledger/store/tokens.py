"""API tokens: created by the CLI, stored hashed, resolved to a principal per request.

Every token expires: ``default_days`` after it is made unless its maker says otherwise, and
never more than ``max_days`` (``SUANLI_TOKEN_DAYS``, ``SUANLI_TOKEN_MAX_DAYS``). Tokens
live in real (wall-clock) time, whatever clock the ledger runs on. When a token was last
used is written at most once a minute, so that reads do not become writes.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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


@dataclass(frozen=True)
class TokenInfo:
    """A token as ``token list`` shows it (never the token itself)."""

    principal: Principal
    created_at: str
    expires_at: str | None
    last_used_at: str | None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= format_time(now)


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


LAST_USED_EVERY = timedelta(minutes=1)


def _principal(row: Any) -> Principal:
    return Principal(row.id, row.role, row.district, row.entity, row.centre, row.label)


class TokenStore:
    def __init__(
        self,
        engine: Engine,
        *,
        default_days: int = 90,
        max_days: int = 366,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.default_days = default_days
        self.max_days = max_days
        self.now = now

    def create(
        self,
        role: str,
        *,
        district: str | None = None,
        entity: str | None = None,
        centre: str | None = None,
        label: str = "",
        days: int | None = None,
    ) -> tuple[str, Principal]:
        """Make a token valid for ``days`` (default: ``default_days``); returns it in clear
        (shown once) and its principal."""
        days = self.default_days if days is None else days
        if not 1 <= days <= self.max_days:
            raise InvalidInput(
                f"a token is valid for 1 to {self.max_days} days, not {days}",
                reason="OUT_OF_RANGE",
                details={"field": "days"},
            )
        check_scope(role, district=district, entity=entity, centre=centre)
        token = PREFIX + secrets.token_urlsafe(32)
        now = self.now()
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
                    created_at=format_time(now),
                    expires_at=format_time(now + timedelta(days=days)),
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
        now = self.now()
        stamp = format_time(now)
        if row.expires_at is not None and row.expires_at <= stamp:
            raise Unauthenticated(
                f"token {row.id} expired at {row.expires_at}; ask for a new one "
                "(suanli token create)",
                reason="TOKEN_EXPIRED",
                details={"token_id": row.id, "expired_at": row.expires_at},
            )
        if row.last_used_at is None or row.last_used_at <= format_time(now - LAST_USED_EVERY):
            with self.engine.begin() as conn:
                conn.execute(
                    update(api_tokens).where(api_tokens.c.id == row.id).values(last_used_at=stamp)
                )
        return _principal(row)

    def revoke(self, token_id: str) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=format_time(self.now()))
            )
        if done.rowcount == 0:
            raise NotFound(f"no active token {token_id}")

    def list(self) -> list[Principal]:
        return [info.principal for info in self.infos()]

    def infos(self) -> builtins.list[TokenInfo]:
        """Every token not revoked (expired ones too), oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(api_tokens)
                .where(api_tokens.c.revoked_at.is_(None))
                .order_by(api_tokens.c.created_at)
            ).all()
        return [TokenInfo(_principal(r), r.created_at, r.expires_at, r.last_used_at) for r in rows]
