"""docs/operations.md, walked from an empty server to a production service in one go:
``suanli init`` (production), certificates made by running the guide's own OpenSSL block,
a third centre keyed on its own side and added with its policy version, ``suanli serve``
started with those certificates, the third centre's claim over mutual TLS, a backup, a
restore into a new database, both audited in full."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from grpc_fixtures import START, ManualClock, issue_voucher, usage_for
from pg_cluster import _free_port
from test_centres import THIRD, third_centre_policy
from typer.testing import CliRunner

from adapters.client import RedemptionClient
from api.bootstrap import open_service
from api.cli.app import app
from api.settings import Settings
from ledger.keys import Signer
from ledger.timeutil import format_time

DOC = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
SUANLI = str(Path(sys.executable).parent / "suanli")
runner = CliRunner()

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")


def doc_block(step: str) -> str:
    """The ```sh block of the guide whose first line is ``# step: <step>``."""
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        if block.startswith(f"# step: {step}"):
            return str(block)
    raise AssertionError(f"docs/operations.md has no block '# step: {step}'")


def suanli(*args: str, at: timedelta = timedelta(0)) -> str:
    """A ``suanli`` command at the round's time (``START + at``, as the service's clock)."""
    result = runner.invoke(app, list(args), env={"SUANLI_CLOCK": format_time(START + at)})
    assert result.exit_code == 0, result.output
    return result.output


def test_from_an_empty_server_to_production(tmp_path: Path) -> None:
    data, db = tmp_path / "srv", f"sqlite:///{tmp_path / 'ledger.db'}"
    where = ["--data-dir", str(data), "--db", db]

    # 2. a production data dir; the log key to pin
    out = suanli("init", *where)
    log_key = re.search(r"log key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]

    # 3. certificates, by the guide's own commands
    pki = tmp_path / "pki"
    pki.mkdir()
    env = {**os.environ, "LEDGER_HOST": "localhost", "CENTRE": THIRD}
    script = ["bash", "-euo", "pipefail", "-c", doc_block("certificates")]
    made = subprocess.run(script, cwd=pki, env=env, capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    assert oct((pki / "server.key").stat().st_mode)[-3:] == "600"

    # 5. the third centre: its key made on its side, added with the policy naming it
    vkey = suanli("centres", "keygen", THIRD, "--out", str(pki / "signing.key")).strip()
    policy = third_centre_policy(tmp_path / "policy-v2.json")
    out = suanli("centres", "add", THIRD, "--vkey", vkey, "--policy", str(policy), *where,
                 at=timedelta(minutes=1))  # fmt: skip
    assert f"URI SAN suanli:centre:{THIRD}" in out

    # a voucher its programme lets the third centre redeem (the bureau's work, any way in)
    bureau = open_service(
        Settings(data_dir=data, db=db), clock=ManualClock(START + timedelta(minutes=2))
    )
    voucher = issue_voucher(bureau)
    usage = usage_for(bureau.ledger, THIRD, 50_000, "wh-job-1")
    bureau.close()

    # 4. the service, with the bureau CA's certificates
    grpc_port = _free_port()
    settings = Settings(data_dir=data, db=db, clock=format_time(START + timedelta(minutes=5)),
                        http=f"127.0.0.1:{_free_port()}", grpc=f"127.0.0.1:{grpc_port}",
                        tls_cert=pki / "server.pem", tls_key=pki / "server.key",
                        client_ca=pki / "ca.pem", log_level="WARNING")  # fmt: skip
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        server = subprocess.Popen([SUANLI, "serve"], env={**os.environ, **settings.environment()},
                                  stdout=log_file, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        client = RedemptionClient(
            f"localhost:{grpc_port}", pki / "ca.pem", pki / "client.pem", pki / "client.key",
            Signer.parse((pki / "signing.key").read_text().strip()), THIRD,
            clock=lambda: START + timedelta(minutes=5), timeout=30,
        )  # fmt: skip
        with client:
            if not client.wait_serving(60, alive=lambda: server.poll() is None):
                pytest.fail(f"suanli serve did not start:\n{log_path.read_text()}")
            done = client.claim(usage, voucher, 50_000)
        assert done.subsidy_fen > 0
        assert not (data / "tls").exists() and not (data / "centres").exists()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert "development TLS" not in log_path.read_text()

    # 6. a backup, audited against the pinned key; 7. a restore into a new database
    out = suanli("backup", str(tmp_path / "backup"), "--key", log_key, *where)
    assert "OK:" in out and "pinned checkpoint" in out
    restored = f"sqlite:///{tmp_path / 'restored.db'}"
    out = suanli("restore", str(tmp_path / "backup"), "--key", log_key,
                 "--data-dir", str(data), "--db", restored)  # fmt: skip
    assert "OK:" in out and "full audit" in out
    verified = runner.invoke(app, ["audit", "verify", restored, "--key", log_key, "--jobs", "1"])
    assert verified.exit_code == 0, verified.output
