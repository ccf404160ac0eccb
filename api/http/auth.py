"""Bearer-token authentication and role checks for the HTTP API.

Roles: ``admin`` (the city bureau, the issuer), ``reviewer`` (one 区县), ``grantee`` (one
entity), ``auditor`` (read-only, everything), ``centre`` (one centre). Each endpoint says
which roles it admits with ``Depends(require(...))``; scope checks (own district, own
entity, own centre) are made where the data is known, with ``check_entity`` and friends.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ledger.errors import Denied, Unauthenticated
from ledger.store.tokens import Principal, TokenStore

bearer = HTTPBearer(auto_error=False, description="a token from `suanli token create`")


def tokens(request: Request) -> TokenStore:
    store: TokenStore = request.app.state.tokens
    return store


def require(*roles: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that admits a valid token whose role is one of ``roles``.

    The roles are kept on the dependency (``.roles``) so that the authorization-matrix
    test can read what every route admits."""

    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> Principal:
        if credentials is None:
            raise Unauthenticated("send Authorization: Bearer <token>")
        principal = tokens(request).resolve(credentials.credentials)
        if principal.role not in roles:
            raise Denied(
                f"role {principal.role} may not do this; allowed: {', '.join(roles)}",
                reason="ROLE_DENIED",
            )
        request.state.principal = principal
        return principal

    dependency.roles = roles  # type: ignore[attr-defined]
    return dependency


def check_entity(principal: Principal, uscc: str) -> None:
    """A grantee sees only its own entity."""
    if principal.role == "grantee" and principal.entity != uscc:
        raise Denied("a grantee sees only its own entity", reason="NOT_YOUR_ENTITY")


def check_district(principal: Principal, district: str) -> None:
    """A district reviewer sees only its own 区县."""
    if principal.role == "reviewer" and principal.district != district:
        raise Denied(
            f"this reviewer covers {principal.district}, not {district}", reason="NOT_YOUR_DISTRICT"
        )


def check_centre(principal: Principal, centre: str) -> None:
    if principal.role == "centre" and principal.centre != centre:
        raise Denied("a centre sees only its own records", reason="NOT_YOUR_CENTRE")
