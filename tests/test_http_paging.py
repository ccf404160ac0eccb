"""Every list the HTTP API answers pages: cursor, limit, next_cursor, Link rel="next".

The list routes are found from the app's own OpenAPI description (every GET answering JSON
with an array field), so a new list that does not page fails here unless it is named in
``BOUNDED`` with the reason its length is bounded. Each paged route is then walked one item
at a time by following its ``Link`` headers over the populated service of
tests/test_http_grantee.py (SQLite, and PostgreSQL where reachable), and the pages must
give exactly the items of one large page, in order.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_http_grantee import world

from api.http.deps import LOG_SIZE_HEADER

__all__ = ["world"]

PROBLEM = "application/problem+json"

# Arrays in answers that are not paged, each with why its length is bounded, or marked
# as not paged yet.
BOUNDED: dict[tuple[str, str], str] = {
    ("/v1/log/projection", "*"): "a summary of the fold",
    ("/v1/log/witnesses", "witnesses"): "the log's witness policy: a handful of witnesses",
    ("/v1/me/history/summary", "months"): "one row per usage month",
    ("/v1/entities/{uscc}/history/summary", "months"): "one row per usage month",
    ("/readyz", "*"): "health",
    ("/v1/audit/keys", "keys"): "the key registry: a few keys per centre and the bureau",
    ("/v1/audit/keys", "log_keys"): "the log key's epochs",
    ("/v1/audit/policies", "policies"): "one per policy publication",
    ("/v1/admin/entities/{uscc}", "records"): "one entity's registration records",
    ("/v1/apply/entity", "records"): "one entity's registration records",
    ("/v1/admin/vouchers/{voucher}", "centres"): "the centres a voucher names",
    ("/v1/admin/vouchers/{voucher}", "history"): "a voucher's status changes",
    ("/v1/issuer/jwks", "keys"): "the issuer's keys",
    ("/v1/apply/programmes", "programmes"): "the programmes of the policy",
    ("/v1/me/vouchers", "vouchers"): "an entity's vouchers, a few per programme",
    ("/v1/me/vouchers", "caps"): "caps of one voucher",
    ("/v1/entities/{uscc}/vouchers", "vouchers"): "an entity's vouchers, a few per programme",
    ("/v1/entities/{uscc}/vouchers", "caps"): "caps of one voucher",
    ("/v1/me/vouchers/{voucher}", "centres"): "the centres a voucher names",
    ("/v1/me/vouchers/{voucher}", "cap_list"): "caps of one voucher",
    ("/v1/me/vouchers/{voucher}", "claim_list"): "NOT PAGED YET: use the history's voucher=",
    ("/v1/entities/{uscc}/vouchers/{voucher}", "centres"): "the centres a voucher names",
    ("/v1/entities/{uscc}/vouchers/{voucher}", "cap_list"): "caps of one voucher",
    ("/v1/entities/{uscc}/vouchers/{voucher}", "claim_list"): "NOT PAGED YET: see above",
    ("/v1/bureau/budget", "years"): "budget years",
    ("/v1/bureau/budget", "pools"): "the policy's pools",
    ("/v1/bureau/budget", "programmes"): "the policy's programmes",
    ("/v1/bureau/months", "months"): "twelve months",
    ("/v1/statements/pending", "lines"): "paged",
    ("/v1/statements/{statement}/lines", "entries"): "the part entries of this page",
    ("/v1/statements/{statement}", "signed_by"): "the log key",
    ("/v1/statements/{statement}", "parts"): "NOT PAGED YET: one per 4,096 lines",
}
# Routes answering JSON without a response model: what they list, if anything.
UNMODELLED: dict[str, str | None] = {
    "/v1/log/key": None,
    "/v1/log/entries/{index}": None,
    "/v1/log/proof/inclusion": None,
    "/v1/log/proof/consistency": None,
    "/v1/log/checkpoints": "checkpoints",
    "/v1/log/disclosures": None,  # a range of at most 5,000 entries, start and end given
    "/v1/log/entries/{index}/disclosures": None,
    "/healthz": None,
    "/v1/log/witnesses": None,  # the witness policy: a handful (BOUNDED)
    "/v1/apply/reimbursements/{claim}": None,  # one claim
    "/v1/bureau/reimbursements/{claim}": None,  # one claim
}


def list_routes(client: TestClient) -> dict[str, tuple[str, int]]:
    """Every paged GET route: its list field and its largest limit; fails on a list that
    does not page and is not named bounded."""
    spec = client.app.openapi()  # type: ignore[attr-defined]
    schemas = spec["components"]["schemas"]
    paged: dict[str, tuple[str, int]] = {}
    for path, operations in spec["paths"].items():
        get = operations.get("get")
        json_schema = get and get["responses"]["200"].get("content", {}).get("application/json")
        if not json_schema:
            continue  # files, tiles, text
        params = {p["name"]: p for p in get.get("parameters", []) if p["in"] == "query"}
        ref = json_schema["schema"].get("$ref", "").rsplit("/", 1)[-1]
        if not ref:
            assert path in UNMODELLED, f"{path}: a JSON answer without a model; classify it"
            arrays = [UNMODELLED[path]] if UNMODELLED[path] else []
        else:
            props = schemas[ref].get("properties", {})
            arrays = [k for k, v in props.items() if v.get("type") == "array"]
        unpaged = [a for a in arrays if (path, a) not in BOUNDED and (path, "*") not in BOUNDED]
        if not unpaged:
            continue
        assert len(unpaged) == 1, f"{path}: several lists {unpaged}"
        assert "cursor" in params and "limit" in params, f"{path} lists {unpaged[0]} unpaged"
        paged[path] = (unpaged[0], int(params["limit"]["schema"]["maximum"]))
    return paged


def headers_for(path: str, tokens: dict[str, dict[str, str]]) -> dict[str, str]:
    if path.startswith(("/v1/me/", "/v1/apply/")):
        return tokens["a"]
    if path.startswith("/v1/review/"):
        return tokens["reviewer"]
    return tokens["admin"]


def walk(client: TestClient, url: str, headers: dict[str, str], field: str) -> list[Any]:
    """Every item of a list, one per page, following Link rel="next"."""
    found: list[Any] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        answer = client.get(next_url, headers=headers)
        assert answer.status_code == 200, (next_url, answer.text)
        body = answer.json()
        assert len(body[field]) <= 1
        found += body[field]
        link = answer.headers.get("link")
        assert (link is None) == (body["next_cursor"] is None), (next_url, link)
        if link:
            assert link.endswith('>; rel="next"') and f"cursor={body['next_cursor']}" in link
            assert "limit=1" in link
        next_url = link[1 : link.index(">")] if link else None
        pages += 1
        assert pages < 10_000
    return found


def test_every_list_route_pages(world: dict[str, Any]) -> None:
    client, tokens = world["client"], world["tokens"]
    issued = client.post(
        "/v1/statements", json={"centre": "nscc-cd", "period": "2023-Q3"}, headers=tokens["admin"]
    )
    assert issued.status_code == 201, issued.text
    paths = {
        "{uscc}": world["a"],
        "{statement}": issued.json()["statement"],
        "{centre}": "nscc-cd",
    }
    queries = {"/v1/statements/pending": "centre=nscc-cd&period=2023-Q4&"}
    routes = list_routes(client)
    assert {
        "/v1/admin/entities",
        "/v1/admin/applications",
        "/v1/admin/vouchers",
        "/v1/review/applications",
        "/v1/apply/applications",
        "/v1/statements",
        "/v1/statements/{statement}/lines",
        "/v1/bureau/entities",
        "/v1/bureau/centres",
        "/v1/audit/entries",
        "/v1/log/checkpoints",
        "/v1/me/history",
        "/v1/entities/{uscc}/history",
        "/v1/centres/{centre}/rate-cards",
    } <= set(routes)
    walked_some = 0
    for path, (field, maximum) in sorted(routes.items()):
        url = path
        for name, value in paths.items():
            url = url.replace(name, value)
        query = queries.get(path, "")
        if path.startswith("/v1/bureau/"):
            query += "year=2023&"
        headers = headers_for(path, tokens)
        whole = client.get(f"{url}?{query}limit={maximum}", headers=headers)
        assert whole.status_code == 200, (path, whole.text)
        everything = whole.json()[field]
        assert whole.json()["next_cursor"] is None, path
        assert whole.headers[LOG_SIZE_HEADER].isdigit(), path
        if "size" in whole.json() and path != "/v1/log/checkpoints":
            assert int(whole.headers[LOG_SIZE_HEADER]) == whole.json()["size"], path
        one_by_one = walk(client, f"{url}?{query}limit=1", headers, field)
        assert one_by_one == everything, path
        walked_some += len(everything) > 1
    assert walked_some >= 10  # most lists had more than one page to walk


def test_a_bad_cursor_or_limit_is_refused_naming_it(world: dict[str, Any]) -> None:
    client, admin = world["client"], world["tokens"]["admin"]
    for url, named in (
        ("/v1/audit/entries?cursor=abc", "cursor"),
        ("/v1/log/checkpoints?cursor=x", "cursor"),
        ("/v1/admin/vouchers?cursor=V-1", "cursor"),
        ("/v1/admin/entities?limit=0", "limit"),
        ("/v1/admin/entities?limit=1001", "limit"),
        ("/v1/statements/pending?centre=nscc-cd&period=2023-Q3&cursor=-2", "cursor"),
        ("/v1/admin/entities?cursor=a%20b", "cursor"),
        ("/v1/audit/entries?cursor=3&after=4", "cursor"),
    ):
        answer = client.get(url, headers=admin)
        assert answer.status_code == 400, (url, answer.text)
        assert answer.headers["content-type"] == PROBLEM
        assert named in answer.json()["detail"], (url, answer.json())


def test_after_is_still_read_as_the_cursor(world: dict[str, Any]) -> None:
    client, admin = world["client"], world["tokens"]["admin"]
    by_cursor = client.get("/v1/audit/entries?cursor=3&limit=2", headers=admin).json()
    by_after = client.get("/v1/audit/entries?after=3&limit=2", headers=admin).json()
    assert by_cursor["entries"] == by_after["entries"]
    assert [e["index"] for e in by_cursor["entries"]] == [4, 5]


def test_history_totals_are_labelled_page_and_overall(world: dict[str, Any]) -> None:
    client, a = world["client"], world["tokens"]["a"]
    whole = client.get("/v1/me/history?limit=10000", headers=a).json()
    first = client.get("/v1/me/history?limit=2", headers=a).json()
    assert len(whole["items"]) > 2
    assert first["totals"]["items"] == 2
    assert first["totals"]["subsidy_fen"] == sum(i["subsidy_fen"] for i in first["items"])
    assert first["overall_totals"] == whole["overall_totals"] == whole["totals"]
    assert first["overall_totals"]["subsidy_fen"] == sum(i["subsidy_fen"] for i in whole["items"])


@pytest.mark.parametrize("path", ["/v1/me/vouchers", "/v1/admin/entities"])
def test_every_snapshot_read_says_its_log_size(world: dict[str, Any], path: str) -> None:
    client, service = world["client"], world["service"]
    answer = client.get(path, headers=headers_for(path, world["tokens"]))
    assert int(answer.headers[LOG_SIZE_HEADER]) == service.ledger.store.size()
