"""A throwaway PostgreSQL database for tests.

Where the server comes from, in order: ``SUANLI_TEST_DATABASE_URL`` (a server URL on which
tests may create databases); a container started by testcontainers where a Docker engine
answers; else the local server at 127.0.0.1:5432 (user postgres, trust auth). Each use
creates a fresh database and drops it afterwards. Under ``CI=true`` a missing server is a
failure, never a skip.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psycopg
import pytest

LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _docker_url() -> tuple[str, object] | None:
    # Probe the engine's socket directly: docker-py's client leaks its socket on failure.
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            probe.connect(host.removeprefix("unix://"))
    except OSError:
        return None
    from testcontainers.postgres import PostgresContainer

    container = PostgresContainer("postgres:16-alpine", driver=None)
    container.start()
    return container.get_connection_url(), container


_server: tuple[str, object | None] | None = None


def server_url() -> str:
    """An admin URL of a reachable PostgreSQL server; skip (or fail in CI) if there is none."""
    global _server
    if _server is None:
        override = os.environ.get("SUANLI_TEST_DATABASE_URL")
        if override:
            _server = (override.replace("postgresql+psycopg://", "postgresql://"), None)
        else:
            found = _docker_url()
            _server = found if found else (LOCAL, None)
    url = _server[0]
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and is not reachable at {url}: {exc}")
        pytest.skip(f"no PostgreSQL server reachable at {url}")
    return url


@contextmanager
def throwaway_database() -> Iterator[str]:
    """Create a fresh database; yield its SQLAlchemy URL; drop it."""
    admin = server_url()
    name = f"suanli_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn, suppress(psycopg.Error):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
