"""Post-hoc reimbursement over HTTP, through the real ASGI app (SQLite and PostgreSQL): the
grantee claims, its 区县 reviews, the bureau decides and pays; a duplicate invoice, a
claim over the entity's cap and another district's claim answer as they should, as
problem+json, writing nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from domain_helpers import W, make_uscc
from fastapi.testclient import TestClient
from grpc_fixtures import START, ManualClock
from test_reimbursement import invoice, posthoc_policy, reimbursement_request

from api.bootstrap import Service
from api.http.app import create_app
from ledger.usecases.commands.entities import register_entity
from ledger.usecases.commands.round import publish_round

PROBLEM = "application/problem+json"
GRANTEE, NEIGHBOUR = make_uscc(8801), make_uscc(8802)


def _tokens(service: Service) -> dict[str, dict[str, str]]:
    made = {
        "grantee": service.tokens.create("grantee", label="g", entity=GRANTEE)[0],
        "neighbour": service.tokens.create("grantee", label="n", entity=NEIGHBOUR)[0],
        "reviewer": service.tokens.create("reviewer", label="r", district="成都高新区")[0],
        "jinjiang": service.tokens.create("reviewer", label="j", district="锦江区")[0],
        "admin": service.tokens.create("admin", label="a")[0],
        "auditor": service.tokens.create("auditor", label="au")[0],
    }
    return {role: {"Authorization": f"Bearer {token}"} for role, token in made.items()}


def _problem(answer: Any, status: int, reason: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert answer.json()["reason"] == reason, answer.text


def test_a_claim_through_review_to_payment_over_http(
    open_service: Callable[..., Service], db_url: str, tmp_path: Path
) -> None:
    service = open_service(db_url, tmp_path / "data", clock=ManualClock(START))
    service.write(publish_round, posthoc_policy(2023, entity_cap_fen=30 * W))
    for uscc in (GRANTEE, NEIGHBOUR):
        service.write(
            register_entity, uscc=uscc, name=f"单位{uscc[-4:]}", type="enterprise",
            district="成都高新区",
        )  # fmt: skip
    tokens = _tokens(service)
    size = service.ledger.store.size
    with TestClient(create_app(service)) as http:
        sent = reimbursement_request("R-h1") | {"amount_paid_fen": 100 * W}
        sent["invoices"] = [invoice("INV-h1", 100 * W)]
        answer = http.post("/v1/apply/reimbursements", json=sent, headers=tokens["grantee"])
        assert answer.status_code == 201, answer.text
        assert answer.json()["entry"]["kind"] == "reimbursement.submit"

        # the same invoice from the neighbour: refused naming the claim, nothing written
        before = size()
        again = reimbursement_request("R-h2") | {"invoices": [invoice("INV-h1", 10 * W)]}
        answer = http.post("/v1/apply/reimbursements", json=again, headers=tokens["neighbour"])
        _problem(answer, 409, "DUPLICATE_INVOICE")
        assert "R-h1" in answer.json()["detail"] and size() == before
        # a malformed hash names its field
        bad = reimbursement_request("R-h3") | {"evidence": {"contract": "x", "payment": "y"}}
        answer = http.post("/v1/apply/reimbursements", json=bad, headers=tokens["grantee"])
        assert answer.status_code == 400 and "contract" in answer.text and size() == before

        # another district's reviewer may not review it; its own may
        path = "/v1/review/reimbursements/R-h1/opinion"
        _problem(http.post(path, json={"opinion": "approve"}, headers=tokens["jinjiang"]), 403,
                 "NOT_YOUR_DISTRICT")  # fmt: skip
        queue = http.get("/v1/review/reimbursements?status=submitted", headers=tokens["reviewer"])
        assert [c["claim"] for c in queue.json()["items"]] == ["R-h1"]
        answer = http.post(path, json={"opinion": "approve"}, headers=tokens["reviewer"])
        assert answer.status_code == 201, answer.text

        # the bureau approves: 20 % of 100 万元 = 20 万元, within the 30 万元 entity cap
        decided = http.post(
            "/v1/bureau/reimbursements/R-h1/decision",
            json={"decision": "approve"},
            headers=tokens["admin"],
        )
        assert decided.status_code == 201, decided.text
        assert decided.json()["result"]["approved_fen"] == 20 * W
        paid = http.post("/v1/bureau/reimbursements/R-h1/payment", headers=tokens["admin"])
        assert paid.status_code == 201 and paid.json()["result"]["paid_fen"] == 20 * W
        _problem(http.post("/v1/bureau/reimbursements/R-h1/payment", headers=tokens["admin"]),
                 409, "ALREADY_PAID")  # fmt: skip

        # a second claim over what is left under the entity cap: cut to the fen
        more = reimbursement_request("R-h4") | {"amount_paid_fen": 60 * W + 3}
        more["invoices"] = [invoice("INV-h4", 60 * W + 3)]
        assert http.post(
            "/v1/apply/reimbursements", json=more, headers=tokens["grantee"]
        ).is_success
        http.post("/v1/review/reimbursements/R-h4/opinion", json={"opinion": "approve"},
                  headers=tokens["reviewer"])  # fmt: skip
        decided = http.post(
            "/v1/bureau/reimbursements/R-h4/decision",
            json={"decision": "approve"},
            headers=tokens["admin"],
        ).json()["result"]
        assert decided["requested_fen"] == 12 * W  # floor(20 % of 60 万元 and 3 fen)
        assert decided["approved_fen"] == 10 * W and decided["bound_by"] == "entity_programme"

        # the grantee sees its own claims, paged; not the neighbour's
        page = http.get("/v1/apply/reimbursements?limit=1", headers=tokens["grantee"]).json()
        assert [c["claim"] for c in page["items"]] == ["R-h1"] and page["next_after"] is not None
        rest = http.get(
            f"/v1/apply/reimbursements?after={page['next_after']}", headers=tokens["grantee"]
        ).json()
        assert [c["claim"] for c in rest["items"]] == ["R-h4"] and rest["next_after"] is None
        _problem(http.get("/v1/apply/reimbursements/R-h1", headers=tokens["neighbour"]), 403,
                 "NOT_YOUR_ENTITY")  # fmt: skip
        one = http.get("/v1/bureau/reimbursements/R-h1", headers=tokens["auditor"]).json()
        assert one["status"] == "paid" and one["approved_fen"] == 20 * W
