"""Settlement statements (open, lines, close) in the fold: exactly-once, periods, corrections.

Every step is a signed entry applied with ``ledger.state.apply`` (tests/domain_helpers.py);
every refusal is checked to leave the state exactly as it was.
"""

from __future__ import annotations

import copy
from typing import Any

import grpc
import pytest
from domain_helpers import World, local, sha, wan
from fastapi.testclient import TestClient
from grpc_fixtures import GrpcEnv, grpc_env_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from suanli.v1 import redemption_pb2 as pb

from adapters.client import RedemptionError
from api.http.app import create_app
from ledger import claims, corrections, settlement
from ledger.entry import Entry
from ledger.errors import LedgerError
from ledger.policy import Policy
from ledger.registry import verify_entry_signatures
from ledger.settlement import book as settlement_book
from ledger.settlement import parse_period, period_of
from ledger.state import Result
from ledger.usecases.views.statements import with_record

__all__ = ["grpc_env_factory"]  # a fixture, used by grpc_world


def issue(world: World, period: str, centre: str = "nscc-cd") -> Result:
    """Open, list every line in parts, close: what the service does, entry by entry."""
    sid = open_(world, period, centre)["statement"]
    while settlement.has_lines_left(world.state, sid):
        world.apply("statement.lines", settlement.lines_body(world.state, sid), world.log)
    return world.apply("statement.close", settlement.close_body(world.state, sid), world.log)


def open_(world: World, period: str, centre: str = "nscc-cd") -> Result:
    body = settlement.open_body(world.state, centre=centre, period=period, at=world.clock)
    return world.apply("statement.open", body, world.log)


def body_of(world: World, period: str, centre: str = "nscc-cd") -> dict[str, Any]:
    return settlement.open_body(world.state, centre=centre, period=period, at=world.clock)


def lines_of(world: World, statement: str) -> list[dict[str, Any]]:
    """A statement's lines, read from its statement.lines entries as an auditor would, each
    with the record id of its claim (a line points at its claim by log index)."""
    centre = settlement.statement_of(world.state, statement).centre
    return [
        with_record(world.state, centre, line)
        for entry in world.entries
        if entry.kind == "statement.lines" and entry.body["statement"] == statement
        for line in entry.body["lines"]
    ]


def reverse(world: World, record_id: str, centre: str = "nscc-cd") -> Result:
    body = corrections.reverse_body(centre=centre, record_id=record_id, reason="计量错误")
    return world.apply("claim.reverse", body, world.issuer)


def clawback(world: World, record_id: str, amount_fen: int, centre: str = "nscc-cd") -> Result:
    body = corrections.clawback_body(
        amount_fen=amount_fen, reason="虚报", evidence_sha256=sha("x"), claim=(centre, record_id)
    )
    return world.apply("clawback", body, world.issuer)


@pytest.fixture
def world() -> World:
    return World()


# --- periods ------------------------------------------------------------------------------


def test_periods_are_shanghai_calendar_months_quarters_and_years() -> None:
    q3 = parse_period("2023-Q3")
    assert (q3.cadence, q3.start, q3.end) == (
        "quarterly",
        local("2023-07-01 00:00"),
        local("2023-10-01 00:00"),
    )
    dec = parse_period("2023-12")
    assert (dec.start, dec.end) == (local("2023-12-01 00:00"), local("2024-01-01 00:00"))
    year = parse_period("2024")
    assert (year.cadence, year.start, year.end) == (
        "yearly",
        local("2024-01-01 00:00"),
        local("2025-01-01 00:00"),
    )
    # 2023-09-30 23:30 in Beijing is still Q3, though it is 15:30 UTC on the same day
    assert period_of(local("2023-09-30 23:30"), "quarterly").text == "2023-Q3"
    assert period_of(local("2023-10-01 00:00"), "quarterly").text == "2023-Q4"
    assert period_of(local("2023-10-01 00:00"), "monthly").text == "2023-10"
    for bad in ("2023-Q5", "2023-13", "23", "2023-q3", "2023-00", ""):
        with pytest.raises(LedgerError) as caught:
            parse_period(bad)
        assert caught.value.reason == "MALFORMED_PERIOD"


# --- what a statement holds ------------------------------------------------------------------


def test_a_statement_settles_every_claim_of_its_period_once(world: World) -> None:
    voucher = world.voucher("industry")
    first = [world.claim(voucher, wan(10), record_id=f"job-{i}") for i in range(3)]
    other_centre = world.voucher("industry")
    world.claim(other_centre, wan(5), centre="cd-icc", record_id="icc-1")

    result = issue(world, "2023-Q3")
    assert result["statement"] == "nscc-cd.2023-Q3.1"
    lines = lines_of(world, "nscc-cd.2023-Q3.1")
    assert [line["record_id"] for line in lines] == ["job-0", "job-1", "job-2"]
    assert [line["line"] for line in lines] == [1, 2, 3]
    assert all(line["type"] == "claim" and line["settled_before_fen"] == 0 for line in lines)
    assert [line["amount_fen"] for line in lines] == [r["subsidy_fen"] for r in first]
    assert result["amount_fen"] == sum(r["subsidy_fen"] for r in first)
    view = settlement.statement_view(world.state, "nscc-cd.2023-Q3.1")
    assert view["totals"]["by_programme"] == [
        {
            "round": "chengdu-2023-31",
            "programme": "industry",
            "lines": 3,
            "cost_fen": wan(30),
            "amount_fen": result["amount_fen"],
        }
    ]
    assert view["status"] == "closed" and view["signed_by"] == [world.log.key_id]
    assert view["previous"] is None

    # A claim captured after the statement falls into the next one of the same period.
    world.tick(hours=1)
    late = world.claim(voucher, wan(2), record_id="job-late")
    second = issue(world, "2023-Q3")
    assert second["statement"] == "nscc-cd.2023-Q3.2"
    assert [x["record_id"] for x in lines_of(world, second["statement"])] == ["job-late"]
    assert second["amount_fen"] == late["subsidy_fen"]
    assert settlement.statement_view(world.state, second["statement"])["previous"] == (
        "nscc-cd.2023-Q3.1"
    )
    # The other centre's claim waits for its own statement.
    icc = issue(world, "2023-Q3", centre="cd-icc")
    assert [x["record_id"] for x in lines_of(world, icc["statement"])] == ["icc-1"]
    # Nothing left: a third statement is refused, and so is a replay of a part.
    with pytest.raises(LedgerError) as caught:
        body_of(world, "2023-Q3")
    assert caught.value.reason == "NOTHING_TO_SETTLE"
    replay = next(e.body for e in world.entries if e.kind == "statement.lines")
    world.refuse("statement.lines", replay, world.log, reason="STATEMENT_CLOSED")


def test_a_claim_recorded_after_the_period_goes_into_the_next_period(world: World) -> None:
    voucher = world.voucher("industry")
    world.at("2023-09-30 23:59").claim(voucher, wan(1), record_id="q3")
    world.at("2023-10-01 00:00").claim(voucher, wan(1), record_id="q4")
    issue(world, "2023-Q3")
    assert [x["record_id"] for x in lines_of(world, "nscc-cd.2023-Q3.1")] == ["q3"]
    issue(world, "2023-Q4")
    assert [x["record_id"] for x in lines_of(world, "nscc-cd.2023-Q4.1")] == ["q4"]


def test_a_period_must_have_begun_and_the_cadence_must_be_the_policys(world: World) -> None:
    voucher = world.voucher("industry")
    world.claim(voucher, wan(1), record_id="j1")
    with pytest.raises(LedgerError) as caught:
        body_of(world, "2023-Q4")
    assert caught.value.reason == "PERIOD_NOT_STARTED"
    # The policy settles quarterly: asked for a month, the refusal says which period to ask.
    with pytest.raises(LedgerError) as caught:
        body_of(world, "2023-08")
    assert caught.value.reason == "PERIOD_CADENCE"
    assert "settles quarterly" in caught.value.message and "2023-Q3" in caught.value.message
    body = body_of(world, "2023-Q3")
    world.refuse(
        "statement.open", {**body, "cadence": "monthly"}, world.log, reason="PERIOD_CADENCE"
    )


def test_monthly_cadence_when_the_policy_says_so(world: World) -> None:
    raw = world.policy.to_json()
    raw["settlement"]["cadence"] = "monthly"
    world.publish(Policy.from_json(raw))
    voucher = world.voucher("industry")
    world.at("2023-08-31 12:00").claim(voucher, wan(1), record_id="aug")
    world.at("2023-09-01 12:00").claim(voucher, wan(1), record_id="sep")
    with pytest.raises(LedgerError) as caught:
        body_of(world, "2023-Q3")
    assert caught.value.reason == "PERIOD_CADENCE"
    issue(world, "2023-08")
    assert [x["record_id"] for x in lines_of(world, "nscc-cd.2023-08.1")] == ["aug"]
    issue(world, "2023-09")
    assert [x["record_id"] for x in lines_of(world, "nscc-cd.2023-09.1")] == ["sep"]


# --- corrections ------------------------------------------------------------------------------


def test_a_reversal_after_settlement_is_a_negative_line_in_the_next_statement(
    world: World,
) -> None:
    voucher = world.voucher("industry")
    paid = world.claim(voucher, wan(10), record_id="j1")["subsidy_fen"]
    kept = world.claim(voucher, wan(4), record_id="j2")["subsidy_fen"]
    issue(world, "2023-Q3")
    world.at("2023-10-10 10:00")
    reverse(world, "j1")
    clawback(world, "j2", 1234)
    fresh = world.claim(voucher, wan(1), record_id="j3")["subsidy_fen"]
    result = issue(world, "2023-Q4")
    lines = lines_of(world, result["statement"])
    assert [(x["type"], x["record_id"], x["amount_fen"]) for x in lines] == [
        ("claim", "j3", fresh),
        ("adjustment", "j1", -paid),
        ("adjustment", "j2", -1234),
    ]
    assert lines[1]["settled_before_fen"] == paid and lines[1]["cost_fen"] == 0
    assert lines[1]["reversed_index"] is not None
    assert lines[2]["clawed_back_fen"] == 1234
    assert result["amount_fen"] == fresh - paid - 1234
    totals = settlement.statement_view(world.state, result["statement"])["totals"]
    assert (totals["claims"], totals["adjustments"], totals["cost_fen"]) == (1, 2, wan(1))
    # settled so far equals the net subsidy of every claim
    for record_id, net in (("j1", 0), ("j2", kept - 1234), ("j3", fresh)):
        assert (
            settlement.settlement_of_claim(world.state, "nscc-cd", record_id)["settled_fen"] == net
        )
    # and a second correction of j2 is adjusted once more, never twice
    clawback(world, "j2", 100)
    adjustment = issue(world, "2023-Q4")
    again = lines_of(world, adjustment["statement"])
    assert [(x["record_id"], x["amount_fen"]) for x in again] == [("j2", -100)]
    with pytest.raises(LedgerError) as caught:
        body_of(world, "2023-Q4")
    assert caught.value.reason == "NOTHING_TO_SETTLE"


def test_a_claim_corrected_before_settlement_is_settled_at_what_remains(world: World) -> None:
    voucher = world.voucher("industry")
    world.claim(voucher, wan(10), record_id="gone")
    kept = world.claim(voucher, wan(10), record_id="cut")["subsidy_fen"]
    reverse(world, "gone")
    clawback(world, "cut", 500)
    issue(world, "2023-Q3")
    lines = lines_of(world, "nscc-cd.2023-Q3.1")
    assert [(x["record_id"], x["type"], x["amount_fen"], x["cost_fen"]) for x in lines] == [
        ("gone", "claim", 0, wan(10)),
        ("cut", "claim", kept - 500, wan(10)),
    ]
    assert lines[0]["reversed_index"] is not None
    assert settlement.centre_settlement(world.state, "nscc-cd")["due_fen"] == 0


# --- refusals: the fold recomputes the statement --------------------------------------------


def test_a_statement_that_differs_from_the_fold_is_refused(world: World) -> None:
    voucher = world.voucher("industry")
    for i in range(3):
        world.claim(voucher, wan(1), record_id=f"j{i}")
    opening = body_of(world, "2023-Q3")
    for name, value in (
        ("sequence", 2),
        ("previous", "x"),
        ("period_end", "2023-09-30T16:00:00.000001Z"),
    ):
        error = world.refuse(
            "statement.open", {**opening, name: value}, world.log, reason="STATEMENT_MISMATCH"
        )
        assert error.details["field"] == f"body.{name}"
    world.refuse("statement.open", {**opening, "extra": 1}, world.log, reason="MALFORMED_BODY")
    # only the log key signs statements
    world.refuse("statement.open", opening, world.issuer, reason="WRONG_SIGNER")
    world.refuse("statement.open", opening, world.centre("nscc-cd"), reason="WRONG_SIGNER")
    sid = open_(world, "2023-Q3")["statement"]
    # one open statement per centre
    world.refuse("statement.open", opening, world.log, reason="STATEMENT_OPEN")

    part = settlement.lines_body(world.state, sid)
    dropped = copy.deepcopy(part)
    dropped["lines"].pop(1)
    error = world.refuse("statement.lines", dropped, world.log, reason="STATEMENT_MISMATCH")
    assert error.details["field"] == "body.lines[1].claim_index"

    inflated = copy.deepcopy(part)
    inflated["lines"][0]["amount_fen"] += 1
    error = world.refuse("statement.lines", inflated, world.log, reason="STATEMENT_MISMATCH")
    assert error.details["field"] == "body.lines[0].amount_fen"

    unknown = copy.deepcopy(part)
    unknown["lines"][0]["claim_index"] = 999_999  # no claim of this centre there
    world.refuse("statement.lines", unknown, world.log, reason="UNKNOWN_CLAIM")

    extra = copy.deepcopy(part)
    extra["lines"].append({**part["lines"][0], "line": 4})
    world.refuse("statement.lines", extra, world.log, reason="ALREADY_SETTLED")
    beyond = copy.deepcopy(part)
    beyond["lines"].append({**part["lines"][0], "claim_index": 999_999, "line": 4})
    world.refuse("statement.lines", beyond, world.log, reason="UNKNOWN_CLAIM")
    world.refuse("statement.lines", {**part, "part": 2}, world.log, reason="STATEMENT_MISMATCH")
    world.refuse("statement.lines", {**part, "lines": "all"}, world.log, reason="MALFORMED_BODY")

    # closing before every line is listed, or with other totals, is refused
    early = settlement.close_body(world.state, sid)
    world.refuse("statement.close", early, world.log, reason="STATEMENT_INCOMPLETE")
    first = {**part, "lines": part["lines"][:1]}
    world.apply("statement.lines", first, world.log)
    # a claim listed in part 1 cannot be listed again in part 2
    again = {**part, "part": 2, "lines": part["lines"][:1]}
    world.refuse("statement.lines", again, world.log, reason="ALREADY_SETTLED")
    world.apply("statement.lines", settlement.lines_body(world.state, sid), world.log)
    closing = settlement.close_body(world.state, sid)
    assert closing["parts"] == 2
    for changed in (
        {"parts": 1},
        {"lines_sha256": "0" * 64},
        {"totals": {**closing["totals"], "amount_fen": closing["totals"]["amount_fen"] + 1}},
    ):
        world.refuse(
            "statement.close", {**closing, **changed}, world.log, reason="STATEMENT_MISMATCH"
        )
    world.apply("statement.close", closing, world.log)
    assert [x["line"] for x in lines_of(world, sid)] == [1, 2, 3]

    # a later claim outside the period cannot be slipped into a statement of it
    world.at("2023-10-02 10:00").claim(voucher, wan(1), record_id="oct")
    with pytest.raises(LedgerError) as caught:
        body_of(world, "2023-Q3")
    assert caught.value.reason == "NOTHING_TO_SETTLE"
    q4 = open_(world, "2023-Q4")["statement"]
    sneaky = settlement.lines_body(world.state, q4)
    sneaky["lines"][0]["claim_index"] = claims.book(world.state).claims[("nscc-cd", "j0")].index
    world.refuse("statement.lines", sneaky, world.log, reason="ALREADY_SETTLED")


def test_an_empty_statement_is_refused(world: World) -> None:
    world.voucher("industry")
    body = {
        "statement": "nscc-cd.2023-Q3.1",
        "centre": "nscc-cd",
        "period": "2023-Q3",
        "cadence": "quarterly",
        "period_start": "2023-06-30T16:00:00.000000Z",
        "period_end": "2023-09-30T16:00:00.000000Z",
        "sequence": 1,
        "previous": None,
    }
    world.refuse("statement.open", body, world.log, reason="NOTHING_TO_SETTLE")
    world.refuse(
        "statement.open", {**body, "centre": "nowhere"}, world.log, reason="UNKNOWN_CENTRE"
    )
    with pytest.raises(LedgerError) as caught:
        settlement.lines_body(world.state, "nscc-cd.2023-Q3.1")
    assert caught.value.reason == "UNKNOWN_STATEMENT"


def test_claims_keep_coming_while_a_statement_is_open(world: World) -> None:
    """Parts are separate entries: claims recorded between them are after the cut and go
    into the next statement, while the open one settles exactly what it fixed."""
    voucher = world.voucher("industry")
    for i in range(5):
        world.claim(voucher, wan(1), record_id=f"before-{i}")
    sid = open_(world, "2023-Q3")["statement"]
    world.apply(
        "statement.lines", settlement.lines_body(world.state, sid, max_bytes=900), world.log
    )
    world.claim(voucher, wan(1), record_id="between")
    while settlement.has_lines_left(world.state, sid):
        world.apply(
            "statement.lines", settlement.lines_body(world.state, sid, max_bytes=900), world.log
        )
        world.claim(voucher, wan(1), record_id=world.next_id("during"))
    closed = world.apply("statement.close", settlement.close_body(world.state, sid), world.log)
    assert [x["record_id"] for x in lines_of(world, sid)] == [f"before-{i}" for i in range(5)]
    assert len(settlement.statement_view(world.state, sid)["parts"]) >= 3
    assert closed["lines"] == 5
    nxt = issue(world, "2023-Q3")
    later = [x["record_id"] for x in lines_of(world, nxt["statement"])]
    assert later[0] == "between" and len(later) >= 3


def test_the_chain_over_the_lines_is_what_close_states(world: World) -> None:
    import hashlib

    from ledger.canonical import canonical_bytes

    voucher = world.voucher("industry")
    for i in range(4):
        world.claim(voucher, wan(1), record_id=f"j{i}")
    issue(world, "2023-Q3")
    chain = bytes(32)
    published = [e for e in world.entries if e.kind == "statement.lines"]
    for line in (line for entry in published for line in entry.body["lines"]):
        chain = hashlib.sha256(chain + canonical_bytes(line)).digest()
    close = next(e for e in world.entries if e.kind == "statement.close")
    assert close.body["lines_sha256"] == chain.hex()


# --- the property: every fen of every claim is settled exactly once ------------------------

STEP = st.one_of(
    st.tuples(st.just("claim"), st.integers(1, 4), st.integers(0, 1)),
    st.tuples(st.just("statement"), st.integers(0, 1), st.just(0)),
    st.tuples(st.just("reverse"), st.integers(0, 30), st.just(0)),
    st.tuples(st.just("clawback"), st.integers(0, 30), st.integers(1, 50_000)),
    st.tuples(st.just("later"), st.integers(1, 40), st.just(0)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, min_size=1, max_size=25))
def test_every_claim_is_settled_exactly_once_at_its_net(steps: list[Any]) -> None:
    world = World()
    vouchers = [world.voucher("industry"), world.voucher("industry")]
    centres = ("nscc-cd", "cd-icc")
    made: list[tuple[str, str]] = []
    for action, a, b in steps:
        if action == "claim":
            centre = centres[b]
            record_id = world.next_id("job")
            world.claim(vouchers[b], wan(a), centre=centre, record_id=record_id)
            made.append((centre, record_id))
        elif action == "statement":
            period = period_of(world.clock, "quarterly").text
            try:
                issue(world, period, centres[a])
            except LedgerError as exc:
                assert exc.reason == "NOTHING_TO_SETTLE"
        elif action in ("reverse", "clawback") and made:
            centre, record_id = made[a % len(made)]
            record = world.state.parts["claims"].claims[(centre, record_id)]
            if record.reversed_index is not None or record.net_fen == 0:
                continue
            if action == "reverse":
                reverse(world, record_id, centre)
            else:
                clawback(world, record_id, min(b, record.net_fen), centre)
        elif action == "later":
            world.tick(days=a)
    # settle whatever is left: every period from Q3 2023 to now, each centre
    for centre in centres:
        for period in ("2023-Q3", "2023-Q4", "2024-Q1", "2024-Q2", "2024-Q3"):
            if parse_period(period).start > world.clock:
                break
            try:
                issue(world, period, centre)
            except LedgerError as exc:
                assert exc.reason == "NOTHING_TO_SETTLE"
    book = settlement_book(world.state)
    claim_lines: dict[tuple[str, str], int] = {}
    paid: dict[tuple[str, str], int] = {}
    for statement in book.statements.values():
        assert not statement.is_open
        for line in lines_of(world, statement.id):
            key = (statement.centre, line["record_id"])
            paid[key] = paid.get(key, 0) + line["amount_fen"]
            if line["type"] == "claim":
                claim_lines[key] = claim_lines.get(key, 0) + 1
                assert statement.period.contains(world.state.parts["claims"].claims[key].at)
    for key in made:
        record = world.state.parts["claims"].claims[key]
        assert claim_lines.get(key) == 1, f"{key} settled {claim_lines.get(key)} times"
        assert paid[key] == record.net_fen
    books = settlement.book(world.state)
    for centre in centres:
        position = settlement.centre_settlement(world.state, centre)
        # the statements' totals are what their lines settled, claim by claim
        recount = sum(done.amount_fen for (c, _), done in books.settled.items() if c == centre)
        assert position["settled_fen"] == recount
        assert position["due_fen"] == 0


# --- centres fetch their statements over gRPC (mutual TLS, the real server) ------------------


@pytest.fixture
def grpc_world(grpc_env_factory, db_url):  # type: ignore[no-untyped-def]
    return grpc_env_factory(db_url)


def test_centres_fetch_their_statements_over_grpc(grpc_world: GrpcEnv) -> None:
    env = grpc_world
    voucher = env.voucher("industry")
    nscc, icc = env.client("nscc-cd"), env.client("cd-icc")
    results = [nscc.claim(env.usage(wan(2), f"g-{i}"), voucher, wan(2)) for i in range(3)]
    icc.claim(env.usage(wan(1), "i-1", centre="cd-icc"), voucher, wan(1))
    service = env.service
    admin, _ = service.tokens.create("admin")
    with TestClient(create_app(service)) as http:
        issued = http.post(
            "/v1/statements",
            json={"centre": "nscc-cd", "period": "2023-Q3"},
            headers={"Authorization": f"Bearer {admin}"},
        )
    assert issued.status_code == 201, issued.text
    sid = issued.json()["statement"]

    listed = nscc.statements()
    assert [s.statement_id for s in listed] == [sid]
    assert not listed[0].lines and listed[0].line_count == 3  # the list leaves lines out
    assert nscc.statements(period="2023-Q4") == []
    assert icc.statements() == []

    got = nscc.statement(sid)
    assert (got.centre, got.period, got.cadence, got.sequence) == (
        "nscc-cd",
        "2023-Q3",
        "quarterly",
        1,
    )
    assert [line.record_id for line in got.lines] == ["g-0", "g-1", "g-2"]
    assert [line.subsidy_fen for line in got.lines] == [r.subsidy_fen for r in results]
    assert [line.log_index for line in got.lines] == [r.log_index for r in results]
    assert {line.type for line in got.lines} == {"claim"}
    assert got.total_subsidy_fen == sum(r.subsidy_fen for r in results)
    assert got.total_cost_fen == wan(6)
    assert [t.programme for t in got.by_programme] == ["industry"]
    assert (got.status, got.next_line) == ("closed", 0)
    # the signed entries come with it: the centre can check the log key's signatures itself
    state = env.ledger.refresh()
    opened, closed = Entry.from_bytes(got.open_entry), Entry.from_bytes(got.entry)
    parts = [Entry.from_bytes(e) for e in got.line_entries]
    assert (opened.kind, closed.kind) == ("statement.open", "statement.close")
    # a published line points at its claim by log index; the centre's message names its job
    indexed = [line["claim_index"] for p in parts for line in p.body["lines"]]
    assert indexed == [line.log_index for line in got.lines]
    for entry in (opened, *parts, closed):
        assert entry.body["statement"] == sid
        verify_entry_signatures(state.registry, entry)
        assert [s.key for s in entry.sigs] == [env.ledger.keys.log.key_id]
    assert env.ledger.store.entries(got.log_index, got.log_index + 1)[0] == got.open_entry
    assert closed.body["lines_sha256"] == got.lines_sha256
    # a page at a time: the client joins the pages
    first = nscc.stub.GetStatement(pb.GetStatementRequest(statement_id=sid, max_lines=2))
    assert [line.record_id for line in first.lines] == ["g-0", "g-1"] and first.next_line == 2
    assert [line.record_id for line in nscc.statement(sid, page=1).lines] == ["g-0", "g-1", "g-2"]

    # another centre's statement is not found, like a missing one
    for client, wanted in ((icc, sid), (nscc, "nscc-cd.2023-Q3.2")):
        with pytest.raises(RedemptionError) as caught:
            client.statement(wanted)
        assert (caught.value.code, caught.value.reason) == (
            grpc.StatusCode.NOT_FOUND,
            "UNKNOWN_STATEMENT",
        )


def test_periods_outside_2000_to_2099_are_malformed() -> None:
    for bad in ("0000", "1999-Q4", "2100-01", "2101-01", "9999"):
        with pytest.raises(LedgerError) as caught:
            parse_period(bad)
        assert caught.value.reason == "MALFORMED_PERIOD"
    assert parse_period("2099-12").end == local("2100-01-01 00:00")
