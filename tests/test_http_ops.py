"""Operations endpoints through the real ASGI app."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.http.app import create_app


def test_health_ready_and_metrics(open_service, db_url) -> None:  # type: ignore[no-untyped-def]
    service = open_service(db_url)
    with TestClient(create_app(service)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        text = client.get("/metrics").text
        assert f"suanli_log_size {float(service.ledger.state.size)}" in text
        assert "suanli_checkpoint_age_seconds" in text


def test_not_ready_when_the_database_is_gone(open_service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    service = open_service(f"sqlite:///{tmp_path / 'db.sqlite'}")
    (tmp_path / "db.sqlite").unlink()
    (tmp_path / "db.sqlite-wal").unlink(missing_ok=True)
    service.ledger.store.engine.dispose()
    (tmp_path / "db.sqlite").mkdir()  # a directory where the database was: unopenable
    with TestClient(create_app(service)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("unreachable")
