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

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from domain_helpers import DEFAULT_INPUTS, local, make_uscc, sha
from grpc_fixtures import START, ManualClock
from typer.testing import CliRunner

from api.bootstrap import Service
from api.cli import app
from ledger import claims
from ledger.entry import Entry
from ledger.fold import RULES
from ledger.keys import Signer
from ledger.timeutil import format_time
from ledger.usecases.commands import corrections, entities, log, redemption, settlement, vouchers
from ledger.usecases.commands.applications import approve_application

USAGE = local("2023-03-01 09:00")


def _centre_entry(service: Service, kind: str, body: dict[str, Any], clock: ManualClock) -> Entry:
    signer = service.centre_keys[body["centre"]]
    return Entry(kind, format_time(clock()), body).signed(signer)


def _usage(service: Service, record_id: str) -> dict[str, Any]:
    """CPU usage of one hour at nscc-cd, priced by its rate card."""
    with service.reading() as snapshot:
        card = claims.centre_of(snapshot.state, "nscc-cd").card_at(USAGE)
    assert card is not None
    quantity = 3_600_000  # core-seconds: 1000 core-hours
    return {
        "centre": "nscc-cd",
        "record_id": record_id,
        "resource": "cpu",
        "quantity": quantity,
        "start": USAGE,
        "end": USAGE + timedelta(hours=1),
        "cost_fen": card.prices["cpu"].cost(quantity),
    }


def _voucher(service: Service, n: int, programme: str, **terms: Any) -> tuple[str, str]:
    """A new entity and a voucher of ``programme`` for it: (uscc, voucher id)."""
    uscc = make_uscc(9000 + n)
    service.write(
        entities.register_entity,
        uscc=uscc,
        name=f"全类型单位{n}",
        type="enterprise",
        district="成都高新区",
    )
    done = service.write(
        vouchers.voucher_for,
        applicant=uscc,
        application=f"A-all-{n}",
        voucher=f"V-all-{n}",
        programme=programme,
        inputs=DEFAULT_INPUTS[programme],
        **terms,
    )
    return uscc, str(done.entry.body["voucher"])


def _redeem(service: Service, clock: ManualClock) -> None:
    """claim, hold, capture, void: the centre's entries, through the redemption use cases."""
    _, voucher = _voucher(service, 1, "ai-model")  # holds need a window open now
    sign = lambda kind, body: _centre_entry(service, kind, body, clock)  # noqa: E731
    usage = _usage(service, "all-claim")
    service.write(redemption.claim, sign("claim", claims.claim_body(voucher=voucher, **usage)))
    for hold_id in ("all-hold-1", "all-hold-2"):
        body = claims.hold_body(
            centre="nscc-cd",
            hold_id=hold_id,
            voucher=voucher,
            estimated_cost_fen=usage["cost_fen"],
            expires_at=clock() + timedelta(hours=1),
        )
        service.write(redemption.hold, sign("hold", body))
    captured = {k: v for k, v in _usage(service, "all-capture").items() if k != "centre"}
    body = claims.capture_body(centre="nscc-cd", hold_id="all-hold-1", **captured)
    service.write(redemption.claim, sign("capture", body))
    service.write(
        redemption.void, sign("void", claims.void_body(centre="nscc-cd", hold_id="all-hold-2"))
    )
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
    service.write(
        approve_application,
        application="A-all-grant",
        programme="adaptation",
        applicant=grantee,
        inputs=DEFAULT_INPUTS["adaptation"],
    )
    service.write(vouchers.pay_grant, application="A-all-grant", grant="G-all")
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
    cli("init", *where)
    cli("token", "create", "--role", "auditor", *where)
    assert "auditor" in cli("token", "list", *where)
    cli("policy", "show")
    cli("keys", "rotate-log", *where)  # a second rotation, over a log holding the first
    assert "OK:" in cli("audit", "verify", db_url, "--key", key, "--jobs", "1", "--no-progress")
