"""The bureau's policy commands and the auditor's, as a user runs them: the version in
force from the log, a bad version undone by republishing the earlier one (``supersedes``),
and the web page's JSONL download verified with ``--key-file``, ``--checkpoint``, ``--json``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from api.cli import app
from api.cli.log_sources import DbSource
from api.cli.manners import EXIT_FAILED, EXIT_OK, run
from api.keystore import load_service_keys
from ledger.keys import Verifier
from ledger.store.db import make_engine
from ledger.store.log import LogStore

ORIGIN = "suanli.localhost/chengdu-2023"


def suanli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(app, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_policy_current_diff_publish_and_supersede(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path / "d")]
    assert suanli(capsys, "init", "--dev", *data)[0] == EXIT_OK
    code, out, _ = suanli(capsys, "policy", "current", "--json", *data)
    first = json.loads(out)
    (tmp_path / "good.json").write_text(json.dumps(first["policy"], ensure_ascii=False))
    bad = dict(first["policy"], title=first["policy"]["title"] + "（有误）")
    (tmp_path / "bad.json").write_text(json.dumps(bad, ensure_ascii=False))

    code, out, _ = suanli(capsys, "policy", "diff", str(tmp_path / "bad.json"), *data)
    assert code == EXIT_OK and '+  "title"' in out and "（有误）" in out
    code, out, _ = suanli(capsys, "policy", "publish", str(tmp_path / "bad.json"), *data)
    assert code == EXIT_OK, out
    bad_version = json.loads(suanli(capsys, "policy", "current", "--json", *data)[1])["version"]
    assert bad_version != first["version"]

    # the earlier file again: refused unless it names the version it supersedes
    code, _, err = suanli(capsys, "policy", "publish", str(tmp_path / "good.json"), *data)
    assert code == EXIT_FAILED and "[POLICY_EXISTS]" in err and bad_version in err
    code, _, err = suanli(
        capsys, "policy", "publish", str(tmp_path / "good.json"), "--supersedes",
        first["version"][:12], *data,
    )  # fmt: skip
    assert code == EXIT_FAILED and "[POLICY_SUPERSEDES_MISMATCH]" in err
    code, out, _ = suanli(
        capsys, "policy", "publish", str(tmp_path / "good.json"), "--supersedes",
        bad_version[:12], *data,
    )  # fmt: skip
    assert code == EXIT_OK and f"supersedes: {bad_version}" in out
    now = json.loads(suanli(capsys, "policy", "current", "--json", *data)[1])
    assert now["version"] == first["version"] and now["published_index"] > first["published_index"]
    code, out, _ = suanli(capsys, "policy", "diff", first["version"][:10], *data)
    assert code == EXIT_OK and out.startswith("no differences")


def test_the_pages_jsonl_download_verifies_with_a_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, other = tmp_path / "d", tmp_path / "o"
    for where in (data, other):
        assert suanli(capsys, "init", "--data-dir", str(where))[0] == EXIT_OK
    url = f"sqlite:///{data / 'ledger.db'}"
    # the download, as GET /v1/audit/log.jsonl writes it, and the checkpoint saved with it
    store = LogStore(make_engine(url))
    lines = [
        b'{"index":%d,"data":"%s"}\n' % (i, base64.b64encode(d))
        for i, d in store.iter_entries(0, batch=100)
    ]
    (tmp_path / "log.jsonl").write_bytes(b"".join(lines))
    with DbSource(url) as source:
        (tmp_path / "checkpoint").write_text(source.checkpoint())
    key, wrong = (load_service_keys(where, ORIGIN).log.verifier.vkey for where in (data, other))
    (tmp_path / "key").write_text(f"# pinned\n{key}\n")
    (tmp_path / "wrong").write_text(f"{wrong}\n")
    jsonl = ["--source", str(tmp_path / "log.jsonl"), "--no-progress"]

    code, _, err = suanli(capsys, "audit", "verify", *jsonl, "--key-file", str(tmp_path / "key"))
    assert code == 3 and "no signed checkpoint" in err and "--checkpoint" in err
    jsonl += ["--checkpoint", str(tmp_path / "checkpoint")]
    code, out, _ = suanli(
        capsys, "audit", "verify", *jsonl, "--key-file", str(tmp_path / "key"), "--json"
    )
    answer = json.loads(out)
    assert code == EXIT_OK and answer["ok"] and answer["entries"] == len(lines)
    # a download that carries its checkpoint as a line of its own needs no --checkpoint
    note = json.dumps({"checkpoint": (tmp_path / "checkpoint").read_text()}).encode()
    (tmp_path / "whole.jsonl").write_bytes(b"".join(lines) + note + b"\n")
    code, out, _ = suanli(
        capsys, "audit", "verify", "--source", str(tmp_path / "whole.jsonl"), "--no-progress",
        "--key-file", str(tmp_path / "key"),
    )  # fmt: skip
    assert code == EXIT_OK and out.startswith(f"OK: {len(lines)} entries"), out
    # one entry changed in the download: named at its index
    tampered = lines[:]
    tampered[3] = b'{"index":3,"data":"%s"}\n' % base64.b64encode(b"{}")
    (tmp_path / "log.jsonl").write_bytes(b"".join(tampered))
    code, out, _ = suanli(capsys, "audit", "verify", *jsonl, "--key-file", str(tmp_path / "key"))
    assert code == EXIT_FAILED and "index 3" in out

    # a proof of entry 2 checked with the wrong key says so plainly
    proof = ["-o", str(tmp_path / "proof"), "--entry-out", str(tmp_path / "entry")]
    assert suanli(capsys, "audit", "prove", "2", "--source", url, *proof)[0] == EXIT_OK
    files = [str(tmp_path / "proof"), str(tmp_path / "entry")]
    code, out, _ = suanli(
        capsys, "audit", "check-proof", *files, "--key-file", str(tmp_path / "wrong")
    )
    assert code == EXIT_FAILED
    # the key's ID (name+hex8); its base64 part may itself hold a '+'
    assert f"the checkpoint is not signed by the pinned key {Verifier.parse(wrong).key_id}" in out
    code, out, _ = suanli(
        capsys, "audit", "check-proof", *files, "--key-file", str(tmp_path / "key"), "--json"
    )
    assert code == EXIT_OK and json.loads(out)["index"] == 2
