"""The grantee API (/v1/me/..., /v1/entities/{uscc}/...) through the real ASGI app.

A service (SQLite, and PostgreSQL where one is reachable) on a manual clock inside the 2023
round; vouchers, claims at both centres, a hold, a reversal and a clawback, all through the
log. Every figure the API answers is compared with the fold (``ledger.vouchers``,
``ledger.caps``) read directly.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from domain_helpers import local, sha, wan
from fastapi.testclient import TestClient
from grpc_fixtures import (
    START,
    ManualClock,
    centre_write,
    claim_body,
    issue_voucher,
    usage_for,
)

from api.bootstrap import Service
from api.http.app import create_app
from ledger import caps, claims, vouchers
from ledger.entry import Entry
from ledger.usecases.commands import corrections

PROBLEM = "application/problem+json"


# --- a populated service (shared with tests/test_http_bureau.py) -----------------------------


def claim(
    service: Service, voucher: str, cost_fen: int, record_id: str, **usage: Any
) -> dict[str, Any]:
    """A claim signed by the centre's key (``usage``: ``centre``, ``start``), through the
    redemption use case."""
    centre = usage.pop("centre", "nscc-cd")
    record = usage_for(service.ledger, centre, cost_fen, record_id, **usage)
    return dict(centre_write(service, "claim", claim_body(record, voucher, cost_fen)).result)


def hold(service: Service, voucher: str, estimate_fen: int, hold_id: str) -> dict[str, Any]:
    body = claims.hold_body(
        centre="nscc-cd",
        hold_id=hold_id,
        voucher=voucher,
        estimated_cost_fen=estimate_fen,
        expires_at=service.ledger.clock() + timedelta(days=7),
    )
    return dict(centre_write(service, "hold", body).result)


def reverse(service: Service, record_id: str, centre: str = "nscc-cd") -> dict[str, Any]:
    done = service.write(
        corrections.reverse_claim, centre=centre, record_id=record_id, reason="计量错误"
    )
    return done.result


def clawback(
    service: Service, record_id: str, amount_fen: int, centre: str = "nscc-cd"
) -> dict[str, Any]:
    done = service.write(
        corrections.claw_back,
        amount_fen=amount_fen,
        reason="虚报",
        evidence_sha256=sha("evidence"),
        claim=(centre, record_id),
    )
    return done.result


def holder_of(service: Service, voucher: str) -> str:
    return str(vouchers.voucher_of(service.ledger.refresh(), voucher).holder)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def populate(service: Service, clock: ManualClock) -> dict[str, Any]:
    """Two entities: A with an AI 大模型 voucher (runs for years, so holds fit its usage
    window; a per-year cap) and a small national-strategy one,
    B with one industry voucher. Claims in Q3 2023 at both centres, a hold, a reversal and
    a clawback; more claims in Q4 2023."""
    big = issue_voucher(service, "ai-model")
    a = holder_of(service, big)
    small = issue_voucher(service, "national-strategy", amount_fen=wan(1), uscc=a)
    spare = issue_voucher(service, "industry", amount_fen=wan(1), uscc=a)  # unused until a test
    other = issue_voucher(service, "industry")
    b = holder_of(service, other)
    q3 = [
        claim(service, big, wan(10), "job-1"),
        claim(service, big, wan(20), "job-2", centre="cd-icc"),
        claim(service, small, wan(5), "job-3"),  # 1 万 face value: the voucher cap binds
        claim(service, other, wan(8), "job-b1"),
        claim(service, big, wan(2), "job-4", start=local("2023-05-02 09:00")),
    ]
    reverse(service, "job-4")
    clawback(service, "job-1", 12_345)
    clock.set(local("2023-10-10 10:00"))
    q4 = [
        claim(service, big, wan(4), "job-5"),
        claim(service, other, wan(6), "job-b2", centre="cd-icc"),
    ]
    hold(service, big, wan(3), "hold-1")  # open for a week
    tokens = {
        "a": service.tokens.create("grantee", entity=a)[0],
        "b": service.tokens.create("grantee", entity=b)[0],
        "auditor": service.tokens.create("auditor")[0],
        "admin": service.tokens.create("admin")[0],
        "nscc": service.tokens.create("centre", centre="nscc-cd")[0],
        "icc": service.tokens.create("centre", centre="cd-icc")[0],
        "reviewer": service.tokens.create("reviewer", district="成都高新区")[0],
    }
    return {
        "a": a,
        "b": b,
        "big": big,
        "small": small,
        "spare": spare,
        "other": other,
        "q3": q3,
        "q4": q4,
        "tokens": {k: bearer(v) for k, v in tokens.items()},
    }


@pytest.fixture
def world(open_service, db_url) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    clock = ManualClock(START)
    service: Service = open_service(db_url, clock=clock)
    made = populate(service, clock)
    with TestClient(create_app(service)) as client:
        yield {**made, "service": service, "client": client, "clock": clock}


# --- vouchers, balances, caps -----------------------------------------------------------------


def test_my_vouchers_are_the_folds(world: dict[str, Any]) -> None:
    client, service = world["client"], world["service"]
    answer = client.get("/v1/me/vouchers", headers=world["tokens"]["a"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    state = service.ledger.refresh()
    now = world["clock"]()
    assert body["entity"]["uscc"] == world["a"] and body["entity"]["name"]
    assert body["size"] == state.size
    assert [v["id"] for v in body["vouchers"]] == [world["big"], world["small"], world["spare"]]
    for v in body["vouchers"]:
        view = vouchers.voucher_view(state, v["id"], now)
        assert v["face_value_fen"] == view["face_value_fen"]
        assert v["used_fen"] == view["used_fen"]
        assert v["held_fen"] == view["held_fen"]
        assert v["balance_fen"] == view["balance_fen"]
        assert v["caps"] == view["caps"]
        assert v["available_fen"] == min(view["caps"].values())
        assert v["last_bound_by"] == view["last_bound_by"]
        assert v["proof"] == f"/v1/log/proof/inclusion?index={view['log_index']}"
        assert v["credential"].count(".") == 2  # a compact JWS
    big = body["vouchers"][0]
    assert big["held_fen"] > 0  # the open hold
    # job-1 (net of its clawback) and job-2 and job-5; job-4 was reversed
    records = {r["record_id"]: r for r in claims.claims_of_voucher(state, world["big"])}
    assert big["subsidy_fen"] == sum(r["net_fen"] for r in records.values())
    assert records["job-4"]["net_fen"] == 0


def test_every_cap_by_name_and_the_one_that_bound_the_last_claim(world: dict[str, Any]) -> None:
    client, service = world["client"], world["service"]
    body = client.get("/v1/me/vouchers", headers=world["tokens"]["a"]).json()
    state = service.ledger.refresh()
    book = caps.book(state)
    now = world["clock"]()
    adjust = book.adjustments(now)
    expected: dict[str, Any] = {}
    for vid in (world["big"], world["small"], world["spare"]):
        v = vouchers.voucher_of(state, vid)
        usage_at = min(max(now, v.usage_start), v.usage_end)
        lines, _ = vouchers.cap_lines(state, v, usage_at, now)
        for line in lines:
            if line.limit is not None:
                expected[caps.key_text(line.key)] = (line, book.remaining(line, adjust))
    assert {c["name"] for c in body["caps"]} == set(expected)
    kinds = {c["cap"] for c in body["caps"]}
    assert {"voucher", "period", "entity_programme"} <= kinds
    for cap in body["caps"]:
        line, remaining = expected[cap["name"]]
        assert cap["limit_fen"] == line.limit
        assert cap["remaining_fen"] == max(0, remaining)
        assert cap["used_fen"] == book.used.get(line.key, 0)
        assert cap["label"] and cap["scope"] in {"voucher", "period", "programme", "entity", "pool"}
    # the last claim of A was job-5 on the big voucher, bound by the rate (no cap)
    last = body["last_claim"]
    assert (last["record_id"], last["voucher"]) == ("job-5", world["big"])
    assert last["bound_by"] == world["q4"][0]["bound_by"]
    if last["bound_by"] == "rate":
        assert body["last_binding_cap"] is None
        assert not any(c["binding"] for c in body["caps"])
    # The small voucher's claim was bound by its face value.
    small = client.get(f"/v1/me/vouchers/{world['small']}", headers=world["tokens"]["a"]).json()
    assert small["last_bound_by"] == "voucher"
    assert world["q3"][2]["bound_by"] == "voucher"
    assert small["balance_fen"] == 0
    assert [c["record_id"] for c in small["claim_list"]] == ["job-3"]
    binding = [c for c in small["cap_list"] if c["binding"]]
    assert [c["name"] for c in binding] == [f"voucher/{world['small']}"]


def test_a_claim_bound_by_a_cap_is_named_as_the_last_binding_cap(world: dict[str, Any]) -> None:
    """Claim on the small voucher last: its voucher cap bound it, and the entity answer
    names that cap."""
    service, client = world["service"], world["client"]
    small, third = world["small"], world["spare"]
    result = claim(service, third, wan(50), "job-6")
    assert result["bound_by"] == "voucher"
    body = client.get("/v1/me/vouchers", headers=world["tokens"]["a"]).json()
    assert body["last_binding_cap"] == f"voucher/{third}"
    assert [c["name"] for c in body["caps"] if c["binding"]] == [f"voucher/{third}"]
    assert small != third


# --- scope: a grantee sees only its own entity --------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/entities/{uscc}/vouchers",
        "/v1/entities/{uscc}/vouchers/{voucher}",
        "/v1/entities/{uscc}/history",
        "/v1/entities/{uscc}/history.csv",
        "/v1/entities/{uscc}/history.xlsx",
    ],
)
def test_a_grantee_sees_only_its_own_entity(world: dict[str, Any], path: str) -> None:
    client, service = world["client"], world["service"]
    size = service.ledger.store.size()
    other = path.format(uscc=world["b"], voucher=world["other"])
    denied = client.get(other, headers=world["tokens"]["a"])
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith(PROBLEM)
    assert denied.json()["reason"] == "NOT_YOUR_ENTITY"
    assert service.ledger.store.size() == size  # nothing written
    own = path.format(uscc=world["a"], voucher=world["big"])
    assert client.get(own, headers=world["tokens"]["a"]).status_code == 200
    for role in ("auditor", "admin"):
        assert client.get(other, headers=world["tokens"][role]).status_code == 200
    for role in ("nscc", "reviewer"):
        answer = client.get(other, headers=world["tokens"][role])
        assert answer.status_code == 403 and answer.json()["reason"] == "ROLE_DENIED"
    assert client.get(other).status_code == 401
    assert service.ledger.store.size() == size


def test_me_routes_are_for_grantees_only(world: dict[str, Any]) -> None:
    client = world["client"]
    for path in ("/v1/me/vouchers", "/v1/me/history", "/v1/me/history.csv"):
        assert client.get(path).status_code == 401
        for role in ("auditor", "admin", "nscc"):
            answer = client.get(path, headers=world["tokens"][role])
            assert answer.status_code == 403, path
            assert answer.json()["reason"] == "ROLE_DENIED"
    # another entity's voucher is not found under /v1/me (it is not mine)
    answer = client.get(f"/v1/me/vouchers/{world['other']}", headers=world["tokens"]["a"])
    assert answer.status_code == 404 and answer.json()["reason"] == "UNKNOWN_VOUCHER"


def test_a_grantee_whose_entity_is_not_registered_sees_an_empty_answer(
    world: dict[str, Any],
) -> None:
    service, client = world["service"], world["client"]
    token, _ = service.tokens.create("grantee", entity="91510100MA61R0JK41")
    body = client.get("/v1/me/vouchers", headers=bearer(token)).json()
    assert body["entity"] == {
        "uscc": "91510100MA61R0JK41",
        "name": None,
        "type": None,
        "district": None,
        "blacklisted": False,
    }
    assert body["vouchers"] == [] and body["caps"] == [] and body["last_claim"] is None


# --- history ------------------------------------------------------------------------------------


def test_history_has_every_item_with_its_log_index_and_proof(world: dict[str, Any]) -> None:
    client, service = world["client"], world["service"]
    body = client.get("/v1/me/history", headers=world["tokens"]["a"]).json()
    items = body["items"]
    kinds = [(i["kind"], i["record_id"]) for i in items]
    assert kinds == [
        ("claim", "job-1"),
        ("claim", "job-2"),
        ("claim", "job-3"),
        ("claim", "job-4"),
        ("claim.reverse", "job-4"),
        ("clawback", "job-1"),
        ("claim", "job-5"),
    ]
    assert [i["index"] for i in items] == sorted(i["index"] for i in items)
    store = service.ledger.store
    for item in items:
        assert item["proof"] == f"/v1/log/proof/inclusion?index={item['index']}"
        proof = client.get(item["proof"])
        assert proof.status_code == 200, proof.text
        kind = Entry.from_bytes(store.entries(item["index"], item["index"] + 1)[0]).kind
        assert kind == item["kind"]
    # the subsidy changes add up to the net of every claim
    state = service.ledger.refresh()
    net = sum(
        r["net_fen"]
        for v in (world["big"], world["small"])
        for r in claims.claims_of_voucher(state, v)
    )
    assert body["totals"]["subsidy_fen"] == sum(i["subsidy_fen"] for i in items) == net
    reversal = items[4]
    assert reversal["subsidy_fen"] == -world["q3"][4]["subsidy_fen"]
    assert reversal["corrects"] == items[3]["index"]
    assert items[5]["subsidy_fen"] == -12_345 and items[5]["corrects"] == items[0]["index"]
    assert items[0]["net_fen"] == world["q3"][0]["subsidy_fen"] - 12_345
    assert items[2]["binding_cap"] == "voucher"


def test_history_filters_by_centre_period_dates_and_usage(world: dict[str, Any]) -> None:
    client = world["client"]
    headers = world["tokens"]["a"]

    def records(**params: Any) -> list[tuple[str, str | None]]:
        answer = client.get("/v1/me/history", params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        return [(i["kind"], i["record_id"]) for i in answer.json()["items"]]

    assert records(centre="cd-icc") == [("claim", "job-2")]
    assert [r for _, r in records(period="2023-Q4")] == ["job-5"]
    assert [r for _, r in records(period="2023-10")] == ["job-5"]
    assert len(records(period="2023")) == 7
    assert records(period="2024") == []
    assert [r for _, r in records(**{"from": "2023-10-10", "to": "2023-10-10"})] == ["job-5"]
    assert [r for _, r in records(to="2023-08-20")][:3] == ["job-1", "job-2", "job-3"]
    # by usage start: job-4's usage began in May; the others in March
    assert [r for k, r in records(period="2023-05", basis="usage") if k == "claim"] == ["job-4"]
    assert records(voucher=world["small"]) == [("claim", "job-3")]
    # paging
    first = client.get("/v1/me/history", params={"limit": 2}, headers=headers).json()
    assert len(first["items"]) == 2 and first["next_after"] == first["items"][-1]["index"]
    rest = client.get(
        "/v1/me/history", params={"after": first["next_after"]}, headers=headers
    ).json()
    assert len(rest["items"]) == 5 and rest["next_after"] is None
    # malformed filters are 400 problems
    for params in (
        {"period": "2023-Q5"},
        {"from": "2023-13-01"},
        {"period": "2023", "from": "2023-01-01"},
        {"from": "2023-10-02", "to": "2023-10-01"},
        {"from": "0001-01-01"},
        {"to": "9999-12-31"},
        {"basis": "other"},
        {"limit": 0},
    ):
        answer = client.get("/v1/me/history", params=params, headers=headers)
        assert answer.status_code == 400, params
        assert answer.headers["content-type"].startswith(PROBLEM)


def test_history_exports_have_chinese_headings_and_two_decimal_yuan(
    world: dict[str, Any],
) -> None:
    client = world["client"]
    headers = world["tokens"]["a"]
    items = client.get("/v1/me/history", headers=headers).json()["items"]
    answer = client.get("/v1/me/history.csv", headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["日志索引", "时间", "类型"]
    assert "补贴金额(元)" in rows[0] and "算力费用(元)" in rows[0]
    col = rows[0].index("补贴金额(元)")
    assert len(rows) == len(items) + 2  # headings, items, 合计
    for row, item in zip(rows[1:], items, strict=False):
        fen = item["subsidy_fen"]
        sign = "-" if fen < 0 else ""
        assert row[col] == f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"
    assert rows[-1][0] == "合计"
    total = sum(i["subsidy_fen"] for i in items)
    assert rows[-1][col] == f"{'-' if total < 0 else ''}{abs(total) // 100}.{abs(total) % 100:02d}"

    xlsx = client.get("/v1/me/history.xlsx", headers=headers)
    assert xlsx.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    sheet = book.worksheets[0]
    head = [c.value for c in sheet[1]]
    assert head[0] == "日志索引"
    last = [c.value for c in sheet[sheet.max_row]]
    assert last[0] == "合计"


# --- docs/api-grantee.md stays true ----------------------------------------------------------

DOC = Path(__file__).parent.parent / "docs" / "api-grantee.md"


def _keys(value: Any, path: str = "$") -> set[str]:
    """Every key path of a JSON value (list items merged), e.g. $.vouchers[].caps."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, child in value.items():
            if path in ("$.vouchers[].caps",) or path.endswith(".by_programme"):
                continue  # keyed by cap or programme name: the names are data
            out.add(f"{path}.{key}")
            out |= _keys(child, f"{path}.{key}")
    elif isinstance(value, list):
        for child in value:
            out |= _keys(child, f"{path}[]")
    return out


def test_the_documented_shapes_are_the_served_ones(world: dict[str, Any]) -> None:
    client, tokens = world["client"], world["tokens"]
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)]
    assert len(blocks) == 3
    served = [
        client.get("/v1/me/vouchers", headers=tokens["a"]).json(),
        client.get("/v1/me/history", headers=tokens["a"]).json(),
        client.get("/v1/bureau/budget", headers=tokens["auditor"]).json(),
    ]
    for documented, answer in zip(blocks, served, strict=True):
        assert _keys(documented) == _keys(answer)


def test_a_malformed_uscc_is_a_400(world: dict[str, Any]) -> None:
    client = world["client"]
    uscc = world["b"]
    wrong = uscc[:-1] + ("0" if uscc[-1] != "0" else "1")  # a wrong check character
    answer = client.get(f"/v1/entities/{wrong}/vouchers", headers=world["tokens"]["auditor"])
    assert answer.status_code == 400 and answer.json()["reason"] == "INVALID_USCC"
    answer = client.get("/v1/entities/123/history", headers=world["tokens"]["auditor"])
    assert answer.status_code == 400
