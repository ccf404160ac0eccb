"""Erasure (docs/publication.md): a rejected application's personal data is deleted by a
signed ``erase`` entry; the log, its leaves and signatures stay, a restart and both audits
still pass, and the audit reports what was erased."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from domain_helpers import DEFAULT_INPUTS, make_uscc
from fastapi.testclient import TestClient
from grpc_fixtures import ManualClock, reject_application
from test_audit import audit_verify

from api.bootstrap import Service
from api.http.app import create_app
from ledger import applications, erasure
from ledger.disclosure import erasure_marker
from ledger.errors import LedgerError
from ledger.snapshot import summary_digest
from ledger.store import snapshots
from ledger.store.schema import disclosures
from ledger.timeutil import parse_time
from ledger.usecases.commands import applications as application_commands
from ledger.usecases.commands.applications import Approval
from ledger.usecases.commands.entities import NewEntity, register_entity
from ledger.usecases.commands.vouchers import voucher_for

START = parse_time("2023-08-20T10:00:00+08:00")
TEAM = "王五教授课题组"
REJECTION = "申报材料与项目不符，不予推荐（丁戊）"
REASON = "保存期限届满"


@pytest.fixture
def rejected(open_service, db_url: str) -> Iterator[tuple[Service, str]]:  # type: ignore[no-untyped-def]
    """A round with one rejected talent-team application (A-gone) and an approved one."""
    service = open_service(db_url, clock=ManualClock(START))
    team = make_uscc(920)
    service.write(register_entity, uscc=team, name=TEAM, type="talent_team", district="成华区")
    reject_application(service, "A-gone", team, "talent", note=REJECTION)
    approval = Approval("A-kept", "industry", make_uscc(921), DEFAULT_INPUTS["industry"])
    entity = NewEntity(make_uscc(921), "留存科技有限公司", "enterprise", "成都高新区")
    service.write(voucher_for, approval, "V-kept", entity=entity)
    yield service, db_url


def _admin(service: Service) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.tokens.create('admin')[0]}"}


def _erase(http: TestClient, headers: dict[str, str], application: str) -> Any:
    return http.post(
        f"/v1/admin/applications/{application}/erasure", json={"reason": REASON}, headers=headers
    )


def test_erasure_deletes_the_openings_and_keeps_the_log(
    rejected: tuple[Service, str], open_service, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    service, url = rejected
    before = service.ledger.snapshot()
    app = applications.application_of(before, "A-gone")
    targets = [app.index, app.review.index, app.decision.index]  # type: ignore[union-attr]
    leaves = service.ledger.store.entries(0, before.size)
    headers = _admin(service)
    with TestClient(create_app(service)) as http:
        answer = _erase(http, headers, "A-gone")
        assert answer.status_code == 200, answer.text
        assert answer.json()["erased"] == targets
        by = answer.json()["entry"]["index"]
        # the erase entry itself is public: the application, its entries and the reason
        published = http.get(f"/v1/log/entries/{by}").json()["entry"]["body"]
        assert published["reason"] == REASON and "_sd" not in published
        gone = http.get("/v1/admin/applications/A-gone", headers=headers)
        assert gone.status_code == 404 and gone.json()["reason"] == "APPLICATION_ERASED"
        opened = http.get(f"/v1/log/entries/{targets[1]}/disclosures", headers=headers)
        assert opened.json() == {
            "index": targets[1], "kind": "application.review", "erased_by": by, "disclosures": []
        }  # fmt: skip
        assert _erase(http, headers, "A-gone").json()["reason"] == "ALREADY_ERASED"
        refused = _erase(http, headers, "A-kept")
        assert refused.status_code == 422 and refused.json()["reason"] == "NOT_ERASABLE"
        assert _erase(http, headers, "A-never").json()["reason"] == "UNKNOWN_APPLICATION"
    # the leaves are untouched; only the disclosures went
    assert service.ledger.store.entries(0, before.size) == leaves
    found = service.ledger.store.disclosures(0, before.size)
    assert {i: found[i] for i in targets} == {i: (erasure_marker(by),) for i in targets}
    with service.ledger.store.engine.connect() as conn:
        rows = conn.execute(sa.select(disclosures.c.data)).scalars().all()
    assert not [r for r in rows if REJECTION in _decoded(r)]
    # a restart replays the erased entries blind and comes to the same state
    live = service.ledger.snapshot()
    again = open_service(url, data_dir=tmp_path / "data").ledger.snapshot()
    assert again.size == live.size and summary_digest(again) == summary_digest(live)
    assert applications.book(again).applications == applications.book(live).applications
    assert dict(applications.book(again).erased) == {"A-gone": by}
    assert erasure.book(again).erased == erasure.book(live).erased
    assert not erasure.unresolved(again)


def _decoded(data: str) -> str:
    import base64

    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode()
    except ValueError:
        return data


def test_both_audits_pass_and_the_full_one_reports_the_erasure(
    rejected: tuple[Service, str],
) -> None:
    service, url = rejected
    done = service.write(
        application_commands.erase_application, application="A-gone", reason=REASON
    )
    vkey = service.ledger.state.registry.log_epochs[0].verifier.vkey
    status, output = audit_verify(url, vkey)
    assert status == 0, output
    assert "full audit" in output
    assert f"erased: 3 entries of 1 erased applications (erase entries {done.index})" in output
    status, output = audit_verify(url, vkey, "--public")
    assert status == 0, output
    assert "public audit" in output


def test_a_snapshot_holding_erased_values_is_dropped(rejected: tuple[Service, str]) -> None:
    service, _ = rejected
    ledger = service.ledger
    state = ledger.snapshot()
    taken = snapshots.save_snapshot(
        ledger.store.engine, ledger.origin, state, ledger.log_signer_for(state.size, state)
    )
    assert [h.size for h in snapshots.headers(ledger.store.engine)] == [taken.size]
    service.write(application_commands.erase_application, application="A-gone", reason=REASON)
    assert snapshots.headers(ledger.store.engine) == []  # it held the application's values


def test_a_forged_erasure_marker_fails_the_audit_at_its_entry(
    rejected: tuple[Service, str],
) -> None:
    """Markers are not evidence: one on an entry no erase entry names (here the approved
    application's voucher) fails the full audit, naming the entry."""
    service, url = rejected
    state = service.ledger.snapshot()
    kept = applications.application_of(state, "A-kept")
    engine = service.ledger.store.engine
    with engine.begin() as conn:
        conn.execute(sa.delete(disclosures).where(disclosures.c.idx == kept.index))
        conn.execute(
            sa.insert(disclosures),
            [
                {
                    "idx": kept.index,
                    "data": erasure_marker(state.size + 5),
                    "erased_by": state.size + 5,
                }
            ],
        )
    vkey = state.registry.log_epochs[0].verifier.vkey
    status, output = audit_verify(url, vkey)
    assert status != 0
    assert f"FAIL at index {kept.index} (erasure)" in output, output


def test_an_erase_entry_must_name_exactly_the_applications_entries(
    rejected: tuple[Service, str],
) -> None:
    service, _ = rejected
    state = service.ledger.snapshot()
    body = erasure.erase_body(state, "A-gone", REASON)
    entries: list[dict[str, Any]] = body["entries"]  # type: ignore[assignment]
    wrong = [
        {**body, "entries": entries[:2]},  # one left out
        {**body, "entries": [{**entries[0], "index": entries[0]["index"] - 1}, *entries[1:]]},
        {**body, "entries": [{**entries[0], "fields": ["inputs"]}, *entries[1:]]},
        {**body, "entries": [{**entries[0], "kind": "claim"}, *entries[1:]]},
        {**body, "reason": ""},
    ]
    for bad in wrong:

        def write(uow: Any, bad: dict[str, Any] = bad) -> Any:
            return uow.append(uow.sign("erase", bad, uow.keys.issuer))

        with pytest.raises(LedgerError) as refused:
            service.write(write)
        assert refused.value.kind == "invalid", refused.value.message
    assert service.ledger.snapshot().size == state.size  # nothing written
    assert applications.application_of(service.ledger.snapshot(), "A-gone").status == "rejected"
