"""A log holding every entry kind of ``ledger.fold.RULES``, written through the service's
use cases, and every command that reads a log run over it.

Each entry is written the way the service writes it (``Service.write`` and a use case, the
centres' entries signed with their keys and sent through the redemption use cases, the
log key rotated by ``suanli keys rotate-log``). Then ``suanli audit verify``, ``export``,
``prove``, ``check-proof``, ``rebuild``, ``init``, ``token list``, ``policy show`` and
another ``keys rotate-log`` run over it and succeed. (``keys rotate-log`` once failed with
``unknown entry kind 'claim.reverse'`` on such a log.)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from domain_helpers import DEFAULT_INPUTS, make_uscc, sha
from grpc_fixtures import (
    START,
    ManualClock,
    centre_write,
    claim_body,
    reject_application,
    usage_for,
)
from typer.testing import CliRunner

from api.bootstrap import Service
from api.cli import app
from ledger import claims
from ledger.entry import Entry
from ledger.fold import RULES
from ledger.keys import Signer
from ledger.usecases.commands import (
    corrections,
    entities,
    log,
    reimbursement,
    settlement,
    vouchers,
)
from ledger.usecases.commands.applications import (
    Approval,
    approve_application,
    erase_application,
)
from ledger.usecases.commands.entities import NewEntity
from ledger.usecases.commands.round import publish_round


def _voucher(service: Service, n: int, programme: str, **terms: Any) -> tuple[str, str]:
    """A new entity and a voucher of ``programme`` for it: (uscc, voucher id)."""
    uscc = make_uscc(9000 + n)
    entity = NewEntity(uscc, f"全类型单位{n}", "enterprise", "成都高新区")
    approval = Approval(f"A-all-{n}", programme, uscc, DEFAULT_INPUTS[programme])
    service.write(vouchers.voucher_for, approval, f"V-all-{n}", entity=entity, **terms)
    return uscc, f"V-all-{n}"


def _redeem(service: Service, clock: ManualClock) -> None:
    """claim, hold, capture, void: the centre's entries, through the redemption use cases;
    then a reversal, a clawback and the voucher's status changed."""
    _, voucher = _voucher(service, 1, "ai-model")  # holds need a window open now
    usage = usage_for(service.ledger, "nscc-cd", 10_000, "all-claim")
    centre_write(service, "claim", claim_body(usage, voucher, 10_000))
    for hold_id in ("all-hold-1", "all-hold-2"):
        body = claims.hold_body(
            centre="nscc-cd",
            hold_id=hold_id,
            voucher=voucher,
            estimated_cost_fen=10_000,
            expires_at=clock() + timedelta(hours=1),
        )
        centre_write(service, "hold", body)
    used = usage_for(service.ledger, "nscc-cd", 10_000, "all-capture")
    captured = {k: v for k, v in claim_body(used, voucher, 10_000).items() if k != "voucher"}
    centre_write(service, "capture", {**captured, "hold_id": "all-hold-1"})
    centre_write(service, "void", claims.void_body(centre="nscc-cd", hold_id="all-hold-2"))
    service.write(
        corrections.reverse_claim, centre="nscc-cd", record_id="all-claim", reason="wrong job"
    )
    service.write(
        corrections.claw_back,
        amount_fen=1,
        reason="overstated",
        evidence_sha256=sha("evidence"),
        claim=("nscc-cd", "all-capture"),
    )
    for action in ("suspend", "reinstate", "revoke"):
        service.write(vouchers.change_voucher_status, voucher=voucher, action=action, reason="t")


def _reimburse(service: Service, grantee: str) -> None:
    """A post-hoc round beside the 2023 one, and a claim reviewed, approved and paid."""
    from test_reimbursement import invoice, posthoc_policy

    service.write(publish_round, posthoc_policy(2023))
    service.write(
        reimbursement.submit_reimbursement,
        claim="R-all",
        round="posthoc-test-2023",
        programme="compute-use",
        claimant=grantee,
        provider={"name": "某算力服务机构", "uscc": make_uscc(9100, "110108")},
        period=("2023-03-01", "2023-03-31"),
        amount_paid_fen=1_000_000,
        invoices=[invoice("INV-all", 1_000_000, make_uscc(9100, "110108"))],
        evidence={"contract": sha("contract"), "payment": sha("payment")},
    )
    service.write(
        reimbursement.review_reimbursement,
        claim="R-all",
        district="成都高新区",
        reviewer="r-all",
        opinion="approve",
    )
    service.write(reimbursement.decide_reimbursement, claim="R-all", decision="approve")
    service.write(reimbursement.pay_reimbursement, claim="R-all")


def build_log(service: Service, clock: ManualClock) -> None:
    """Every entry kind but ``log.rotate`` (the CLI writes that one)."""
    holder, expiring = _voucher(service, 2, "industry", valid_until=START + timedelta(days=1))
    service.write(entities.blacklist_entity, uscc=holder, reason="失信", evidence_sha256=sha("x"))
    service.write(entities.unblacklist_entity, uscc=holder, reason="已纠正")
    grantee = make_uscc(9003)
    service.write(
        entities.register_entity,
        uscc=grantee,
        name="全类型奖补单位",
        type="enterprise",
        district="成都高新区",
    )
    approval = Approval("A-all-grant", "adaptation", grantee, DEFAULT_INPUTS["adaptation"])
    service.write(approve_application, approval)
    service.write(vouchers.pay_grant, application="A-all-grant", grant="G-all")
    _reimburse(service, grantee)
    reject_application(service, "A-all-erased", grantee, "adaptation")
    service.write(erase_application, application="A-all-erased", reason="保存期限届满")
    _redeem(service, clock)
    settlement.issue_statement(service.write, centre="nscc-cd", period="2023-Q3")
    stranger = Signer.generate("retired-issuer")
    service.write(log.register_key, vkey=stranger.verifier.vkey, roles=["issuer"])
    service.write(log.retire_key, key_id=stranger.key_id)
    service.write(log.write_note, "every entry kind, for the CLI test")
    clock.advance(days=2)  # past the short voucher's validity
    service.write(vouchers.change_voucher_status, voucher=expiring, action="expire", reason="t")


def kinds(service: Service) -> Counter[str]:
    service.ledger.refresh()
    return Counter(Entry.from_bytes(data).kind for _, data in service.ledger.store.iter_entries())


@pytest.fixture
def every_kind(open_service: Callable[..., Service], db_url: str, tmp_path: Path) -> Service:
    clock = ManualClock(START)
    service = open_service(db_url, tmp_path / "data", clock=clock)
    build_log(service, clock)
    return service


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"suanli {' '.join(args)}: {result.output}"
    return result.output


def test_every_kind_and_every_command(every_kind: Service, db_url: str, tmp_path: Path) -> None:
    service = every_kind
    data = str(service.settings.data_dir)
    where = ["--data-dir", data, "--db", db_url]
    cli("keys", "rotate-log", *where)
    assert set(kinds(service)) == set(RULES), set(RULES) - set(kinds(service))

    key = service.ledger.keys.log.verifier.vkey  # the genesis key, as auditors pin it
    assert "OK:" in cli("audit", "verify", db_url, "--key", key, "--jobs", "1", "--no-progress")
    export = tmp_path / "export"
    cli("audit", "export", db_url, str(export), "--no-progress")
    assert "OK:" in cli("audit", "verify", str(export), "--key", key, "--no-progress")
    size = service.ledger.store.size()
    current = service.ledger.refresh().registry.log_epochs[-1].verifier.vkey  # signs the latest
    proof, entry = tmp_path / "proof", tmp_path / "entry"
    for index in (0, size // 2, size - 1):
        cli(
            "audit",
            "prove",
            str(index),
            "--db",
            db_url,
            "-o",
            str(proof),
            "--entry-out",
            str(entry),
        )
        cli("audit", "check-proof", str(proof), str(entry), "--key", current)
    assert f"replayed {size} entries" in cli("rebuild", *where)
    cli("init", "--dev", *where)  # the data dir is a development one (serve's first run)
    cli("token", "create", "--role", "auditor", *where)
    assert "auditor" in cli("token", "list", *where)
    cli("policy", "show")
    cli("keys", "rotate-log", *where)  # a second rotation, over a log holding the first
    assert "OK:" in cli("audit", "verify", db_url, "--key", key, "--jobs", "1", "--no-progress")


def test_the_ways_in_read_a_log_of_every_kind(every_kind: Service, tmp_path: Path) -> None:
    """Over HTTP (auditor API, exports, offline audit from the tiles) and gRPC (a centre's
    reconciliation: ListClaims and statements), a log of every kind reads back."""
    from test_audit import serving

    from adapters.outbox import Outbox
    from api.devpki import ensure_dev_pki
    from api.grpc.server import GrpcServer

    service = every_kind
    token, _ = service.tokens.create("auditor", label="every kind")
    auth = {"Authorization": f"Bearer {token}"}
    holder = make_uscc(9001)
    with serving(service) as url, httpx.Client(base_url=url, headers=auth) as http:
        for path in (
            f"/v1/entities/{holder}/history",
            f"/v1/entities/{holder}/history.xlsx",
            "/v1/bureau/report.xlsx?year=2023",
            "/v1/statements/nscc-cd.2023-Q3.1.csv",
            "/v1/audit/keys",
            "/v1/audit/entries?kind=*",
        ):
            assert http.get(path).status_code == 200, path
        kinds = {i["kind"] for i in http.get(f"/v1/entities/{holder}/history").json()["items"]}
        assert kinds == {"claim", "capture", "claim.reverse", "clawback"}
        key = service.ledger.keys.log.verifier.vkey
        assert "OK:" in cli("audit", "verify", url, "--key", key, "--no-progress")
    data_dir = service.settings.data_dir
    ensure_dev_pki(data_dir)
    Outbox(tmp_path / "outbox.db").close()  # the centre has no records of its own
    server = GrpcServer(service, "127.0.0.1:0")
    port = server.start()
    try:
        result = CliRunner().invoke(
            app,
            ["centre", "reconcile", "--period", "2023-Q3", "--centre", "nscc-cd",
             "--data-dir", str(data_dir), "--outbox", str(tmp_path / "outbox.db"),
             "--target", f"localhost:{port}", "--json"],
        )  # fmt: skip
    finally:
        server.stop(1.0)
    assert result.exit_code == 1, result.output  # differences: the ledger's claims only
    report = json.loads(result.output)
    assert {d["kind"] for d in report["differences"]} == {"missing-at-centre"}
    assert [s["statement_id"] for s in report["statements"]] == ["nscc-cd.2023-Q3.1"]
