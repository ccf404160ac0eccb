"""Usage events (CloudEvents 1.0, as 成都智算中心 ``cd-icc`` sends them) and usage CSV.

Both become ``ledger.usage.UsageRecord``.

CloudEvents
-----------
Structured-mode CloudEvents 1.0 JSON (the shape OpenMeter ingests), given as JSON Lines
(one event per line; streamed), a JSON array (a CloudEvents batch), or one or more
whole JSON objects (pretty-printed or not). Each event becomes at most one record:

=================  =========================================================================
record field       taken from
=================  =========================================================================
record_id          ``<source>/<id>``, as is when it is already 1-128 characters of
                   ``A-Z a-z 0-9 _ . : + - / @`` (the ledger's record-id alphabet); otherwise
                   every other character becomes ``_``, the result is cut to 111 characters
                   and ``@`` + the first 16 hex digits of SHA-256(``<source>/<id>``, UTF-8)
                   are appended, so that two different events never share an id
                   (``event_record_id``). CloudEvents makes source + id unique per event.
account            ``subject`` (the tenant / account at the centre)
resource           exactly one of: ``data.resource`` (a ledger resource, e.g. ``gpu:910b``);
                   ``data.gpu_model`` (``910B`` -> ``gpu:910b``; a model the catalogue does
                   not know -> ``gpu``); ``data.instance_type``, looked up in the centre's
                   instance types (mapping file, ``instance_types``) which give the resource
                   and the units (cards or cores) per instance
quantity           units per instance (1 unless ``instance_type`` says otherwise) x
                   ``data.cards`` | ``data.cores`` | ``data.count`` (at most one of them;
                   default 1) x ``data.duration_seconds``, in the resource's unit
                   (card-seconds or core-seconds; per-second resources only)
end                ``time`` (RFC 3339, required): the event reports usage that ended then
start              ``time`` - ``data.duration_seconds``
=================  =========================================================================

So ``{"type": "gpu.usage", "subject": "acme", "time": "2023-08-20T10:00:00+08:00",
"data": {"resource": "gpu:910b", "cards": 8, "duration_seconds": 3600}}`` is 8 x 3600 =
28 800 card-seconds of ``gpu:910b`` from 01:00 to 02:00 UTC; and OpenMeter's ``workload``
event ``{"duration_seconds": 120, "instance_type": "t2.large", ...}`` with
``instance_types = {"t2.large": (cpu, 2)}`` is 2 x 120 = 240 core-seconds of ``cpu``.

Numbers must be whole (JSON integers, integral numbers such as ``3600.0``, or strings of
digits); JSON is decoded without floats. The event ``type`` is not interpreted: an event
whose ``data`` has no ``duration_seconds`` (an OpenMeter ``request`` event, say) is skipped
with code ``not-usage``. ``specversion`` must be ``1.0``; ``id``, ``source``, ``subject``
and ``time`` must be present. A zero duration is skipped (``zero-elapsed``); an event
whose record id already appeared earlier in the input (a redelivery) is skipped as
``duplicate``.

CSV
---
A header naming the columns ``record_id,account,resource,quantity,start,end`` in any
order (names case-insensitive; other columns are ignored; a UTF-8 byte-order mark is
tolerated), then one row per record: ``quantity`` a positive whole number in the
resource's unit (``ledger.usage.RESOURCE_UNITS``), ``start`` and ``end`` RFC 3339 with a
zone (``Z`` or an offset), ``record_id`` in the record-id alphabet and unique in the file
(give a job's GPU record its own id, e.g. ``123`` and ``123:gpu``). Example::

    record_id,account,resource,quantity,start,end
    job-42,acme,gpu:910b,28800,2023-08-20T01:00:00Z,2023-08-20T02:00:00Z

Every rejected row or event is reported in ``skipped`` with its (first) line number and
the reason; nothing is dropped silently. Blank lines are not rows. An input that cannot be
read at all (a CSV without the required header, a JSON document that does not parse)
raises InvalidInput.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from decimal import Decimal
from itertools import chain
from typing import Any

from adapters.bounds import check_usage
from adapters.mapping import AccountMap, InstanceType
from adapters.slurm import ParseResult, Skipped
from ledger.errors import InvalidInput
from ledger.timeutil import parse_time
from ledger.usage import RESOURCE_UNITS, UsageRecord, check_centre_id

CSV_COLUMNS: tuple[str, ...] = ("record_id", "account", "resource", "quantity", "start", "end")

_RECORD_ID_MAX = 128
_RECORD_ID = re.compile(r"[A-Za-z0-9_.:+\-/@]{1,128}", re.ASCII)
_NOT_RECORD_ID_CHAR = re.compile(r"[^A-Za-z0-9_.:+\-/@]", re.ASCII)
_DIGEST_HEX = 16
_MAX_WHOLE = 10**15  # bigger than any real duration or count; keeps int() cheap
_COUNT_KEYS = ("cards", "cores", "count")
_RESOURCE_KEYS = ("resource", "gpu_model", "instance_type")


def event_record_id(source: str, event_id: str) -> str:
    """``<source>/<id>``, made safe for the ledger's record-id alphabet (see module doc)."""
    raw = f"{source}/{event_id}"
    if _RECORD_ID.fullmatch(raw):
        return raw
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:_DIGEST_HEX]
    cleaned = _NOT_RECORD_ID_CHAR.sub("_", raw)[: _RECORD_ID_MAX - _DIGEST_HEX - 1]
    return f"{cleaned}@{digest}"


class _Skip(Exception):
    def __init__(self, reason: str, code: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number the ledger accepts")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def _whole(value: object, what: str) -> int:
    """A non-negative whole number from JSON (int, integral Decimal, or digit string)."""
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, Decimal):
        if value.is_finite() and value.adjusted() < 18 and value == value.to_integral_value():
            number = int(value)
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        number = int(value)
    if number is None or number < 0 or number > _MAX_WHOLE:
        raise _Skip(f"{what} must be a whole number from 0 to {_MAX_WHOLE}, got {value!r}")
    return number


def _text(event: Mapping[str, Any], name: str) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value:
        raise _Skip(f"CloudEvents attribute {name!r} is missing or not a non-empty string")
    return value


class _EventMapper:
    def __init__(
        self,
        centre: str,
        accounts: AccountMap | None,
        instance_types: Mapping[str, InstanceType],
    ) -> None:
        self.centre = centre
        self.accounts = accounts
        self.instance_types = instance_types
        self.seen: dict[str, int] = {}

    def resource(self, data: Mapping[str, Any]) -> tuple[str, int]:
        """(resource, units per instance) from the event data."""
        given = [k for k in _RESOURCE_KEYS if data.get(k) is not None]
        if len(given) != 1:
            raise _Skip(
                "data must name exactly one of resource, gpu_model, instance_type;"
                f" got {', '.join(given) or 'none'}"
            )
        key = given[0]
        value = data[key]
        if not isinstance(value, str) or not value:
            raise _Skip(f"data.{key} must be a non-empty string, got {value!r}")
        if key == "resource":
            if value not in RESOURCE_UNITS:
                known = ", ".join(sorted(RESOURCE_UNITS))
                raise _Skip(f"data.resource {value!r} is not one of {known}")
            resource, units = value, 1
        elif key == "gpu_model":
            resource = f"gpu:{value.lower()}"
            if resource not in RESOURCE_UNITS:
                resource = "gpu"
            units = 1
        else:
            spec = self.instance_types.get(value)
            if spec is None:
                raise _Skip(f"instance type {value} has no resource mapping", "unmapped-instance")
            resource, units = spec.resource, spec.units
        if not RESOURCE_UNITS[resource].endswith("-second"):
            raise _Skip(
                f"resource {resource} is metered in {RESOURCE_UNITS[resource]}, not by"
                " running time; send it as CSV"
            )
        return resource, units

    def event(self, event: object, line_no: int) -> UsageRecord:
        if not isinstance(event, dict):
            raise _Skip(f"an event must be a JSON object, got {type(event).__name__}")
        if event.get("specversion") != "1.0":
            raise _Skip(f"specversion must be '1.0', got {event.get('specversion')!r}")
        event_id = _text(event, "id")
        source = _text(event, "source")
        event_type = event.get("type")
        data = event.get("data")
        if not isinstance(data, dict):
            if "data_base64" in event:
                raise _Skip("binary data (data_base64) is not a usage event", "not-usage")
            raise _Skip(f"event type {event_type!r} has no JSON object data", "not-usage")
        if "duration_seconds" not in data:
            raise _Skip(
                f"event type {event_type!r} carries no usage (data.duration_seconds missing)",
                "not-usage",
            )
        account = _text(event, "subject")
        end = parse_time(_text(event, "time"))
        duration = _whole(data["duration_seconds"], "data.duration_seconds")
        resource, units = self.resource(data)
        counts = [k for k in _COUNT_KEYS if data.get(k) is not None]
        if len(counts) > 1:
            raise _Skip(f"data gives more than one count: {', '.join(counts)}")
        count = _whole(data[counts[0]], f"data.{counts[0]}") if counts else 1
        if duration == 0:
            raise _Skip("zero duration: nothing to claim", "zero-elapsed")
        if count == 0:
            raise _Skip(f"data.{counts[0]} is 0: nothing to claim", "no-resources")
        if self.accounts is not None and self.accounts.voucher_for(account) is None:
            raise _Skip(f"account {account} has no voucher mapping", "unmapped")
        record_id = event_record_id(source, event_id)
        first = self.seen.get(record_id)
        if first is not None:
            raise _Skip(f"event {record_id} already read on line {first}", "duplicate")
        try:
            start = end - timedelta(seconds=duration)
        except OverflowError as exc:
            raise _Skip(f"data.duration_seconds {duration} reaches before year 1") from exc
        record = check_usage(
            UsageRecord(
                centre=self.centre,
                record_id=record_id,
                account=account,
                resource=resource,
                quantity=units * count * duration,
                start=start,
                end=end,
            )
        )
        self.seen[record_id] = line_no
        return record


def _event_id(event: object) -> str:
    if isinstance(event, dict):
        value = event.get("id")
        if isinstance(value, str):
            return value
    return ""


def _document_items(text: str, first_line: int) -> Iterator[tuple[int, object]]:
    """(line number, value) for each event in a JSON array or concatenated JSON values."""
    pos = 0
    line = first_line
    length = len(text)

    def skip_ws(at: int) -> int:
        while at < length and text[at] in " \t\r\n":
            at += 1
        return at

    def advance(to: int) -> None:
        nonlocal pos, line
        line += text.count("\n", pos, to)
        pos = to

    def decode() -> object:
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except ValueError as exc:
            raise InvalidInput(f"line {line}: the JSON does not parse: {exc}") from exc
        advance(end)
        return value

    advance(skip_ws(0))
    if pos < length and text[pos] == "[":
        advance(skip_ws(pos + 1))
        if pos < length and text[pos] == "]":
            advance(skip_ws(pos + 1))
        else:
            while True:
                start_line = line
                yield start_line, decode()
                advance(skip_ws(pos))
                if pos < length and text[pos] == ",":
                    advance(skip_ws(pos + 1))
                    continue
                if pos < length and text[pos] == "]":
                    advance(skip_ws(pos + 1))
                    break
                raise InvalidInput(f"line {line}: expected ',' or ']' in the JSON array")
        if pos < length:
            raise InvalidInput(f"line {line}: text after the end of the JSON array")
        return
    while pos < length:
        start_line = line
        yield start_line, decode()
        advance(skip_ws(pos))


def _line_item(text: str) -> object | _Skip:
    try:
        value: object = _DECODER.decode(text)
    except ValueError as exc:
        return _Skip(f"not a JSON event: {exc}")
    return value


def _event_items(lines: Iterable[str]) -> Iterator[tuple[int, object | _Skip]]:
    """(line number, decoded value or a _Skip for a bad JSON line) for each event."""
    iterator = iter(lines)
    line_no = 0
    for raw in iterator:
        line_no += 1
        text = raw.removeprefix("\ufeff") if line_no == 1 else raw
        if not text.strip():
            continue
        stripped = text.strip()
        # JSON Lines when the first line holds a whole object (it opens and closes there;
        # if it does not parse, it is one skipped row, not a refused file); otherwise a
        # JSON document (an array, or an object spread over several lines).
        if stripped.startswith("{") and stripped.endswith("}"):
            yield line_no, _line_item(stripped)
            for later in iterator:
                line_no += 1
                body = later.strip()
                if body:
                    yield line_no, _line_item(body)
            return
        document = "".join(chain([text], iterator))
        yield from _document_items(document, line_no)
        return


def parse_events(
    lines: Iterable[str],
    *,
    centre: str,
    accounts: AccountMap | None = None,
    instance_types: Mapping[str, InstanceType] | None = None,
) -> ParseResult:
    """Parse CloudEvents usage events (see the module doc for the mapping)."""
    check_centre_id(centre)
    if instance_types is None and accounts is not None:
        instance_types = accounts.instance_types
    mapper = _EventMapper(centre, accounts, instance_types or {})
    result = ParseResult()
    for line_no, item in _event_items(lines):
        result.rows += 1
        if isinstance(item, _Skip):
            result.skipped.append(Skipped(line_no, "", item.reason, item.code))
            continue
        try:
            result.records.append(mapper.event(item, line_no))
        except _Skip as skip:
            result.skipped.append(Skipped(line_no, _event_id(item), skip.reason, skip.code))
        except InvalidInput as exc:
            result.skipped.append(Skipped(line_no, _event_id(item), exc.message, "invalid"))
    return result


def _csv_row(
    row: list[str],
    index: Mapping[str, int],
    width: int,
    centre: str,
    accounts: AccountMap | None,
) -> UsageRecord:
    if len(row) != width:
        raise _Skip(f"expected {width} fields, got {len(row)}")
    value = {name: row[i].strip() for name, i in index.items()}
    quantity_text = value["quantity"]
    if not (quantity_text.isascii() and quantity_text.isdigit()):
        raise _Skip(f"quantity {quantity_text[:40]!r} is not a whole number")
    if len(quantity_text) > 18:
        raise _Skip(
            f"quantity {quantity_text[:12]}... ({len(quantity_text)} digits) is out of range"
        )
    quantity = int(quantity_text)
    if quantity == 0:
        raise _Skip("quantity 0: nothing to claim", "zero-quantity")
    if not value["account"]:
        raise _Skip("account is empty")
    if accounts is not None and accounts.voucher_for(value["account"]) is None:
        raise _Skip(f"account {value['account']} has no voucher mapping", "unmapped")
    return check_usage(
        UsageRecord(
            centre=centre,
            record_id=value["record_id"],
            account=value["account"],
            resource=value["resource"],
            quantity=quantity,
            start=parse_time(value["start"]),
            end=parse_time(value["end"]),
        )
    )


def _csv_header(row: list[str], line_no: int) -> dict[str, int]:
    names = [cell.strip().lower() for cell in row]
    missing = [c for c in CSV_COLUMNS if c not in names]
    if missing:
        raise InvalidInput(
            f"line {line_no}: the CSV header lacks {', '.join(missing)}"
            f" (expected the columns {','.join(CSV_COLUMNS)}, in any order)"
        )
    repeated = sorted({c for c in CSV_COLUMNS if names.count(c) > 1})
    if repeated:
        raise InvalidInput(f"line {line_no}: the CSV header repeats {', '.join(repeated)}")
    return {c: names.index(c) for c in CSV_COLUMNS}


def parse_usage_csv(
    lines: Iterable[str], *, centre: str, accounts: AccountMap | None = None
) -> ParseResult:
    """Parse usage CSV (see the module doc). Open files with ``newline=""``."""
    check_centre_id(centre)

    def unbom(source: Iterable[str]) -> Iterator[str]:
        iterator = iter(source)
        for first in iterator:
            yield first.removeprefix("\ufeff")
            break
        yield from iterator

    reader = csv.reader(unbom(lines), strict=True)
    result = ParseResult()
    index: dict[str, int] | None = None
    width = 0
    seen: dict[str, int] = {}
    while True:
        line_no = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if index is None:
                raise InvalidInput(f"line {line_no}: the CSV header does not parse: {exc}") from exc
            result.rows += 1
            result.skipped.append(Skipped(line_no, "", f"the CSV does not parse: {exc}"))
            continue
        if not row or all(not cell.strip() for cell in row):
            continue
        if index is None:
            index = _csv_header(row, line_no)
            width = len(row)
            continue
        result.rows += 1
        record_id = row[index["record_id"]].strip() if len(row) > index["record_id"] else ""
        try:
            record = _csv_row(row, index, width, centre, accounts)
            first = seen.get(record.record_id)
            if first is not None:
                raise _Skip(
                    f"record_id {record.record_id} already used on line {first}", "duplicate"
                )
        except _Skip as skip:
            result.skipped.append(Skipped(line_no, record_id, skip.reason, skip.code))
            continue
        except InvalidInput as exc:
            result.skipped.append(Skipped(line_no, record_id, exc.message, "invalid"))
            continue
        seen[record.record_id] = line_no
        result.records.append(record)
    if index is None:
        raise InvalidInput(f"the CSV is empty: expected a header {','.join(CSV_COLUMNS)}")
    return result
