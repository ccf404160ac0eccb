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

A :class:`Table` is a heading row, rows of values and an optional 合计 (total) row. Every
export is one endpoint registered at ``<path>.csv`` and ``<path>.xlsx`` (:func:`file_routes`)
that builds its tables and answers :func:`download` (CSV: the first table; XLSX: every
table as a sheet).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
YUAN_FORMAT = "#,##0.00"
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

    ``kind``: ``text``, ``int``, ``yuan`` (the value is integer fen) or ``auto`` (an int
    is a number, a Decimal a 元 amount, anything else text).
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


def _cell_text(column: Column, value: Any) -> str:
    if value is None:
        return ""
    if column.kind == "yuan":
        return yuan_text(value)
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


def to_csv(table: Table) -> bytes:
    """The table as CSV: UTF-8 with BOM, CRLF, headings first, the 合计 row last."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.heading for c in table.columns])
    rows = list(table.rows)
    total = _total_row(table)
    for row in [*rows, *([total] if total is not None else [])]:
        writer.writerow(
            [_cell_text(c, v) for c, v in zip(table.columns, _values(table, row), strict=True)]
        )
    return ("\ufeff" + out.getvalue()).encode("utf-8")


_HEAD_FONT = Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="DDE6F0")
_TOTAL_FONT = Font(bold=True)


def _put(sheet: Any, row: int, col: int, column: Column, value: Any, is_total: bool) -> None:
    """Write one value: 元 amounts as exact Decimals shown with two decimals."""
    if is_total and col == 1:
        cell = sheet.cell(row=row, column=col, value=str(value))
    elif column.kind == "yuan" or (column.kind == "auto" and isinstance(value, Decimal)):
        amount = value if isinstance(value, Decimal) else yuan_decimal(value)
        cell = sheet.cell(row=row, column=col, value=amount)
        cell.number_format = YUAN_FORMAT
    elif column.kind == "int" or (
        column.kind == "auto" and isinstance(value, int) and not isinstance(value, bool)
    ):
        cell = sheet.cell(row=row, column=col, value=int(value))
    else:
        cell = sheet.cell(row=row, column=col, value=str(value))
    if is_total:
        cell.font = _TOTAL_FONT


def _write_sheet(sheet: Any, table: Table) -> None:
    sheet.title = table.title[:31]
    row_no = 1
    for label, value in table.notes:
        sheet.cell(row=row_no, column=1, value=label).font = _HEAD_FONT
        sheet.cell(row=row_no, column=2, value=value)
        row_no += 1
    if table.notes:
        row_no += 1
    for col, column in enumerate(table.columns, start=1):
        cell = sheet.cell(row=row_no, column=col, value=column.heading)
        cell.font, cell.fill = _HEAD_FONT, _HEAD_FILL
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        sheet.column_dimensions[get_column_letter(col)].width = column.width
    header_row = row_no
    total = _total_row(table)
    body = [(r, False) for r in table.rows]
    if total is not None:
        body.append((total, True))
    for row, is_total in body:
        row_no += 1
        for col, (column, value) in enumerate(
            zip(table.columns, _values(table, row), strict=True), start=1
        ):
            if value is not None:
                _put(sheet, row_no, col, column, value, is_total)
    sheet.freeze_panes = sheet.cell(row=header_row + 1, column=1)


def to_xlsx(tables: Sequence[Table]) -> bytes:
    """The tables as one workbook, one sheet each, in order."""
    workbook = Workbook()
    first = True
    for table in tables:
        sheet = workbook.active if first else workbook.create_sheet()
        first = False
        _write_sheet(sheet, table)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


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
    """``tables`` as an attachment ``<stem>.<fmt>``: CSV holds the first table, XLSX all."""
    content = to_csv(tables[0]) if fmt == "csv" else to_xlsx(tables)
    return Response(
        content,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{stem}.{fmt}"'},
    )


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
