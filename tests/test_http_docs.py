"""The API reference pages, /docs (Swagger UI) and /redoc (ReDoc), served with their assets by
the app itself (the fastapi-offline package), through the real ASGI app. The browser test
(tests/test_web_roles.py) renders them with the network off; this one needs no browser."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api import bootstrap
from api.http.app import create_app
from api.http.routes.docs import ASSETS, asset_bytes
from api.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("docs")
    service = bootstrap.open_service(
        Settings(data_dir=data / "data", db=f"sqlite:///{data / 'ledger.db'}")
    )
    with TestClient(create_app(service)) as http:
        yield http
    service.close()


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_pages_load_nothing_from_another_origin(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert urls and all(u.startswith("/") for u in urls), urls
    assert "cdn" not in page.text.lower() and "fonts.googleapis" not in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "img-src 'self' data:" in csp
    for url in urls:
        assert client.get(url).status_code == 200, url


def test_the_assets_are_the_packages_and_revalidate(client: TestClient) -> None:
    for name, media in ASSETS.items():
        answer = client.get(f"/docs/assets/{name}")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == media
        assert answer.content == asset_bytes(name) and len(answer.content) > 1000
        again = client.get(
            f"/docs/assets/{name}", headers={"If-None-Match": answer.headers["etag"]}
        )
        assert again.status_code == 304 and not again.content
    missing = client.get("/docs/assets/../../pyproject.toml")
    assert missing.status_code == 404
    unknown = client.get("/docs/assets/other.js")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert "other.js" in unknown.json()["detail"]


def test_the_openapi_document_lists_neither_page(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {p for p in paths if p.startswith(("/docs", "/redoc"))}
    assert "/v1/me/history/summary" in paths
