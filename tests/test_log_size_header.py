"""``Suanli-Log-Size`` on every answer and ``Suanli-Min-Log-Size`` honoured, through the
real ASGI app on one database (the standby case: tests/test_scale_out.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.bootstrap import Service
from api.http.app import create_app
from ledger.usecases.commands.log import write_note


def test_reads_and_writes_say_the_log_size(
    open_service: Callable[..., Service], tmp_path: Path
) -> None:
    service = open_service(f"sqlite:///{tmp_path / 'l.db'}")
    token, _ = service.tokens.create("admin", label="test")
    with TestClient(create_app(service)) as client:
        size = service.ledger.store.size()
        checkpoint = client.get("/checkpoint")
        assert checkpoint.headers["Suanli-Log-Size"] == str(size)
        service.write(write_note, "one more")
        auth = {"Authorization": f"Bearer {token}", "Suanli-Min-Log-Size": str(size + 1)}
        keys = client.get("/v1/audit/keys", headers=auth)
        assert keys.status_code == 200 and keys.headers["Suanli-Log-Size"] == str(size + 1)
        beyond = client.get("/checkpoint", headers={"Suanli-Min-Log-Size": str(size + 2)})
        assert beyond.status_code == 400 and beyond.json()["reason"] == "LOG_SIZE_UNKNOWN"


@pytest.mark.parametrize("floor", ["-1", "abc", "1.5", "0x10", "99999999999999999999", "٣"])
def test_a_malformed_floor_is_refused_by_name(
    open_service: Callable[..., Service], tmp_path: Path, floor: str
) -> None:
    service = open_service(f"sqlite:///{tmp_path / 'l.db'}")
    with TestClient(create_app(service)) as client:
        answer = client.get("/checkpoint", headers={"Suanli-Min-Log-Size": floor.encode()})
    assert answer.status_code == 400
    assert answer.json()["reason"] == "BAD_MIN_LOG_SIZE"
    assert "Suanli-Min-Log-Size" in answer.json()["detail"]
