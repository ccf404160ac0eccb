"""Bureau reports (/v1/bureau/...) and settlement statements (/v1/statements/...) over HTTP.

The same populated service as tests/test_http_grantee.py (SQLite, and PostgreSQL where
reachable), through the real ASGI app. Figures are compared with the fold to the fen;
exports are opened with csv and openpyxl.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal
from typing import Any

import openpyxl
from domain_helpers import local, wan
from fastapi.testclient import TestClient
from grpc_fixtures import START, ManualClock
from test_http_grantee import claim, clawback, populate, reverse, world

from api.bootstrap import Service
from api.http import exports
from api.http.app import create_app
from ledger import claims, grants, settlement
from ledger.caps import programme_budget

__all__ = ["world"]  # the fixture, shared with tests/test_http_grantee.py

PROBLEM = "application/problem+json"
LINE_HEADINGS = [
    "序号",
    "类型",
    "凭证编号",
    "持券单位",
    "统一社会信用代码",
    "项目",
    "作业编号",
    "记账时间(北京时间)",
    "算力费用(元)",
    "补贴金额(元)",
    "日志索引",
]


def sheet_rows(sheet: Any) -> list[list[Any]]:
    """A sheet's rows without the line under them that says when it was generated."""
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[-1][0] == exports.GENERATED and values[-1][1]
    assert all(v is None for v in values[-2])
    return values[:-2]


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def fen_of(value: Any) -> int:
    """A 元 cell read back by openpyxl (a float holding a two-decimal figure) in fen."""
    amount = Decimal(str(value)) * 100
    assert amount == amount.to_integral_value(), value
    return int(amount)


# --- reports -----------------------------------------------------------------------------------


def test_reports_are_for_the_bureau_and_auditors(world: dict[str, Any]) -> None:
    client, tokens = world["client"], world["tokens"]
    for path in ("/v1/bureau/budget", "/v1/bureau/entities", "/v1/bureau/months.csv"):
        assert client.get(path).status_code == 401
        for role in ("a", "nscc", "reviewer"):
            answer = client.get(path, headers=tokens[role])
            assert answer.status_code == 403 and answer.json()["reason"] == "ROLE_DENIED"
        for role in ("admin", "auditor"):
            assert client.get(path, headers=tokens[role]).status_code == 200


def test_budget_per_programme_and_pool_is_the_folds(world: dict[str, Any]) -> None:
    client, service = world["client"], world["service"]
    body = client.get("/v1/bureau/budget", headers=world["tokens"]["auditor"]).json()
    assert body["year"] == 2023 and body["period"] == "2023" and 2023 in body["years"]
    state = service.ledger.refresh()
    figures = programme_budget(state, world["clock"]())
    by_id = {p["id"]: p for p in body["programmes"]}
    for key, years in figures["programmes"].items():
        row = by_id[key.split("/", 1)[1]]
        assert row["used_fen"] == (years.get("2023", {}).get("paid_fen") or 0)
        assert row["held_fen"] == (years.get("2023", {}).get("held_fen") or 0)
    assert by_id["ai-model"]["held_fen"] > 0  # the open hold
    pools = {p["id"]: p for p in body["pools"]}
    for pool, years in figures["pools"].items():
        got = pools[pool]
        want = years.get("2023", {})
        assert got["used_fen"] == (want.get("paid_fen") or 0)
        assert got["limit_fen"] - got["used_fen"] - got["held_fen"] == got["remaining_fen"]
    # every claim's net subsidy is counted, to the fen
    net = sum(r.net_fen for r in claims.book(state).claims.values())
    paid = sum(g.net_fen for g in grants.book(state).grants.values())
    assert body["totals"]["used_fen"] == net + paid
    # another year has nothing
    empty = client.get("/v1/bureau/budget?year=2024", headers=world["tokens"]["admin"]).json()
    assert empty["totals"]["used_fen"] == 0
    bad = client.get("/v1/bureau/budget?year=1999", headers=world["tokens"]["admin"])
    assert bad.status_code == 400 and bad.headers["content-type"].startswith(PROBLEM)


def test_entities_centres_and_months_agree_to_the_fen(world: dict[str, Any]) -> None:
    client, service = world["client"], world["service"]
    headers = world["tokens"]["admin"]
    budget = client.get("/v1/bureau/budget", headers=headers).json()
    entities = client.get("/v1/bureau/entities", headers=headers).json()
    centres = client.get("/v1/bureau/centres", headers=headers).json()
    months = client.get("/v1/bureau/months", headers=headers).json()
    total = budget["totals"]["used_fen"]
    assert entities["totals"]["total_fen"] == months["totals"]["total_fen"] == total
    assert centres["totals"]["subsidy_fen"] == months["totals"]["subsidy_fen"]
    state = service.ledger.refresh()
    records = list(claims.book(state).claims.values())
    assert months["totals"]["claims"] == len(records) == centres["totals"]["claims"]
    by_month = {m["month"]: m for m in months["months"]}
    assert len(by_month) == 12
    assert by_month["2023-10"]["claims"] == 2
    assert by_month["2023-08"]["claims"] == 5
    a = next(e for e in entities["entities"] if e["uscc"] == world["a"])
    assert a["vouchers"] == 3
    mine = [r for r in records if r.voucher in (world["big"], world["small"], world["spare"])]
    assert a["subsidy_fen"] == sum(r.net_fen for r in mine)
    nscc = next(c for c in centres["centres"] if c["centre"] == "nscc-cd")
    assert nscc["subsidy_fen"] == sum(r.net_fen for r in records if r.centre == "nscc-cd")
    assert nscc["due_fen"] == nscc["granted_fen"] and nscc["settled_fen"] == 0


def test_report_exports(world: dict[str, Any]) -> None:
    client = world["client"]
    headers = world["tokens"]["auditor"]
    budget = client.get("/v1/bureau/budget", headers=headers).json()
    rows = list(csv.reader(io.StringIO(client.get("/v1/bureau/budget.csv", headers=headers).text)))
    used = rows[0].index("已使用(元)")
    assert rows[-1][0] == "合计" and fen_of(rows[-1][used]) == budget["totals"]["used_fen"]
    months = client.get("/v1/bureau/months", headers=headers).json()
    answer = client.get("/v1/bureau/months.csv", headers=headers)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0] == [
        "月份",
        "补贴笔数",
        "算力费用(元)",
        "补贴金额(元)",
        "一次性奖补(元)",
        "合计(元)",
    ]
    assert rows[-1][0] == "合计"
    assert rows[-1][3] == yuan(months["totals"]["subsidy_fen"])
    assert rows[8][0] == "2023-08" and rows[8][3] == yuan(months["months"][7]["subsidy_fen"])

    book = openpyxl.load_workbook(
        io.BytesIO(client.get("/v1/bureau/report.xlsx", headers=headers).content)
    )
    assert book.sheetnames == ["预算执行", "按单位", "按计算中心", "按月"]
    sheet = book["按月"]
    values = sheet_rows(sheet)
    head = values.index(
        ["月份", "补贴笔数", "算力费用(元)", "补贴金额(元)", "一次性奖补(元)", "合计(元)"]
    )
    total = values[-1]
    assert total[0] == "合计" and len(values) == head + 14
    assert fen_of(total[3]) == months["totals"]["subsidy_fen"]
    assert sheet.cell(row=head + 2, column=4).number_format == "#,##0.00"
    for name in ("budget", "entities", "centres"):
        answer = client.get(f"/v1/bureau/{name}.xlsx", headers=headers)
        assert answer.status_code == 200
        openpyxl.load_workbook(io.BytesIO(answer.content))
    assert client.get("/v1/bureau/other.csv", headers=headers).status_code in (400, 404)


# --- statements ---------------------------------------------------------------------------------


def lines(client: TestClient, headers: dict[str, str], statement: dict[str, Any]) -> list[Any]:
    """Every line of a statement, page by page (two lines a page, following Link: next)."""
    url: str | None = f"/v1/statements/{statement['statement']}/lines?limit=2"
    found: list[Any] = []
    while url:
        page = client.get(url, headers=headers)
        assert page.status_code == 200, page.text
        found += page.json()["lines"]
        link = page.headers.get("link")
        url = link[1 : link.index(">")] if link else None
    return found


def issue(client: TestClient, headers: dict[str, str], centre: str, period: str) -> Any:
    return client.post("/v1/statements", json={"centre": centre, "period": period}, headers=headers)


def test_statements_settle_each_claim_exactly_once(world: dict[str, Any]) -> None:
    client, service, tokens = world["client"], world["service"], world["tokens"]
    admin = tokens["admin"]
    state = service.ledger.refresh()
    q3 = sorted(
        (
            r
            for (c, _), r in claims.book(state).claims.items()
            if c == "nscc-cd" and settlement.parse_period("2023-Q3").contains(r.at)
        ),
        key=lambda r: r.index,
    )
    # only the bureau issues
    for role in ("auditor", "nscc", "a"):
        size = service.ledger.store.size()
        denied = issue(client, tokens[role], "nscc-cd", "2023-Q3")
        assert denied.status_code == 403 and service.ledger.store.size() == size

    pending = client.get(
        "/v1/statements/pending", params={"centre": "nscc-cd", "period": "2023-Q3"}, headers=admin
    ).json()
    first = issue(client, admin, "nscc-cd", "2023-Q3")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["statement"] == "nscc-cd.2023-Q3.1" and body["status"] == "closed"
    assert [x["record_id"] for x in lines(client, admin, body)] == [r.record_id for r in q3]
    assert [x["record_id"] for x in pending["lines"]] == [r.record_id for r in q3]
    assert pending["totals"] == body["totals"] and pending["lines_sha256"] == body["lines_sha256"]
    assert body["totals"]["amount_fen"] == sum(r.net_fen for r in q3)
    assert body["signed_by"] == [service.ledger.keys.log.key_id]
    assert client.get(body["proof"]).status_code == 200
    entry = client.get(body["entry"]).json()
    assert entry["entry"]["kind"] == "statement.open"

    # the populated ledger is in Q4 already: its Q4 claim has a statement of its own
    q4 = issue(client, admin, "nscc-cd", "2023-Q4").json()
    assert [x["record_id"] for x in lines(client, admin, q4)] == ["job-5"]
    assert q4["previous"] == body["statement"]
    # a claim captured after the statement goes into the next one of the same period
    world["clock"].set(local("2023-10-12 12:00"))
    late = claim(service, world["big"], wan(1), "job-late")
    second = issue(client, admin, "nscc-cd", "2023-Q4").json()
    assert second["statement"] == "nscc-cd.2023-Q4.2" and second["previous"] == q4["statement"]
    assert [x["record_id"] for x in lines(client, admin, second)] == ["job-late"]
    assert second["totals"]["amount_fen"] == late["subsidy_fen"]
    again = issue(client, admin, "nscc-cd", "2023-Q4")
    assert again.status_code == 422 and again.json()["reason"] == "NOTHING_TO_SETTLE"
    assert issue(client, admin, "nscc-cd", "2023-Q3").json()["reason"] == "NOTHING_TO_SETTLE"
    future = issue(client, admin, "nscc-cd", "2024-Q1")
    assert future.status_code == 422 and future.json()["reason"] == "PERIOD_NOT_STARTED"
    bad = issue(client, admin, "nscc-cd", "2023-Q7")
    assert bad.status_code == 400

    # corrections after settlement are negative lines in the next statement
    world["clock"].set(local("2023-10-20 10:00"))
    reverse(service, "job-2", centre="cd-icc")  # not yet settled: cd-icc has no statement
    reverse(service, "job-3")
    settled_job3 = next(x for x in lines(client, admin, body) if x["record_id"] == "job-3")[
        "amount_fen"
    ]
    clawback(service, "job-late", 1)
    third = issue(client, admin, "nscc-cd", "2023-Q4").json()
    assert [(x["type"], x["record_id"], x["amount_fen"]) for x in lines(client, admin, third)] == [
        ("adjustment", "job-3", -settled_job3),
        ("adjustment", "job-late", -1),
    ]
    assert third["totals"]["amount_fen"] == -settled_job3 - 1
    assert third["totals"]["cost_fen"] == 0
    icc = issue(client, admin, "cd-icc", "2023-Q3").json()
    reversed_line = next(x for x in lines(client, admin, icc) if x["record_id"] == "job-2")
    assert reversed_line["amount_fen"] == 0 and reversed_line["reversed_index"] is not None

    # nothing is settled twice; each claim's lines add up to its net subsidy
    state = service.ledger.refresh()
    first_lines: dict[tuple[str, str], int] = {}
    paid: dict[tuple[str, str], int] = {}
    for found in settlement.book(state).statements.values():
        for line in lines(client, admin, {"statement": found.id}):
            key = (found.centre, line["record_id"])
            paid[key] = paid.get(key, 0) + line["amount_fen"]
            if line["type"] == "claim":
                first_lines[key] = first_lines.get(key, 0) + 1
    assert set(first_lines.values()) == {1}
    for key, amount in paid.items():
        assert amount == claims.book(state).claims[key].net_fen
    centres = client.get("/v1/bureau/centres", headers=admin).json()
    nscc = next(c for c in centres["centres"] if c["centre"] == "nscc-cd")
    assert nscc["due_fen"] == 0 and nscc["statements"] == 4


def test_statement_reads_are_scoped_to_the_centre(world: dict[str, Any]) -> None:
    client, tokens = world["client"], world["tokens"]
    sid = issue(client, tokens["admin"], "nscc-cd", "2023-Q3").json()["statement"]
    issue(client, tokens["admin"], "cd-icc", "2023-Q3")
    listed = client.get("/v1/statements", headers=tokens["nscc"]).json()
    assert [s["statement"] for s in listed["statements"]] == [sid]
    every = client.get("/v1/statements", headers=tokens["auditor"]).json()
    assert len(every["statements"]) == 2
    assert client.get(f"/v1/statements/{sid}", headers=tokens["nscc"]).status_code == 200
    for path in (f"/v1/statements/{sid}", f"/v1/statements/{sid}.csv"):
        denied = client.get(path, headers=tokens["icc"])
        assert denied.status_code == 403 and denied.json()["reason"] == "NOT_YOUR_CENTRE"
        assert client.get(path, headers=tokens["a"]).status_code == 403
        assert client.get(path, headers=tokens["auditor"]).status_code == 200
    other = client.get("/v1/statements", params={"centre": "cd-icc"}, headers=tokens["nscc"])
    assert other.status_code == 403
    missing = client.get("/v1/statements/nscc-cd.2023-Q3.9", headers=tokens["auditor"])
    assert missing.status_code == 404 and missing.json()["reason"] == "UNKNOWN_STATEMENT"
    pending = client.get(
        "/v1/statements/pending", params={"centre": "cd-icc", "period": "2023-Q3"},
        headers=tokens["nscc"],
    )  # fmt: skip
    assert pending.status_code == 403


def test_statement_exports_match_the_fold_to_the_fen(world: dict[str, Any]) -> None:
    client, service, tokens = world["client"], world["service"], world["tokens"]
    body = issue(client, tokens["admin"], "nscc-cd", "2023-Q3").json()
    sid = body["statement"]
    recorded = {"lines": lines(client, tokens["admin"], body), "totals": body["totals"]}

    answer = client.get(f"/v1/statements/{sid}.csv", headers=tokens["nscc"])
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == f'attachment; filename="statement-{sid}.csv"'
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0] == LINE_HEADINGS
    assert len(rows) == len(recorded["lines"]) + 2
    for row, line in zip(rows[1:], recorded["lines"], strict=False):
        assert row[0] == str(line["line"])
        assert (
            row[2] == line["voucher"] and row[4] == line["holder"] and row[6] == line["record_id"]
        )
        assert row[3]  # the holder's name
        assert row[8] == yuan(line["cost_fen"]) and row[9] == yuan(line["amount_fen"])
        assert row[10] == str(line["claim_index"])
    assert rows[-1][0] == "合计"
    assert rows[-1][9] == yuan(recorded["totals"]["amount_fen"])
    assert rows[-1][8] == yuan(recorded["totals"]["cost_fen"])

    answer = client.get(f"/v1/statements/{sid}.xlsx", headers=tokens["auditor"])
    book = openpyxl.load_workbook(io.BytesIO(answer.content))
    assert book.sheetnames == ["结算明细", "按项目汇总", "按凭证汇总", "结算单信息"]
    sheet = sheet_rows(book["结算明细"])
    assert sheet[0] == LINE_HEADINGS
    assert isinstance(sheet[1][LINE_HEADINGS.index("记账时间(北京时间)")], datetime)  # a date cell
    assert sheet[-1][0] == "合计"
    assert fen_of(sheet[-1][9]) == recorded["totals"]["amount_fen"]
    assert sum(fen_of(row[9]) for row in sheet[1:-1]) == recorded["totals"]["amount_fen"]
    assert sum(fen_of(row[8]) for row in sheet[1:-1]) == recorded["totals"]["cost_fen"]
    by_voucher = sheet_rows(book["按凭证汇总"])
    per_voucher: dict[str, int] = {}
    for line in recorded["lines"]:
        per_voucher[line["voucher"]] = per_voucher.get(line["voucher"], 0) + line["amount_fen"]
    assert [(row[0], fen_of(row[6])) for row in by_voucher[1:-1]] == sorted(per_voucher.items())
    by_programme = sheet_rows(book["按项目汇总"])
    assert sum(fen_of(r[4]) for r in by_programme[1:-1]) == recorded["totals"]["amount_fen"]
    facts = {row[0].value: row[1].value for row in book["结算单信息"].iter_rows(min_row=2)}
    assert facts["结算单编号"] == sid
    assert facts["补贴金额合计(分)"] == recorded["totals"]["amount_fen"]
    assert facts["开立日志索引"] == body["index"]
    assert facts["出具日志索引"] == body["closed_index"]
    assert facts["明细链式摘要 lines_sha256"] == body["lines_sha256"]
    assert facts["签名密钥"] == service.ledger.keys.log.key_id


def test_a_log_with_statements_passes_the_offline_audit(open_service, db_url) -> None:  # type: ignore[no-untyped-def]
    """`suanli audit verify` replays the fold, statements included, from the database."""
    from test_audit import audit_verify

    clock = ManualClock(START)
    service: Service = open_service(db_url, clock=clock)
    made = populate(service, clock)
    with TestClient(create_app(service)) as client:
        for centre, period in (
            ("nscc-cd", "2023-Q3"),
            ("nscc-cd", "2023-Q4"),
            ("cd-icc", "2023-Q3"),
        ):
            assert issue(client, made["tokens"]["admin"], centre, period).status_code == 201
        reverse(service, "job-1")
        assert issue(client, made["tokens"]["admin"], "nscc-cd", "2023-Q4").status_code == 201
    code, out = audit_verify(db_url, service.ledger.keys.log.verifier.vkey)
    assert code == 0, out
    assert out.startswith(f"OK: {service.ledger.store.size()} entries")
