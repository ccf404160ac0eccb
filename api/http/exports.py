"""CSV and XLSX exports with Chinese column headings; amounts in 元 with two decimals.

Amounts are integer fen in the ledger. For people they are written in 元 with exactly two
decimals, converted by integer division (``divmod(fen, 100)``), never through a float:

* CSV: the text ``1234.56`` (``-12.30`` for a negative amount; no thousands separator, so
  that spreadsheets and scripts read it as a number). UTF-8 with a byte-order mark, so
  that Excel opens the Chinese headings correctly; CRLF line ends (RFC 4180).
* XLSX (openpyxl): a number cell holding a ``Decimal`` made from that same text, which
  openpyxl writes to the sheet XML digit for digit; the cell format ``#,##0.00`` shows two
  decimals. Totals are values computed by the ledger, not spreadsheet formulas, so that
  any reader (openpyxl, pandas, LibreOffice) sees the same figure.

Exports stream (:func:`download`): a table's rows may be a generator over 10^6 statement
lines; CSV is sent as it is written and XLSX is written in openpyxl's write-only mode.

A :class:`Table` is a heading row, rows of values and an optional 合计 (total) row. Every
export is one endpoint registered at ``<path>.csv`` and ``<path>.xlsx`` (:func:`file_routes`)
that builds its tables and answers :func:`download` (CSV: the first table; XLSX: every
table as a sheet).
"""

from __future__ import annotations

import csv
import io
import itertools
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from ledger.timeutil import SHANGHAI, parse_time

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
YUAN_FORMAT = "#,##0.00"
TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
GENERATED = "生成时间(北京时间 Asia/Shanghai)"
FEN_PER_YUAN = 100
TOTAL = "__total__"  # marks the 合计 row: computed (callable) columns are left blank in it


def yuan_text(amount_fen: int) -> str:
    """``123456`` -> ``"1234.56"``; ``-5`` -> ``"-0.05"``: integer division, no float."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise TypeError(f"an amount in fen must be an int, got {amount_fen!r}")
    sign = "-" if amount_fen < 0 else ""
    whole, part = divmod(abs(amount_fen), FEN_PER_YUAN)
    return f"{sign}{whole}.{part:02d}"


def yuan_decimal(amount_fen: int) -> Decimal:
    """The amount in 元 as an exact Decimal (made from :func:`yuan_text`)."""
    return Decimal(yuan_text(amount_fen))


@dataclass(frozen=True)
class Column:
    """One column: its heading, how to get the value from a row, and its kind.

    ``kind``: ``text``, ``int``, ``yuan`` (the value is integer fen), ``time`` (an RFC 3339
    time, written as Asia/Shanghai wall-clock time: a real date cell in XLSX; say so in the
    heading) or ``auto`` (an int is a number, a Decimal a 元 amount, anything else text).
    """

    heading: str
    key: str | Callable[[Mapping[str, Any]], Any]
    kind: str = "text"
    width: int = 14

    def value(self, row: Mapping[str, Any]) -> Any:
        if callable(self.key):
            return None if row.get(TOTAL) else self.key(row)
        return row.get(self.key)


@dataclass
class Table:
    title: str  # the sheet name (at most 31 characters)
    columns: Sequence[Column]
    rows: Iterable[Mapping[str, Any]]
    total: Mapping[str, Any] | None = None  # a row; its first text column reads 合计
    notes: Sequence[tuple[str, Any]] = field(default_factory=tuple)  # key/value lines above


def shanghai_wall(text: str) -> datetime:
    """An RFC 3339 time as Asia/Shanghai wall-clock time (naive: spreadsheets have no zones)."""
    return parse_time(text).astimezone(SHANGHAI).replace(tzinfo=None)


def _cell_text(column: Column, value: Any) -> str:
    if value is None or value == "":
        return ""
    if column.kind == "yuan":
        return yuan_text(value)
    if column.kind == "time":
        return shanghai_wall(value).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _total_row(table: Table) -> dict[str, Any] | None:
    if table.total is None:
        return None
    return {**table.total, TOTAL: True}


def _values(table: Table, row: Mapping[str, Any]) -> list[Any]:
    """The row's values by column; a 合计 row says so in its first column."""
    values = [c.value(row) for c in table.columns]
    if row.get(TOTAL):
        values[0] = "合计"
    return values


def csv_chunks(table: Table, rows_per_chunk: int = 2000) -> Iterator[bytes]:
    """The table as CSV, a chunk at a time (a 10^6-row table is never held whole): UTF-8
    with BOM, CRLF, headings first, the 合计 row last."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    out.write("\ufeff")
    writer.writerow([c.heading for c in table.columns])
    total = _total_row(table)
    rows = itertools.chain(table.rows, [total] if total is not None else [])
    for n, row in enumerate(rows, start=1):
        writer.writerow(
            [_cell_text(c, v) for c, v in zip(table.columns, _values(table, row), strict=True)]
        )
        if n % rows_per_chunk == 0:
            yield out.getvalue().encode("utf-8")
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode("utf-8")


def to_csv(table: Table) -> bytes:
    return b"".join(csv_chunks(table))


_HEAD_FONT = Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="DDE6F0")
_TOTAL_FONT = Font(bold=True)


def _cell(sheet: Any, column: Column, value: Any, is_total: bool, first: bool) -> Any:
    """One value as a write-only cell: 元 amounts as exact Decimals shown with two decimals."""
    if value is None:
        return None
    if is_total and first:
        cell = WriteOnlyCell(sheet, value=str(value))
    elif column.kind == "yuan" or (column.kind == "auto" and isinstance(value, Decimal)):
        amount = value if isinstance(value, Decimal) else yuan_decimal(value)
        cell = WriteOnlyCell(sheet, value=amount)
        cell.number_format = YUAN_FORMAT
    elif column.kind == "time" and value != "":
        cell = WriteOnlyCell(sheet, value=shanghai_wall(value))
        cell.number_format = TIME_FORMAT
    elif column.kind == "int" or (
        column.kind == "auto" and isinstance(value, int) and not isinstance(value, bool)
    ):
        cell = WriteOnlyCell(sheet, value=int(value))
    else:
        cell = WriteOnlyCell(sheet, value=str(value))
    if is_total:
        cell.font = _TOTAL_FONT
    return cell


def display_width(text: str) -> int:
    """Columns a text takes in a spreadsheet: two for a CJK (wide) character, one otherwise."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def fitting_width(column: Column) -> int:
    """The column's width, at least its heading's (rows stream, so they cannot be measured;
    each column's width is set for the longest value it is made for)."""
    return max(column.width, display_width(column.heading) + 2)


def _write_sheet(sheet: Any, table: Table, generated: str) -> None:
    """Rows are appended as they come (openpyxl's write-only mode keeps none in memory);
    under them, when the sheet was generated."""
    for col, column in enumerate(table.columns, start=1):
        sheet.column_dimensions[get_column_letter(col)].width = fitting_width(column)
    for label, value in table.notes:
        head = WriteOnlyCell(sheet, value=label)
        head.font = _HEAD_FONT
        sheet.append([head, value])
    if table.notes:
        sheet.append([])
    header_row = len(table.notes) + (2 if table.notes else 1)
    sheet.freeze_panes = f"A{header_row + 1}"
    headings = []
    for column in table.columns:
        cell = WriteOnlyCell(sheet, value=column.heading)
        cell.font, cell.fill = _HEAD_FONT, _HEAD_FILL
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        headings.append(cell)
    sheet.append(headings)
    total = _total_row(table)
    rows = itertools.chain(table.rows, [total] if total is not None else [])
    for row in rows:
        is_total = bool(row.get(TOTAL))
        sheet.append(
            [
                _cell(sheet, column, value, is_total, col == 0)
                for col, (column, value) in enumerate(
                    zip(table.columns, _values(table, row), strict=True)
                )
            ]
        )
    sheet.append([])
    sheet.append([GENERATED, generated])


def xlsx_file(tables: Sequence[Table]) -> Any:
    """The tables as one workbook, one sheet each, in order, written to a temporary file
    (positioned at its start) in bounded memory."""
    workbook = Workbook(write_only=True)
    generated = datetime.now(UTC).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    for table in tables:
        _write_sheet(workbook.create_sheet(table.title[:31]), table, generated)
    out = tempfile.TemporaryFile()  # noqa: SIM115  (handed to the caller, who closes it)
    workbook.save(out)
    out.seek(0)
    return out


def to_xlsx(tables: Sequence[Table]) -> bytes:
    with xlsx_file(tables) as out:
        data: bytes = out.read()
        return data


# --- the HTTP side of an export ----------------------------------------------------------

FORMATS = ("csv", "xlsx")
MEDIA_TYPES = {"csv": CSV_MEDIA_TYPE, "xlsx": XLSX_MEDIA_TYPE}
FILE_RESPONSES: dict[str, dict[int | str, dict[str, Any]]] = {
    "csv": {200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "CSV"}},
    "xlsx": {
        200: {
            "content": {XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            "description": "XLSX workbook",
        }
    },
}
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Response])


def format_of(request: Request) -> str:
    """The export format a request asked for: its path's suffix (``csv`` or ``xlsx``)."""
    return request.url.path.rsplit(".", 1)[-1]


def download(tables: Sequence[Table], fmt: str, stem: str) -> Response:
    """``tables`` as an attachment ``<stem>.<fmt>``: CSV holds the first table, XLSX all.

    Both stream: CSV as it is written, XLSX from a temporary file once it is written (a
    workbook's zip is finished only at its end), so memory stays bounded whatever the rows.
    """
    headers = {"Content-Disposition": f'attachment; filename="{stem}.{fmt}"'}
    if fmt == "csv":
        return StreamingResponse(csv_chunks(tables[0]), media_type=CSV_MEDIA_TYPE, headers=headers)
    out = xlsx_file(tables)

    def chunks() -> Iterator[bytes]:
        with out:
            while chunk := out.read(1 << 20):
                yield chunk

    return StreamingResponse(chunks(), media_type=XLSX_MEDIA_TYPE, headers=headers)


def file_routes(
    router: APIRouter, path: str, responses: dict[int | str, dict[str, Any]] | None = None
) -> Callable[[_Endpoint], _Endpoint]:
    """Register an export endpoint at ``<path>.csv`` and ``<path>.xlsx`` (GET)."""

    def register(endpoint: _Endpoint) -> _Endpoint:
        for fmt in FORMATS:
            router.add_api_route(
                f"{path}.{fmt}",
                endpoint,
                methods=["GET"],
                response_class=Response,
                responses={**FILE_RESPONSES[fmt], **(responses or {})},
                name=f"{endpoint.__name__}_{fmt}",
            )
        return endpoint

    return register
