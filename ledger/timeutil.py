"""Time as the ledger keeps it.

Stored and signed times are UTC, written as RFC 3339 with a ``Z`` and microseconds
(``2023-08-20T02:00:00.000000Z``), so that string order is time order. The policy's dates
are Asia/Shanghai civil time (UTC+8, no daylight saving since 1991, so a fixed offset is
exact for every date the ledger handles), and a deadline written "24:00" means the end of
that day, i.e. 00:00 of the next day, exclusive.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

from ledger.errors import InvalidInput

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def format_time(moment: datetime) -> str:
    """UTC RFC 3339 with microseconds; naive datetimes are refused."""
    if moment.tzinfo is None:
        raise InvalidInput("naive datetime: every time must carry its zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_STORED = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (any offset) to an aware UTC datetime."""
    if len(text) == 27 and _STORED.fullmatch(text):
        # The form the ledger writes (format_time); the fold reads one per entry.
        try:
            return datetime.fromisoformat(text)
        except ValueError as exc:
            raise InvalidInput(f"time {text!r} is not a valid date and time: {exc}") from exc
    match = _RFC3339.match(text)
    if not match:
        raise InvalidInput(f"time {text!r} is not RFC 3339 (e.g. 2023-08-20T10:00:00+08:00)")
    frac = match.group(7) or ""
    normalised = text[: match.start(7)] if frac else text[: match.end(6)]
    micro = (frac[1:] + "000000")[:6] if frac else "000000"
    zone = match.group(8)
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        moment = datetime.fromisoformat(f"{normalised.replace('t', 'T')}.{micro}{zone}")
    except ValueError as exc:
        raise InvalidInput(f"time {text!r} is not a valid date and time: {exc}") from exc
    return moment.astimezone(UTC)


def shanghai_start(day: date) -> datetime:
    """00:00 Asia/Shanghai at the start of ``day``, as UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI).astimezone(UTC)


def shanghai_end(day: date) -> datetime:
    """ "24:00" of ``day`` in Asia/Shanghai (exclusive end), as UTC."""
    return shanghai_start(day + timedelta(days=1))


def shanghai_date(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()
