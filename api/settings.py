"""The service's configuration, in one place: every setting is an environment variable
``SUANLI_<NAME>`` and most are also options of ``suanli serve``. docs/configuration.md lists
them (a test keeps the list and these fields the same). The centre side (``adapters/``)
ships separately and has its own, ``adapters.settings.CentreSettings``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

ENV_FILES = ("/etc/suanli/suanli.env", "suanli.env")
"""Env files read beneath the environment (later files win; the environment wins over all)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SUANLI_", env_file=ENV_FILES, env_file_encoding="utf-8", extra="ignore"
    )

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
    grpc_apart: bool = False
    """Redeem only in worker processes (``workers`` of them) and serve HTTP from the first
    process alone, so that readers never share an interpreter with the claims."""
    witness_policy: Path | None = None
    """A c2sp.org/tlog-policy file naming the log's witnesses, each with its submission URL
    (``witness <name> <vkey> <url>``), and the quorum ``/checkpoint`` waits for
    (docs/witness.md). Without one the log is not witnessed."""
    snapshot_every: int = 200_000
    """Snapshot the fold each time the log has grown by this many entries (and on a clean
    stop), so that a restart replays only the entries after the newest snapshot."""

    read_db: str | None = None
    """A streaming-replication standby's URL: reads are answered from it (each answer says
    the log size it reflects; ``Suanli-Min-Log-Size`` falls back to the primary)."""
    migrate: bool = False
    """Let ``serve`` (and every command) upgrade an older database schema on start."""
    db_password_file: Path | None = None
    """A file holding the database password (so that it is in no URL, command line or log)."""
    tls_cert: Path | None = None
    """The gRPC server's certificate (PEM, with its chain); production data dirs need it."""
    tls_key: Path | None = None
    """The gRPC server's private key (PEM, readable by the service only)."""
    client_ca: Path | None = None
    """The CA (PEM) that issues the centres' client certificates."""
    token_days: int = 90
    """How long a new API token is valid, in days, unless ``token create --days`` says."""
    token_max_days: int = 366
    """The longest validity ``token create --days`` may give."""
    max_body_bytes: int = 1 << 20
    """The largest HTTP request body; a larger one is refused 413 before it is read."""
    max_header_bytes: int = 16 << 10
    """The largest HTTP request head (request line and headers)."""
    keep_alive_seconds: int = 5
    """How long an idle HTTP keep-alive connection stays open."""
    max_requests_per_client: int = 32
    """HTTP requests one client (a bearer token; else an address) may have in progress at
    once; the next is refused 429."""

    def database_url(self) -> str:
        url = self.db or f"sqlite:///{(self.data_dir / 'ledger.db').resolve()}"
        if self.db_password_file is None:
            return url
        password = self.db_password_file.read_text(encoding="utf-8").strip()
        return make_url(url).set(password=password).render_as_string(hide_password=False)

    def database_shown(self) -> str:
        """The database URL without its password, for output and logs."""
        return make_url(self.database_url()).render_as_string(hide_password=True)

    def environment(self) -> dict[str, str]:
        """The environment variables that give another process these settings."""
        prefix = str(self.model_config.get("env_prefix", ""))
        return {
            f"{prefix}{name}".upper(): str(value)
            for name, value in self.model_dump().items()
            if value is not None
        }
