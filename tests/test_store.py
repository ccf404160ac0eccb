"""The storage contract: the same suite on SQLite and PostgreSQL (the ``db_url`` fixture)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from ledger import merkle
from ledger.checkpoint import open_checkpoint
from ledger.entry import Entry
from ledger.errors import Denied, InvalidInput
from ledger.keys import Signer
from ledger.store.unit_of_work import FoldedLog


@pytest.fixture
def fresh(open_service):  # type: ignore[no-untyped-def]
    return lambda _tmp, url: open_service(url).ledger


def register_key(ledger: FoldedLog, name: str) -> int:
    with ledger.transaction() as tx:
        body = {"vkey": Signer.generate(name).verifier.vkey, "roles": ["service"]}
        return tx.append(tx.sign("key.register", body, ledger.keys.log)).index


def test_fresh_service_has_a_verifiable_log(fresh, tmp_path: Path, db_url: str) -> None:
    ledger = fresh(tmp_path, db_url)
    size = ledger.store.size()
    assert size >= 5  # genesis, issuer and service keys, two centre keys
    entries = ledger.store.entries(0, size)
    first = Entry.from_bytes(entries[0])
    assert first.kind == "log.genesis"
    latest = ledger.store.latest_checkpoint()
    assert latest is not None
    cp = open_checkpoint(latest[1], ledger.keys.log.verifier, origin=ledger.origin)
    assert cp.size == size
    assert cp.root == merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in entries])


def test_reopening_does_not_write_genesis_again(fresh, tmp_path: Path, db_url: str) -> None:
    size = fresh(tmp_path, db_url).store.size()
    assert fresh(tmp_path, db_url).store.size() == size


def test_roots_and_proofs_match_a_reference_tree(fresh, tmp_path: Path, db_url: str) -> None:
    ledger = fresh(tmp_path, db_url)
    for i in range(40):
        register_key(ledger, f"k{i}")
    size = ledger.store.size()
    leaves = [merkle.leaf_hash(e) for e in ledger.store.entries(0, size)]
    read = ledger.store.node_reader()
    for n in (1, 2, 3, 7, 8, 17, 32, size):
        root = merkle.root_at(n, read)
        assert root == merkle.root_from_leaf_hashes(leaves[:n])
        for i in range(n):
            merkle.verify_inclusion(leaves[i], i, n, merkle.inclusion_proof(i, n, read), root)
    for old in range(1, size):
        proof = merkle.consistency_proof(old, size, read)
        merkle.verify_consistency(
            old, size, proof, merkle.root_at(old, read), merkle.root_at(size, read)
        )
    # every stored checkpoint verifies and matches the tree at its size
    for n, note in ledger.store.checkpoints():
        assert open_checkpoint(note, ledger.keys.log.verifier).root == merkle.root_at(n, read)


def test_refused_entry_writes_nothing(fresh, tmp_path: Path, db_url: str) -> None:
    ledger = fresh(tmp_path, db_url)
    before = (ledger.store.size(), ledger.store.latest_checkpoint())
    stranger = Signer.generate("stranger")
    with pytest.raises(Denied), ledger.transaction() as tx:
        body = {"vkey": Signer.generate("x").verifier.vkey, "roles": ["service"]}
        tx.append(tx.sign("key.register", body, stranger))
    with pytest.raises(InvalidInput), ledger.transaction() as tx:
        tx.append(tx.sign("no.such.kind", {}, ledger.keys.log))
    assert (ledger.store.size(), ledger.store.latest_checkpoint()) == before
    assert ledger.refresh().size == before[0]


def test_failed_transaction_rolls_back_entries_and_state(
    fresh, tmp_path: Path, db_url: str
) -> None:
    ledger = fresh(tmp_path, db_url)
    size = ledger.store.size()
    with pytest.raises(RuntimeError), ledger.transaction() as tx:
        tx.append(
            tx.sign(
                "key.register",
                {"vkey": Signer.generate("a").verifier.vkey, "roles": ["service"]},
                ledger.keys.log,
            )
        )
        raise RuntimeError("crash before commit")
    assert ledger.store.size() == size
    assert ledger.state.size == size
    assert register_key(ledger, "b") == size


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE log_entries SET data = data",
        "DELETE FROM log_entries",
        "DELETE FROM log_nodes",
        "UPDATE checkpoints SET note = 'x'",
    ],
)
def test_log_tables_refuse_update_and_delete(
    fresh, tmp_path: Path, db_url: str, statement: str
) -> None:
    ledger = fresh(tmp_path, db_url)
    with (
        pytest.raises(sa.exc.DatabaseError, match="append-only"),
        ledger.store.engine.begin() as conn,
    ):
        conn.exec_driver_sql(statement)


@pytest.mark.postgres
@pytest.mark.parametrize("table", ["log_entries", "log_nodes", "checkpoints"])
def test_postgres_refuses_truncate(fresh, tmp_path: Path, pg_url: str, table: str) -> None:
    ledger = fresh(tmp_path, pg_url)
    with (
        pytest.raises(sa.exc.DatabaseError, match="append-only"),
        ledger.store.engine.begin() as conn,
    ):
        conn.exec_driver_sql(f"TRUNCATE {table}")


def test_concurrent_writers_commit_in_index_order(fresh, tmp_path: Path, db_url: str) -> None:
    """Writers in separate ledgers (as separate processes would be) append at once while a
    reader polls: the committed indices it sees are always a gap-free prefix, so index order
    is commit order, and every writer's in-memory fold catches up with the others."""
    base = fresh(tmp_path, db_url).refresh()
    base_size, base_keys = base.size, len(base.registry.keys)
    writers = [fresh(tmp_path, db_url) for _ in range(4)]
    reader = writers[0].store
    per_writer = 15
    errors: list[BaseException] = []
    done = threading.Event()
    gaps: list[tuple[int, int]] = []

    def write(ledger: FoldedLog, w: int) -> None:
        try:
            for i in range(per_writer):
                register_key(ledger, f"w{w}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def poll() -> None:
        while not done.is_set():
            with reader.engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT count(*), coalesce(max(idx), -1) FROM log_entries"
                ).one()
            if rows[0] != rows[1] + 1:
                gaps.append((rows[0], rows[1]))

    threads = [threading.Thread(target=write, args=(led, w)) for w, led in enumerate(writers)]
    poller = threading.Thread(target=poll)
    poller.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    poller.join()
    assert not errors, errors
    assert not gaps
    size = reader.size()
    assert size == base_size + 4 * per_writer
    sizes = [s for s, _ in reader.checkpoints()]
    assert sizes == sorted(sizes) and sizes[-1] == size
    for ledger in writers:
        assert ledger.refresh().size == size
        # one new key per entry: none lost, none doubled
        assert len(ledger.state.registry.keys) == base_keys + 4 * per_writer
    # Each writer keeps the tree's right edge from its own last commit and reuses it only
    # when nobody appended since: every checkpoint is the reference tree's root at its size.
    leaves = [merkle.leaf_hash(e) for e in reader.entries(0, size)]
    read = reader.node_reader()
    for n, note in reader.checkpoints():
        root = open_checkpoint(note, writers[0].keys.log.verifier).root
        assert root == merkle.root_from_leaf_hashes(leaves[:n]) == merkle.root_at(n, read)


def test_a_forged_signature_is_refused_and_writes_nothing(
    fresh, tmp_path: Path, db_url: str
) -> None:
    import dataclasses

    from ledger.entry import Signature

    ledger = fresh(tmp_path, db_url)
    size = ledger.store.size()
    good = Entry("log.note", "2026-01-01T00:00:00.000000Z", {"text": "x"}).signed(
        ledger.keys.service
    )
    forged = dataclasses.replace(good, sigs=(Signature(good.sigs[0].key, bytes(64)),))
    with pytest.raises(Denied, match="does not verify") as refused, ledger.transaction() as tx:
        tx.append(forged)
    assert refused.value.reason == "BAD_SIGNATURE"
    assert ledger.store.size() == size


def test_a_missing_row_stops_the_replay(fresh, tmp_path: Path, db_url: str) -> None:
    from ledger.errors import LogCorrupt

    ledger = fresh(tmp_path, db_url)
    with ledger.store.engine.begin() as conn:  # an attacker with the database's keys
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE log_entries DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER log_entries_no_delete")
        conn.exec_driver_sql("DELETE FROM log_entries WHERE idx = 3")
    with pytest.raises(LogCorrupt, match="entry 3 is missing"):
        fresh(tmp_path, db_url).refresh()


@pytest.mark.postgres
def test_a_read_beside_a_commit_gets_each_entry_with_its_disclosures(
    open_service, pg_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL each statement sees the commits made before it: a writer committing
    between the reader's two statements (entries, disclosures) must not leave an entry
    read without its disclosures (a restarting server then refused its own log)."""
    from grpc_fixtures import START, ManualClock, centre_write, claim_body, issue_voucher, usage_for

    from ledger.store.db import make_engine
    from ledger.store.log import LogStore

    writer = open_service(pg_url, tmp_path / "writer", clock=ManualClock(START))
    voucher = issue_voucher(writer, "industry")
    reader = LogStore(make_engine(pg_url))
    start = reader.size()
    sneaked: list[int] = []

    def commit_in_between(*_: object) -> None:
        if not sneaked:  # once, right after the reader's first statement
            sneaked.append(1)
            usage = usage_for(writer.ledger, "nscc-cd", 10_000, "between")
            centre_write(writer, "claim", claim_body(usage, voucher, 10_000))

    sa.event.listen(reader.engine, "after_cursor_execute", commit_in_between)
    try:
        read = reader.read(start, start + 10)
    finally:
        sa.event.remove(reader.engine, "after_cursor_execute", commit_in_between)
        reader.engine.dispose()
    assert sneaked
    assert all(entry.disclosures for entry in read if entry.kind == "claim")
    engine = make_engine(pg_url)
    try:
        again = LogStore(engine).read(start, start + 10)
    finally:
        engine.dispose()
    assert [e.kind for e in again] == ["claim"] and again[0].disclosures


def test_the_rows_staged_for_sqlite_name_each_column_of_their_table() -> None:
    from ledger.store.log import _DISCLOSURE, _ENTRY, _NODE

    for how in (_ENTRY, _NODE, _DISCLOSURE):
        assert tuple(c.name for c in how.table.columns) == how.columns
        names, marks = ", ".join(how.columns), ", ".join("?" * len(how.columns))
        assert how.sqlite == f"INSERT INTO {how.table.name} ({names}) VALUES ({marks})"
