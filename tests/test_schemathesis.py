"""schemathesis against the app's own OpenAPI document: every GET operation, generated cases.

For each operation schemathesis generates requests from the schema (valid ones, and invalid
ones: wrong types, out-of-range numbers, odd strings) and checks every response: no 5xx, the
status code is one the document declares, the body matches the declared schema for that
status and media type, declared headers are present; and, here, every error is RFC 9457
problem+json. Requests carry an auditor token, so the auditor routes answer with data
rather than 401 (a separate test checks them without one).

The number of cases run is printed at the end of the session (the CI log shows it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, CheckContext
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from api.bootstrap import Service, open_service
from api.http.app import create_app
from api.settings import Settings
from ledger.keys import Signer

# Cases per operation; the whole file stays well under a minute on two cores.
MAX_EXAMPLES = int(os.environ.get("SUANLI_SCHEMATHESIS_EXAMPLES", "200"))
PROBLEM = "application/problem+json"


class Tally:
    def __init__(self) -> None:
        self.cases = 0
        self.operations: set[str] = set()
        self.by_status: dict[int, int] = {}
        self.seconds = 0.0  # spent calling the app and checking its answers

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.cases:
            return
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status.items()))
        terminalreporter.write_sep("-", "schemathesis")
        terminalreporter.write_line(
            f"schemathesis: {self.cases} cases over {len(self.operations)} GET operations "
            f"in {self.seconds:.1f}s (statuses {statuses})"
        )


TALLY = Tally()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data = tmp_path_factory.mktemp("schemathesis")
    service = open_service(Settings(data_dir=data / "data", db=f"sqlite:///{data / 'ledger.db'}"))
    ledger = service.ledger
    for batch in range(3):  # a few hundred entries: full and partial tiles, several checkpoints
        with ledger.transaction() as tx:
            for i in range(100):
                vkey = Signer.generate(f"st{batch}-{i}").verifier.vkey
                body = {"vkey": vkey, "roles": ["service"]}
                tx.append(tx.sign("key.register", body, ledger.keys.log))
    yield service
    service.close()


@pytest.fixture(scope="module")
def auditor_token(service: Service) -> str:
    token, _ = service.tokens.create("auditor", label="schemathesis")
    AUDITOR["token"] = token
    return token


@pytest.fixture(scope="module")
def app(service: Service, request: pytest.FixtureRequest) -> Any:
    if TALLY not in request.config.pluginmanager.get_plugins():
        request.config.pluginmanager.register(TALLY, "suanli-schemathesis-tally")
    return create_app(service)


def _document() -> dict[str, Any]:
    """The OpenAPI document, built without a database (it depends on the routes only)."""
    unopened = SimpleNamespace(ledger=None, tokens=None, settings=Settings())
    document: dict[str, Any] = create_app(unopened).openapi()  # type: ignore[arg-type]
    return document


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT).include(method="GET")
# Unknown query parameters are ignored, as FastAPI does (docs/api.md says so); don't count
# their acceptance as a failure to reject schema-violating input.
schema.config.generation.update(allow_extra_parameters=False, with_security_parameters=False)

AUDITOR: dict[str, str] = {}  # the token, set by the auditor_token fixture


@schema.auth(refresh_interval=None)  # None: ask get() every time, no cache
class AuditorToken:
    """Every generated request carries the auditor's token, except the cases schemathesis
    makes without credentials on purpose (those must get 401)."""

    def get(self, case: Case, context: Any) -> str:
        return AUDITOR.get("token", "")  # (also asked while pytest collects)

    def set(self, case: Case, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


# /readyz answers 503 with its readiness report (JSON), as a probe, not with a problem.
NOT_PROBLEMS = {("GET /readyz", 503)}  # readiness answers with its own body
NOT_PROBLEMS_DECLARED = {(label, str(status)) for label, status in NOT_PROBLEMS}


@schemathesis.check
def problem_json_errors(ctx: CheckContext, response: schemathesis.Response, case: Case) -> bool:
    """Every 4xx/5xx is application/problem+json with the RFC 9457 members and a matching status."""
    if response.status_code < 400 or (case.operation.label, response.status_code) in NOT_PROBLEMS:
        return True
    media = response.headers.get("content-type", [""])[0]
    assert media.startswith(PROBLEM), f"error {response.status_code} is {media!r}, not {PROBLEM}"
    body = response.json()
    assert isinstance(body, dict), "problem body is not an object"
    for member in ("type", "title", "status", "detail"):
        assert member in body, f"problem body lacks {member!r}"
    assert body["status"] == response.status_code, "problem status differs from the HTTP status"
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    ignored_auth,
    unsupported_method,
    problem_json_errors,
]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases every run: CI failures reproduce locally
    database=None,
)
def test_get_operations(case: Case, app: Any, auditor_token: str) -> None:
    # Every request, and every probe a check re-sends (ignored_auth), goes to the app in process.
    case.operation.app = case.operation.schema.app = app
    started = time.perf_counter()
    try:
        response = case.call()
        TALLY.cases += 1
        TALLY.operations.add(case.operation.label)
        TALLY.by_status[response.status_code] = TALLY.by_status.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)
    finally:
        TALLY.seconds += time.perf_counter() - started


def test_openapi_declares_problems_not_422(service: Service) -> None:
    """Errors are declared as problem+json; FastAPI's 422 (never sent here) is not declared."""
    from fastapi.testclient import TestClient

    with TestClient(create_app(service)) as client:
        doc = client.get("/openapi.json").json()
    assert doc == DOCUMENT  # what the cases were generated from is what the app serves
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert "422" not in responses or PROBLEM in responses["422"].get("content", {}), (
                f"{method.upper()} {path} declares FastAPI's 422 validation error"
            )
            for status, declared in responses.items():
                label = f"{method.upper()} {path}"
                if status.startswith(("4", "5")) and (label, status) not in NOT_PROBLEMS_DECLARED:
                    assert list(declared.get("content", {})) == [PROBLEM], (
                        f"{method.upper()} {path} {status} is not declared as problem+json"
                    )
