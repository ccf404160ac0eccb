"""A request fails alone, and reads never wait for writes (on SQLite and PostgreSQL).

The group commit runs many requests in one transaction; each runs in its own savepoint.
These tests put failing requests of every kind — refused by the rules, failing by a bug
halfway through, failing after it appended — between honest ones in ONE batch, and check
that the honest ones commit, the failing ones leave nothing behind, and nothing is replayed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ledger.entry import Entry
from ledger.errors import InternalError, LedgerError
from ledger.keys import Signer
from ledger.store.sequencer import Sequencer
from ledger.store.unit_of_work import FoldedLog, Transaction


@pytest.fixture
def log(open_service, db_url: str) -> FoldedLog:  # type: ignore[no-untyped-def]
    folded: FoldedLog = open_service(db_url).ledger
    folded.snapshot()
    return folded


def note(tx: Transaction, text: str) -> Entry:
    return tx.sign("log.note", {"text": text}, tx.keys.log)


def honest(text: str) -> Any:
    def work(tx: Transaction) -> int:
        return tx.append(note(tx, text)).index

    return work


def refused_after_an_append(tx: Transaction) -> None:
    tx.append(note(tx, "first half of a refused request"))
    tx.append(note(tx, ""))  # the fold refuses an empty note


def bug_after_an_append(tx: Transaction) -> None:
    tx.append(note(tx, "first half of a buggy request"))
    raise OverflowError("date value out of range")  # as a bad date raised inside the fold


def run_one_batch(log: FoldedLog, works: list[Any]) -> list[Any]:
    """Submit every work item while the sequencer is held, so that they share one batch."""
    sequencer = Sequencer(log, linger=0)
    try:
        with log._write_lock:  # the writer thread waits here until all are queued
            futures = [sequencer.submit(w) for w in works]
        return [f.exception() or f.result() for f in futures]
    finally:
        sequencer.close()


def notes(log: FoldedLog, start: int) -> list[str]:
    texts = []
    for _, data in log.store.iter_entries(start):
        entry = Entry.from_bytes(data)
        texts.append(str(entry.body.get("text")))
    return texts


def test_failing_requests_in_a_batch_fail_alone(log: FoldedLog, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    start = log.store.size()
    replays: list[int] = []
    original = log.store.replay
    monkeypatch.setattr(
        log.store, "replay", lambda s=0, **kw: replays.append(s) or original(s, **kw)
    )
    outcomes = run_one_batch(
        log,
        [
            honest("one"),
            refused_after_an_append,
            honest("two"),
            bug_after_an_append,
            honest("three"),
        ],
    )
    replayed, replays[:] = list(replays), []
    assert replayed == [], "nothing may be replayed to undo a failed request"
    assert outcomes[0] == start
    assert isinstance(outcomes[1], LedgerError) and outcomes[1].reason == "INVALID_ARGUMENT"
    assert outcomes[2] == start + 1
    assert isinstance(outcomes[3], InternalError)
    assert "OverflowError" not in outcomes[3].message  # no internal text reaches the caller
    assert outcomes[3].details["error_id"] in outcomes[3].message
    assert outcomes[4] == start + 2
    # Only the honest requests are in the log, in order, and the fold agrees with it.
    assert notes(log, start) == ["one", "two", "three"]
    assert log.state.size == log.store.size() == start + 3
    # The checkpoint signed for the batch covers exactly what was committed.
    size, _ = log.store.latest_checkpoint() or (0, "")
    assert size == start + 3


def test_a_bug_is_logged_with_its_error_id(log: FoldedLog, caplog) -> None:  # type: ignore[no-untyped-def]
    (outcome,) = run_one_batch(log, [bug_after_an_append])
    assert isinstance(outcome, InternalError)
    logged = [r for r in caplog.records if outcome.error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert "OverflowError" in caplog.text


def test_savepoint_restores_the_working_state(log: FoldedLog) -> None:
    start = log.store.size()
    with log.transaction() as tx:
        before = tx.state
        with pytest.raises(LedgerError), tx.savepoint():
            tx.append(note(tx, "kept only if the block succeeds"))
            tx.append(note(tx, ""))
        assert tx.state is before and tx.next_index == start
        tx.append(note(tx, "after the savepoint"))
    assert notes(log, start) == ["after the savepoint"]


def test_a_failed_commit_publishes_nothing(log: FoldedLog) -> None:
    committed = log.snapshot()
    with pytest.raises(RuntimeError), log.transaction() as tx:
        tx.append(note(tx, "never committed"))
        raise RuntimeError("the commit fails")
    assert log.snapshot() is committed


def test_reads_do_not_wait_for_a_writer(log: FoldedLog) -> None:
    """A write transaction holds the append lock for as long as it likes; readers get the
    committed snapshot meanwhile, without waiting, and never see its uncommitted entries."""
    committed = log.snapshot()
    inside, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        with log.transaction() as tx:
            tx.append(note(tx, "slow"))
            inside.set()
            release.wait(10)

    writer = threading.Thread(target=slow_writer)
    writer.start()
    try:
        assert inside.wait(10)
        started = time.monotonic()
        seen = log.snapshot()
        waited = time.monotonic() - started
        assert seen is committed and seen.size == committed.size
    finally:
        release.set()
        writer.join()
    assert waited < 5  # a bound, not a benchmark: blocking would wait until release (10 s)
    assert log.snapshot().size == committed.size + 1


def test_another_process_entries_are_folded_in_by_readers(open_service, db_url: str) -> None:  # type: ignore[no-untyped-def]
    first = open_service(db_url).ledger
    second = open_service(db_url).ledger
    size = first.snapshot().size
    with second.transaction() as tx:
        tx.append(tx.sign("log.note", {"text": "from the other process"}, second.keys.log))
    assert first.state.size == size  # nothing read yet
    assert first.snapshot().size == size + 1


def test_a_snapshot_never_changes(log: FoldedLog) -> None:
    before = log.snapshot()
    keys_before = dict(before.registry.keys)
    with log.transaction() as tx:
        body = {"vkey": Signer.generate("extra").verifier.vkey, "roles": ["service"]}
        tx.append(tx.sign("key.register", body, tx.keys.log))
    after = log.snapshot()
    assert after.size == before.size + 1
    assert dict(before.registry.keys) == keys_before
    assert len(after.registry.keys) == len(keys_before) + 1


def test_every_part_of_a_full_round_is_immutable(tmp_path: Path) -> None:
    """Every collection in every part is persistent and every record frozen: a draft's
    shallow copy of a part can then never change the state it was copied from."""
    from dataclasses import fields, is_dataclass

    from domain_helpers import World, wan
    from immutables import Map

    from ledger.seq import Seq

    world = World()
    voucher = world.voucher("industry")
    world.claim(voucher, wan(1))
    allowed = (Map, Seq, tuple, frozenset, int, str, type(None))
    for name, part in world.state.parts.items():
        assert is_dataclass(part), name
        for f in fields(part):
            value = getattr(part, f.name)
            assert isinstance(value, allowed), f"{name}.{f.name} is a {type(value).__name__}"
            if isinstance(value, Map):
                for item in value.values():
                    if is_dataclass(item):
                        assert type(item).__dataclass_params__.frozen, (  # type: ignore[attr-defined]
                            f"{name}.{f.name} holds a mutable {type(item).__name__}"
                        )


def test_an_authors_clock_never_sets_the_ledgers_time() -> None:
    """A claim signed 290 s ahead is recorded at the ledger's clock (``logged``), and every
    later entry is stamped by the ledger's clock, not 290 s late."""
    from datetime import timedelta

    from domain_helpers import World, wan

    from ledger.timeutil import format_time

    world = World()
    voucher = world.voucher("industry")
    now = world.clock
    body = world.claim_body(voucher, wan(1))
    ahead = world.entry("claim", body, world.centre(), at=now + timedelta(seconds=290))
    done = world.uow.append(ahead)
    assert done.entry.at == format_time(now + timedelta(seconds=290))  # what the centre signed
    assert done.entry.logged == format_time(now)  # when the ledger recorded it
    assert world.state.time == now
    assert b'"logged"' in done.entry.to_bytes()
    world.tick(seconds=1)
    note = world.uow.append(world.uow.sign("log.note", {"text": "after"}, world.log))
    assert note.entry.logged is None and world.state.time == now + timedelta(seconds=1)
