"""A centre's credentials, in one directory: its client certificate and key for mutual TLS,
the CA that signed the ledger's server certificate, and the Ed25519 key that signs its
claims::

    <centre dir>/client.pem, client.key, ca.pem, signing.key

``suanli init --dev`` makes development ones for each centre in ``<data dir>/centres/<id>/``
(:func:`centre_dir`); a production centre keeps its own wherever it likes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adapters.errors import AgentError


def centre_dir(data_dir: Path, centre: str) -> Path:
    """Where a development data dir keeps ``centre``'s credentials."""
    return data_dir / "centres" / centre


@dataclass(frozen=True)
class CentreFiles:
    """A centre's credentials: its client certificate and key, the CA, its signing key."""

    directory: Path

    @classmethod
    def in_data_dir(cls, data_dir: Path, centre: str) -> CentreFiles:
        return cls(centre_dir(data_dir, centre))

    @property
    def cert(self) -> Path:
        return self.directory / "client.pem"

    @property
    def key(self) -> Path:
        return self.directory / "client.key"

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def signing_key(self) -> Path:
        return self.directory / "signing.key"

    def check(self) -> None:
        missing = [
            p.name for p in (self.cert, self.key, self.ca, self.signing_key) if not p.exists()
        ]
        if missing:
            raise AgentError(
                f"centre directory {self.directory} lacks {', '.join(missing)}"
                " (suanli init --dev makes development ones in <data dir>/centres/<id>/)"
            )
