"""``suanli backup``, ``suanli restore`` and ``suanli db upgrade|status``: the operator's
care of the database (``api.backup``, ``ledger.store.db``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.backup import BackupError
from api.cli.options import (
    DataDir,
    Db,
    command_group,
    require_existing,
    settings_from,
    tool_errors,
)
from ledger.keys import Verifier

db_app = command_group("db", "The database's schema: status and upgrade.")
tiles_app = command_group("tiles", "The log's tiles as static files.")

PinnedKey = Annotated[
    str | None,
    typer.Option(
        "--key",
        help="the log's genesis verifier key, as pinned (default: the one the backup recorded)",
    ),
]


def _key(vkey: str | None) -> Verifier | None:
    return None if vkey is None else Verifier.parse(vkey.strip())


def backup(
    out: Annotated[Path, typer.Argument(help="a new directory for the backup")],
    key: PinnedKey = None,
    data_dir: DataDir = None,
    db: Db = None,
) -> None:
    """Copy the database (SQLite online backup API; pg_dump for PostgreSQL) with its
    latest checkpoint, then audit the copy in full against that checkpoint."""
    from api.backup import backup as make_backup

    with tool_errors():
        settings = require_existing(settings_from(data_dir, db))
        done = make_backup(settings.database_url(), out, _key(key))
    typer.echo(f"backup:   {out} ({done.size} entries)")
    typer.echo(f"verified: {'; '.join(done.report.verdict())}")


def restore(
    backup_dir: Annotated[Path, typer.Argument(help="a directory made by suanli backup")],
    key: PinnedKey = None,
    data_dir: DataDir = None,
    db: Db = None,
) -> None:
    """Restore a backup into a new database (a new SQLite file, or an empty PostgreSQL
    database), then audit it in full against the backup's checkpoint."""
    from api.backup import restore as restore_backup

    with tool_errors():
        settings = settings_from(data_dir, db)
        done = restore_backup(backup_dir, settings.database_url(), _key(key))
    typer.echo(f"restored: {settings.database_shown()} ({done.size} entries)")
    typer.echo(f"verified: {'; '.join(done.report.verdict())}")


@db_app.command("status")
def status(data_dir: DataDir = None, db: Db = None) -> None:
    """The schema's revision, the newest this version knows, and what is pending (exit
    status 1 if anything is)."""
    from ledger.store.db import make_engine, schema_status

    settings = require_existing(settings_from(data_dir, db))
    engine = make_engine(settings.database_url())
    try:
        found = schema_status(engine)
    finally:
        engine.dispose()
    typer.echo(f"database: {settings.database_shown()}")
    typer.echo(f"schema:   {found.current or 'empty'} (this version: {found.head})")
    typer.echo(f"pending:  {', '.join(found.pending) or 'none'}")
    if found.pending:
        raise typer.Exit(1)


@db_app.command("upgrade")
def upgrade(data_dir: DataDir = None, db: Db = None) -> None:
    """Apply the pending migrations (take a backup first: suanli backup)."""
    from ledger.store.db import make_engine, migrate, schema_status

    settings = require_existing(settings_from(data_dir, db))
    engine = make_engine(settings.database_url())
    try:
        before = schema_status(engine)
        migrate(engine)
        after = schema_status(engine)
    finally:
        engine.dispose()
    applied = ", ".join(before.pending) or "nothing (already current)"
    typer.echo(f"upgraded: {before.current or 'empty'} -> {after.current}; applied {applied}")


@tiles_app.command("export")
def tiles_export(
    directory: Annotated[Path, typer.Argument(help="the directory a static web server serves")],
    data_dir: DataDir = None,
    db: Db = None,
) -> None:
    """Write the log's public tiles, entry bundles, checkpoints and key into DIRECTORY
    (C2SP tlog-tiles paths; no disclosures), from the standby if one is set (--read-db),
    keeping the full tiles already there: run it again (from cron or a timer) to publish
    what is new. Any static web server or object store then serves the log to auditors."""
    from api.cli.log_sources import DbSource, SourceError
    from api.cli.log_sources import export as write_export

    with tool_errors():
        settings = require_existing(settings_from(data_dir, db))
        try:
            with DbSource(settings.read_db or settings.database_url()) as source:
                size = write_export(source, directory, disclosures=False, keep_full=True)
        except SourceError as error:
            raise BackupError(str(error)) from error
    typer.echo(f"exported {size} entries to {directory}")
