"""The log over HTTP: C2SP tiles and checkpoint, JSON entries and proofs, problem+json errors."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from ledger import merkle, tiles
from ledger.checkpoint import open_checkpoint
from ledger.keys import Signer


@pytest.fixture
def served(open_service, db_url):  # type: ignore[no-untyped-def]
    service = open_service(db_url)
    ledger = service.ledger
    for batch in range(30):  # 300 more entries: one full level-0 tile and a partial one
        with ledger.transaction() as tx:
            for i in range(10):
                body = {
                    "vkey": Signer.generate(f"k{batch}-{i}").verifier.vkey,
                    "roles": ["service"],
                }
                tx.append(tx.sign("key.register", body, ledger.keys.log))
    with TestClient(create_app(service)) as client:
        yield ledger, client


def test_tiles_rebuild_the_signed_checkpoint(served) -> None:  # type: ignore[no-untyped-def]
    ledger, client = served
    vkey = client.get("/v1/log/key").json()["vkey"]
    from ledger.keys import Verifier

    cp = open_checkpoint(client.get("/checkpoint").text, Verifier.parse(vkey), origin=ledger.origin)
    leaves: list[bytes] = []
    for ref in tiles.tiles_for_size(cp.size):
        if ref.level != 0:
            continue
        path = tiles.entries_path(ref.n, None if ref.width == 256 else ref.width)
        response = client.get("/" + path)
        assert response.status_code == 200
        expected_cache = "immutable" if ref.width == 256 else "no-cache"
        assert expected_cache in response.headers["cache-control"]
        bundle = tiles.parse_entry_bundle(response.content, width=ref.width)
        hashes = client.get("/" + ref.path).content
        assert [hashes[i : i + 32] for i in range(0, len(hashes), 32)] == [
            merkle.leaf_hash(e) for e in bundle
        ]
        leaves.extend(merkle.leaf_hash(e) for e in bundle)
    assert len(leaves) == cp.size
    assert merkle.root_from_leaf_hashes(leaves) == cp.root
    level1 = client.get("/" + tiles.tile_path(1, 0, cp.size // 256)).content
    assert level1 == merkle.root_from_leaf_hashes(leaves[:256])


def test_proof_endpoints_verify(served) -> None:  # type: ignore[no-untyped-def]
    _ledger, client = served
    size = int(client.get("/checkpoint").text.split("\n")[1])
    for index in (0, 1, 255, 256, size - 1):
        p = client.get("/v1/log/proof/inclusion", params={"index": index, "size": size}).json()
        merkle.verify_inclusion(
            base64.b64decode(p["leaf_hash"]),
            index,
            size,
            [base64.b64decode(h) for h in p["proof"]],
            base64.b64decode(p["root"]),
        )
        entry = client.get(f"/v1/log/entries/{index}").json()
        assert entry["leaf_hash"] == p["leaf_hash"]
    c = client.get("/v1/log/proof/consistency", params={"old": 7, "new": size}).json()
    merkle.verify_consistency(
        7,
        size,
        [base64.b64decode(h) for h in c["proof"]],
        base64.b64decode(c["old_root"]),
        base64.b64decode(c["new_root"]),
    )


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/tile/0/x001/000", 404),  # beyond the tree
        ("/tile/0/001.p/100", 404),  # wider than the partial tile
        ("/tile/0/01", 400),  # malformed path
        ("/v1/log/entries/99999", 404),
        ("/v1/log/proof/inclusion?index=5&size=3", 400),
        ("/v1/log/proof/inclusion?index=-1", 400),
        ("/v1/log/proof/consistency?old=9&new=4", 400),
        ("/v1/log/proof/consistency?old=1&new=999999", 400),
    ],
)
def test_bad_requests_get_problem_json(served, url: str, status: int) -> None:  # type: ignore[no-untyped-def]
    _ledger, client = served
    response = client.get(url)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == status and response.json()["detail"]
