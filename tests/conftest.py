from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pg import throwaway_database  # noqa: E402

VECTORS = Path(__file__).parent / "vectors"
SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: SQLite in tmp_path, or a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        with throwaway_database() as url:
            yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    with throwaway_database() as url:
        yield url
