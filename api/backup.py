"""Backup and restore of the ledger's database, each checked by a full audit of the copy.

A backup is a directory::

    manifest.json   format, backend, the log's size and origin, the genesis log key
    checkpoint      the latest signed checkpoint when the backup began: the pin
    ledger.db       SQLite: a consistent copy made with SQLite's online backup API
    ledger.pgdump   PostgreSQL: ``pg_dump --format=custom``

The checkpoint is read before the copy is made, so the copy holds at least that tree;
the audit of the copy (every entry, signature, Merkle node, stored checkpoint and rule,
``suanli audit verify`` with the disclosures) must find that checkpoint consistent with
its own. A PostgreSQL dump is audited by restoring it into a scratch database on the same
server (dropped afterwards). The service's private keys are not in a backup: they are
backed up once, apart, offline (docs/operations.md).

Passwords never reach a command line: ``pg_dump`` and ``pg_restore`` get the connection
in ``PG*`` environment variables.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from api.errors import ToolError
from ledger.audit import Report
from ledger.keys import Verifier
from ledger.timeutil import format_time

FORMAT = "suanli-backup/v1"
MANIFEST, CHECKPOINT = "manifest.json", "checkpoint"
FILES = {"sqlite": "ledger.db", "postgresql": "ledger.pgdump"}


class BackupError(ToolError):
    """A backup or restore that cannot be made, or whose copy does not verify."""

    exit_code = 2  # docs/cli.md: what was asked cannot be done as given


@dataclass(frozen=True)
class Verified:
    """The audit of a copy: its size and the report."""

    size: int
    report: Report

    @property
    def ok(self) -> bool:
        return self.report.ok


def backend_of(url: str) -> str:
    name = make_url(url).get_backend_name()
    if name not in FILES:
        raise BackupError(f"cannot back up a {name} database (SQLite or PostgreSQL only)")
    return name


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database:
        raise BackupError(f"{url}: no SQLite file")
    return Path(database)


def _pg_env(url: URL) -> dict[str, str]:
    """libpq's environment for ``url``: the password travels here, not in argv."""
    env = dict(os.environ)
    for var, value in (
        ("PGHOST", url.host),
        ("PGPORT", url.port),
        ("PGUSER", url.username),
        ("PGPASSWORD", url.password),
        ("PGDATABASE", url.database),
    ):
        if value is not None:
            env[var] = str(value)
    return env


def _run(args: list[str], env: dict[str, str]) -> None:
    tool = shutil.which(args[0])
    if tool is None:
        raise BackupError(f"{args[0]} is not installed (the PostgreSQL client tools are needed)")
    # the arguments are this module's own and paths; nothing goes through a shell
    done = subprocess.run(  # noqa: S603
        [tool, *args[1:]], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BackupError(f"{args[0]} failed: {done.stderr.strip()}")


def _copy_sqlite(source: Path, target: Path) -> None:
    """SQLite's online backup API: a consistent copy while writers carry on."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _genesis_vkey(url: str) -> tuple[str, str, int]:
    """The log's genesis key, its latest checkpoint note and its size."""
    from ledger.store.db import make_engine
    from ledger.store.log import LogStore

    engine = make_engine(url)
    try:
        store = LogStore(engine)
        latest = store.latest_checkpoint()
        if latest is None:
            raise BackupError("the database holds no log yet: nothing to back up")
        (genesis,) = store.read(0, 1)
        return str(genesis.body["log_key"]), latest[1], latest[0]
    finally:
        engine.dispose()


def audit_copy(url: str, key: Verifier, pinned: str) -> Verified:
    """The full audit of the database at ``url`` (as ``suanli audit verify``), its latest
    checkpoint checked consistent with the ``pinned`` one."""
    from api.cli.audit import audit_source
    from api.cli.log_sources import DbSource

    with DbSource(url) as src:
        note = src.checkpoint()
        report = audit_source(src, note, key, pinned=pinned, jobs=1)
    return Verified(report.entries, report)


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database beside ``url``'s, dropped afterwards."""
    parsed = make_url(url)
    name = f"{parsed.database}_check_{secrets.token_hex(4)}"
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield parsed.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _restore_into(backend: str, backup: Path, url: str) -> None:
    if backend == "sqlite":
        target = _sqlite_path(url)
        if target.exists():
            raise BackupError(f"{target} exists: restore into a new file")
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_sqlite(backup / FILES["sqlite"], target)
        return
    parsed = make_url(url)
    _ensure_empty_pg(url)
    args = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error"]
    _run([*args, "--dbname", str(parsed.database), str(backup / FILES["postgresql"])],
         _pg_env(parsed))  # fmt: skip


def _ensure_empty_pg(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                text("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'")
            ).scalar_one()
    finally:
        engine.dispose()
    if tables:
        raise BackupError(
            f"{make_url(url).render_as_string(hide_password=True)} is not empty: "
            "restore into a new, empty database"
        )


def backup(url: str, out: Path, key: Verifier | None = None) -> Verified:
    """Copy the database at ``url`` into the new directory ``out`` and audit the copy."""
    backend = backend_of(url)
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty: a backup goes into a new directory")
    genesis, note, size = _genesis_vkey(url)  # the pin, read before the copy
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    copy = out / FILES[backend]
    if backend == "sqlite":
        _copy_sqlite(_sqlite_path(url), copy)
    else:
        parsed = make_url(url)
        _run(["pg_dump", "--format=custom", "--file", str(copy)], _pg_env(parsed))
    copy.chmod(0o600)  # it holds the disclosures: as private as the database
    (out / CHECKPOINT).write_text(note, encoding="utf-8")
    manifest = {
        "format": FORMAT,
        "backend": backend,
        "file": copy.name,
        "size": size,
        "log_key": genesis,
        "made_at": format_time(datetime.now(UTC)),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    trusted = key or Verifier.parse(genesis)
    if backend == "sqlite":
        verified = audit_copy(f"sqlite:///{copy.resolve()}", trusted, note)
    else:
        with scratch_database(url) as scratch:
            _restore_into("postgresql", out, scratch)
            verified = audit_copy(scratch, trusted, note)
    if not verified.ok:
        raise BackupError(
            f"the copy in {out} does not verify: " + "; ".join(verified.report.verdict())
        )
    return verified


def read_manifest(backup_dir: Path) -> dict[str, object]:
    path = backup_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path}: not a suanli backup ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT}")
    return dict(manifest)


def restore(backup_dir: Path, url: str, key: Verifier | None = None) -> Verified:
    """Restore ``backup_dir`` into the new database ``url`` and audit it against the
    backup's checkpoint."""
    manifest = read_manifest(backup_dir)
    backend = backend_of(url)
    if manifest["backend"] != backend:
        raise BackupError(f"the backup is of a {manifest['backend']} database, not {backend}")
    note = (backup_dir / CHECKPOINT).read_text(encoding="utf-8")
    _restore_into(backend, backup_dir, url)
    verified = audit_copy(url, key or Verifier.parse(str(manifest["log_key"])), note)
    if not verified.ok:
        raise BackupError(
            "the restored database does not verify: " + "; ".join(verified.report.verdict())
        )
    return verified
