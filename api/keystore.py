"""The service's private keys in the data directory, created on first run.

Each key file holds one C2SP signer key string and is readable by its owner only. These
are development keys: a production deployment puts its own key files there (or mounts
them), and the log key's verifier string is what auditors pin.
"""

from __future__ import annotations

import os
from pathlib import Path

from adapters.credentials import CentreFiles
from ledger.keys import ServiceKeys, Signer

CENTRES = {"nscc-cd": "国家超算成都中心", "cd-icc": "成都智算中心"}


def _load_or_create(path: Path, name: str) -> Signer:
    if path.exists():
        return Signer.parse(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = Signer.generate(name)
    _write_new(path, signer)
    return signer


def stage_log_key(data_dir: Path, origin: str) -> Signer:
    """Make the next log key and keep it as ``keys/log-<hex8>.key`` before it is used, so
    that whatever happens next the key the log names is on disk. ``install_log_key`` makes
    it ``log.key`` once the rotation is committed."""
    new = Signer.generate(origin)
    _write_new(data_dir / "keys" / f"log-{new.verifier.hash:08x}.key", new)
    return new


def install_log_key(data_dir: Path, new: Signer) -> None:
    keys = data_dir / "keys"
    old = Signer.parse((keys / "log.key").read_text().strip())
    archived = keys / f"log-{old.verifier.hash:08x}.key"
    if not archived.exists():
        _write_new(archived, old)
    (keys / f"log-{new.verifier.hash:08x}.key").replace(keys / "log.key")


def _write_new(path: Path, signer: Signer) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(signer.skey + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def load_service_keys(data_dir: Path, origin: str) -> ServiceKeys:
    keys = data_dir / "keys"
    log = _load_or_create(keys / "log.key", origin)
    others = (Signer.parse(p.read_text().strip()) for p in sorted(keys.glob("log-*.key")))
    return ServiceKeys(
        log=log,
        issuer=_load_or_create(keys / "issuer.key", "suanli-issuer"),
        service=_load_or_create(keys / "service.key", "suanli-service"),
        log_ring={s.key_id: s for s in (log, *others)},
    )


def centre_key_path(data_dir: Path, centre: str) -> Path:
    """A centre's development signing key, where its agent looks for it."""
    return CentreFiles.in_data_dir(data_dir, centre).signing_key


def load_centre_keys(data_dir: Path) -> dict[str, Signer]:
    """Development signing keys for the two centres (their agents use them)."""
    return {c: _load_or_create(centre_key_path(data_dir, c), c) for c in CENTRES}
