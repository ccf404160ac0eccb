"""Backup, restore and schema upgrades, on SQLite and PostgreSQL: a restore drill (a log
with vouchers and claims backed up, restored into a new database, audited in full against
the backup's checkpoint, then written to again); a tampered copy fails its audit; a
restore never overwrites; a database behind this version's schema is refused until
``suanli db upgrade`` or ``--migrate``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy
from grpc_fixtures import START, ManualClock, centre_write, claim_body, issue_voucher, usage_for
from pg import throwaway_database
from typer.testing import CliRunner

from api.bootstrap import PendingMigrations, Service
from api.cli.app import app
from ledger.store.db import make_engine, migrate, schema_status
from ledger.usecases.commands.log import write_note

runner = CliRunner()


def suanli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def a_busy_log(service: Service) -> int:
    """Vouchers and claims (with concealed members and disclosures): the log's size."""
    for n in range(3):
        voucher = issue_voucher(service)
        usage = usage_for(service.ledger, "nscc-cd", 120_000, f"job-{n}")
        centre_write(service, "claim", claim_body(usage, voucher, 120_000))
    return service.ledger.store.size()


@pytest.fixture
def new_db_url(db_url: str, tmp_path: Path) -> Callable[[], str]:
    """Another fresh database on the same backend as ``db_url``."""
    made: list[object] = []

    def make() -> str:
        if db_url.startswith("sqlite"):
            return f"sqlite:///{tmp_path / f'restored-{len(made)}.db'}"
        context = throwaway_database()
        made.append(context)
        return context.__enter__()  # type: ignore[attr-defined,no-any-return]

    yield make  # type: ignore[misc]
    for context in made:
        context.__exit__(None, None, None)  # type: ignore[attr-defined]


def test_restore_drill(
    db_url: str, new_db_url: Callable[[], str], open_service: Callable[..., Service],
    tmp_path: Path,
) -> None:  # fmt: skip
    data = tmp_path / "data"
    service = open_service(db_url, data, clock=ManualClock(START))
    size = a_busy_log(service)
    root = service.ledger.store.latest_checkpoint()
    vkey = service.keys.log.verifier.vkey

    code, out = suanli("backup", str(tmp_path / "bk"), "--key", vkey, "--db", db_url,
                       "--data-dir", str(data))  # fmt: skip
    assert code == 0, out
    assert f"({size} entries)" in out and "pinned checkpoint of size" in out and "OK" in out
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    assert (manifest["size"], manifest["log_key"]) == (size, vkey)

    service.write(write_note, "after the backup")  # the live log moves on

    target = new_db_url()
    code, out = suanli("restore", str(tmp_path / "bk"), "--key", vkey, "--db", target,
                       "--data-dir", str(data))  # fmt: skip
    assert code == 0, out
    assert f"({size} entries)" in out and "full audit" in out
    restored = open_service(target, data, clock=ManualClock(START))
    assert restored.ledger.store.size() == size
    assert restored.ledger.store.latest_checkpoint() == root
    restored.write(write_note, "the restored service writes on")  # with the same keys
    assert restored.ledger.store.size() == size + 1


def test_a_restore_never_overwrites(
    db_url: str, open_service: Callable[..., Service], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    open_service(db_url, data, clock=ManualClock(START))
    assert suanli("backup", str(tmp_path / "bk"), "--db", db_url, "--data-dir", str(data))[0] == 0
    code, out = suanli("restore", str(tmp_path / "bk"), "--db", db_url, "--data-dir", str(data))
    assert code == 2
    assert "restore into a new" in out
    code, out = suanli("backup", str(tmp_path / "bk"), "--db", db_url, "--data-dir", str(data))
    assert code == 2 and "not empty" in out


def test_a_tampered_copy_fails_its_audit(
    open_service: Callable[..., Service], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    a_busy_log(open_service(url, data, clock=ManualClock(START)))
    assert suanli("backup", str(tmp_path / "bk"), "--db", url, "--data-dir", str(data))[0] == 0
    copy = sqlite3.connect(tmp_path / "bk" / "ledger.db")
    triggers = [r[0] for r in copy.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
    for name in triggers:
        copy.execute(f"DROP TRIGGER {name}")
    tamper = "CAST(replace(CAST(data AS TEXT), '120000', '120001') AS BLOB)"
    copy.execute(f"UPDATE log_entries SET data = {tamper} WHERE idx > 8")
    copy.commit()
    copy.close()
    target = tmp_path / "restored.db"
    code, out = suanli("restore", str(tmp_path / "bk"), "--db", f"sqlite:///{target}",
                       "--data-dir", str(data))  # fmt: skip
    assert code == 2, out
    assert "does not verify" in out and "FAIL" in out


def test_pending_migrations_refuse_until_upgraded(
    db_url: str, open_service: Callable[..., Service], tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    migrate(engine, "0004_snapshots")  # a database made by an older version
    head = schema_status(engine).head
    engine.dispose()
    data = tmp_path / "data"
    with pytest.raises(PendingMigrations, match="pending: 0005_disclosures"):
        open_service(db_url, data)
    code, out = suanli("serve", "--db", db_url, "--data-dir", str(data))
    assert code == 3 and "suanli db upgrade" in out
    code, out = suanli("db", "status", "--db", db_url, "--data-dir", str(data))
    assert code == 1 and "pending:  0005_disclosures" in out
    code, out = suanli("db", "upgrade", "--db", db_url, "--data-dir", str(data))
    assert code == 0 and f"0004_snapshots -> {head}; applied 0005_disclosures" in out
    code, out = suanli("db", "status", "--db", db_url, "--data-dir", str(data))
    assert code == 0 and "pending:  none" in out
    assert open_service(db_url, data).ledger.store.size() > 0


def test_disclosures_move_to_one_row_per_entry_and_back(
    db_url: str, open_service: Callable[..., Service], tmp_path: Path
) -> None:
    """0008 regroups a log's disclosures (five rows a claim) into one row per entry, and its
    downgrade splits them again: the same disclosures, by entry, either way; the upgraded
    database restarts to the same state."""
    from alembic import command

    from ledger.snapshot import summary_digest
    from ledger.store.db import _config

    service = open_service(db_url, tmp_path / "data", clock=ManualClock(START))
    a_busy_log(service)
    size = service.ledger.store.size()
    held = service.ledger.store.disclosures(0, size)
    assert sum(len(d) for d in held.values()) > len(held)  # entries with several disclosures
    state = service.ledger.snapshot()
    engine = make_engine(db_url)
    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0007_token_expiry")
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text("SELECT count(*) FROM disclosures")).scalar_one()
    assert rows == sum(len(d) for d in held.values())
    migrate(engine)
    engine.dispose()
    again = open_service(db_url, tmp_path / "data", clock=ManualClock(START))
    assert again.ledger.store.disclosures(0, size) == held
    assert summary_digest(again.ledger.snapshot()) == summary_digest(state)


def test_migrate_lets_the_service_upgrade(
    db_url: str, open_service: Callable[..., Service], tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    migrate(engine, "0003_projection")
    engine.dispose()
    service = open_service(db_url, tmp_path / "data", migrate=True)
    assert not schema_status(service.ledger.store.engine).pending
