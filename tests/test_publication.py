"""The publication scope (docs/publication.md): decided for every entry kind, written down,
and enforced — anyone can verify the log, and no route that answers without a token shows a
restricted value, while the roles allowed read the same values."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from domain_helpers import DEFAULT_INPUTS, attest_all, make_uscc, materials_for, wan
from fastapi.testclient import TestClient
from grpc_fixtures import ManualClock, claim_body, usage_for
from test_http_matrix import PUBLIC, ROUTES

from api.bootstrap import Service
from api.http.app import create_app
from ledger import merkle, tiles
from ledger.disclosure import read_disclosure
from ledger.errors import LedgerError
from ledger.fold import RULES
from ledger.policy import current_policy
from ledger.publication import RESTRICTED
from ledger.timeutil import parse_time
from ledger.usecases.commands import applications as application_commands
from ledger.usecases.commands import reimbursement as reimbursement_commands
from ledger.usecases.commands.applications import Approval
from ledger.usecases.commands.entities import NewEntity, register_entity
from ledger.usecases.commands.round import publish_round
from ledger.usecases.commands.settlement import issue_statement
from ledger.usecases.commands.vouchers import voucher_for

DOC = Path(__file__).resolve().parent.parent / "docs" / "publication.md"
START = parse_time("2023-08-20T10:00:00+08:00")

# What a round holds that must never be published: a talent team's members (natural persons),
# a budget, a district's reason for rejecting, the reviewer, a rejected applicant's code, a
# job id, a rich enterprise's name.
TALENT_TEAM = "李四光院士团队"
BUDGET_FEN = 987_654_321
REJECTION = "银行付款凭证与项目不符，不予推荐（甲乙丙）"
REVIEWER = "reviewer-zqx-7f3a"
JOB = "job-zqx-4242"
COMPANY = "蜀道算力科技有限公司"
PROVIDER = "青城山算力服务有限公司"
INVOICE = "INV-QCS-20230315"


def test_every_entry_kind_has_a_publication_rule() -> None:
    assert set(RESTRICTED) == set(RULES)


def test_the_doc_lists_the_scope() -> None:
    """Each row of docs/publication.md's table names its kinds and exactly the restricted
    members ledger/publication.py conceals for them."""
    rows = [line for line in DOC.read_text("utf-8").splitlines() if line.startswith("| `")]
    listed: dict[str, set[str]] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        kinds = re.findall(r"`([a-z.]+)`", cells[0])
        kinds += [f"voucher.{k}" for k in re.findall(r"`(reinstate|revoke|expire)`", cells[0])]
        members = set(re.findall(r"`([a-z_]+)`", cells[2]))
        for kind in kinds:
            listed[kind] = members
    for kind, members in RESTRICTED.items():
        assert kind in listed, f"docs/publication.md does not list {kind}"
        assert listed[kind] == set(members), f"{kind}: doc {listed[kind]} != {set(members)}"


# --- the anonymous scrape ------------------------------------------------------------------


def _seed(service: Service, clock: ManualClock) -> dict[str, Any]:
    """A round with every restricted value above in it, through the use cases."""
    policy = current_policy(service.ledger.snapshot())
    team, company = make_uscc(910), make_uscc(911)
    service.write(
        register_entity, uscc=team, name=TALENT_TEAM, type="talent_team", district="成华区"
    )
    service.write(
        application_commands.submit_application,
        application="A-talent",
        programme="talent",
        applicant=team,
        inputs={**DEFAULT_INPUTS["talent"], "compute_cost_fen": BUDGET_FEN},
        materials=materials_for(policy, "talent"),
        attestations=attest_all(policy, "talent"),
    )
    service.write(
        application_commands.review_application,
        application="A-talent",
        district="成华区",
        reviewer=REVIEWER,
        opinion="reject",
        note=REJECTION,
    )
    service.write(
        application_commands.decide_application, application="A-talent", decision="reject"
    )
    approval = Approval("A-company", "industry", company, DEFAULT_INPUTS["industry"])
    entity = NewEntity(company, COMPANY, "enterprise", "成都高新区")
    voucher = str(service.write(voucher_for, approval, "V-public", entity=entity).body["voucher"])
    usage = usage_for(service.ledger, "nscc-cd", wan(1), JOB)
    from grpc_fixtures import centre_write

    centre_write(service, "claim", claim_body(usage, voucher, wan(1)))
    clock.advance(minutes=1)
    issue_statement(service.write, centre="nscc-cd", period="2023-Q3")
    claimant = _reimburse(service)
    return {"team": team, "company": company, "voucher": voucher, "claimant": claimant}


def _reimburse(service: Service) -> str:
    """A post-hoc claim naming a provider and an invoice, and its district's opinion;
    the claimant holds no voucher, so nothing public names it."""
    from test_reimbursement import invoice, posthoc_policy, reimbursement_request

    claimant = make_uscc(913)
    service.write(
        register_entity, uscc=claimant, name=PROVIDER + "客户", type="enterprise",
        district="成都高新区",
    )  # fmt: skip
    service.write(publish_round, posthoc_policy(2023))
    sent = reimbursement_request("R-secret")
    service.write(
        reimbursement_commands.submit_reimbursement,
        claim="R-secret",
        round=sent["round"],
        programme=sent["programme"],
        claimant=claimant,
        provider={"name": PROVIDER, "uscc": make_uscc(912, "110108")},
        period=("2023-03-01", "2023-03-31"),
        amount_paid_fen=BUDGET_FEN,
        invoices=[invoice(INVOICE, BUDGET_FEN)],
        evidence=sent["evidence"],
    )
    service.write(
        reimbursement_commands.review_reimbursement,
        claim="R-secret",
        district="成都高新区",
        reviewer=REVIEWER,
        opinion="reject",
        note=REJECTION,
    )
    return claimant


def _forms(secret: str) -> list[bytes]:
    """The ways a value could leak: as UTF-8, JSON-escaped, base64 and base64url of it."""
    raw = secret.encode()
    return [
        raw,
        json.dumps(secret).strip('"').encode(),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
    ]


def _public_gets(service: Service) -> Iterator[str]:
    """Every URL a caller without a token can read of this log."""
    size = service.ledger.store.size()
    yield from ("/", "/healthz", "/readyz", "/metrics", "/checkpoint", "/openapi.json")
    yield from ("/v1/log/key", "/v1/log/projection", "/v1/issuer/jwk", "/v1/issuer/jwks")
    yield "/v1/log/checkpoints?after=0&limit=1000"
    for name in ("app.js", "app.css", "index.html"):
        yield f"/web/{name}"
    for index in range(size):
        yield f"/v1/log/entries/{index}"
        yield f"/v1/log/proof/inclusion?index={index}&size={size}"
    yield f"/v1/log/proof/consistency?old=1&new={size}"
    for ref in tiles.tiles_for_size(size):
        yield f"/{ref.path}"
        if ref.level == 0:
            yield "/" + tiles.TileRef(0, ref.n, ref.width, is_entries=True).path


@pytest.fixture
def seeded(open_service, db_url: str) -> Iterator[tuple[Service, dict[str, Any]]]:  # type: ignore[no-untyped-def]
    clock = ManualClock(START)
    service = open_service(db_url, clock=clock)
    yield service, _seed(service, clock)


def test_no_route_without_a_token_shows_a_restricted_value(
    seeded: tuple[Service, dict[str, Any]],
) -> None:
    service, ids = seeded
    assert {r.label for r in ROUTES if r.label in PUBLIC}  # the routes anyone may call
    secrets = [TALENT_TEAM, str(BUDGET_FEN), REJECTION, REVIEWER, JOB, COMPANY, ids["team"]]
    secrets += [PROVIDER, INVOICE, ids["claimant"]]
    seen = 0
    with TestClient(create_app(service)) as client:
        for url in _public_gets(service):
            answer = client.get(url)
            assert answer.status_code < 500, url
            seen += 1
            for secret in secrets:
                for form in _forms(secret):
                    assert form not in answer.content, f"{url} shows {secret!r}"
    assert seen > service.ledger.store.size()  # every entry, proof and tile was read


def test_the_allowed_roles_read_the_same_values(seeded: tuple[Service, dict[str, Any]]) -> None:
    service, ids = seeded
    entries = service.ledger.store.read(0, service.ledger.store.size())
    register = next(e for e in entries if e.kind == "entity.register" and e.disclosures)
    claim = next(e for e in entries if e.kind == "claim")
    review = next(e for e in entries if e.kind == "application.review")
    index = {id(e): i for i, e in enumerate(entries)}

    def opened(headers: dict[str, str], entry: Any) -> dict[str, Any] | int:
        answer = client.get(f"/v1/log/entries/{index[id(entry)]}/disclosures", headers=headers)
        if answer.status_code != 200:
            return answer.status_code
        return {d.name: d.value for d in map(read_disclosure, answer.json()["disclosures"])}

    tokens = {
        "admin": service.tokens.create("admin")[0],
        "auditor": service.tokens.create("auditor")[0],
        "team": service.tokens.create("grantee", entity=ids["team"])[0],
        "company": service.tokens.create("grantee", entity=ids["company"])[0],
        "claimant": service.tokens.create("grantee", entity=ids["claimant"])[0],
        "chenghua": service.tokens.create("reviewer", district="成华区")[0],
        "gaoxin": service.tokens.create("reviewer", district="成都高新区")[0],
        "nscc": service.tokens.create("centre", centre="nscc-cd")[0],
        "icc": service.tokens.create("centre", centre="cd-icc")[0],
    }
    as_ = {k: {"Authorization": f"Bearer {v}"} for k, v in tokens.items()}
    with TestClient(create_app(service)) as client:
        first = next(e for e in entries if e.kind == "entity.register" and e.disclosures)
        assert first is register
        for who in ("admin", "auditor", "team", "chenghua"):
            found = opened(as_[who], review)
            assert isinstance(found, dict), who
            assert (found["reviewer"], found["note"]) == (REVIEWER, REJECTION)
        for who in ("company", "gaoxin", "nscc"):
            assert opened(as_[who], review) == 403, who
        for who in ("admin", "nscc", "company"):
            found = opened(as_[who], claim)
            assert isinstance(found, dict) and found["record_id"] == JOB, who
        for who in ("team", "icc", "chenghua"):
            assert opened(as_[who], claim) == 403, who
        assert client.get(f"/v1/log/entries/{index[id(claim)]}/disclosures").status_code == 401
        reimbursed = next(e for e in entries if e.kind == "reimbursement.submit")
        for who in ("admin", "auditor", "claimant", "gaoxin"):
            found = opened(as_[who], reimbursed)
            assert isinstance(found, dict) and found["provider"]["name"] == PROVIDER, who
        for who in ("company", "team", "chenghua", "nscc"):
            assert opened(as_[who], reimbursed) == 403, who
        for past_the_end in (len(entries), 2**63 - 1):
            url = f"/v1/log/entries/{past_the_end}/disclosures"
            assert client.get(url, headers=as_["admin"]).status_code == 404
        # the leaf itself carries only the digests
        leaf = client.get(f"/v1/log/entries/{index[id(claim)]}").json()["entry"]
        assert "record_id" not in leaf["body"] and len(leaf["body"]["_sd"]) == 5
    assert merkle.leaf_hash(claim.to_bytes()) == merkle.leaf_hash(
        service.ledger.store.entries(index[id(claim)], index[id(claim)] + 1)[0]
    )


def test_a_restricted_member_in_clear_is_refused(open_service, db_url: str) -> None:  # type: ignore[no-untyped-def]
    """No author can publish a restricted value, not even the service's own keys."""
    from ledger.entities import register_body
    from ledger.entry import Entry

    service = open_service(db_url)
    body = register_body(make_uscc(912), TALENT_TEAM, "talent_team", "成华区")
    size = service.ledger.store.size()
    with pytest.raises(LedgerError) as caught, service.ledger.transaction() as tx:
        clear = Entry("entity.register", tx.now(), body).signed(tx.keys.service)
        tx.append(clear)
    assert caught.value.reason == "NOT_CONCEALED"
    assert caught.value.details["field"] == "body.uscc"
    assert service.ledger.store.size() == size
