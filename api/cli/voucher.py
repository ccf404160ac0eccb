"""``suanli voucher verify``: a grantee checks a voucher offline, with the issuer's JWK Set.

The voucher credential is a JWT (``ledger.credential``); the issuer's public keys are at
``/v1/issuer/jwks`` of the service (or in a file the bureau published). Nothing else is
needed: no token, no database, no network when the JWK Set is a file.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from api.cli.options import command_group
from ledger.credential import VoucherCheck, check_voucher
from ledger.errors import LedgerError
from ledger.money import format_bp, format_fen
from ledger.timeutil import local_text, parse_time

app = command_group("voucher", "A voucher credential, checked offline by its holder.")


STDIN = "-"


def _read_token(given: str) -> str:
    """The token itself (three base64url parts), ``-`` for stdin, or a file holding it."""
    if given == STDIN:
        return sys.stdin.read().strip()
    if given.count(".") == 2 and "/" not in given and len(given) > 100:
        return given.strip()
    try:
        return Path(given).read_text("utf-8").strip()
    except OSError as exc:
        raise typer.BadParameter(
            f"{given[:60]} is neither a voucher token nor a file: {exc}"
        ) from None


def _read_jwks(source: str) -> dict[str, Any]:
    try:
        if source.startswith(("https://", "http://")):
            answer = httpx.get(source, timeout=10.0)
            answer.raise_for_status()
            found = answer.json()
        else:
            found = json.loads(Path(source).read_text("utf-8"))
    except (OSError, ValueError, httpx.HTTPError) as exc:
        raise typer.BadParameter(f"cannot read the JWK Set {source}: {exc}") from None
    if not isinstance(found, dict):
        raise typer.BadParameter(f"{source} does not hold a JWK Set")
    return found


def _when(seconds: object) -> str:
    if not isinstance(seconds, int):
        return "-"
    return f"{local_text(datetime.fromtimestamp(seconds, UTC))} (Asia/Shanghai)"


def _table(check: VoucherCheck) -> Table:
    p = check.payload
    rows = [
        ("voucher (jti)", str(p.get("jti"))),
        ("holder (sub)", str(p.get("sub"))),
        ("programme", str(p.get("programme"))),
        ("face value", _money(p.get("face_value_fen"))),
        ("subsidy rate", format_bp(p["rate_bp"]) if isinstance(p.get("rate_bp"), int) else "-"),
        ("usage window", _window(p.get("usage_window"))),
        ("valid from (nbf)", _when(p.get("nbf"))),
        ("valid until (exp)", _when(p.get("exp"))),
        ("centres", ", ".join(map(str, p.get("centres") or [])) or "-"),
        ("issued by (iss)", f"{p.get('iss')}, key {check.issuer}"),
        ("log index", str(p.get("log_index", "-"))),
        ("policy version", str(p.get("policy_version", "-"))),
    ]
    table = Table(show_header=False, box=None)
    for name, value in rows:
        table.add_row(name, value)
    return table


def _window(window: object) -> str:
    if not isinstance(window, dict):
        return "-"
    start, end = (parse_time(str(window.get(k))) for k in ("start", "end"))
    return f"{local_text(start)} – {local_text(end)} (Asia/Shanghai)"


def _money(fen: object) -> str:
    return f"{format_fen(fen)} 元" if isinstance(fen, int) else "-"


@app.command("verify")
def verify(
    token: Annotated[str, typer.Argument(help="the voucher credential, a file holding it, or -")],
    jwks: Annotated[
        str, typer.Option(help="the issuer's JWK Set: a file, or the service's /v1/issuer/jwks")
    ],
    at: Annotated[
        str | None, typer.Option(help="check validity at this RFC 3339 time (default: now)")
    ] = None,
) -> None:
    """Verify a voucher's signature with the issuer's key and show what it grants.

    Exit status 0: it verifies and is valid at the time; 1: it does not verify, or it is not
    (yet) valid. Suspension and revocation are recorded in the log, not in the token.
    """
    out = Console()
    when = datetime.now(UTC) if at is None else parse_time(at)
    try:
        check = check_voucher(_read_token(token), _read_jwks(jwks), when)
    except LedgerError as exc:
        out.print(f"[red]FAIL[/red]: the voucher does not verify: {exc.message}")
        raise typer.Exit(1) from None
    colour = "green" if check.valid else "yellow"
    out.print(
        f"[{colour}]{'OK' if check.valid else 'NOT VALID'}[/{colour}]: signature verified with "
        f"issuer key {check.issuer}; {check.validity} at {local_text(when)} (Asia/Shanghai)"
    )
    out.print(_table(check))
    out.print(
        "Suspension or revocation is in the log, not in the token: ask the service "
        f"(GET /v1/me/vouchers/{check.payload.get('jti')} with your grantee token)."
    )
    if not check.valid:
        raise typer.Exit(1)
