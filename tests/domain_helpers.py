"""Shared helpers for the domain tests: a ledger with real Ed25519 keys, in memory.

``World`` writes the log's first entries with the service's own use case (genesis, an
issuer, a service and one key per centre, ``Signer.generate``; the policy, the packaged
chengdu-2023-31 by default, with its centres and rate cards), and then lets a test
register entities, submit / review / decide applications, issue vouchers, pay grants and
claim, every step through the use cases (``ledger.usecases.commands``) and a
``MemoryUnitOfWork``, each entry applied by ``ledger.fold.apply``. ``apply`` appends any
entry a test builds; ``refuse`` checks that an entry is refused with a reason *and* that
the state is exactly as before.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from ledger import applications, claims
from ledger.credential import sign_voucher
from ledger.entry import Entry
from ledger.errors import LedgerError
from ledger.keys import ServiceKeys, Signer
from ledger.policy import Policy
from ledger.publication import concealed
from ledger.state import LedgerState, Result
from ledger.timeutil import SHANGHAI, format_time, parse_local, parse_time
from ledger.uscc import complete
from ledger.usecases import MemoryUnitOfWork
from ledger.usecases.commands import log as log_commands
from ledger.usecases.commands.applications import (
    Approval,
    approve_application,
    decide_application,
    review_application,
    submit_application,
)
from ledger.usecases.commands.entities import blacklist_entity, register_entity
from ledger.usecases.commands.log import start_log
from ledger.usecases.commands.round import publish_round
from ledger.usecases.commands.vouchers import issue_voucher, pay_grant

W = 1_000_000  # fen per 万元
YUAN = 100


def wan(n: int) -> int:
    return n * W


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def local(text: str) -> datetime:
    """'2023-08-20 10:00' or '2023-08-20T10:00:00' Asia/Shanghai -> aware UTC datetime."""
    text = text.replace(" ", "T")
    if len(text) == 16:
        text += ":00"
    return parse_time(text + "+08:00")


def make_uscc(n: int, region: str = "510100") -> str:
    """A valid 统一社会信用代码: 9 1 <region> MA<7 digits> + check character."""
    return complete(f"91{region}MA{n:07d}")


DATES = {"project_start": "2023-02-01", "project_end": "2023-07-15"}

DEFAULT_INPUTS: dict[str, dict[str, Any]] = {
    "adaptation": {"rank": 1},
    "cloud-upgrade": {
        "racks_total": 1200,
        "racks_in_use": 1200,
        "avg_renovation_cost_per_rack_fen": 1500 * YUAN,
        "compute_share_bp": 7500,
        "pue_milli": 1200,
        **DATES,
    },
    "national-strategy": {"compute_cost_fen": wan(500), "host_type": "national_key_lab", **DATES},
    "industry": {
        "compute_cost_fen": wan(1200),
        "level": "national",
        "project_type": "ai_industrialisation",
        **DATES,
    },
    "talent": {
        "compute_cost_fen": wan(300),
        "talent_category": "academician",
        "chengdu_contribution_months": 12,
        **DATES,
    },
    "ai-model": {
        "compute_cost_fen": wan(1500),
        "parameters": 130_000_000_000,
        "scenarios": 6,
        **DATES,
    },
    "scheduling-platform": {"investment_fen": wan(2000), "scheduling_cases": 3, **DATES},
}


def materials_for(policy: Policy, programme: str) -> dict[str, str]:
    return {
        m.id: sha(f"{programme}/{m.id}")
        for m in policy.programme(programme).materials
        if m.required
    }


def attest_all(policy: Policy, programme: str) -> dict[str, bool]:
    return {c.id: True for c in policy.programme(programme).conditions if c.attested}


def snapshot(state: LedgerState) -> tuple[Any, ...]:
    """Everything a refused entry must leave unchanged.

    A domain part that is still empty (equal to a fresh one) counts as absent: reading a
    part through ``state.part`` creates it, which no reader of the state can observe.
    """
    parts = {k: v for k, v in state.parts.items() if v != type(v)()}
    return (state.size, state.time, repr(parts), repr(state.registry))


@dataclass
class World:
    """A ledger in memory (``MemoryUnitOfWork``), its first entries written by the service's
    own use case (``start_log``), and the application path through the use cases."""

    policy: Policy = field(default_factory=Policy.load)
    clock: datetime = field(default_factory=lambda: local("2023-08-20 10:00"))
    log: Signer = field(default_factory=lambda: Signer.generate("suanli-log"))
    issuer: Signer = field(default_factory=lambda: Signer.generate("city-issuer"))
    service: Signer = field(default_factory=lambda: Signer.generate("suanli-service"))
    centre_keys: dict[str, Signer] = field(default_factory=dict)
    counter: int = 0
    uow: MemoryUnitOfWork = field(init=False)

    def __post_init__(self) -> None:
        keys = ServiceKeys(self.log, self.issuer, self.service)
        self.uow = MemoryUnitOfWork(keys, lambda: self.clock)
        for centre in self.policy.centres.values():
            self.centre_keys[centre.id] = Signer.generate(centre.id)
        start_log(
            self.uow, origin="suanli.test/log", centre_keys=self.centre_keys, policy=self.policy
        )

    @property
    def state(self) -> LedgerState:
        return self.uow.state

    @property
    def entries(self) -> list[Entry]:
        return self.uow.entries

    @property
    def results(self) -> list[Result]:
        return [a.result for a in self.uow.appended]

    # entries ------------------------------------------------------------------------------

    def register_key(self, signer: Signer, roles: list[str], centre: str | None = None) -> None:
        log_commands.register_key(self.uow, vkey=signer.verifier.vkey, roles=roles, centre=centre)

    def entry(
        self, kind: str, body: Mapping[str, Any], *signers: Signer, at: datetime | None = None
    ) -> Entry:
        return concealed(kind, format_time(at or self.clock), dict(body)).signed(*signers)

    def apply(
        self, kind: str, body: Mapping[str, Any], *signers: Signer, at: datetime | None = None
    ) -> Result:
        # signed here with the test's own keys: applied without checking them again
        entry = self.entry(kind, body, *signers, at=at)
        with self._logged_at(at):
            return self.uow.append(entry, signatures_checked=True).result

    @contextmanager
    def _logged_at(self, at: datetime | None) -> Iterator[None]:
        """The ledger's clock reads ``at`` while an entry signed at ``at`` is appended."""
        if at is None:
            yield
            return
        before, self.clock = self.clock, at
        try:
            yield
        finally:
            self.clock = before

    def refuse(
        self,
        kind: str,
        body: Mapping[str, Any],
        *signers: Signer,
        reason: str,
        at: datetime | None = None,
    ) -> LedgerError:
        """Apply an entry that must be refused with ``reason``; check nothing changed."""
        before = snapshot(self.state)
        with pytest.raises(LedgerError) as caught, self._logged_at(at):
            self.uow.append(self.entry(kind, body, *signers, at=at), signatures_checked=True)
        assert caught.value.reason == reason, caught.value.message
        assert snapshot(self.state) == before, "a refused entry changed the state"
        return caught.value

    def attempt(
        self,
        kind: str,
        body: Mapping[str, Any],
        *signers: Signer,
        at: datetime | None = None,
        refused: str | None = None,
    ) -> LedgerError | None:
        """Apply an entry; or, with ``refused``, check it is refused with that reason (and
        return the refusal)."""
        if refused is None:
            self.apply(kind, body, *signers, at=at)
            return None
        return self.refuse(kind, body, *signers, at=at, reason=refused)

    def at(self, text: str) -> World:
        self.clock = local(text)
        return self

    def tick(self, **delta: float) -> World:
        self.clock += timedelta(**delta)
        return self

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter:04d}"

    def centre(self, centre_id: str = "nscc-cd") -> Signer:
        return self.centre_keys[centre_id]

    def publish(self, policy: Policy) -> None:
        self.policy = policy
        publish_round(self.uow, policy)

    # the application path ---------------------------------------------------------------

    def register(self, n: int | None = None, district: str = "成都高新区", **kw: Any) -> str:
        uscc = make_uscc(n if n is not None else self.counter + 1000)
        self.counter += 1
        register_entity(
            self.uow,
            uscc=uscc,
            name=kw.pop("name", f"测试单位{uscc[-6:]}"),
            type=kw.pop("type", "enterprise"),
            district=district,
            **kw,
        )
        return uscc

    def submit(
        self,
        programme: str,
        uscc: str,
        inputs: Mapping[str, Any] | None = None,
        application: str | None = None,
        **override: Any,
    ) -> str:
        app_id = application or self.next_id("A")
        submit_application(
            self.uow,
            application=app_id,
            programme=programme,
            applicant=uscc,
            inputs={**DEFAULT_INPUTS[programme], **(inputs or {})},
            materials=override.pop("materials", materials_for(self.policy, programme)),
            attestations=override.pop("attestations", attest_all(self.policy, programme)),
            round=self.policy.round,
        )
        return app_id

    def review(self, app_id: str, opinion: str = "approve") -> None:
        district = applications.application_of(self.state, app_id).district
        review_application(
            self.uow, application=app_id, district=district, reviewer="reviewer-1", opinion=opinion
        )

    def approve(self, app_id: str, amount_fen: int | None = None) -> int:
        done = decide_application(
            self.uow, application=app_id, decision="approve", amount_fen=amount_fen
        )
        return int(done.result["amount_fen"])

    def issue(self, app_id: str, voucher: str | None = None, **kw: Any) -> str:
        voucher_id = voucher or self.next_id("V")
        issue_voucher(self.uow, application=app_id, voucher=voucher_id, **kw)
        return voucher_id

    def approved(
        self,
        programme: str,
        inputs: Mapping[str, Any] | None = None,
        amount_fen: int | None = None,
        uscc: str | None = None,
        **kw: Any,
    ) -> str:
        """Register (unless ``uscc``), submit, review and approve; return the application id."""
        holder = uscc or self.register(**kw)
        app_id = self.next_id("A")
        approval = Approval(
            application=app_id,
            programme=programme,
            applicant=holder,
            inputs={**DEFAULT_INPUTS[programme], **(inputs or {})},
            amount_fen=amount_fen,
            materials=materials_for(self.policy, programme),
            attestations=attest_all(self.policy, programme),
            round=self.policy.round,
        )
        approve_application(self.uow, approval)
        return app_id

    def voucher(
        self,
        programme: str = "industry",
        inputs: Mapping[str, Any] | None = None,
        amount_fen: int | None = None,
        uscc: str | None = None,
        **issue_kw: Any,
    ) -> str:
        """A voucher through the whole path (at the current clock, inside the window)."""
        return self.issue(self.approved(programme, inputs, amount_fen, uscc), **issue_kw)

    def voucher_body_unchecked(
        self, app_id: str, voucher: str, programme: str, face_value_fen: int
    ) -> dict[str, Any]:
        """A well-formed ``voucher.issue`` body with its credential, made by hand (not by the
        builder, which checks what the fold checks): the 2023 windows, 30 %, nscc-cd."""
        payload = {
            "voucher": voucher,
            "application": app_id,
            "round": self.policy.round,
            "programme": programme,
            "holder": applications.application_of(self.state, app_id).applicant,
            "face_value_fen": face_value_fen,
            "rate_bp": 3000,
            "usage_window": {
                "start": "2023-01-09T16:00:00.000000Z",
                "end": "2023-07-31T16:00:00.000000Z",
            },
            "valid": {
                "from": "2023-01-09T16:00:00.000000Z",
                "until": "2024-07-31T16:00:00.000000Z",
            },
            "periods": None,
            "centres": ["nscc-cd"],
            "issuer_key": self.issuer.key_id,
            "log_index": self.state.size,
            "policy_version": self.policy.version,
        }
        return payload | {"credential": sign_voucher(payload, self.issuer)}

    # redemption ------------------------------------------------------------------------

    def usage(
        self, centre: str, cost_fen: int, resource: str = "cpu", start: datetime | None = None
    ) -> dict[str, Any]:
        """Usage (resource, quantity, start, end, cost) the rate card prices at ``cost_fen``."""
        start = start or local("2023-03-01 09:00")
        card = claims.centre_of(self.state, centre).card_at(start)
        assert card is not None
        price = card.prices[resource]
        quantity = max(1, math.ceil(cost_fen * price.per_units / price.price_fen))
        assert price.cost(quantity) == cost_fen or cost_fen == 0, (
            "cost not reachable with this resource"
        )
        return {
            "resource": resource,
            "quantity": quantity,
            "start": start,
            "end": start + timedelta(hours=1),
            "cost_fen": price.cost(quantity),
        }

    def claim_body(
        self,
        voucher: str,
        cost_fen: int,
        centre: str = "nscc-cd",
        record_id: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        usage = self.usage(centre, cost_fen, kw.pop("resource", "cpu"), kw.pop("start", None))
        usage.update(kw)
        return claims.claim_body(
            centre=centre, record_id=record_id or self.next_id("job"), voucher=voucher, **usage
        )

    def claim_refused(
        self, voucher: str, cost_fen: int, reason: str, centre: str = "nscc-cd", **kw: Any
    ) -> LedgerError:
        """A claim the rules must refuse with ``reason`` (``kw``: as ``claim_body``)."""
        body = self.claim_body(voucher, cost_fen, centre, **kw)
        return self.refuse("claim", body, self.centre(centre), reason=reason)

    def hold_body(
        self, voucher: str, estimate_fen: int, hold_id: str = "h-1", hours: float = 1
    ) -> dict[str, Any]:
        """A hold at nscc-cd of ``estimate_fen`` on ``voucher``, expiring ``hours`` from now."""
        return claims.hold_body(
            centre="nscc-cd",
            hold_id=hold_id,
            voucher=voucher,
            estimated_cost_fen=estimate_fen,
            expires_at=self.clock + timedelta(hours=hours),
        )

    def capture_body(
        self, hold_id: str, cost_fen: int, record_id: str, start: datetime | None = None
    ) -> dict[str, Any]:
        """A capture at nscc-cd of usage priced at ``cost_fen`` (starting at ``start``)."""
        usage = self.usage("nscc-cd", cost_fen, start=start)
        return claims.capture_body(centre="nscc-cd", hold_id=hold_id, record_id=record_id, **usage)

    def claim(self, voucher: str, cost_fen: int, centre: str = "nscc-cd", **kw: Any) -> Result:
        return self.apply(
            "claim", self.claim_body(voucher, cost_fen, centre, **kw), self.centre(centre)
        )

    def pay(self, app_id: str, amount_fen: int | None = None, grant: str | None = None) -> Result:
        paid = pay_grant(
            self.uow, application=app_id, grant=grant or self.next_id("G"), amount_fen=amount_fen
        )
        return paid.entry.result

    def blacklist(self, uscc: str, reason: str = "失信") -> Result:
        done = blacklist_entity(self.uow, uscc=uscc, reason=reason, evidence_sha256=sha(reason))
        return done.result


def shanghai(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def window_end(text: str) -> datetime:
    return parse_local(text, end=True)
