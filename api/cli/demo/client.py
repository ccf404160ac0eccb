"""The service's HTTP API as the demo calls it (with the demo's tokens), and its errors."""

from __future__ import annotations

from typing import Any

from api.errors import ToolError


class DemoError(ToolError):
    """A step of the demo failed; the message says which and why."""


class ApiError(DemoError):
    def __init__(self, status: int, reason: str, detail: str, where: str) -> None:
        super().__init__(f"{where}: {status} {reason}: {detail}")
        self.status, self.reason, self.detail = status, reason, detail


class Api:
    """The service's HTTP API, with the demo's tokens."""

    def __init__(self, base: str, timeout: float = 120.0) -> None:
        import httpx

        self.base = base
        self.http = httpx.Client(base_url=base, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        reply = self.http.request(method, path, json=body, headers=headers)
        if reply.status_code in (200, 201):
            return reply.json()
        try:
            problem = reply.json()
        except ValueError:
            problem = {}
        raise ApiError(
            reply.status_code,
            str(problem.get("reason") or problem.get("title") or reply.reason_phrase),
            str(problem.get("detail") or reply.text[:300]),
            f"{method} {path}",
        )

    def checkpoint(self) -> tuple[int, str]:
        """The checkpoint ``/checkpoint`` serves (with its cosignatures) and its size."""
        reply = self.http.get("/checkpoint")
        reply.raise_for_status()
        return int(reply.text.split("\n")[1]), reply.text

    def ready(self) -> bool:
        import httpx

        try:
            return bool(self.http.get("/readyz", timeout=3.0).json().get("ready"))
        except (httpx.HTTPError, ValueError):
            return False
