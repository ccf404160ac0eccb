"""Fold snapshots: a restart loads a verified snapshot and replays only the tail; a snapshot
nobody with the log key made is never loaded; the audit checks each snapshot it meets."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import pytest
import sqlalchemy as sa

from ledger.audit import verify_log
from ledger.keys import Signer
from ledger.snapshot import SnapshotHeader
from ledger.store import snapshots
from ledger.store.schema import snapshot_chunks
from ledger.store.snapshots import headers, save_snapshot
from ledger.store.unit_of_work import FoldedLog


def grow(log: FoldedLog, count: int, prefix: str = "note") -> None:
    with log.transaction() as tx:
        for i in range(count):
            tx.append(tx.sign("log.note", {"text": f"{prefix} {i}"}, tx.keys.log))


def replayed_from(log: FoldedLog, monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """The start index of every replay the log does from now on."""
    starts: list[int] = []
    original = log.store.replay
    monkeypatch.setattr(
        log.store, "replay", lambda s=0, **kw: starts.append(s) or original(s, **kw)
    )
    return starts


def take(log: FoldedLog) -> SnapshotHeader:
    state = log.snapshot()
    return save_snapshot(log.store.engine, log.origin, state, log.log_signer_for(state.size))


def test_restart_loads_the_snapshot_and_replays_only_the_tail(
    open_service, db_url: str, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    first = open_service(db_url).ledger
    grow(first, 30)
    header = take(first)
    grow(first, 5, "tail")
    full = first.snapshot()

    again = open_service(db_url).ledger
    starts = replayed_from(again, monkeypatch)
    state = again.snapshot()
    assert starts == [header.size], "only the tail after the snapshot is replayed"
    assert state.size == full.size
    assert state.parts == full.parts and state.registry == full.registry
    # and the restarted service writes on from there
    grow(again, 1, "after restart")
    assert again.snapshot().size == full.size + 1


def test_a_snapshot_not_signed_by_this_service_is_not_loaded(
    open_service, db_url: str, monkeypatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    first = open_service(db_url).ledger
    grow(first, 10)
    state = first.snapshot()
    save_snapshot(first.store.engine, first.origin, state, Signer.generate("intruder"))
    again = open_service(db_url).ledger
    starts = replayed_from(again, monkeypatch)
    with caplog.at_level(logging.WARNING, "suanli.snapshots"):
        assert again.snapshot().size == state.size
    assert starts == [0]
    assert "not a log key of this service" in caplog.text


def test_altered_snapshot_bytes_are_not_loaded(
    open_service, db_url: str, monkeypatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    first = open_service(db_url).ledger
    grow(first, 10)
    header = take(first)
    with first.store.engine.begin() as conn:
        data = conn.execute(sa.select(snapshot_chunks.c.data)).scalar_one()
        conn.execute(sa.update(snapshot_chunks).values(data=bytes(data)[:-1] + b"\x00"))
    again = open_service(db_url).ledger
    starts = replayed_from(again, monkeypatch)
    with caplog.at_level(logging.WARNING, "suanli.snapshots"):
        assert again.snapshot().size == header.size
    assert starts == [0]
    assert "not the ones signed" in caplog.text


def test_only_the_two_newest_snapshots_are_kept(open_service, db_url: str) -> None:  # type: ignore[no-untyped-def]
    log = open_service(db_url).ledger
    sizes = []
    for _ in range(3):
        grow(log, 2)
        sizes.append(take(log).size)
    assert [h.size for h in headers(log.store.engine)] == sizes[1:]


def test_a_large_state_is_stored_in_chunks(open_service, db_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    log = open_service(db_url).ledger
    grow(log, 50)
    monkeypatch.setattr(snapshots, "CHUNK", 200)
    header = take(log)
    with log.store.engine.connect() as conn:
        chunks = conn.execute(
            sa.select(sa.func.count()).where(snapshot_chunks.c.size == header.size)
        ).scalar_one()
    assert chunks > 3
    again = open_service(db_url).ledger
    assert again.snapshot().parts == log.snapshot().parts


def test_snapshots_are_stored_compressed_and_older_plain_ones_still_load(
    open_service, db_url: str, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    log = open_service(db_url).ledger
    grow(log, 40)
    compressed = take(log)
    with log.store.engine.connect() as conn:
        stored = conn.execute(sa.select(snapshots.snapshots.c.bytes)).scalar_one()
    assert stored < len(pickle.dumps(log.snapshot(), protocol=pickle.HIGHEST_PROTOCOL)) / 2
    # a snapshot stored before compression (the pickle as it is) loads as before
    grow(log, 3)
    monkeypatch.setattr(snapshots.zlib, "compress", lambda data, level: data)
    plain = take(log)
    assert plain.size > compressed.size
    grow(log, 2, "tail")
    again = open_service(db_url).ledger
    starts = replayed_from(again, monkeypatch)
    assert again.snapshot().parts == log.snapshot().parts
    assert starts == [plain.size]


def test_the_keeper_snapshots_as_the_log_grows_and_on_stop(open_service, db_url: str) -> None:  # type: ignore[no-untyped-def]
    log = open_service(db_url).ledger
    keeper = log.start_snapshots(every=5, interval=3600)
    grow(log, 6)
    assert keeper.take() is not None  # what the background tick does once 5 entries are new
    grow(log, 2)
    keeper.stop()  # a clean stop snapshots what is there
    assert headers(log.store.engine)[-1].size == log.snapshot().size


def test_the_audit_checks_each_snapshot_it_meets(open_service, db_url: str) -> None:  # type: ignore[no-untyped-def]
    log = open_service(db_url).ledger
    grow(log, 10)
    good = take(log)
    grow(log, 3)
    entries = list(log.store.iter_entries())
    checkpoint = log.store.latest_checkpoint()
    assert checkpoint is not None
    genesis_key = log.state.registry.log_epochs[0].verifier
    full = log.store.disclosures
    report = verify_log(
        entries, checkpoint[1], genesis_key, jobs=1, snapshots=[good], disclosures=full
    )
    assert report.ok and report.snapshots == [good.size]

    # A snapshot whose money summary is not the replay's fails the audit, naming its size,
    # even though it is properly signed (a bug in the fold that made it, say).
    signer = log.log_signer_for(good.size)
    wrong_summary = "0" * 64
    message = SnapshotHeader(good.size, good.root, good.state_sha256, wrong_summary, "", b"")
    bad = SnapshotHeader(
        good.size,
        good.root,
        good.state_sha256,
        wrong_summary,
        signer.key_id,
        signer.sign(message.message(log.origin)),
    )
    report = verify_log(
        entries, checkpoint[1], genesis_key, jobs=1, snapshots=[bad], disclosures=full
    )
    assert not report.ok
    assert report.first is not None and report.first.check == "snapshot"
    assert f"size {good.size}" in report.first.message


def test_a_snapshot_without_every_part_of_the_fold_is_replayed_instead(
    open_service, db_url: str, monkeypatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    """A snapshot taken before the fold kept a part (the reports' tallies: a claim paid,
    no tallies; ledger.snapshot.holds_every_part) would answer reports from nothing."""
    first = open_service(db_url).ledger
    grow(first, 10)
    header = take(first)
    monkeypatch.setattr(snapshots, "holds_every_part", lambda state: False)
    again = open_service(db_url).ledger
    starts = replayed_from(again, monkeypatch)
    with caplog.at_level(logging.WARNING, "suanli.snapshots"):
        assert again.snapshot().size == header.size
    assert starts == [0]
    assert "before the fold kept" in caplog.text


def test_the_state_is_pickled_in_a_child_process(open_service, db_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The serving process only reads the child's bytes from a pipe; what it stores loads as
    the state it snapshotted."""
    log = open_service(db_url).ledger
    grow(log, 30)
    children: list[int] = []
    fork = os.fork
    monkeypatch.setattr(snapshots.os, "fork", lambda: children.append(fork()) or children[-1])
    header = take(log)
    assert len(children) == 1 and children[0] > 0  # in this process, the child's pid
    grow(log, 2, "tail")  # the parent's connections still work after the child exited
    again = open_service(db_url).ledger
    starts = replayed_from(again, monkeypatch)
    assert again.snapshot().parts == log.snapshot().parts
    assert starts == [header.size]


def test_a_child_that_cannot_pickle_fails_the_snapshot_not_the_service(
    open_service, db_url: str
) -> None:  # type: ignore[no-untyped-def]
    log = open_service(db_url).ledger
    grow(log, 5)
    state = log.snapshot()
    unpicklable = state.draft()
    unpicklable.parts["broken"] = lambda: None  # pickle refuses a lambda
    unpicklable = unpicklable.seal(state.size, state.time)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="child process failed"):
        save_snapshot(log.store.engine, log.origin, unpicklable, log.log_signer_for(state.size))
    assert headers(log.store.engine) == []
    grow(log, 1, "after")  # the database connections the parent holds are intact
    assert log.snapshot().size == state.size + 1
