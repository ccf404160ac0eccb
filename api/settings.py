"""The service's configuration, in one place: every setting is an environment variable
``SUANLI_<NAME>`` and most are also options of ``suanli serve``. docs/configuration.md lists
them (a test keeps the list and these fields the same). The centre side (``adapters/``)
ships separately and has its own, ``adapters.settings.CentreSettings``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUANLI_")

    data_dir: Path = Path("suanli-data")
    """Keys, development TLS certificates and the embedded SQLite database live here."""
    db: str | None = None
    """SQLAlchemy URL; default: SQLite in the data dir. Production: postgresql+psycopg://…"""
    http: str = "127.0.0.1:8080"
    """HTTP listen address (and where ``suanli demo`` finds the service)."""
    grpc: str = "127.0.0.1:50051"
    """gRPC listen address (and where ``suanli demo`` finds it)."""
    origin: str = "suanli.localhost/chengdu-2023"
    """The log's C2SP checkpoint origin (and the log key's name)."""
    log_level: str = "INFO"
    clock: str | None = None
    """Start the service clock at this RFC 3339 time and let it run (demos replay 2023)."""
    claim_skew_seconds: int = 300
    """How far a centre's signed timestamp may be from the service clock."""
    workers: int = Field(default=1, ge=1, le=64)
    """Processes that redeem on the gRPC port (``SO_REUSEPORT``), the first of which also
    serves HTTP; more than one is for PostgreSQL (docs/configuration.md)."""
    witness_policy: Path | None = None
    """A c2sp.org/tlog-policy file naming the log's witnesses, each with its submission URL
    (``witness <name> <vkey> <url>``), and the quorum ``/checkpoint`` waits for
    (docs/witness.md). Without one the log is not witnessed."""
    snapshot_every: int = 200_000
    """Snapshot the fold each time the log has grown by this many entries (and on a clean
    stop), so that a restart replays only the entries after the newest snapshot."""

    def database_url(self) -> str:
        return self.db or f"sqlite:///{(self.data_dir / 'ledger.db').resolve()}"

    def environment(self) -> dict[str, str]:
        """The environment variables that give another process these settings."""
        prefix = str(self.model_config.get("env_prefix", ""))
        return {
            f"{prefix}{name}".upper(): str(value)
            for name, value in self.model_dump().items()
            if value is not None
        }
