from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pg import throwaway_database

from api import bootstrap
from api.bootstrap import Service
from api.settings import Settings

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
def open_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Open (or reopen) a service on a data dir and database; closes them all at teardown."""
    opened: list[Service] = []

    def open_(db: str, data_dir: Path | None = None, **settings: object) -> Service:
        clock = settings.pop("clock", None)
        if clock is not None and not callable(clock):
            settings["clock"] = clock  # an RFC 3339 start time: SUANLI_CLOCK
            clock = None
        config = Settings(data_dir=data_dir or tmp_path / "data", db=db, **settings)  # type: ignore[arg-type]
        service = bootstrap.open_service(config, clock=clock)  # type: ignore[arg-type]
        opened.append(service)
        return service

    yield open_
    for service in opened:
        service.ledger.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with throwaway_database() as url:
        yield url
