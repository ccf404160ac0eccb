"""What the centre commands share: their common options, defaults and error exits."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, timedelta, timezone, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from adapters.credentials import centre_dir as centre_dir_in
from adapters.settings import CentreSettings
from ledger.limits import MAX_CLAIMS_PER_MESSAGE

if TYPE_CHECKING:
    from adapters.sources import UsageSource

DEFAULT_CENTRE = {"sacct": "nscc-cd", "events": "cd-icc"}
_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})", re.ASCII)


def parse_zone(name: str) -> tzinfo:
    """``UTC``, an IANA zone name (``Asia/Shanghai``) or a fixed offset (``+08:00``)."""
    if name.upper() in ("UTC", "Z"):
        return UTC
    match = _OFFSET.fullmatch(name)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        hours, minutes = int(match.group(2)), int(match.group(3))
        if hours > 23 or minutes > 59:
            raise typer.BadParameter(f"offset {name!r} is out of range", param_hint="--tz")
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise typer.BadParameter(
            f"unknown time zone {name!r} (use UTC, an IANA name or +HH:MM)", param_hint="--tz"
        ) from exc


EXIT_PENDING = 3
EXIT_QUARANTINED = 1  # bad rows quarantined: a check of the input failed

ClusterOpt = Annotated[
    str | None,
    typer.Option(help="the cluster of sacct rows without one (exports with no Cluster column)"),
]
SkipBadOpt = Annotated[
    bool,
    typer.Option("--skip-bad", help="exit 0 even when bad rows were quarantined"),
]

SourceOpt = Annotated[
    list[str],
    typer.Option(
        "--source",
        help="sacct:FILE | sacct-cmd:'sacct ...' | events:DIR | csv:FILE (repeatable)",
    ),
]
CentreOpt = Annotated[
    str | None,
    typer.Option(help="centre id (default: nscc-cd for sacct sources, cd-icc for events)"),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="the data dir whose centres/<id>/ holds the credentials"),
]
CentreDirOpt = Annotated[
    Path | None,
    typer.Option(
        help="client.pem, client.key, ca.pem, signing.key (default <data dir>/centres/<id>)"
    ),
]
OutboxOpt = Annotated[
    Path | None, typer.Option(help="the outbox file (default <centre dir>/outbox.db)")
]
TargetOpt = Annotated[
    str | None,
    typer.Option(help="the ledger's gRPC address (default: $SUANLI_CENTRE_TARGET)"),
]
RatesOpt = Annotated[
    str,
    typer.Option(
        help="rate cards: builtin (development defaults), a JSON file, or the ledger's HTTP URL"
    ),
]
DelimiterOpt = Annotated[str, typer.Option(help="sacct --delimiter (a literal \\t means tab)")]
TzOpt = Annotated[
    str, typer.Option(help="zone of sacct's zone-less times: UTC, IANA name or +HH:MM")
]
ClaimsPerMessageOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=MAX_CLAIMS_PER_MESSAGE,
        help="claims per ClaimStream request [default: SUANLI_CENTRE_CLAIMS_PER_MESSAGE or 64]",
    ),
]
ServerNameOpt = Annotated[
    str | None, typer.Option(help="TLS name to expect from the server (default: its address)")
]
MappingOpt = Annotated[Path | None, typer.Option(help="account -> voucher mapping (JSON or TOML)")]


def delimiter_of(text: str) -> str:
    """The delimiter an option gives (``\\t``: a tab)."""
    return "\t" if text == "\\t" else text


def centre_for(centre: str | None, sources: list[str]) -> str:
    if centre:
        return centre
    kinds = {s.partition(":")[0].removesuffix("-cmd") for s in sources}
    defaults = {DEFAULT_CENTRE[k] for k in kinds if k in DEFAULT_CENTRE}
    if len(defaults) == 1 and len(kinds) == 1:
        return defaults.pop()
    raise typer.BadParameter("give --centre", param_hint="--centre")


def paths(
    centre: str, data_dir: Path | None, centre_dir: Path | None, outbox: Path | None
) -> tuple[Path, Path]:
    """The centre directory (credentials) and the outbox file, from the options or
    ``CentreSettings``."""
    directory = centre_dir or centre_dir_in(data_dir or CentreSettings().data_dir, centre)
    return directory, outbox or directory / "outbox.db"


def target_of(target: str | None) -> str:
    return target or CentreSettings().target


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"suanli: error: {message}", err=True)
    return typer.Exit(code)


def use_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def sources_of(named: list[str], delimiter: str, tz: str, cluster: str | None) -> list[UsageSource]:
    """The ``--source`` options, read with the sacct options they share."""
    from adapters.errors import AgentError
    from adapters.sources import UsageSource

    zone = parse_zone(tz)
    try:
        return [
            UsageSource.parse(s, delimiter=delimiter_of(delimiter), tz=zone, cluster=cluster)
            for s in named
        ]
    except AgentError as exc:
        raise fail(str(exc)) from exc
