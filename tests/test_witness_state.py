"""The witness's durable record (``ledger.store.witness_state``) and the service around it
(``api.witness.service``), on SQLite and PostgreSQL: compare-and-swap, reopening, file
permissions, and races between requests and between processes sharing one database
(modelled by separate stores, each with its own engine and connections)."""

from __future__ import annotations

import contextlib
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from witness_helpers import LOG_KEY, MemLog

from api.witness.service import (
    DB_FILE,
    KEY_FILE,
    WitnessService,
    load_or_create_key,
    open_witness,
    origin_hash,
)
from ledger.errors import InvalidInput, LedgerError
from ledger.merkle import EMPTY_ROOT
from ledger.store.witness_state import WitnessStateStore
from ledger.witness import (
    InconsistentCheckpoint,
    OldSizeConflict,
    WitnessState,
    format_add_checkpoint,
    logs_by_origin,
    require_cosignatures,
)

ORIGIN = LOG_KEY.name
A = WitnessState(5, b"a" * 32)
B = WitnessState(8, b"b" * 32)
C = WitnessState(8, b"c" * 32)


@pytest.fixture
def open_store(db_url: str) -> Iterator[Callable[[], WitnessStateStore]]:
    """Open as many stores on one database as a test wants (each like its own process)."""
    opened: list[WitnessStateStore] = []

    def open_() -> WitnessStateStore:
        opened.append(WitnessStateStore(db_url, "czj.example/witness+01234567"))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


def test_compare_and_swap(open_store: Callable[[], WitnessStateStore]) -> None:
    store = open_store()
    assert store.get(ORIGIN) is None
    assert store.compare_and_swap(ORIGIN, None, A, "note a")
    assert not store.compare_and_swap(ORIGIN, None, B, "note b")  # insert only if absent
    got = store.get(ORIGIN)
    assert got is not None
    assert (got.state, got.note) == (A, "note a")
    assert not store.compare_and_swap(ORIGIN, WitnessState(4, A.root), B, "x")  # size differs
    assert not store.compare_and_swap(ORIGIN, WitnessState(5, b"z" * 32), B, "x")  # root differs
    assert store.compare_and_swap(ORIGIN, A, B, "note b")
    assert store.compare_and_swap(ORIGIN, B, B, "note b again")  # same checkpoint, new note
    assert store.get(ORIGIN).note == "note b again"  # type: ignore[union-attr]
    assert store.get("other.example/log") is None
    assert store.origins() == [ORIGIN]


def test_record_survives_reopening_and_sizes_are_uint64(
    open_store: Callable[[], WitnessStateStore],
) -> None:
    big = WitnessState(2**64 - 1, EMPTY_ROOT)
    first = open_store()
    assert first.compare_and_swap(ORIGIN, None, big, "n")
    first.close()
    again = open_store()
    assert again.get(ORIGIN).state == big  # type: ignore[union-attr]
    assert again.compare_and_swap(ORIGIN, big, A, "n")


@pytest.mark.parametrize("expected", [None, A])
def test_concurrent_swaps_from_one_record_exactly_one_wins(
    open_store: Callable[[], WitnessStateStore], expected: WitnessState | None
) -> None:
    if expected is not None:
        assert open_store().compare_and_swap(ORIGIN, None, expected, "start")
    stores = [open_store() for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    won: list[int] = []

    def swap(i: int) -> None:
        barrier.wait()
        if stores[i].compare_and_swap(
            ORIGIN, expected, WitnessState(10 + i, b"%c" % i * 32), str(i)
        ):
            won.append(i)

    threads = [threading.Thread(target=swap, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert stores[0].get(ORIGIN).state.size == 10 + won[0]  # type: ignore[union-attr]


def test_sqlite_file_and_key_are_private(tmp_path: Path) -> None:
    data = tmp_path / "witness-data"
    service = open_witness(data, logs_by_origin([LOG_KEY.verifier]), name="w.example/w")
    try:
        log = MemLog().extend(3)
        service.add_checkpoint(format_add_checkpoint(0, [], log.checkpoint()))
    finally:
        service.close()
    for path in (data / KEY_FILE, data / DB_FILE, *data.glob(f"{DB_FILE}-*")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def test_key_is_created_once_and_keeps_its_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="--name"):
        load_or_create_key(tmp_path, None)
    signer, created = load_or_create_key(tmp_path, "czj.example/witness")
    assert created
    again, created = load_or_create_key(tmp_path, None)
    assert (again.verifier, created) == (signer.verifier, False)
    with pytest.raises(InvalidInput, match="cannot change"):
        load_or_create_key(tmp_path, "other.example/witness")


# --- the service: decide, then compare-and-swap --------------------------------------------------


@pytest.fixture
def open_service(tmp_path: Path, db_url: str) -> Iterator[Callable[..., WitnessService]]:
    opened: list[WitnessService] = []

    def open_(name: str = "czj.example/witness", data: str = "w1") -> WitnessService:
        service = open_witness(
            tmp_path / data, logs_by_origin([LOG_KEY.verifier]), name=name, db=db_url
        )
        opened.append(service)
        return service

    yield open_
    for service in opened:
        service.close()


def body(log: MemLog, old: int) -> bytes:
    return format_add_checkpoint(old, log.proof(old), log.checkpoint())


def test_service_keeps_its_refusal_after_a_restart(
    open_service: Callable[..., WitnessService],
) -> None:
    honest = MemLog().extend(6)
    fork = honest.fork(4).extend(2, "fork")
    service = open_service()
    service.add_checkpoint(body(honest, 0))
    service.close()
    restarted = open_service()  # same data dir and database: the key and the record
    with pytest.raises(InconsistentCheckpoint):
        restarted.add_checkpoint(body(fork, 6))
    with pytest.raises(OldSizeConflict) as exc:
        restarted.add_checkpoint(body(fork, 0))
    assert exc.value.latest_size == 6
    honest.extend(3)
    result = restarted.add_checkpoint(body(honest, 6))
    require_cosignatures(
        honest.checkpoint() + result.response(),
        [restarted.witness.cosigner],
        1,
        log_keys=[LOG_KEY.verifier],
    )
    assert restarted.latest_checkpoint(origin_hash(ORIGIN)) == result.note
    assert restarted.latest_checkpoint(origin_hash("other")) is None


def test_concurrent_forks_exactly_one_is_cosigned(
    open_service: Callable[..., WitnessService],
) -> None:
    """Six witness processes on one database, each asked to cosign one of six forks of
    the same log at once; the record has one history afterwards."""
    base = MemLog().extend(4)
    services = [open_service() for _ in range(6)]
    forks = [base.fork(4).extend(3, f"fork {i}") for i in range(6)]
    barrier = threading.Barrier(len(services))
    results: dict[int, object] = {}

    def submit(i: int) -> None:
        barrier.wait()
        try:
            results[i] = services[i].add_checkpoint(body(forks[i], 0))
        except LedgerError as exc:
            results[i] = exc

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(services))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in results.items() if not isinstance(r, LedgerError)]
    assert len(winners) == 1
    losers = [r for i, r in results.items() if i not in winners]
    # Every loser decided again against the winner's record: old size 0 is now stale.
    assert all(isinstance(r, OldSizeConflict) and r.latest_size == 7 for r in losers)
    recorded = services[0].store.get(ORIGIN)
    assert recorded is not None
    assert recorded.state == WitnessState(7, forks[winners[0]].root())


def test_concurrent_growth_never_rolls_back(open_service: Callable[..., WitnessService]) -> None:
    """The race the spec warns about: requests for sizes N and N+K at once must not leave
    the record at N after cosigning N+K."""
    log = MemLog().extend(4)
    first = open_service()
    first.add_checkpoint(body(log, 0))
    log.extend(6)
    sizes = [5, 6, 7, 8, 9, 10]
    services = [open_service() for _ in sizes]
    barrier = threading.Barrier(len(sizes))
    cosigned: list[int] = []

    def submit(i: int) -> None:
        barrier.wait()
        size = sizes[i]
        request = format_add_checkpoint(4, log.proof(4, size), log.checkpoint(size))
        with contextlib.suppress(OldSizeConflict):
            cosigned.append(services[i].add_checkpoint(request).state.size)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(sizes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cosigned) == 1  # all came from old size 4; the first to swap moved it on
    assert first.store.get(ORIGIN).state.size == cosigned[0]  # type: ignore[union-attr]


def test_two_witnesses_on_one_database_keep_their_own_records(
    open_service: Callable[..., WitnessService],
) -> None:
    w1 = open_service("czj.example/witness", "w1")
    log = MemLog().extend(2)
    w1.add_checkpoint(body(log, 0))
    w2 = open_service("sjj.example/witness", "w2")
    assert w2.store.get(ORIGIN) is None
    log.extend(3)
    assert w2.add_checkpoint(body(log, 0)).state.size == 5  # from 0: w2 never cosigned
    assert w1.add_checkpoint(body(log, 2)).state.size == 5
