"""The tables of every CSV/XLSX export: Chinese headings, amounts in 元 (``api.http.exports``).

Each export is a view (``ledger.usecases.views``) laid out as tables here: a grantee's
history, the bureau's four reports, and a settlement statement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from api.http.exports import Column, Table, yuan_decimal
from ledger.timeutil import SHANGHAI, parse_time

Row = Mapping[str, Any]


def beijing(text: str | None) -> str:
    """An RFC 3339 time as Asia/Shanghai wall-clock time for people ('' for none)."""
    if not text:
        return ""
    return str(parse_time(text).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"))


@dataclass(frozen=True)
class Sheet:
    """A report laid out as a table: its rows (``rows``: the report's member holding them,
    or a function of the report), an optional 合计 row (``total``: the member holding it)
    and the facts above the table (``notes``: heading -> the report's member)."""

    title: str
    columns: Sequence[Column]
    rows: str | Callable[[Row], Sequence[Row]]
    total: str | None = None
    notes: Mapping[str, str] = field(default_factory=dict)

    def table(self, report: Row) -> Table:
        rows = report[self.rows] if isinstance(self.rows, str) else self.rows(report)
        return Table(
            self.title,
            self.columns,
            rows,
            total=report[self.total] if self.total else None,
            notes=[(heading, report[name]) for heading, name in self.notes.items()],
        )


# --- a grantee's history ---------------------------------------------------------------------

KIND_TEXT = {
    "claim": "补贴",
    "capture": "补贴(预授权)",
    "claim.reverse": "冲正",
    "clawback": "追回",
    "grant.pay": "一次性奖补",
}

CAP_TEXT = {
    "voucher": "券面额",
    "period": "期间上限",
    "entity_programme": "单位项目上限",
    "entity_round": "单位年度上限",
    "programme_pool": "项目资金池",
    "voucher_pool": "算力券资金池",
    "scheme_entity": "单位跨轮次年度上限",
    "scheme_pool": "跨轮次年度资金池",
    "rate": "补贴比例(未触及上限)",
}

HISTORY = Sheet(
    "使用与补贴记录",
    (
        Column("日志索引", "index", "int", 10),
        Column("记账时间(北京时间)", "at", "time", 20),
        Column("类型", lambda r: KIND_TEXT.get(r["kind"], r["kind"]), width=12),
        Column("计算中心", "centre", width=10),
        Column("凭证编号", "voucher", width=18),
        Column("项目", lambda r: r.get("programme_label") or r["programme"], width=30),
        Column("作业编号", lambda r: r["record_id"] or r["grant"], width=28),
        Column("使用开始(北京时间)", lambda r: r["usage_start"] or "", "time", 20),
        Column("使用结束(北京时间)", lambda r: r["usage_end"] or "", "time", 20),
        Column("算力费用(元)", "cost_fen", "yuan", 16),
        Column("补贴金额(元)", "subsidy_fen", "yuan", 16),
        Column("约束上限", lambda r: CAP_TEXT.get(r["binding_cap"], r["binding_cap"]), width=18),
        Column("结算单", "statement", width=24),
        Column("包含证明", "proof", width=64),
    ),
    rows="items",
    total="totals",
)


# --- the bureau's reports --------------------------------------------------------------------

_REPORT_NOTES = {"预算年度": "year", "日志长度": "size"}
_KINDS = {"programme": "项目", "pool": "资金池"}
_MONEY = (
    Column("补贴笔数", "claims", "int", 10),
    Column("算力费用(元)", "cost_fen", "yuan", 18),
    Column("补贴金额(元)", "subsidy_fen", "yuan", 18),
)
_GRANTS_AND_TOTAL = (
    Column("一次性奖补(元)", "grants_fen", "yuan", 18),
    Column("合计(元)", "total_fen", "yuan", 18),
)

REPORTS: dict[str, Sheet] = {
    "budget": Sheet(
        "预算执行",
        (
            Column("类别", lambda r: _KINDS.get(r["kind"], r["kind"]), width=8),
            Column("编号", "id", width=20),
            Column("名称", "label", width=36),
            Column("年度", "period", width=8),
            Column("额度(元)", "limit_fen", "yuan", 18),
            Column("已使用(元)", "used_fen", "yuan", 18),
            Column("冻结中(元)", "held_fen", "yuan", 16),
            Column("剩余(元)", "remaining_fen", "yuan", 18),
        ),
        rows=lambda report: [*report["pools"], *report["programmes"]],
        total="totals",  # used and held over the programmes (pools count them again)
        notes=_REPORT_NOTES,
    ),
    "entities": Sheet(
        "按单位",
        (
            Column("统一社会信用代码", "uscc", width=22),
            Column("单位名称", "name", width=30),
            Column("区县", "district", width=14),
            Column("凭证数", "vouchers", "int", 8),
            Column("凭证面值(元)", "face_value_fen", "yuan", 18),
            Column("凭证余额(元)", "balance_fen", "yuan", 18),
            *_MONEY,
            *_GRANTS_AND_TOTAL,
        ),
        rows="entities",
        total="totals",
        notes=_REPORT_NOTES,
    ),
    "centres": Sheet(
        "按计算中心",
        (
            Column("计算中心", "centre", width=12),
            Column("名称", "name", width=24),
            *_MONEY,
            Column("累计补贴(元)", "granted_fen", "yuan", 18),
            Column("已结算(元)", "settled_fen", "yuan", 18),
            Column("待结算(元)", "due_fen", "yuan", 18),
            Column("结算单数", "statements", "int", 10),
        ),
        rows="centres",
        total="totals",
        notes=_REPORT_NOTES,
    ),
    "months": Sheet(
        "按月",
        (Column("月份", "month", width=10), *_MONEY, *_GRANTS_AND_TOTAL),
        rows="months",
        total="totals",
        notes=_REPORT_NOTES,
    ),
}


# --- a settlement statement ------------------------------------------------------------------

_LINE_TYPES = {"claim": "结算", "adjustment": "冲回调整"}


def statement_tables(
    view: Row,
    lines: Iterable[Row],
    name_of: Callable[[str], str],
    label_of: Callable[[str, str], str],
) -> list[Table]:
    """A statement as tables: its lines (streamed from ``lines``), totals by programme and
    by voucher (summed as the lines pass), and its facts. ``name_of(uscc)`` names a holder,
    ``label_of(round, programme)`` a programme."""
    totals = view["totals"]
    by_voucher: dict[str, dict[str, Any]] = {}

    def counted(rows: Iterable[Row]) -> Iterator[Row]:
        for row in rows:
            sums = by_voucher.setdefault(
                row["voucher"],
                {k: row[k] for k in ("voucher", "holder", "round", "programme")}
                | {"lines": 0, "cost_fen": 0, "amount_fen": 0},
            )
            sums["lines"] += 1
            sums["cost_fen"] += row["cost_fen"]
            sums["amount_fen"] += row["amount_fen"]
            yield row

    def voucher_rows() -> Iterator[Row]:  # read once the lines' sheet has been written
        yield from (by_voucher[k] for k in sorted(by_voucher))

    def label(r: Row) -> str:
        return label_of(r["round"], r["programme"]) if r.get("round") else ""

    line_cols = (
        Column("序号", "line", "int", 8),
        Column("类型", lambda r: _LINE_TYPES.get(r["type"], r["type"]), width=10),
        Column("凭证编号", "voucher", width=18),
        Column("持券单位", lambda r: name_of(r["holder"]), width=28),
        Column("统一社会信用代码", "holder", width=22),
        Column("项目", label, width=28),
        Column("作业编号", "record_id", width=24),
        Column("记账时间(北京时间)", "captured_at", "time", 20),
        Column("算力费用(元)", "cost_fen", "yuan", 16),
        Column("补贴金额(元)", "amount_fen", "yuan", 16),
        Column("日志索引", "claim_index", "int", 10),
    )
    sums = (
        Column("行数", "lines", "int", 8),
        Column("算力费用(元)", "cost_fen", "yuan", 16),
        Column("补贴金额(元)", "amount_fen", "yuan", 16),
    )
    programme_cols = (
        Column("项目", lambda r: label(r) or "合计", width=32),
        Column("项目编号", "programme", width=18),
        *sums,
    )
    voucher_cols = (
        Column("凭证编号", lambda r: r.get("voucher", "合计"), width=18),
        Column("持券单位", lambda r: name_of(r["holder"]) if r.get("holder") else "", width=28),
        Column("统一社会信用代码", "holder", width=22),
        Column("项目", label, width=28),
        *sums,
    )
    overall = {k: totals[k] for k in ("lines", "cost_fen", "amount_fen")}
    facts = (Column("项", "k", width=20), Column("值", "v", "auto", 60))
    return [
        Table("结算明细", line_cols, counted(lines), total=overall),
        Table("按项目汇总", programme_cols, totals["by_programme"], total=overall),
        Table("按凭证汇总", voucher_cols, voucher_rows(), total=overall),
        Table("结算单信息", facts, [{"k": k, "v": v} for k, v in _statement_facts(view)]),
    ]


def _statement_facts(view: Row) -> list[tuple[str, Any]]:
    totals = view["totals"]
    return [
        ("结算单编号", view["statement"] or "(未出具 pending)"),
        ("计算中心", view["centre"]),
        ("结算期间", view["period"]),
        ("期间起(北京时间)", beijing(view["period_start"])),
        ("期间止(不含，北京时间)", beijing(view["period_end"])),
        ("同期序号", view["sequence"]),
        ("上一结算单", view["previous"] or ""),
        ("状态", "已出具 closed" if view.get("status") == "closed" else "未完成 open"),
        ("开立日志索引", view["index"] if view.get("index") is not None else ""),
        ("出具日志索引", view.get("closed_index") or ""),
        ("出具时间(北京时间)", beijing(view.get("closed_at"))),
        ("签名密钥", ", ".join(view.get("signed_by", []))),
        ("明细链式摘要 lines_sha256", view.get("lines_sha256", "")),
        ("结算行数", totals["lines"]),
        ("其中冲回调整", totals["adjustments"]),
        ("算力费用合计(分)", totals["cost_fen"]),
        ("补贴金额合计(分)", totals["amount_fen"]),
        ("补贴金额合计(元)", yuan_decimal(totals["amount_fen"])),
        ("包含证明", view.get("proof") or ""),
    ]
