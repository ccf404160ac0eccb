"""The centre side's configuration (it ships to centres without the ledger service, so it
has its own settings, apart from ``api.settings.Settings``): environment variables
``SUANLI_CENTRE_<NAME>``, each also an option of ``suanli centre run`` / ``reconcile``.
docs/configuration.md lists them (a test keeps the list and these fields the same)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledger.limits import MAX_CLAIMS_PER_MESSAGE

CLAIMS_PER_MESSAGE = 64
"""Claims per ClaimStream request the agent sends by default: enough that gRPC's cost per
message is a small part of a claim's (docs/benchmarks.md), few enough that a request is
~25 KiB and a broken stream re-sends little."""


class CentreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUANLI_CENTRE_")

    data_dir: Path = Path("suanli-data")
    """A data dir whose ``centres/<id>/`` holds the centre's credentials (development: the
    service's own data dir, where ``suanli init`` makes them)."""
    target: str = "127.0.0.1:50051"
    """The ledger's gRPC address."""
    token: str | None = None
    """An auditor token of the ledger's HTTP API, to read its rate cards (``--rates URL``)."""
    claims_per_message: int = Field(default=CLAIMS_PER_MESSAGE, ge=1, le=MAX_CLAIMS_PER_MESSAGE)
    """Claims the agent sends per ClaimStream request (``--claims-per-message``)."""
