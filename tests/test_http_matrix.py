"""The authorization matrix: every route of the app × every role, and no token.

The routes are read from ``create_app`` itself (every router, including routers added
later), and the roles each route admits from its ``require(...)`` dependency (the
``roles`` attribute ``api.http.auth.require`` puts on the dependency function). Then, for every
route and every caller (admin, reviewer, grantee, auditor, centre, no token, an unknown
token):

* a role the route does not admit gets 403 ``ROLE_DENIED`` as problem+json, no token or an
  unknown one gets 401 ``UNAUTHENTICATED`` — and the log does not grow;
* a role it admits does not get 401 or 403 on a resource in its scope (the fixture's
  entity, its district's application, its centre's claim), nor a 5xx;
* on the role APIs (/v1/admin, /v1/review, /v1/apply), a reviewer or grantee asking for a
  resource outside its scope (another district's or entity's application) gets 403 and
  writes nothing.

Routes that need no token are listed in ``PUBLIC`` (and must not have a ``require``); a
route that is neither public nor declares its roles fails the test. Path parameters are
filled from ``PARAMS`` with ids the fixture creates: a new route with a new parameter name
fails until a value is added there. Write requests carry a valid body (``BODIES``), so that
a refusal is due to the role and nothing else.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pg import throwaway_database
from test_reimbursement import posthoc_policy, reimbursement_claim, reimbursement_request

from api.bootstrap import Service, open_service
from api.http.app import create_app
from api.settings import Settings
from ledger import applications, claims, entities, grants, vouchers
from ledger.policy import Policy, current_policy
from ledger.timeutil import parse_time
from ledger.uscc import complete
from ledger.usecases.commands.round import publish_round
from ledger.usecases.commands.settlement import issue_statement_here

ROLES = ("admin", "reviewer", "grantee", "auditor", "centre")
CALLERS = (*ROLES, "no token", "unknown token")
PROBLEM = "application/problem+json"
HIGH_TECH, JINJIANG = "成都高新区", "锦江区"
ENTITY, OTHER_ENTITY = complete("91510100MA0000001"), complete("91510100MA0000002")
CENTRE = "nscc-cd"
W = 1_000_000

# Routes any caller may use without a token: operations, the log (tiles, checkpoints,
# proofs), the OpenAPI document and its viewers, the web page, the issuer's public key.
PUBLIC = {
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /checkpoint",
    "GET /tile/{path:path}",
    "GET /v1/log/key",
    "GET /v1/log/entries/{index}",
    "GET /v1/log/proof/inclusion",
    "GET /v1/log/proof/consistency",
    "GET /v1/log/checkpoints",
    "GET /v1/log/witnesses",
    "GET /v1/log/projection",
    "GET /openapi.json",
    "GET /docs",
    "GET /docs/assets/{name}",
    "GET /redoc",
    "GET /",
    "GET /web/{name:path}",
    "GET /favicon.ico",
    "GET /v1/issuer/jwk",
    "GET /v1/issuer/jwks",
}

# The role APIs: here a scoped role must also be refused outside its scope.
SCOPED_PREFIXES = ("/v1/admin/", "/v1/review/", "/v1/apply/")
SCOPE_REASONS = {"reviewer": "NOT_YOUR_DISTRICT", "grantee": "NOT_YOUR_ENTITY"}


# --- the routes and the roles they admit ---------------------------------------------------


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str
    roles: frozenset[str] | None  # None: no require() dependency
    params: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def _roles_of(dependant: Any) -> frozenset[str] | None:
    """The roles every ``require(...)`` in the dependency tree admits (their intersection)."""
    found: list[frozenset[str]] = []

    def walk(node: Any) -> None:
        for sub in getattr(node, "dependencies", ()):
            roles = getattr(sub.call, "roles", None)
            if roles is not None:
                found.append(frozenset(roles))
            walk(sub)

    walk(dependant)
    return frozenset.intersection(*found) if found else None


def app_routes(app: FastAPI) -> list[RouteInfo]:
    """Every (method, path) the app serves, with the roles it admits."""
    try:  # FastAPI >= 0.13x keeps included routers as contexts; older ones flatten them
        from fastapi.routing import iter_route_contexts

        contexts: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:  # pragma: no cover
        contexts = list(app.routes)
    found: list[RouteInfo] = []
    for route in contexts:
        path = route.path
        methods = sorted((route.methods or {"*"}) - {"HEAD"})
        roles = _roles_of(getattr(route, "dependant", None))
        params = tuple(re.findall(r"\{(\w+)(?::\w+)?\}", path))
        found.extend(RouteInfo(m, path, roles, params) for m in methods)
    return found


ROUTES = app_routes(create_app(SimpleNamespace(ledger=None, tokens=None, settings=Settings())))  # type: ignore[arg-type]
GUARDED = [r for r in ROUTES if r.label not in PUBLIC]


def test_every_route_is_public_or_declares_its_roles() -> None:
    undeclared = [r.label for r in GUARDED if r.roles is None]
    assert not undeclared, (
        f"routes without Depends(require(...)) that are not listed as public: {undeclared}"
    )
    labels = {r.label for r in ROUTES}
    assert not PUBLIC - labels, f"listed as public but not served: {sorted(PUBLIC - labels)}"
    guarded_public = [r.label for r in ROUTES if r.label in PUBLIC and r.roles is not None]
    assert not guarded_public, f"listed as public but require a role: {guarded_public}"
    for r in GUARDED:
        assert r.roles and r.roles <= set(ROLES), f"{r.label} admits unknown roles {r.roles}"


def _row(route: RouteInfo) -> str:
    roles = ", ".join(r for r in ROLES if r in (route.roles or ())) or "public"
    return f"| `{route.label}` | {roles} | … |"


def test_docs_roles_md_lists_every_endpoint_with_its_roles() -> None:
    """docs/roles.md lists every route of the app with exactly the roles it admits."""
    text = (Path(__file__).parent.parent / "docs" / "roles.md").read_text(encoding="utf-8")
    documented: dict[str, frozenset[str]] = {}
    for method, path, roles in re.findall(r"^\| `(\w+) ([^`]+)` \| ([^|]+) \|", text, re.M):
        names = {r.strip() for r in roles.split(",")} - {"public", ""}
        documented[f"{method} {path}"] = frozenset(names)
    missing = [_row(r) for r in ROUTES if r.label not in documented]
    assert not missing, "docs/roles.md lacks these endpoints:\n" + "\n".join(missing)
    served = {r.label: r for r in ROUTES}
    gone = sorted(set(documented) - set(served))
    assert not gone, f"docs/roles.md lists endpoints the app does not serve: {gone}"
    wrong = [
        f"{label}: documented {sorted(roles)}, admits {sorted(served[label].roles or ())}"
        for label, roles in documented.items()
        if roles != (served[label].roles or frozenset())
    ]
    assert not wrong, "docs/roles.md has the wrong roles for:\n" + "\n".join(wrong)


# --- the world the requests run against ----------------------------------------------------


class Clock:
    def __init__(self, start: datetime) -> None:
        self._now, self._lock = start, threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self._now += timedelta(milliseconds=1)
            return self._now


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


DATES = {"project_start": "2023-02-01", "project_end": "2023-07-15"}
INDUSTRY = {
    "compute_cost_fen": 1200 * W,
    "level": "national",
    "project_type": "ai_industrialisation",
    **DATES,
}


def _materials(policy: Policy, programme: str) -> dict[str, str]:
    return {m.id: sha(m.id) for m in policy.programme(programme).materials if m.required}


def _attest(policy: Policy, programme: str) -> dict[str, bool]:
    return {c.id: True for c in policy.programme(programme).conditions if c.attested}


@dataclass
class World:
    service: Service
    client: TestClient
    params: dict[str, str]
    foreign: dict[str, str]
    headers: dict[str, dict[str, str]]
    policy_document: dict[str, Any]
    counter: list[int] = field(default_factory=lambda: [0])

    def size(self) -> int:
        return self.service.ledger.store.size()

    def fresh(self) -> int:
        self.counter[0] += 1
        return self.counter[0]


def _seed(service: Service) -> dict[str, str]:
    """Two entities in two districts, applications, a voucher, a claim and a grant."""
    ledger = service.ledger
    keys = ledger.keys
    ids: dict[str, str] = {}
    with ledger.transaction() as tx:
        policy = current_policy(tx.state)
        for code, district in ((ENTITY, HIGH_TECH), (OTHER_ENTITY, JINJIANG)):
            body = entities.register_body(code, f"单位{code[-4:]}", "enterprise", district)
            tx.append(tx.sign("entity.register", body, keys.service))

        def submit(app_id: str, programme: str, applicant: str, inputs: dict[str, Any]) -> None:
            body = applications.submit_body(
                application=app_id,
                programme=programme,
                applicant=applicant,
                inputs=inputs,
                materials=_materials(policy, programme),
                attestations=_attest(policy, programme),
                policy=policy,
            )
            tx.append(tx.sign("application.submit", body, keys.service))

        def approve(app_id: str, district: str, amount: int) -> None:
            body = applications.review_body(
                application=app_id, district=district, reviewer="seed", opinion="approve"
            )
            tx.append(tx.sign("application.review", body, keys.service))
            body = applications.decide_body(
                application=app_id, decision="approve", amount_fen=amount, policy=policy
            )
            tx.append(tx.sign("application.decide", body, keys.issuer))

        submit("A-voucher", "industry", ENTITY, INDUSTRY)
        approve("A-voucher", HIGH_TECH, 300 * W)
        body = vouchers.issue_body(
            tx.state,
            application="A-voucher",
            voucher="V-1",
            issuer=keys.issuer,
            log_index=tx.next_index,
        )
        tx.append(tx.sign("voucher.issue", body, keys.issuer))
        submit("A-grant", "adaptation", ENTITY, {"rank": 1})
        approve("A-grant", HIGH_TECH, 100 * W)
        body = grants.pay_body(
            grant="G-1", application="A-grant", amount_fen=100 * W, policy_version=policy.version
        )
        tx.append(tx.sign("grant.pay", body, keys.issuer))
        submit("A-pending", "industry", ENTITY, INDUSTRY)  # awaiting the district's opinion
        submit("A-foreign", "industry", OTHER_ENTITY, INDUSTRY)  # 锦江区, another entity
        start = parse_time("2023-03-01T09:00:00+08:00")
        card = claims.book(tx.state).centres[CENTRE].card_at(start)
        assert card is not None
        body = claims.claim_body(
            centre=CENTRE,
            record_id="job-1",
            voucher="V-1",
            resource="cpu",
            quantity=3600,
            start=start,
            end=start + timedelta(hours=1),
            cost_fen=card.prices["cpu"].cost(3600),
        )
        tx.append(tx.sign("claim", body, service.centre_keys[CENTRE]))
        # the centre's settlement statement for the quarter (signed by the log key)
        done = issue_statement_here(tx, centre=CENTRE, period="2023-Q3")
        # a post-hoc round beside it, a reimbursement claim of each entity
        publish_round(tx, posthoc_policy(2023))
        for claim, claimant in (("R-1", ENTITY), ("R-foreign", OTHER_ENTITY)):
            reimbursement_claim(tx, claim, claimant)
    ids.update(
        application="A-pending",
        voucher="V-1",
        grant="G-1",
        statement=done.result["statement"],
        claim="R-1",
    )
    return ids


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    data = tmp_path_factory.mktemp("matrix")
    with _database(request.param, data) as url:
        clock = Clock(parse_time("2023-08-20T10:00:00+08:00"))
        service = open_service(Settings(data_dir=data / "data", db=url), clock=clock)
        try:
            ids = _seed(service)
            headers: dict[str, dict[str, str]] = {"no token": {}}
            scopes = {
                "reviewer": {"district": HIGH_TECH},
                "grantee": {"entity": ENTITY},
                "centre": {"centre": CENTRE},
            }
            for role in ROLES:
                token, _ = service.tokens.create(role, label="matrix", **scopes.get(role, {}))
                headers[role] = {"Authorization": f"Bearer {token}"}
            headers["unknown token"] = {"Authorization": "Bearer sl_not-a-token"}
            document = Policy.load().to_json()
            document["title"] += "（矩阵测试修订）"
            params = {
                **ids,
                "uscc": ENTITY,
                "centre": CENTRE,
                "record_id": "job-1",
                "index": "0",
                "path": "0/000.p/1",
                "name": "app.js",
                "report": "budget",
            }
            foreign = {"application": "A-foreign", "uscc": OTHER_ENTITY, "claim": "R-foreign"}
            # A 5xx is reported as a matrix failure (with the others), not raised.
            with TestClient(create_app(service), raise_server_exceptions=False) as client:
                yield World(service, client, params, foreign, headers, document)
        finally:
            service.close()


def _database(kind: str, data: Path) -> Any:
    if kind == "postgres":
        return throwaway_database()

    class _Sqlite:
        def __enter__(self) -> str:
            return f"sqlite:///{data / 'ledger.db'}"

        def __exit__(self, *exc: object) -> None:
            return None

    return _Sqlite()


# --- requests ------------------------------------------------------------------------------


def _body(world: World, route: RouteInfo) -> Any:
    """A valid body for the write routes of the role APIs; {} for any other."""
    p = world.params
    n = world.fresh()
    bodies: dict[str, Any] = {
        "POST /v1/admin/entities": {
            "uscc": complete(f"91510100MA{100 + n:07d}"),
            "name": f"矩阵{n}",
            "type": "enterprise",
            "district": HIGH_TECH,
        },
        "POST /v1/admin/entities/{uscc}/blacklist": {"reason": "矩阵", "evidence_sha256": sha("e")},
        "POST /v1/admin/entities/{uscc}/unblacklist": {"reason": "矩阵"},
        "POST /v1/admin/applications/{application}/decision": {"decision": "reject"},
        "POST /v1/admin/applications/{application}/voucher": {},
        "POST /v1/admin/applications/{application}/grant": {},
        "POST /v1/admin/grants/calculate": {"programme": "adaptation", "inputs": {"rank": 2}},
        "POST /v1/admin/reversals": {
            "claim": {"centre": CENTRE, "record_id": p["record_id"]},
            "reason": "矩阵",
        },
        "POST /v1/admin/clawbacks": {
            "target": {"grant": p["grant"]},
            "amount_fen": 1,
            "reason": "矩阵",
            "evidence_sha256": sha("e"),
        },
        "POST /v1/admin/policy": world.policy_document,
        "POST /v1/review/applications/{application}/opinion": {"opinion": "approve"},
        "POST /v1/apply/entity": {
            "uscc": ENTITY,
            "name": "单位",
            "type": "enterprise",
            "district": HIGH_TECH,
        },
        "POST /v1/review/reimbursements/{claim}/opinion": {"opinion": "approve"},
        "POST /v1/bureau/reimbursements/{claim}/decision": {"decision": "reject"},
        "POST /v1/apply/reimbursements": reimbursement_request(f"M-{n}"),
        "POST /v1/apply/applications": {
            "application": f"A-matrix-{n}",
            "programme": "industry",
            "inputs": INDUSTRY,
            "materials": _materials(Policy.load(), "industry"),
            "attestations": _attest(Policy.load(), "industry"),
        },
    }
    for action in ("suspend", "reinstate", "revoke", "expire"):
        bodies[f"POST /v1/admin/vouchers/{{voucher}}/{action}"] = {"reason": "矩阵"}
    return bodies.get(route.label, {})


def _url(route: RouteInfo, values: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise LookupError(name)
        return values[name]

    return re.sub(r"\{(\w+)(?::\w+)?\}", fill, route.path)


def _call(world: World, route: RouteInfo, caller: str, url: str) -> Any:
    headers = world.headers[caller]
    if route.method in ("GET", "DELETE"):
        return world.client.request(route.method, url, headers=headers)
    return world.client.request(route.method, url, headers=headers, json=_body(world, route))


def _problem(response: Any, status: int, reason: str) -> str | None:
    """None if ``response`` is the expected problem, else what is wrong with it."""
    if response.status_code != status:
        return f"status {response.status_code}, expected {status}: {response.text[:200]}"
    if not response.headers.get("content-type", "").startswith(PROBLEM):
        return f"content-type {response.headers.get('content-type')!r}, not {PROBLEM}"
    body = response.json()
    if body.get("status") != status or body.get("reason") != reason:
        return f"problem {body.get('status')} {body.get('reason')}, expected {status} {reason}"
    return None


# --- the matrix ----------------------------------------------------------------------------


@pytest.mark.parametrize("route", GUARDED, ids=lambda r: r.label)
def test_matrix(world: World, route: RouteInfo) -> None:
    """One route × every caller (see the module's docstring)."""
    assert route.roles is not None, f"{route.label} declares no roles"
    if route.method == "*":
        pytest.fail(f"{route.label} is a mount or a route without methods; list it as public")
    failures: list[str] = []
    try:
        url = _url(route, world.params)
    except LookupError as missing:
        pytest.fail(
            f"{route.label}: add an in-scope value for the path parameter {{{missing}}} to "
            "the world fixture's params (an id the fixture creates)"
        )
    denied = [c for c in CALLERS if c not in route.roles]
    for caller in denied:
        before = world.size()
        response = _call(world, route, caller, url)
        unauthenticated = caller in ("no token", "unknown token")
        wrong = _problem(
            response,
            401 if unauthenticated else 403,
            "UNAUTHENTICATED" if unauthenticated else "ROLE_DENIED",
        )
        if wrong:
            failures.append(f"{caller}: {wrong}")
        if world.size() != before:
            failures.append(f"{caller}: was refused but the log grew by {world.size() - before}")
    if route.path.startswith(SCOPED_PREFIXES) and set(route.params) & set(world.foreign):
        outside = _url(route, {**world.params, **world.foreign})
        for caller in sorted(route.roles & set(SCOPE_REASONS)):
            before = world.size()
            response = _call(world, route, caller, outside)
            wrong = _problem(response, 403, SCOPE_REASONS[caller])
            if wrong:
                failures.append(f"{caller} outside its scope ({outside}): {wrong}")
            if world.size() != before:
                failures.append(f"{caller} outside its scope: the log grew")
    for caller in sorted(route.roles):
        response = _call(world, route, caller, url)
        if response.status_code in (401, 403) or response.status_code >= 500:
            failures.append(
                f"{caller} (admitted) got {response.status_code}: {response.text[:300]}"
            )
    assert not failures, f"{route.label}:\n  " + "\n  ".join(failures)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.label in PUBLIC], ids=lambda r: r.label)
def test_public_routes_need_no_token(world: World, route: RouteInfo) -> None:
    response = _call(world, route, "no token", _url(route, world.params))
    assert response.status_code not in (401, 403), f"{route.label}: {response.status_code}"
    assert response.status_code < 500, f"{route.label}: {response.text[:300]}"


def test_matrix_size() -> None:
    """The matrix covers every guarded route for every caller (printed with -s)."""
    cells = len(GUARDED) * len(CALLERS)
    print(
        f"authorization matrix: {len(GUARDED)} guarded routes × {len(CALLERS)} callers "
        f"({', '.join(CALLERS)}) = {cells} cells; {len(ROUTES) - len(GUARDED)} public routes"
    )
    assert len(GUARDED) >= 30 and cells == len(GUARDED) * 7
