"""The auditor API (/v1/audit/...) and the web page's static files, over HTTP."""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.bootstrap import Service
from api.http.app import create_app
from ledger import merkle
from ledger.checkpoint import open_checkpoint
from ledger.keys import Signer, Verifier

PROBLEM = "application/problem+json"
WEB = Path(__file__).parent.parent / "api" / "http" / "web"


@pytest.fixture
def served(open_service, db_url):  # type: ignore[no-untyped-def]
    """A service with 5 genesis entries, 40 key registrations, 10 notes and one retirement."""
    service: Service = open_service(db_url)
    ledger = service.ledger
    # Whatever the genesis writes (keys now; policy and rate cards as the domain lands).
    genesis = Counter(json.loads(d)["kind"] for d in ledger.store.entries(0, ledger.store.size()))
    registered: list[str] = []
    for batch in range(4):
        with ledger.transaction() as tx:
            for i in range(10):
                signer = Signer.generate(f"audit{batch}-{i}")
                body = {"vkey": signer.verifier.vkey, "roles": ["service"]}
                tx.append(tx.sign("key.register", body, ledger.keys.log))
                registered.append(signer.key_id)
            tx.append(tx.sign("log.note", {"text": f"batch {batch}"}, ledger.keys.log))
            tx.append(tx.sign("log.note", {"text": f"审计 {batch}"}, ledger.keys.issuer))
    ledger.submit(_retire(ledger, registered[0]))
    auditor, _ = service.tokens.create("auditor", label="test")
    admin, _ = service.tokens.create("admin")
    grantee, _ = service.tokens.create("grantee", entity="91510100MA61R0JK41")
    with TestClient(create_app(service)) as client:
        yield {
            "service": service,
            "client": client,
            "auditor": {"Authorization": f"Bearer {auditor}"},
            "admin": {"Authorization": f"Bearer {admin}"},
            "grantee": {"Authorization": f"Bearer {grantee}"},
            "retired": registered[0],
            "kinds": genesis + Counter({"key.register": 40, "log.note": 8, "key.retire": 1}),
            "genesis_keys": len(ledger.refresh().registry.keys) - 40,
        }


def _retire(ledger: Any, key_id: str) -> Any:
    from ledger.entry import Entry

    return Entry("key.retire", _now(ledger), {"key": key_id}).signed(ledger.keys.log)


def _now(ledger: Any) -> str:
    from ledger.timeutil import format_time

    return format_time(ledger.clock())


def _size(client: TestClient) -> int:
    return int(client.get("/checkpoint").text.split("\n")[1])


AUDIT_PATHS = ("/v1/audit/keys", "/v1/audit/policies", "/v1/audit/entries", "/v1/audit/log.jsonl")


@pytest.mark.parametrize("path", AUDIT_PATHS)
def test_auditor_routes_need_an_auditor_or_admin_token(served, path: str) -> None:  # type: ignore[no-untyped-def]
    client = served["client"]
    anonymous = client.get(path)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith(PROBLEM)
    assert anonymous.json()["reason"] == "UNAUTHENTICATED"
    denied = client.get(path, headers=served["grantee"])
    assert denied.status_code == 403
    assert denied.json()["reason"] == "ROLE_DENIED"
    assert client.get(path, headers=served["admin"]).status_code == 200
    assert client.get(path, headers=served["auditor"]).status_code == 200


def test_keys_are_the_registry_of_the_fold(served) -> None:  # type: ignore[no-untyped-def]
    client, service = served["client"], served["service"]
    body = client.get("/v1/audit/keys", headers=served["auditor"]).json()
    assert body["size"] == _size(client)
    assert body["origin"] == service.ledger.origin
    keys = {k["key_id"]: k for k in body["keys"]}
    log = keys[service.ledger.keys.log.key_id]
    assert log["roles"] == ["log", "registry"]
    assert log["valid_from_index"] == 0 and log["valid_until_index"] is None and log["active"]
    assert Verifier.parse(log["vkey"]).key_id == log["key_id"]
    issuer = keys[service.ledger.keys.issuer.key_id]
    assert issuer["roles"] == ["issuer"] and issuer["valid_from_index"] > 0
    centres = {k["centre"] for k in body["keys"] if "centre" in k["roles"]}
    assert centres == set(service.centre_keys)
    retired = keys[served["retired"]]
    assert retired["valid_until_index"] == body["size"] - 1  # the key.retire entry itself
    assert retired["active"] is False
    assert len(keys) == served["genesis_keys"] + 40
    assert body["log_keys"] == [{"vkey": service.ledger.keys.log.verifier.vkey, "from_size": 0}]


def test_entries_page_through_the_log_with_leaf_hashes(served) -> None:  # type: ignore[no-untyped-def]
    client = served["client"]
    size = _size(client)
    seen: list[int] = []
    after = -1
    while True:
        page = client.get(
            "/v1/audit/entries", params={"after": after, "limit": 7}, headers=served["auditor"]
        ).json()
        assert page["size"] == size and page["after"] == after
        for item in page["entries"]:
            one = client.get(f"/v1/log/entries/{item['index']}").json()
            data = base64.b64decode(one["data"])
            assert item["leaf_hash"] == base64.b64encode(merkle.leaf_hash(data)).decode()
            assert item["entry"] == json.loads(data)
            assert item["kind"] == item["entry"]["kind"] and item["at"] == item["entry"]["at"]
            proof = client.get(item["proof"]).json()
            assert proof["leaf_hash"] == item["leaf_hash"] and proof["size"] == size
        seen.extend(item["index"] for item in page["entries"])
        if page["next_after"] is None:
            break
        after = page["next_after"]
        assert after == seen[-1]
    assert seen == list(range(size))
    assert page["kinds"] == dict(sorted(served["kinds"].items()))


@pytest.mark.parametrize(
    ("kind", "kinds"),
    [
        ("log.note", ["log.note"]),
        ("key.*", ["key.register", "key.retire"]),
        ("log.genesis,key.retire", ["log.genesis", "key.retire"]),
        ("no.such.kind", []),
        ("*", None),
    ],
)
def test_entries_filter_by_kind(served, kind: str, kinds: list[str] | None) -> None:  # type: ignore[no-untyped-def]
    client = served["client"]
    counts = served["kinds"]
    count = sum(counts.values()) if kinds is None else sum(counts[k] for k in kinds)
    got: list[dict[str, Any]] = []
    after = -1
    while after is not None:
        page = client.get(
            "/v1/audit/entries",
            params={"kind": kind, "after": after, "limit": 5},
            headers=served["auditor"],
        ).json()
        assert page["kind"] == kind
        got.extend(page["entries"])
        after = page["next_after"]
    assert len(got) == count
    indices = [e["index"] for e in got]
    assert indices == sorted(set(indices))
    patterns = [k.strip() for k in kind.split(",")]
    for e in got:
        assert any(
            e["kind"].startswith(p[:-1]) if p.endswith("*") else e["kind"] == p for p in patterns
        )


def test_entries_kind_index_catches_up_with_new_entries(served) -> None:  # type: ignore[no-untyped-def]
    client, ledger = served["client"], served["service"].ledger
    params = {"kind": "log.note"}
    before = client.get("/v1/audit/entries", params=params, headers=served["auditor"]).json()
    ledger.submit(ledger_note(ledger, "later"))
    after = client.get("/v1/audit/entries", params=params, headers=served["auditor"]).json()
    assert len(after["entries"]) == len(before["entries"]) + 1
    assert after["entries"][-1]["entry"]["body"] == {"text": "later"}
    assert after["entries"][-1]["index"] == _size(client) - 1


def ledger_note(ledger: Any, text: str) -> Any:
    from ledger.entry import Entry

    return Entry("log.note", _now(ledger), {"text": text}).signed(ledger.keys.log)


@pytest.mark.parametrize(
    "params",
    [{"after": -2}, {"limit": 0}, {"limit": 1001}, {"kind": "a,,b"}, {"after": "x"}],
)
def test_entries_bad_parameters_are_problems(served, params: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    response = served["client"].get("/v1/audit/entries", params=params, headers=served["auditor"])
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["status"] == 400 and response.json()["detail"]


def test_log_jsonl_rebuilds_the_signed_root(served) -> None:  # type: ignore[no-untyped-def]
    client, ledger = served["client"], served["service"].ledger
    response = client.get("/v1/audit/log.jsonl", headers=served["auditor"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jsonl")
    assert "attachment" in response.headers["content-disposition"]
    lines = response.text.splitlines()
    size = int(response.headers["x-log-size"])
    assert len(lines) == size == _size(client)
    leaves = []
    for i, line in enumerate(lines):
        item = json.loads(line)
        assert set(item) == {"index", "data"} and item["index"] == i
        leaves.append(merkle.leaf_hash(base64.b64decode(item["data"])))
    checkpoint = open_checkpoint(
        client.get("/checkpoint").text, ledger.keys.log.verifier, origin=ledger.origin
    )
    assert checkpoint.size == size
    assert merkle.root_from_leaf_hashes(leaves) == checkpoint.root


def test_log_jsonl_up_to_a_size(served) -> None:  # type: ignore[no-untyped-def]
    client = served["client"]
    ten = client.get("/v1/audit/log.jsonl", params={"size": 10}, headers=served["auditor"])
    assert ten.headers["x-log-size"] == "10"
    assert [json.loads(line)["index"] for line in ten.text.splitlines()] == list(range(10))
    empty = client.get("/v1/audit/log.jsonl", params={"size": 0}, headers=served["auditor"])
    assert empty.status_code == 200 and empty.text == ""
    beyond = client.get(
        "/v1/audit/log.jsonl", params={"size": _size(client) + 1}, headers=served["auditor"]
    )
    assert beyond.status_code == 400
    assert beyond.headers["content-type"].startswith(PROBLEM)


def test_policies_are_the_published_versions(served) -> None:  # type: ignore[no-untyped-def]
    policy_mod = pytest.importorskip("ledger.policy", reason="the policy domain has not landed")
    client, ledger = served["client"], served["service"].ledger
    policy = policy_mod.Policy.load()
    existing = client.get("/v1/audit/policies", headers=served["auditor"]).json()["policies"]
    if not any(p["version"] == policy.version for p in existing):
        ledger.submit(
            _entry(ledger, "policy.publish", policy_mod.publish_body(policy), ledger.keys.issuer)
        )
    changed = policy.to_json()
    changed["title"] = changed["title"] + "（修订）"
    second = policy_mod.publish_body(changed)
    ledger.submit(_entry(ledger, "policy.publish", second, ledger.keys.issuer))

    body = client.get("/v1/audit/policies", headers=served["auditor"]).json()
    assert body["size"] == _size(client)
    ours = [p for p in body["policies"] if p["round"] == policy.round]
    assert [p["version"] for p in ours][-2:] == [policy.version, second["version"]]
    assert [p["current"] for p in ours][-2:] == [False, True]
    last = ours[-1]
    assert last["index"] == body["size"] - 1
    assert last["body"] == second
    assert last["signed_by"] == [ledger.keys.issuer.key_id]
    entry = client.get(f"/v1/log/entries/{last['index']}").json()
    assert entry["leaf_hash"] == last["leaf_hash"] and entry["entry"]["at"] == last["at"]


def _entry(ledger: Any, kind: str, body: dict[str, Any], signer: Signer) -> Any:
    from ledger.entry import Entry

    return Entry(kind, _now(ledger), body).signed(signer)


# --- the web page's files -------------------------------------------------------------------


def test_page_is_served_with_a_strict_content_security_policy(served) -> None:  # type: ignore[no-untyped-def]
    client = served["client"]
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert "余额" in page.text and "Balance" in page.text
    for name, kind in [("app.js", "text/javascript"), ("app.css", "text/css")]:
        asset = client.get(f"/web/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        again = client.get(f"/web/{name}", headers={"If-None-Match": asset.headers["etag"]})
        assert again.status_code == 304
    assert client.get("/favicon.ico").headers["content-type"] == "image/svg+xml"


@pytest.mark.parametrize(
    "path", ["/web/nope.js", "/web/../app.py", "/web/.hidden.js", "/web/app.py", "/web/"]
)
def test_only_shipped_web_files_are_served(served, path: str) -> None:  # type: ignore[no-untyped-def]
    response = served["client"].get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)


def test_web_files_load_nothing_from_elsewhere() -> None:
    """No CDN: every src/href/url()/import/fetch in the shipped files is same-origin."""
    external = re.compile(
        r"""(?:src|href|action)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|import\s.*?["'](?:https?:)?//|fetch\(\s*["'](?:https?:)?//"""
    )
    files = [p for p in WEB.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"index.html", "app.js", "app.css", "icon.svg"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not external.search(text), f"{path.name} refers to another origin"
        urls = re.findall(r"https?://[^\s\"'<>)]+", text)
        assert all(u.startswith("http://www.w3.org/") for u in urls), (path.name, urls)
