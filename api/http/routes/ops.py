"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from api import metrics

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"description": "not ready (same body)", "model": Readiness}},
)
def readyz(request: Request) -> Any:
    """Ready to serve: the database answers, the keys are loaded, the log has a checkpoint."""
    service = request.app.state.service
    checks: dict[str, str] = {}
    try:
        with service.ledger.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports any failure, whatever its type
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["keys"] = "ok" if service.ledger.keys.log else "missing"
    latest = service.ledger.store.latest_checkpoint() if checks["database"] == "ok" else None
    checks["checkpoint"] = f"size {latest[0]}" if latest else "none"
    ready = checks["database"] == "ok" and latest is not None
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
def prometheus() -> Response:
    """Prometheus text exposition."""
    metrics.refresh_ages()
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
