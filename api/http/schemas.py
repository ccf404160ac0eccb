"""Request and response models of the role APIs (``/v1/admin``, ``/v1/review``, ``/v1/apply``,
``/v1/issuer``).

Conventions (docs/roles.md):

* money is integer fen (分); beside the main amounts a ``*_yuan`` string formats it for
  people (``"1,000,000.00 元"``); the fen figure is the one that counts;
* times are RFC 3339; what the ledger writes is UTC with microseconds
  (``2023-08-20T02:00:00.000000Z``); what a request states may carry any offset;
* request bodies are strict: unknown members are refused, numbers are JSON integers (never
  ``2.0``), booleans are ``true``/``false`` (never ``1``) — all as 400 problem+json;
* every write answers with the log entry it appended (``entry``: index, kind, time), which
  the public proof endpoints (``/v1/log/proof/inclusion?index=…``) can prove.

The models only shape and document; the rules (GB 32100 check characters, windows, caps,
eligibility) are the domain's, and its errors travel unchanged to problem+json.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar, get_args

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from api.http.deps import yuan
from ledger.entities import DISTRICTS, RECORD_KINDS, BadRecord
from ledger.errors import InvalidInput
from ledger.policy import ENTITY_TYPES, Programme
from ledger.timeutil import parse_time
from ledger.usecases import Appended
from ledger.usecases.commands.vouchers import VoucherTerms

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"

IdPath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=ID_PATTERN, description="an identifier")
]
UsccPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        description="统一社会信用代码 (18 characters, GB 32100-2015 check character)",
    ),
]

Id = Annotated[StrictStr, Field(pattern=ID_PATTERN, description="1-64 of A-Z a-z 0-9 _ . : -")]
Sha256 = Annotated[
    StrictStr, Field(pattern=SHA256_PATTERN, description="SHA-256, 64 lower-case hex digits")
]
Reason = Annotated[StrictStr, Field(min_length=1, max_length=1000)]
Fen = Annotated[StrictInt, Field(ge=0, le=2**53 - 1, description="integer fen (分)")]
Time = Annotated[
    StrictStr,
    Field(
        max_length=64,
        description="RFC 3339 with an offset, e.g. 2023-08-20T10:00:00+08:00",
        examples=["2023-01-10T00:00:00+08:00"],
    ),
]
InputValue = StrictInt | StrictBool | StrictStr

Status = Literal["submitted", "reviewed", "approved", "rejected"]
Opinion = Literal["approve", "reject"]
VoucherStatus = Literal["active", "suspended", "revoked", "expired"]

_STRICT = ConfigDict(extra="forbid", strict=True)


class Recorded(BaseModel):
    """The log entry a write appended."""

    index: int = Field(description="its log index (prove it with /v1/log/proof/inclusion)")
    kind: str = Field(description="entry kind, e.g. application.decide")
    at: str = Field(description="the entry's time, RFC 3339 UTC")

    @classmethod
    def of(cls, done: Appended) -> Recorded:
        return cls(index=done.index, kind=done.entry.kind, at=done.entry.at)


Answer = TypeVar("Answer", bound=BaseModel)


def recorded(model: type[Answer], done: Appended, **more: Any) -> Answer:
    """The answer to a write: ``model`` made of the entry it appended (``entry``), the
    fold's result and ``more``; each ``<x>_yuan`` field is ``<x>_fen`` for people."""
    values = {**done.result, **more, "entry": Recorded.of(done)}
    for name in model.model_fields:
        if name.endswith("_yuan") and name not in values:
            values[name] = yuan(values[name.removesuffix("_yuan") + "_fen"])
    return model.model_validate(values)


# --- entities ------------------------------------------------------------------------------


class RecordIn(BaseModel):
    model_config = _STRICT

    kind: Literal["criminal", "administrative_penalty", "dishonesty"]
    date: StrictStr = Field(description="YYYY-MM-DD (Asia/Shanghai)", max_length=10)
    ref: StrictStr | None = Field(default=None, max_length=200, description="document number")


assert get_args(RecordIn.model_fields["kind"].annotation) == RECORD_KINDS


class EntityIn(BaseModel):
    """An entity to register (申报主体)."""

    model_config = _STRICT

    uscc: StrictStr = Field(
        max_length=64,
        description="统一社会信用代码: 18 characters, upper-case, with a valid GB 32100-2015 "
        "check character (a wrong one is refused naming the character)",
        examples=["91510100MA61R0JK41"],
    )
    name: StrictStr = Field(min_length=1, max_length=200)
    type: Literal["enterprise", "university", "research_institute", "talent_team"]
    district: StrictStr = Field(
        max_length=50,
        description="the entity's 区(市)县 or functional zone, as the ledger spells it",
        json_schema_extra={"enum": list(DISTRICTS)},
    )
    records: list[RecordIn] = Field(
        default_factory=list,
        description="criminal, administrative-penalty or dishonesty records, dated",
    )

    def bad_records(self) -> list[BadRecord]:
        """The records as the domain takes them (each date a day YYYY-MM-DD)."""
        out = []
        for i, record in enumerate(self.records):
            try:
                if len(record.date) != 10:
                    raise ValueError(record.date)
                day = date.fromisoformat(record.date)
            except ValueError:
                raise InvalidInput(
                    f"body.records[{i}].date: {record.date!r} is not a date YYYY-MM-DD"
                ) from None
            out.append(BadRecord(record.kind, day, record.ref))
        return out


assert get_args(EntityIn.model_fields["type"].annotation) == ENTITY_TYPES


class RecordOut(BaseModel):
    kind: str
    date: str
    ref: str | None = None


class BlacklistingOut(BaseModel):
    since: str = Field(description="RFC 3339 UTC")
    since_local: str = Field(description="Asia/Shanghai, for people")
    index: int
    reason: str
    evidence_sha256: str


class EntityOut(BaseModel):
    uscc: str
    name: str
    type: str
    district: str
    district_code: str | None = Field(description="GB/T 2260 code; null for the three zones")
    records: list[RecordOut]
    registered_index: int
    blacklisted: BlacklistingOut | None


class EntityRegistered(BaseModel):
    entry: Recorded
    entity: EntityOut


class EntityList(BaseModel):
    count: int
    entities: list[EntityOut]


class BlacklistIn(BaseModel):
    model_config = _STRICT

    reason: Reason
    evidence_sha256: Sha256


class UnblacklistIn(BaseModel):
    model_config = _STRICT

    reason: Reason


class BlacklistOut(BaseModel):
    entry: Recorded
    uscc: str
    suspended: list[str] = Field(description="vouchers the blacklisting suspended")


class UnblacklistOut(BaseModel):
    entry: Recorded
    uscc: str
    reinstated: list[str] = Field(description="vouchers reinstated (those the blacklist suspended)")


# --- applications ------------------------------------------------------------------------


class ApplicationIn(BaseModel):
    """An application (申报) by the token's own entity.

    ``materials`` maps each item of the programme's 申报材料 list (its id, see
    ``GET /v1/apply/programmes``) to the SHA-256 of the document; only the hash goes into the
    log, the documents themselves travel to the district as before and are checked against it.
    """

    model_config = _STRICT

    application: Id | None = Field(
        default=None,
        description="your own id for it (a retry with the same id is refused as a "
        "duplicate, not recorded twice); default: a fresh A-… id",
    )
    programme: Id = Field(description="programme id, e.g. industry, adaptation")
    inputs: dict[StrictStr, InputValue] = Field(
        description="the programme's inputs: integers (fen, counts, bp), enum texts, "
        "dates YYYY-MM-DD, booleans"
    )
    materials: dict[StrictStr, Sha256] = Field(description="material id -> SHA-256 (hex)")
    attestations: dict[StrictStr, StrictBool] = Field(
        default_factory=dict, description="condition id -> true: what the applicant attests"
    )


class ApplicationSubmitted(BaseModel):
    entry: Recorded
    application: str
    district: str = Field(description="the 区县 whose reviewer gives the opinion")
    checked: list[str] = Field(description="conditions the ledger checked against data")
    attested: list[str] = Field(description="conditions the applicant attested")
    entitlement_fen: int = Field(description="the most a decision may approve")
    entitlement_yuan: str
    policy_version: str


class ReviewOut(BaseModel):
    index: int
    at: str
    reviewer: str = Field(description="the reviewer's token id")
    opinion: Opinion
    note: str


class DecisionOut(BaseModel):
    index: int
    at: str
    decision: Opinion
    amount_fen: int
    amount_yuan: str
    entitlement_fen: int
    note: str
    policy_version: str


class ApplicationOut(BaseModel):
    application: str
    round: str
    programme: str
    applicant: str = Field(description="统一社会信用代码")
    district: str
    status: Status
    inputs: dict[str, Any]
    materials: dict[str, str] = Field(description="material id -> SHA-256")
    attestations: dict[str, bool]
    index: int = Field(description="log index of the application.submit entry")
    submitted_at: str
    policy_version: str
    review: ReviewOut | None
    decision: DecisionOut | None
    voucher: str | None = Field(description="the voucher issued on it, if any")
    grant: str | None = Field(description="the grant paid on it, if any")


class ApplicationList(BaseModel):
    count: int
    applications: list[ApplicationOut]


def application_out(view: dict[str, Any]) -> ApplicationOut:
    decision = view["decision"]
    if decision is not None:
        decision = {**decision, "amount_yuan": yuan(decision["amount_fen"])}
    return ApplicationOut.model_validate({**view, "decision": decision})


class ReviewIn(BaseModel):
    """The district's opinion (审核意见), due by the policy's review deadline."""

    model_config = _STRICT

    opinion: Opinion
    note: StrictStr = Field(default="", max_length=2000)


class ReviewRecorded(BaseModel):
    entry: Recorded
    application: str
    district: str
    reviewer: str
    opinion: Opinion


class DecisionIn(BaseModel):
    """The city's decision. ``approve`` without ``amount_fen`` approves the entitlement the
    domain computes from the application's inputs (for a grant programme: its calculator)."""

    model_config = _STRICT

    decision: Opinion
    amount_fen: Fen | None = Field(
        default=None, description="approve only; at most the entitlement"
    )
    note: StrictStr = Field(default="", max_length=2000)


class DecisionRecorded(BaseModel):
    entry: Recorded
    application: str
    decision: Opinion
    amount_fen: int
    amount_yuan: str
    entitlement_fen: int
    entitlement_yuan: str
    policy_version: str


class ErasureIn(BaseModel):
    """Why a rejected application's personal data is erased (public, in the log: say why,
    never whose; for example 保存期限届满)."""

    model_config = _STRICT

    reason: StrictStr = Field(min_length=1, max_length=500)


class ErasureRecorded(BaseModel):
    entry: Recorded
    application: str
    erased: list[int] = Field(description="the entries whose disclosures were deleted")


# --- vouchers ------------------------------------------------------------------------------


class IssueIn(BaseModel):
    """Issue the voucher of an approved voucher-programme application. Every term defaults
    from the approval and the policy in force (docs/policy.md)."""

    model_config = _STRICT

    voucher: Id | None = Field(default=None, description="default: a fresh V-… id")
    face_value_fen: Fen | None = Field(default=None, description="default: the approved amount")
    usage_start: Time | None = None
    usage_end: Time | None = None
    valid_from: Time | None = None
    valid_until: Time | None = None
    centres: list[Id] | None = Field(default=None, description="default: every accepted centre")

    def terms(self) -> VoucherTerms:
        """The terms given (None: the default), the times parsed."""

        def time(name: str) -> datetime | None:
            text = getattr(self, name)
            try:
                return None if text is None else parse_time(text)
            except InvalidInput as exc:
                raise InvalidInput(f"body.{name}: {exc.message}") from None

        return VoucherTerms(
            face_value_fen=self.face_value_fen,
            usage_start=time("usage_start"),
            usage_end=time("usage_end"),
            valid_from=time("valid_from"),
            valid_until=time("valid_until"),
            centres=self.centres,
        )


class VoucherIssued(BaseModel):
    entry: Recorded
    voucher: str
    holder: str = Field(description="统一社会信用代码 of the applicant, bound to it for good")
    face_value_fen: int
    face_value_yuan: str
    log_index: int = Field(description="the voucher.issue entry; also inside the credential")
    issuer_key: str = Field(description="kid of the credential; see /v1/issuer/jwks")
    credential: str = Field(
        description="compact JWS (RFC 7515), alg EdDSA (RFC 8037), verifiable with the "
        "issuer's public key alone"
    )


class Window(BaseModel):
    start: str
    end: str


class Validity(BaseModel):
    from_: str = Field(alias="from")
    until: str

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class PeriodsOut(BaseModel):
    kind: str
    count: int | None
    cap_fen: int


class VoucherOut(BaseModel):
    voucher: str
    application: str
    round: str
    programme: str
    holder: str
    status: VoucherStatus
    face_value_fen: int
    face_value_yuan: str
    used_fen: int
    held_fen: int
    balance_fen: int
    balance_yuan: str
    rate_bp: int
    usage_window: Window
    valid: Validity
    periods: PeriodsOut | None
    centres: list[str]
    caps: dict[str, int] = Field(description="what remains under each cap (fen), by name")
    last_bound_by: str | None
    issuer_key: str
    log_index: int
    policy_version: str
    current_policy_version: str
    credential: str
    history: list[dict[str, Any]]


def voucher_out(view: dict[str, Any]) -> VoucherOut:
    return VoucherOut.model_validate(
        {
            **view,
            "face_value_yuan": yuan(view["face_value_fen"]),
            "balance_yuan": yuan(view["balance_fen"]),
        }
    )


class VoucherList(BaseModel):
    count: int
    vouchers: list[VoucherOut]


class VoucherStatusIn(BaseModel):
    model_config = _STRICT

    reason: Reason
    evidence_sha256: Sha256 | None = None


class VoucherStatusOut(BaseModel):
    entry: Recorded
    voucher: str
    status: VoucherStatus
    holds_released: list[str] = Field(description="open holds voided by a revoke or expire")


# --- grants --------------------------------------------------------------------------------


class CalculateIn(BaseModel):
    """Inputs of a one-time grant programme's calculator (一 rank; 二 racks and cost; 七
    investment), as an application would state them."""

    model_config = _STRICT

    programme: Id
    inputs: dict[StrictStr, InputValue]


class Calculated(BaseModel):
    programme: str
    calculator: str = Field(description="rank_tiers, per_rack or investment_share")
    calculated_fen: int = Field(description="the calculator's figure")
    entity_cap_fen: int | None
    amount_fen: int = Field(description="min(calculated, entity cap): what may be approved")
    amount_yuan: str
    policy_version: str


class GrantPayIn(BaseModel):
    model_config = _STRICT

    grant: Id | None = Field(default=None, description="default: a fresh G-… id")


class Grant(BaseModel):
    """A one-time grant as paid."""

    grant: str
    application: str = Field(description="the application it was paid on")
    payee: str = Field(description="统一社会信用代码 of the applicant")
    programme: str
    requested_fen: int = Field(description="the approved amount")
    paid_fen: int = Field(description="min(requested, every remaining cap)")
    paid_yuan: str
    bound_by: str = Field(description="the cap that bound it, or 'requested'")
    policy_version: str


class GrantPaid(Grant):
    entry: Recorded
    calculated_fen: int = Field(description="the calculator on the application's inputs")


class GrantOut(Grant):
    round: str
    index: int = Field(description="log index of the grant.pay entry")
    at: str
    clawed_back_fen: int
    net_fen: int = Field(description="paid - clawed back")


# --- corrections ---------------------------------------------------------------------------


class ClaimOut(BaseModel):
    centre: str
    record_id: str = Field(description="the centre's usage record id")
    voucher: str
    index: int = Field(description="log index of the claim or capture entry")
    at: str
    kind: str = Field(description="claim or capture")
    body: dict[str, Any] = Field(description="the entry's body as the centre signed it")
    result: dict[str, Any] = Field(description="what the ledger decided")
    subsidy_fen: int
    subsidy_yuan: str
    clawed_back_fen: int
    reversed_index: int | None
    net_fen: int
    hold_id: str | None


class ClaimRef(BaseModel):
    model_config = _STRICT

    centre: StrictStr = Field(min_length=1, max_length=32)
    record_id: StrictStr = Field(min_length=1, max_length=128)


class ReverseIn(BaseModel):
    """Reverse a claim (or capture) that was wrong: every cap gets its amount back."""

    model_config = _STRICT

    claim: ClaimRef
    reason: Reason
    evidence_sha256: Sha256 | None = None


class Reversed(BaseModel):
    entry: Recorded
    centre: str
    record_id: str
    restored_fen: int
    restored_yuan: str


class ClawbackTarget(BaseModel):
    """Exactly one of ``claim`` or ``grant``."""

    model_config = _STRICT

    claim: ClaimRef | None = None
    grant: Id | None = None


class ClawbackIn(BaseModel):
    """追回: recover part or all of an improperly obtained subsidy."""

    model_config = _STRICT

    target: ClawbackTarget
    amount_fen: Fen
    reason: Reason
    evidence_sha256: Sha256 = Field(description="SHA-256 of the evidence document")


class ClawedBack(BaseModel):
    entry: Recorded
    target: str
    clawed_back_fen: int
    clawed_back_yuan: str
    net_fen: int = Field(description="the subsidy that remains")
    evidence_sha256: str
    reason: str


# --- policy --------------------------------------------------------------------------------


class PolicyOut(BaseModel):
    round: str
    version: str = Field(description="SHA-256 of the policy's RFC 8785 canonical JSON")
    published_index: int = Field(description="log index of its policy.publish entry")
    policy: dict[str, Any] = Field(description="the policy document (docs/policy.md)")


class PolicyPublished(BaseModel):
    entry: Recorded
    round: str
    policy_version: str
    centres_registered: list[str] = Field(description="centres new in this version")
    rate_cards_published: list[str] = Field(description="centre@version of new rate cards")


class InputOut(BaseModel):
    name: str
    type: str
    text: str
    required: bool
    minimum: int | None
    maximum: int | None
    values: list[str]


class MaterialOut(BaseModel):
    id: str
    text: str
    required: bool


class ConditionOut(BaseModel):
    id: str
    cite: str
    text: str
    attested: bool = Field(description="the applicant must attest it (attestations[id]=true)")
    checked: str | None = Field(description="what the ledger checks against data, if anything")


class ProgrammeOut(BaseModel):
    id: str
    number: str
    section: str
    title: str
    kind: Literal["voucher", "grant"]
    rate_bp: int | None = Field(description="null: the notice leaves it open (not yet issuable)")
    inputs: list[InputOut]
    materials: list[MaterialOut]
    conditions: list[ConditionOut]


class SubmissionWindow(BaseModel):
    from_: str | None = Field(alias="from", description="Asia/Shanghai, as the policy states it")
    to: str | None

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class Programmes(BaseModel):
    round: str
    policy_version: str
    online_submission: SubmissionWindow
    district_review: SubmissionWindow
    programmes: list[ProgrammeOut]


def programme_out(programme: Programme) -> ProgrammeOut:
    return ProgrammeOut(
        id=programme.id,
        number=programme.number,
        section=programme.section,
        title=programme.title,
        kind=programme.kind,  # type: ignore[arg-type]
        rate_bp=programme.rate_bp,
        inputs=[
            InputOut(
                name=s.name,
                type=s.type,
                text=s.text,
                required=s.required,
                minimum=s.minimum,
                maximum=s.maximum,
                values=list(s.values),
            )
            for s in programme.inputs.values()
        ],
        materials=[
            MaterialOut(id=m.id, text=m.text, required=m.required) for m in programme.materials
        ],
        conditions=[
            ConditionOut(
                id=c.id,
                cite=c.cite,
                text=c.text,
                attested=c.attested,
                checked=None if c.check is None else c.check.describe(),
            )
            for c in programme.conditions
        ],
    )


# --- the issuer's public key -------------------------------------------------------------


class Jwk(BaseModel):
    """An Ed25519 public key as an RFC 8037 OKP JWK."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str = Field(description="base64url public key")
    kid: str = Field(description="the key id, as the credential header's kid names it")
    alg: Literal["EdDSA"] = "EdDSA"
    use: Literal["sig"] = "sig"


class JwkSet(BaseModel):
    """RFC 7517 JWK Set: every issuer key the log registered (old vouchers stay verifiable)."""

    keys: list[Jwk]
