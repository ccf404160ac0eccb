"""``suanli keys``: the service's keys."""

from __future__ import annotations

import typer

from api.cli.options import DataDir, Db, command_group, open_existing, settings_from

app = command_group("keys", "The service's keys.")


@app.command("rotate-log")
def keys_rotate_log(data_dir: DataDir = None, db: Db = None) -> None:
    """Hand the log over to a new key (recorded in the log, signed by old and new keys).

    Earlier checkpoints stay verifiable with the old key; auditors keep pinning the
    genesis key and follow the rotation in the log."""
    from api.keystore import install_log_key, stage_log_key
    from ledger.usecases.commands.log import rotate_log_key

    settings = settings_from(data_dir, db)
    with open_existing(settings) as service:
        old = service.ledger.log_signer_for(service.ledger.refresh().size)
        new = stage_log_key(settings.data_dir, settings.origin)
        # the store signs the rotation's checkpoint with the new key: hold it first
        service.ledger.keys = service.keys.with_log_key(new)
        done = service.write(rotate_log_key, new)
        install_log_key(settings.data_dir, new)
    typer.echo(f"log key rotated at index {done.index}: {old.key_id} -> {new.key_id}")
    typer.echo(f"new verifier key: {new.verifier.vkey}")
