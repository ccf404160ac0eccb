"""A PostgreSQL primary and a streaming-replication standby of it, on this machine, for
tests: ``initdb`` in a temporary directory, ``pg_basebackup -R`` for the standby, a port
each. As root the clusters run as the ``postgres`` user (PostgreSQL refuses root)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Cluster:
    primary: str  # SQLAlchemy URLs
    standby: str
    standby_dsn: str  # for psycopg (pausing replay)


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _run(args: list[str]) -> None:
    done = subprocess.run(_as_owner(args), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stdout}{done.stderr}")


@contextlib.contextmanager
def primary_and_standby() -> Iterator[Cluster]:
    tools = {name: _tool(name) for name in ("initdb", "pg_ctl", "pg_basebackup")}
    if None in tools.values():
        message = f"the PostgreSQL server tools are not installed: {tools}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    initdb, pg_ctl, basebackup = (str(tools[n]) for n in ("initdb", "pg_ctl", "pg_basebackup"))
    base = Path(tempfile.mkdtemp(prefix="suanli-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    primary_dir, standby_dir = base / "primary", base / "standby"
    p1, p2 = _free_port(), _free_port()
    started: list[Path] = []
    try:
        _run([initdb, "-D", str(primary_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        settings = (
            f"port = {p1}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{base}'\n"
            "wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\nfsync = off\n"
            "synchronous_commit = on\nshared_buffers = 32MB\n"
        )
        with (primary_dir / "postgresql.conf").open("a") as conf:
            conf.write(settings)
        _run([pg_ctl, "-D", str(primary_dir), "-l", str(base / "primary.log"), "-w", "start"])
        started.append(primary_dir)
        _run([basebackup, "-h", "127.0.0.1", "-p", str(p1), "-U", "postgres",
              "-D", str(standby_dir), "-R", "-X", "stream"])  # fmt: skip
        with (standby_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {p2}\n")
        _run([pg_ctl, "-D", str(standby_dir), "-l", str(base / "standby.log"), "-w", "start"])
        started.append(standby_dir)
        standby_dsn = f"postgresql://postgres@127.0.0.1:{p2}/postgres"
        deadline = time.monotonic() + 30
        while True:  # the standby accepts connections once it is consistent
            try:
                psycopg.connect(standby_dsn, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield Cluster(
            f"postgresql+psycopg://postgres@127.0.0.1:{p1}/postgres",
            f"postgresql+psycopg://postgres@127.0.0.1:{p2}/postgres",
            standby_dsn,
        )
    finally:
        for data in reversed(started):
            subprocess.run(_as_owner([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
                           capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)
