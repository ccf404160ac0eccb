"""The notice's flows through the role APIs (/v1/admin, /v1/review, /v1/apply, /v1/issuer),
over the real ASGI app, on SQLite and PostgreSQL.

Each refusal checks the problem+json answer (status, reason, the message) and that the log
did not grow. Money in fen: 1 万元 = 1,000,000 fen. The clock is the service clock: a
``Clock`` the test moves, or ``SUANLI_CLOCK`` (``open_service(db, clock="…")``) which starts
at a time and runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest
from fastapi.testclient import TestClient
from grpc_fixtures import ManualClock
from httpx2 import Response  # what the TestClient answers with
from joserfc import jws
from joserfc.errors import BadSignatureError, SecurityWarning
from joserfc.jwk import OKPKey

from api.bootstrap import Service
from api.http.app import create_app
from ledger import claims
from ledger.fold import opened
from ledger.timeutil import parse_time
from ledger.uscc import complete

PROBLEM = "application/problem+json"
W = 1_000_000  # fen per 万元

HIGH_TECH = "成都高新区"
JINJIANG = "锦江区"
DATES = {"project_start": "2023-02-01", "project_end": "2023-07-15"}
INPUTS: dict[str, dict[str, Any]] = {
    "industry": {
        "compute_cost_fen": 1200 * W,
        "level": "national",
        "project_type": "ai_industrialisation",
        **DATES,
    },
    "adaptation": {"rank": 1},
    "talent": {
        "compute_cost_fen": 300 * W,
        "talent_category": "academician",
        "chengdu_contribution_months": 12,
        **DATES,
    },
}


def local(text: str) -> datetime:
    """'2023-08-20 10:00' Asia/Shanghai -> aware UTC datetime."""
    return parse_time(text.replace(" ", "T") + ":00+08:00")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def uscc(n: int) -> str:
    return complete(f"91510100MA{n:07d}")


class Clock(ManualClock):
    """The service clock, moved by the test to a local (Asia/Shanghai) time."""

    def set(self, text: str) -> None:  # type: ignore[override]
        super().set(local(text))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Env:
    """A service, its app, a token per role (and scope), and helpers for the flows."""

    service: Service
    client: TestClient
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)
    counter: int = 0

    def size(self) -> int:
        return self.service.ledger.store.size()

    def as_(self, who: str) -> dict[str, str]:
        return self.tokens[who]

    def token(self, name: str, role: str, **scope: str) -> dict[str, str]:
        token, _ = self.service.tokens.create(role, **scope)
        self.tokens[name] = bearer(token)
        return self.tokens[name]

    def refused(
        self, call: Callable[[], Response], status: int, reason: str, *contains: str
    ) -> dict[str, Any]:
        """``call`` is answered with a problem of ``status``/``reason`` and writes nothing."""
        before = self.size()
        response = call()
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        problem = response.json()
        assert problem["status"] == status and problem["reason"] == reason, problem
        for text in contains:
            assert text in problem["detail"], (text, problem["detail"])
        assert self.size() == before, "a refused request wrote to the log"
        return dict(problem)

    def ok(self, response: Response, status: int = 200) -> dict[str, Any]:
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        return body

    # the flows ----------------------------------------------------------------------------

    def materials(self, programme: str) -> dict[str, str]:
        listing = self.ok(self.client.get("/v1/apply/programmes", headers=self.as_("grantee")))
        found = next(p for p in listing["programmes"] if p["id"] == programme)
        return {m["id"]: sha(f"{programme}/{m['id']}") for m in found["materials"] if m["required"]}

    def attestations(self, programme: str) -> dict[str, bool]:
        listing = self.ok(self.client.get("/v1/apply/programmes", headers=self.as_("grantee")))
        found = next(p for p in listing["programmes"] if p["id"] == programme)
        return {c["id"]: True for c in found["conditions"] if c["attested"]}

    def application(self, programme: str, **inputs: Any) -> dict[str, Any]:
        return {
            "programme": programme,
            "inputs": {**INPUTS[programme], **inputs},
            "materials": self.materials(programme),
            "attestations": self.attestations(programme),
        }

    def register(self, who: str = "grantee", code: str | None = None, **kw: Any) -> str:
        code = code or uscc(1)
        body = {"uscc": code, "name": "成都示例智能科技有限公司", "type": "enterprise"}
        body["district"] = kw.pop("district", HIGH_TECH)
        path = "/v1/apply/entity" if who == "grantee" else "/v1/admin/entities"
        self.ok(self.client.post(path, json={**body, **kw}, headers=self.as_(who)), 201)
        return code

    def apply_for(self, programme: str, **inputs: Any) -> Response:
        """The grantee's application to ``programme``, as answered (not checked)."""
        return self.client.post(
            "/v1/apply/applications",
            json=self.application(programme, **inputs),
            headers=self.as_("grantee"),
        )

    def submit(self, programme: str, **inputs: Any) -> str:
        return str(self.ok(self.apply_for(programme, **inputs), 201)["application"])

    def review(self, app_id: str, opinion: str = "approve", who: str = "reviewer") -> Response:
        return self.client.post(
            f"/v1/review/applications/{app_id}/opinion",
            json={"opinion": opinion, "note": "材料真实"},
            headers=self.as_(who),
        )

    def decide(self, app_id: str, **body: Any) -> Response:
        return self.client.post(
            f"/v1/admin/applications/{app_id}/decision",
            json={"decision": "approve", **body},
            headers=self.as_("admin"),
        )

    def approved(self, programme: str, **inputs: Any) -> str:
        app_id = self.submit(programme, **inputs)
        self.ok(self.review(app_id))
        self.ok(self.decide(app_id))
        return app_id

    def claim(self, voucher: str, cost_fen: int, record_id: str, centre: str = "nscc-cd") -> None:
        """A centre's claim, signed with the centre's key (centres come in over gRPC)."""
        ledger = self.service.ledger
        start = local("2023-03-01 09:00")
        card = claims.book(ledger.refresh()).centres[centre].card_at(start)
        assert card is not None
        price = card.prices["cpu"]
        quantity = math.ceil(cost_fen * price.per_units / price.price_fen)
        body = claims.claim_body(
            centre=centre,
            record_id=record_id,
            voucher=voucher,
            resource="cpu",
            quantity=quantity,
            start=start,
            end=start + timedelta(hours=1),
            cost_fen=price.cost(quantity),
        )
        with ledger.transaction() as tx:
            tx.append(tx.sign("claim", body, self.service.centre_keys[centre]))


@pytest.fixture
def env(open_service, db_url) -> Iterator[Env]:  # type: ignore[no-untyped-def]
    clock = Clock(local("2023-08-20 10:00"))  # inside the online submission window
    service = open_service(db_url, clock=clock)
    with TestClient(create_app(service)) as client:
        e = Env(service, client)
        e.clock = clock  # type: ignore[attr-defined]
        e.token("admin", "admin")
        e.token("auditor", "auditor")
        e.token("reviewer", "reviewer", district=HIGH_TECH)
        e.token("other_reviewer", "reviewer", district=JINJIANG)
        e.token("grantee", "grantee", entity=uscc(1))
        e.token("other_grantee", "grantee", entity=uscc(2))
        e.token("centre", "centre", centre="nscc-cd")
        yield e


# --- 2. entities ---------------------------------------------------------------------------


def test_bad_uscc_is_refused_naming_the_wrong_character(env: Env) -> None:
    """A 统一社会信用代码 with a wrong GB 32100-2015 check character: the message names it."""
    good = uscc(1)
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    body = {"uscc": wrong, "name": "某公司", "type": "enterprise", "district": HIGH_TECH}
    for who, path in (("grantee", "/v1/apply/entity"), ("admin", "/v1/admin/entities")):
        problem = env.refused(
            partial(env.client.post, path, json=body, headers=env.as_(who)),
            400,
            "INVALID_USCC",
            "character 18",
            f"should be {good[17]!r}",
        )
        assert problem["details"]["position"] == "18"
    admin = env.as_("admin")
    for code, says in (
        (good[:10] + "I" + good[11:], "character 11 'I'"),  # GB 32100 never uses I
        (good[:8] + good[8].lower() + good[9:], "character 9 'm'"),  # upper-case only
        (good[:17], "has 17 characters"),
    ):
        env.refused(
            partial(
                env.client.post, "/v1/admin/entities", json={**body, "uscc": code}, headers=admin
            ),
            400,
            "INVALID_USCC",
            says,
        )
    # the right code registers; a second time is a conflict
    env.register("grantee")
    entity = env.ok(env.client.get("/v1/apply/entity", headers=env.as_("grantee")))
    assert entity["uscc"] == good and entity["district"] == HIGH_TECH
    assert entity["district_code"] is None and entity["blacklisted"] is None
    env.refused(
        lambda: env.client.post(
            "/v1/admin/entities", json={**body, "uscc": good}, headers=env.as_("admin")
        ),
        409,
        "ENTITY_EXISTS",
    )


def test_grantee_registers_only_its_own_entity(env: Env) -> None:
    body = {"uscc": uscc(2), "name": "别人的公司", "type": "enterprise", "district": HIGH_TECH}
    env.refused(
        lambda: env.client.post("/v1/apply/entity", json=body, headers=env.as_("grantee")),
        403,
        "NOT_YOUR_ENTITY",
    )
    env.refused(
        lambda: env.client.post(
            "/v1/apply/entity",
            json={**body, "uscc": uscc(2), "district": "高新区"},
            headers=env.as_("other_grantee"),
        ),
        400,
        "INVALID_ARGUMENT",
        "成都高新区",  # the message lists the districts as the ledger spells them
    )
    env.refused(  # strict bodies: no unknown members, no floats for integers
        lambda: env.client.post(
            "/v1/apply/entity", json={**body, "extra": 1}, headers=env.as_("other_grantee")
        ),
        400,
        "INVALID_ARGUMENT",
    )


# --- 3. applications: the window, the district, the decision --------------------------------


def test_application_inside_the_window_is_recorded_with_its_hashes(env: Env) -> None:
    """二 of the notice: online submission 2023-08-18 00:00 to 2023-08-27 24:00."""
    env.register()
    before = env.size()
    body = env.application("industry")
    response = env.client.post("/v1/apply/applications", json=body, headers=env.as_("grantee"))
    submitted = env.ok(response, 201)
    assert env.size() == before + 1 and submitted["entry"]["index"] == before
    assert submitted["entry"]["kind"] == "application.submit"
    assert submitted["district"] == HIGH_TECH
    assert submitted["entitlement_fen"] == 300 * W  # 30 % of 1,200 万, national cap 300 万
    assert submitted["entitlement_yuan"] == "3,000,000.00 元"
    assert "clean_record" in submitted["checked"]
    app_id = submitted["application"]
    mine = env.ok(env.client.get("/v1/apply/applications", headers=env.as_("grantee")))
    assert [a["application"] for a in mine["applications"]] == [app_id]
    view = env.ok(env.client.get(f"/v1/apply/applications/{app_id}", headers=env.as_("grantee")))
    assert view["materials"] == body["materials"] and view["status"] == "submitted"
    # the log holds the hashes, nothing else of the documents, and publishes even those only
    # as salted digests: the opened entry has them, the public leaf does not
    (stored,) = env.service.ledger.store.read(before, before + 1)
    assert "materials" not in stored.body and "applicant" not in stored.body
    assert opened(stored).body["materials"] == body["materials"]
    # another grantee sees neither the list nor the application
    theirs = env.ok(env.client.get("/v1/apply/applications", headers=env.as_("other_grantee")))
    assert theirs["count"] == 0
    env.refused(
        lambda: env.client.get(
            f"/v1/apply/applications/{app_id}", headers=env.as_("other_grantee")
        ),
        403,
        "NOT_YOUR_ENTITY",
    )
    # missing materials and unattested conditions are refused, naming what is missing
    short = {**body, "materials": dict(list(body["materials"].items())[1:])}
    env.refused(
        lambda: env.client.post("/v1/apply/applications", json=short, headers=env.as_("grantee")),
        400,
        "MATERIALS_MISSING",
        "申报材料",
    )
    float_cost = {**body, "inputs": {**body["inputs"], "compute_cost_fen": 1.5}}
    env.refused(
        lambda: env.client.post(
            "/v1/apply/applications", json=float_cost, headers=env.as_("grantee")
        ),
        400,
        "INVALID_ARGUMENT",
    )


def test_application_at_2023_08_28_00_00_is_refused(open_service, db_url) -> None:  # type: ignore[no-untyped-def]
    """二 of the notice: the system closes at 2023-08-27 24:00; 08-28 00:00 is too late."""
    service = open_service(db_url, clock="2023-08-28T00:00:00+08:00")  # SUANLI_CLOCK
    with TestClient(create_app(service)) as client:
        env = Env(service, client)
        env.token("admin", "admin")
        env.token("grantee", "grantee", entity=uscc(1))
        env.register("admin")
        env.refused(
            lambda: env.apply_for("industry"),
            422,
            "OUTSIDE_SUBMISSION_WINDOW",
            "2023-08-18 00:00",
            "2023-08-27 24:00",
            "2023-08-28 00:00",
        )


def test_reviewer_of_another_district_gets_403_and_writes_nothing(env: Env) -> None:
    """三、(二): the district of the applicant reviews; another district may not even read it."""
    env.register()
    app_id = env.submit("industry")
    other = env.as_("other_reviewer")
    env.refused(
        lambda: env.client.get(f"/v1/review/applications/{app_id}", headers=other),
        403,
        "NOT_YOUR_DISTRICT",
        JINJIANG,
        HIGH_TECH,
    )
    env.refused(lambda: env.review(app_id, who="other_reviewer"), 403, "NOT_YOUR_DISTRICT")
    listing = env.ok(env.client.get("/v1/review/applications", headers=other))
    assert listing["count"] == 0
    # its own district's reviewer sees it and gives the opinion once
    mine = env.ok(env.client.get("/v1/review/applications", headers=env.as_("reviewer")))
    assert [a["application"] for a in mine["applications"]] == [app_id]
    recorded = env.ok(env.review(app_id))
    assert recorded["district"] == HIGH_TECH and recorded["opinion"] == "approve"
    index = recorded["entry"]["index"]
    (stored,) = env.service.ledger.store.read(index, index + 1)
    assert "reviewer" not in stored.body  # not published: the opened entry names the reviewer
    assert opened(stored).body["reviewer"] == recorded["reviewer"]  # the reviewer's token id
    env.refused(lambda: env.review(app_id), 409, "ALREADY_REVIEWED")
    # the admin may not give a district opinion; the reviewer may not decide
    env.refused(lambda: env.review(app_id, who="admin"), 403, "ROLE_DENIED")
    env.refused(
        lambda: env.client.post(
            f"/v1/admin/applications/{app_id}/decision",
            json={"decision": "approve"},
            headers=env.as_("reviewer"),
        ),
        403,
        "ROLE_DENIED",
    )


def test_district_opinion_after_the_deadline_is_refused(env: Env) -> None:
    """三、(二): opinions by 2023-08-30 24:00."""
    env.register()
    app_id = env.submit("industry")
    env.clock.set("2023-08-31 00:00")  # type: ignore[attr-defined]
    env.refused(lambda: env.review(app_id), 422, "REVIEW_DEADLINE_PASSED", "2023-08-30 24:00")


def test_decision_needs_the_district_and_stays_within_the_entitlement(env: Env) -> None:
    env.register()
    app_id = env.submit("industry")
    env.refused(lambda: env.decide(app_id), 422, "NOT_REVIEWED")
    env.ok(env.review(app_id))
    env.refused(lambda: env.decide(app_id, amount_fen=301 * W), 422, "AMOUNT_EXCEEDS_ENTITLEMENT")
    env.refused(
        lambda: env.decide(app_id, decision="reject", amount_fen=W), 400, "INVALID_ARGUMENT"
    )
    decided = env.ok(env.decide(app_id, amount_fen=250 * W, note="按专家评审"))
    assert decided["amount_fen"] == 250 * W and decided["entitlement_fen"] == 300 * W
    assert decided["amount_yuan"] == "2,500,000.00 元"
    env.refused(lambda: env.decide(app_id), 409, "ALREADY_DECIDED")
    listed = env.ok(
        env.client.get(
            "/v1/admin/applications",
            params={"status": "approved", "programme": "industry", "district": HIGH_TECH},
            headers=env.as_("auditor"),
        )
    )
    assert [a["application"] for a in listed["applications"]] == [app_id]
    assert listed["applications"][0]["decision"]["amount_yuan"] == "2,500,000.00 元"
    none = env.ok(
        env.client.get(
            "/v1/admin/applications", params={"district": JINJIANG}, headers=env.as_("admin")
        )
    )
    assert none["count"] == 0
    env.refused(
        lambda: env.client.get(
            "/v1/admin/applications", params={"district": "高新区"}, headers=env.as_("admin")
        ),
        400,
        "INVALID_ARGUMENT",
    )


# --- 4. vouchers ---------------------------------------------------------------------------


def test_voucher_credential_verifies_with_joserfc_and_only_the_issuer_key(env: Env) -> None:
    env.register()
    app_id = env.approved("industry")
    before = env.size()
    response = env.client.post(
        f"/v1/admin/applications/{app_id}/voucher", json={}, headers=env.as_("admin")
    )
    issued = env.ok(response, 201)
    assert issued["log_index"] == issued["entry"]["index"] == before
    assert issued["face_value_fen"] == 300 * W and issued["holder"] == uscc(1)
    # the issuer's key, public, without a token
    jwk = env.ok(env.client.get("/v1/issuer/jwk"))
    assert jwk["kid"] == issued["issuer_key"] and jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519"
    key = OKPKey.import_key({k: jwk[k] for k in ("kty", "crv", "x")})
    verified = _verify(issued["credential"], key)
    payload = json.loads(verified.payload)
    assert payload["voucher"] == issued["voucher"] and payload["holder"] == uscc(1)
    assert payload["log_index"] == before and payload["face_value_fen"] == 300 * W
    assert payload["rate_bp"] == 3000 and payload["centres"]
    assert verified.headers()["kid"] == jwk["kid"]
    jwks = env.ok(env.client.get("/v1/issuer/jwks"))
    assert jwk["kid"] in [k["kid"] for k in jwks["keys"]]
    # another key does not verify it; a changed payload does not verify either
    other = OKPKey.generate_key("Ed25519")
    with pytest.raises(BadSignatureError):
        _verify(issued["credential"], other)
    # the log entry at log_index is that voucher's issuance
    entry = json.loads(env.service.ledger.store.entries(before, before + 1)[0])
    assert entry["kind"] == "voucher.issue" and entry["body"]["credential"] == issued["credential"]
    # one voucher per application
    env.refused(
        lambda: env.client.post(
            f"/v1/admin/applications/{app_id}/voucher", json={}, headers=env.as_("admin")
        ),
        409,
        "ALREADY_ISSUED",
    )


def _verify(token: str, key: OKPKey) -> jws.CompactSignature:
    """joserfc warns that RFC 9864 deprecates the name "EdDSA" (for "Ed25519"); vouchers are
    RFC 8037 EdDSA, which verifiers still accept, so the warning is expected here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SecurityWarning, message=".*RFC 9864.*")
        return jws.deserialize_compact(token, key, algorithms=["EdDSA"])


def test_suspend_and_reinstate(env: Env) -> None:
    env.register()
    voucher = _voucher(env)
    path = f"/v1/admin/vouchers/{voucher}"
    reason = {"reason": "核查材料"}
    env.refused(
        lambda: env.client.post(f"{path}/suspend", json=reason, headers=env.as_("auditor")),
        403,
        "ROLE_DENIED",
    )
    env.refused(lambda: env.client.post(f"{path}/suspend", json=reason), 401, "UNAUTHENTICATED")
    suspended = env.ok(env.client.post(f"{path}/suspend", json=reason, headers=env.as_("admin")))
    assert suspended["status"] == "suspended" and suspended["entry"]["kind"] == "voucher.suspend"
    assert env.ok(env.client.get(path, headers=env.as_("auditor")))["status"] == "suspended"
    env.refused(
        lambda: env.client.post(f"{path}/suspend", json=reason, headers=env.as_("admin")),
        409,
        "VOUCHER_STATUS",
    )
    reinstated = env.ok(
        env.client.post(f"{path}/reinstate", json={"reason": "核查无误"}, headers=env.as_("admin"))
    )
    assert reinstated["status"] == "active"
    view = env.ok(env.client.get(path, headers=env.as_("admin")))
    assert [h["action"] for h in view["history"]] == [
        "issue",
        "voucher.suspend",
        "voucher.reinstate",
    ]
    assert view["balance_fen"] == 300 * W and view["valid"]["from"].endswith("Z")
    env.refused(
        lambda: env.client.post(f"{path}/expire", json=reason, headers=env.as_("admin")),
        422,
        "NOT_YET_EXPIRED",
    )
    revoked = env.ok(env.client.post(f"{path}/revoke", json=reason, headers=env.as_("admin")))
    assert revoked["status"] == "revoked"


def test_blacklisting_suspends_the_holders_vouchers_and_lifting_reinstates(env: Env) -> None:
    """7.: blacklisting (with evidence) suspends the entity's vouchers; nothing is edited."""
    code = env.register()
    voucher = _voucher(env)
    black = env.ok(
        env.client.post(
            f"/v1/admin/entities/{code}/blacklist",
            json={"reason": "失信被执行人", "evidence_sha256": sha("判决书")},
            headers=env.as_("admin"),
        )
    )
    assert black["suspended"] == [voucher]
    entity = env.ok(env.client.get(f"/v1/admin/entities/{code}", headers=env.as_("auditor")))
    assert entity["blacklisted"]["evidence_sha256"] == sha("判决书")
    env.refused(
        lambda: env.apply_for("industry"),
        422,
        "NOT_ELIGIBLE",
        "blacklisted",
    )
    lifted = env.ok(
        env.client.post(
            f"/v1/admin/entities/{code}/unblacklist",
            json={"reason": "已履行"},
            headers=env.as_("admin"),
        )
    )
    assert lifted["reinstated"] == [voucher]


def _voucher(env: Env) -> str:
    app_id = env.approved("industry")
    response = env.client.post(
        f"/v1/admin/applications/{app_id}/voucher", json={}, headers=env.as_("admin")
    )
    return str(env.ok(response, 201)["voucher"])


# --- 6. one-time grants, 7. corrections ----------------------------------------------------


def test_grant_for_rank_1_is_100_wan_and_a_clawback_recovers_part(env: Env) -> None:
    """二、(一) 2.: rank 1 of 超算适配 gets 100 万元, once; 追回 with reason and evidence."""
    env.register()
    calc = env.ok(
        env.client.post(
            "/v1/admin/grants/calculate",
            json={"programme": "adaptation", "inputs": {"rank": 1}},
            headers=env.as_("auditor"),
        )
    )
    assert calc["amount_fen"] == 100 * W and calc["calculator"] == "rank_tiers"
    rack = env.ok(
        env.client.post(
            "/v1/admin/grants/calculate",
            json={
                "programme": "cloud-upgrade",
                "inputs": {"racks_in_use": 1200, "avg_renovation_cost_per_rack_fen": 150_000},
            },
            headers=env.as_("admin"),
        )
    )
    assert rack["amount_fen"] == 90 * W  # 二、(二): 1,200 racks × min(1000 元, 50 % of 1500 元)
    app_id = env.approved("adaptation", rank=1)
    paid = env.ok(
        env.client.post(
            f"/v1/admin/applications/{app_id}/grant", json={}, headers=env.as_("admin")
        ),
        201,
    )
    assert paid["paid_fen"] == paid["calculated_fen"] == 100 * W
    assert paid["paid_yuan"] == "1,000,000.00 元" and paid["entry"]["kind"] == "grant.pay"
    grant = paid["grant"]
    env.refused(
        lambda: env.client.post(
            f"/v1/admin/applications/{app_id}/grant", json={}, headers=env.as_("admin")
        ),
        409,
        "ALREADY_PAID",
    )
    clawback = {
        "target": {"grant": grant},
        "amount_fen": 30 * W,
        "reason": "排名证明不实",
        "evidence_sha256": sha("核查报告"),
    }
    env.refused(
        lambda: env.client.post("/v1/admin/clawbacks", json=clawback, headers=env.as_("auditor")),
        403,
        "ROLE_DENIED",
    )
    back = env.ok(
        env.client.post("/v1/admin/clawbacks", json=clawback, headers=env.as_("admin")), 201
    )
    assert back["clawed_back_fen"] == 30 * W and back["net_fen"] == 70 * W
    assert back["evidence_sha256"] == sha("核查报告") and back["entry"]["kind"] == "clawback"
    env.refused(
        lambda: env.client.post(
            "/v1/admin/clawbacks",
            json={**clawback, "amount_fen": 71 * W},
            headers=env.as_("admin"),
        ),
        422,
        "CLAWBACK_EXCEEDS_SUBSIDY",
    )
    view = env.ok(env.client.get(f"/v1/admin/grants/{grant}", headers=env.as_("auditor")))
    assert view["net_fen"] == 70 * W and view["clawed_back_fen"] == 30 * W
    # a voucher programme pays no grants
    voucher_app = env.approved("industry")
    env.refused(
        lambda: env.client.post(
            f"/v1/admin/applications/{voucher_app}/grant", json={}, headers=env.as_("admin")
        ),
        422,
        "NOT_A_GRANT_PROGRAMME",
    )


def test_reversal_of_a_claim_restores_the_caps(env: Env) -> None:
    env.register()
    voucher = _voucher(env)
    env.claim(voucher, 100 * W, "job-1")
    claim = env.ok(env.client.get("/v1/admin/claims/nscc-cd/job-1", headers=env.as_("auditor")))
    assert claim["subsidy_fen"] == 30 * W and claim["reversed_index"] is None
    body = {"claim": {"centre": "nscc-cd", "record_id": "job-1"}, "reason": "重复计量"}
    done = env.ok(env.client.post("/v1/admin/reversals", json=body, headers=env.as_("admin")), 201)
    assert done["restored_fen"] == 30 * W
    env.refused(
        lambda: env.client.post("/v1/admin/reversals", json=body, headers=env.as_("admin")),
        409,
        "ALREADY_REVERSED",
    )
    voucher_view = env.ok(env.client.get(f"/v1/admin/vouchers/{voucher}", headers=env.as_("admin")))
    assert voucher_view["balance_fen"] == 300 * W


# --- 1. the policy as data ------------------------------------------------------------------


def test_publish_a_new_policy_version(env: Env) -> None:
    """1.: (五) leaves its rate open, so its vouchers are refused until a version sets it."""
    env.register()
    talent_app = env.approved("talent")
    issue = partial(
        env.client.post,
        f"/v1/admin/applications/{talent_app}/voucher",
        json={},
        headers=env.as_("admin"),
    )
    env.refused(issue, 422, "POLICY_FIGURE_OPEN", "talent")
    current = env.ok(env.client.get("/v1/admin/policy", headers=env.as_("auditor")))
    document = copy.deepcopy(current["policy"])
    talent = next(p for p in document["programmes"] if p["id"] == "talent")
    assert talent["rate_bp"] is None  # (五) leaves the rate open
    talent["rate_bp"] = 3000
    env.refused(
        lambda: env.client.post("/v1/admin/policy", json=document, headers=env.as_("auditor")),
        403,
        "ROLE_DENIED",
    )
    broken = copy.deepcopy(document)
    broken["clean_record_years"] = 3.0
    env.refused(
        lambda: env.client.post("/v1/admin/policy", json=broken, headers=env.as_("admin")),
        400,
        "INVALID_ARGUMENT",
        "clean_record_years",
        "floats are not allowed",
    )
    del broken["clean_record_years"]
    env.refused(
        lambda: env.client.post("/v1/admin/policy", json=broken, headers=env.as_("admin")),
        400,
        "INVALID_POLICY",
        "clean_record_years",
    )
    published = env.ok(
        env.client.post("/v1/admin/policy", json=document, headers=env.as_("admin")), 201
    )
    assert published["policy_version"] != current["version"]
    assert published["centres_registered"] == [] and published["rate_cards_published"] == []
    now = env.ok(env.client.get("/v1/admin/policy", headers=env.as_("admin")))
    assert now["version"] == published["policy_version"]
    assert now["published_index"] == published["entry"]["index"]
    env.refused(
        lambda: env.client.post("/v1/admin/policy", json=document, headers=env.as_("admin")),
        409,
        "POLICY_EXISTS",
    )
    listing = env.ok(env.client.get("/v1/apply/programmes", headers=env.as_("grantee")))
    assert listing["policy_version"] == published["policy_version"]
    assert next(p for p in listing["programmes"] if p["id"] == "talent")["rate_bp"] == 3000
    issued = env.ok(issue(), 201)  # now the rate is set: 30 % under the new version
    payload = env.ok(
        env.client.get(f"/v1/admin/vouchers/{issued['voucher']}", headers=env.as_("admin"))
    )
    assert payload["rate_bp"] == 3000 and payload["policy_version"] == published["policy_version"]


def test_an_earlier_version_comes_back_by_naming_the_one_it_supersedes(env: Env) -> None:
    first = env.ok(env.client.get("/v1/admin/policy", headers=env.as_("admin")))
    document = copy.deepcopy(first["policy"])
    document["notes"].append("a version published by mistake")
    bad = env.ok(env.client.post("/v1/admin/policy", json=document, headers=env.as_("admin")), 201)

    def republish(supersedes: str) -> Any:
        return env.client.post(
            "/v1/admin/policy",
            params={"supersedes": supersedes},
            json=first["policy"],
            headers=env.as_("admin"),
        )

    env.refused(lambda: republish(first["version"]), 409, "POLICY_SUPERSEDES_MISMATCH")
    env.refused(lambda: republish("not-a-version"), 400, "INVALID_ARGUMENT", "supersedes")
    back = env.ok(republish(bad["policy_version"]), 201)
    assert back["policy_version"] == first["version"]
    now = env.ok(env.client.get("/v1/admin/policy", headers=env.as_("admin")))
    assert now["version"] == first["version"] and now["published_index"] == back["entry"]["index"]


def test_no_token_is_401_and_a_bad_token_too(env: Env) -> None:
    env.refused(lambda: env.client.get("/v1/admin/applications"), 401, "UNAUTHENTICATED")
    env.refused(
        lambda: env.client.get("/v1/admin/applications", headers=bearer("sl_nope")),
        401,
        "UNAUTHENTICATED",
    )
