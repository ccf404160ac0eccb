"""Time as the ledger keeps it.

Stored and signed times are UTC, written as RFC 3339 with a ``Z`` and microseconds
(``2023-08-20T02:00:00.000000Z``), so that string order is time order, and one instant has
one spelling: the fold accepts no other (:func:`parse_ledger_time`), so a retry signed with
the same instant is the same bytes. People and other systems may write any RFC 3339 offset
(:func:`parse_time`). Every time the ledger accepts lies in [2000-01-01, 2100-01-01) UTC and
every date in [1900-01-01, 2099-12-31]: nothing the notice governs is outside, and nothing
inside can overflow the arithmetic done on it (local time, years added). The policy's dates
are Asia/Shanghai civil time (UTC+8, no daylight saving since 1991, so a fixed offset is
exact for every date the ledger handles), and a deadline written "24:00" means the end of
that day, i.e. 00:00 of the next day, exclusive.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache

from ledger.errors import InvalidInput

_LOCAL = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}))?$")
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
LEDGER_FORM = "YYYY-MM-DDTHH:MM:SS.ffffffZ"
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)  # exclusive
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2099, 12, 31)


def in_range(moment: datetime, text: str | None = None) -> datetime:
    """``moment`` if it lies in [2000-01-01, 2100-01-01) UTC; else InvalidInput(OUT_OF_RANGE)."""
    if not EARLIEST <= moment < LATEST:
        shown = text if text is not None else moment.isoformat()
        raise InvalidInput(
            f"time {shown} is outside the years the ledger accepts "
            "(2000-01-01T00:00:00Z up to 2100-01-01T00:00:00Z)",
            reason="OUT_OF_RANGE",
        )
    return moment


def day_in_range(day: date) -> date:
    """``day`` if it lies in [1900-01-01, 2099-12-31]; else InvalidInput(OUT_OF_RANGE)."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidInput(
            f"date {day.isoformat()} is outside the dates the ledger accepts "
            f"({FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()})",
            reason="OUT_OF_RANGE",
        )
    return day


@lru_cache(maxsize=4096)
def parse_ledger_time(text: str) -> datetime:
    """A time in the one form signed bodies and entries use: ``format_time``'s (UTC, ``Z``,
    microseconds). Any other spelling of an instant is refused (MALFORMED_TIME), as is an
    instant out of range (OUT_OF_RANGE).

    Remembered for the last few thousand texts (a datetime never changes; a refusal is
    never remembered): a claim's times are read at the edge, by the use case and by the
    fold, each the same text."""
    if len(text) != 27 or not _STORED.fullmatch(text):
        raise InvalidInput(
            f"time {text[:64]!r} is not in the ledger's form {LEDGER_FORM} "
            "(UTC, six fraction digits, e.g. 2023-08-20T02:00:00.000000Z)",
            reason="MALFORMED_TIME",
        )
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(
            f"time {text!r} is not a valid date and time: {exc}", reason="MALFORMED_TIME"
        ) from exc
    return in_range(moment, text)


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (any offset) to an aware UTC datetime, in range."""
    if len(text) == 27 and _STORED.fullmatch(text):
        return parse_ledger_time(text)
    match = _RFC3339.match(text)
    if not match:
        raise InvalidInput(
            f"time {text[:64]!r} is not RFC 3339 (e.g. 2023-08-20T10:00:00+08:00)",
            reason="MALFORMED_TIME",
        )
    frac = match.group(7) or ""
    normalised = text[: match.start(7)] if frac else text[: match.end(6)]
    micro = (frac[1:] + "000000")[:6] if frac else "000000"
    zone = match.group(8)
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        moment = datetime.fromisoformat(f"{normalised.replace('t', 'T')}.{micro}{zone}")
        utc = moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(
            f"time {text!r} is not a valid date and time: {exc}", reason="MALFORMED_TIME"
        ) from exc
    return in_range(utc, text)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    """Microseconds since 1970-01-01 UTC: how records kept by the million store a time."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@lru_cache(maxsize=4096)
def _day_text(days: int) -> str:
    return (_EPOCH + timedelta(days=days)).strftime("%Y-%m-%d")


def format_micros(micros: int) -> str:
    """``format_time(from_micros(micros))``, several times faster: views that list
    thousands of claims format their stored times with it."""
    days, rest = divmod(micros, 86_400_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_day_text(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{fraction:06d}Z"


def shanghai_start(day: date) -> datetime:
    """00:00 Asia/Shanghai at the start of ``day``, as UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI).astimezone(UTC)


def shanghai_end(day: date) -> datetime:
    """ "24:00" of ``day`` in Asia/Shanghai (exclusive end), as UTC."""
    return shanghai_start(day + timedelta(days=1))


def shanghai_date(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()


def parse_local(text: str, *, end: bool) -> datetime:
    """An Asia/Shanghai date or ``date T HH:MM`` as a UTC instant.

    A bare date means 00:00 of that day as a start and 24:00 (the next day's 00:00,
    exclusive) as an end; ``T24:00`` is the end of that day.
    """
    match = _LOCAL.match(text)
    if not match:
        raise InvalidInput(f"{text!r} is not a local date (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM)")
    try:
        day = day_in_range(date(int(match[1]), int(match[2]), int(match[3])))
    except ValueError as exc:
        raise InvalidInput(f"{text!r} is not a valid date: {exc}") from None
    if match[4] is None:
        return shanghai_end(day) if end else shanghai_start(day)
    hour, minute = int(match[4]), int(match[5])
    if (hour, minute) == (24, 0):
        return shanghai_end(day)
    if hour > 23 or minute > 59:
        raise InvalidInput(f"{text!r}: the time of day must be 00:00..23:59 or 24:00")
    return shanghai_start(day) + timedelta(hours=hour, minutes=minute)


def local_text(moment: datetime) -> str:
    """A UTC instant as Asia/Shanghai ``YYYY-MM-DD HH:MM[:SS]`` (for messages)."""
    local = moment.astimezone(SHANGHAI)
    return local.strftime("%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M")


def add_years(moment: datetime, years: int) -> datetime:
    """``moment`` plus whole calendar years in Asia/Shanghai (29 Feb -> 28 Feb)."""
    local = moment.astimezone(SHANGHAI)
    try:
        shifted = local.replace(year=local.year + years)
    except ValueError:
        shifted = local.replace(year=local.year + years, day=28)
    return shifted.astimezone(moment.tzinfo)


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus whole calendar months in Asia/Shanghai (day clipped to the month)."""
    local = moment.astimezone(SHANGHAI)
    index = local.year * 12 + local.month - 1 + months
    year, month = divmod(index, 12)
    for day in (local.day, 30, 29, 28):
        try:
            return local.replace(year=year, month=month + 1, day=min(local.day, day)).astimezone(
                moment.tzinfo
            )
        except ValueError:
            continue
    raise AssertionError("unreachable")
