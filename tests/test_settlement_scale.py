"""A quarter at a real centre's size: more than 100,000 claims settled on one statement (in
parts, claims still coming in between), its lines paged and exported, and the whole log
passing ``suanli audit verify``."""

from __future__ import annotations

import csv
import io
import math
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from grpc_fixtures import ManualClock, issue_voucher
from test_audit import audit_verify

from api.http.app import create_app
from ledger import claims
from ledger.policy import current_policy
from ledger.publication import concealed
from ledger.timeutil import parse_time
from ledger.usecases.commands.settlement import issue_statement

START = parse_time("2023-08-20T10:00:00+08:00")
USAGE = parse_time("2023-03-01T09:00:00+08:00")
CLAIMS = 100_200
BATCH = 5_000
VOUCHERS = 8


@pytest.mark.slow
@pytest.mark.timeout(900)  # minutes on a loaded 2-core machine
def test_a_quarter_of_more_than_100000_claims_settles_and_audits(
    open_service, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    clock = ManualClock(START)
    service = open_service(f"sqlite:///{tmp_path / 'ledger.db'}", clock=clock)
    vouchers = [issue_voucher(service) for _ in range(VOUCHERS)]
    key = service.centre_keys["nscc-cd"]
    card = current_policy(service.ledger.snapshot()).rate_cards[0]
    price = card.prices["cpu"]
    quantity = math.ceil(100 * price.per_units / price.price_fen)
    cost = price.cost(quantity)
    for first in range(0, CLAIMS, BATCH):
        clock.advance(seconds=1)
        with service.ledger.transaction() as tx:
            for i in range(first, min(CLAIMS, first + BATCH)):
                body = claims.claim_body(
                    centre="nscc-cd",
                    record_id=f"job-{i}",
                    voucher=vouchers[i % VOUCHERS],
                    resource="cpu",
                    quantity=quantity,
                    start=USAGE,
                    end=USAGE + timedelta(hours=1),
                    cost_fen=cost,
                )
                # signed here with the centre's key; the audit below verifies every signature
                tx.append(concealed("claim", tx.now(), body).signed(key), signatures_checked=True)

    done = issue_statement(service.write, centre="nscc-cd", period="2023-Q3")
    statement = done.result["statement"]
    assert done.result["lines"] == CLAIMS
    state = service.ledger.snapshot()
    found = claims.book(state)
    expected_total = sum(found.claims[("nscc-cd", f"job-{i}")].net_fen for i in range(CLAIMS))
    assert done.result["amount_fen"] == expected_total
    assert len(state.parts["settlement"].statements[statement].parts) > 500  # in many entries

    admin, _ = service.tokens.create("admin")
    headers = {"Authorization": f"Bearer {admin}"}
    with TestClient(create_app(service)) as http:
        page = http.get(f"/v1/statements/{statement}/lines?after=100000&limit=500", headers=headers)
        assert page.status_code == 200
        assert [x["line"] for x in page.json()["lines"]] == list(range(100_001, CLAIMS + 1))
        assert page.json()["next"] is None and "link" not in page.headers
        exported = http.get(f"/v1/statements/{statement}.csv", headers=headers)
        rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
        assert len(rows) == CLAIMS + 2 and rows[-1][0] == "合计"

    vkey = state.registry.log_epochs[0].verifier.vkey
    status, output = audit_verify(service.settings.database_url(), vkey, jobs=2)
    assert status == 0, output
    assert "OK:" in output
