"""`suanli keys rotate-log`: a new log key takes over at a recorded size; earlier
checkpoints stay verifiable with the old key, and other processes follow the rotation."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from api.cli import app
from ledger.audit import verify_log
from ledger.checkpoint import open_checkpoint
from ledger.errors import VerificationError


def test_rotation_by_the_cli_is_followed_everywhere(open_service, db_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    first = open_service(db_url, data)
    other = open_service(db_url, data)  # a second process on the same data dir and database
    old_key = first.ledger.keys.log.verifier
    size_before = first.ledger.store.size()

    result = CliRunner().invoke(
        app, ["keys", "rotate-log", "--data-dir", str(data), "--db", db_url]
    )
    assert result.exit_code == 0, result.output
    assert f"at index {size_before}:" in result.output

    # the other process holds only the old key; it learns the new one when it next writes
    with other.ledger.transaction() as tx:
        tx.append(tx.sign("log.note", {"text": "after rotation"}, other.ledger.keys.service))
    new_key = other.ledger.keys.log.verifier
    assert new_key.key_id != old_key.key_id
    assert (data / "keys" / f"log-{old_key.hash:08x}.key").exists()

    store = other.ledger.store
    for size, note in store.checkpoints():
        key = old_key if size <= size_before else new_key
        assert open_checkpoint(note, key).size == size
        wrong = new_key if key is old_key else old_key
        try:
            open_checkpoint(note, wrong)
        except VerificationError:
            pass
        else:  # pragma: no cover - the assertion names the failure
            raise AssertionError(f"checkpoint {size} verified with the wrong key")

    size, note = store.latest_checkpoint()  # type: ignore[misc]
    report = verify_log(store.iter_entries(), note, old_key, jobs=1)
    assert not report.failures, report.failures
    assert report.entries == size
    assert [k for _, k in report.log_keys] == [old_key.key_id, new_key.key_id]
