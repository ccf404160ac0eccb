"""The service's private keys in the data directory, created on first run.

Each key file holds one C2SP signer key string and is readable by its owner only. These
are development keys: a production deployment puts its own key files there (or mounts
them), and the log key's verifier string is what auditors pin.
"""

from __future__ import annotations

import os
from pathlib import Path

from ledger.keys import Signer
from ledger.store.ledger import ServiceKeys

CENTRES = {"nscc-cd": "国家超算成都中心", "cd-icc": "成都智算中心"}


def _load_or_create(path: Path, name: str) -> Signer:
    if path.exists():
        return Signer.parse(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = Signer.generate(name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(signer.skey + "\n")
    return signer


def load_service_keys(data_dir: Path, origin: str) -> ServiceKeys:
    keys = data_dir / "keys"
    return ServiceKeys(
        log=_load_or_create(keys / "log.key", origin),
        issuer=_load_or_create(keys / "issuer.key", "suanli-issuer"),
        service=_load_or_create(keys / "service.key", "suanli-service"),
    )


def centre_key_path(data_dir: Path, centre: str) -> Path:
    return data_dir / "centres" / centre / "signing.key"


def load_centre_keys(data_dir: Path) -> dict[str, Signer]:
    """Development signing keys for the two centres (their agents use them)."""
    return {c: _load_or_create(centre_key_path(data_dir, c), c) for c in CENTRES}
