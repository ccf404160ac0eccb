"""A centre checks the ledger's log (``adapters.monitor``, ``suanli centre check-log``):
the pinned key, the witnesses' quorum, one history across checks, and every claim the
ledger acknowledged to it proven in the tree with its own signature. Against the real
HTTP app and a real gRPC server, with the agent's own outbox."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from grpc_fixtures import GrpcEnv, grpc_env, grpc_env_factory
from test_agent import make_agent, write_sacct
from typer.testing import CliRunner
from witness_helpers import witness_key

from adapters.cli import app as centre_app
from adapters.monitor import CHECKED_THROUGH, LAST_CHECKPOINT, LogCheckFailed, check_log
from adapters.outbox import Outbox
from api.http.app import create_app
from ledger.checkpoint import CosignatureVerifier
from ledger.keys import Signer, Verifier
from ledger.tlogpolicy import k_of_n

FIXTURES = (grpc_env, grpc_env_factory)


def _claims(
    env: GrpcEnv, tmp_path: Path, name: str, jobs: int, outbox: Path, first_job: int
) -> int:
    voucher = env.voucher("industry")
    source = write_sacct(tmp_path / f"{name}.log", jobs, ["chem"], first_job=first_job)
    agent = make_agent(env, tmp_path, {"chem": voucher}, [f"sacct:{source}"], outbox=outbox)
    try:
        assert agent.run().finished
        return agent.outbox.counts("nscc-cd")["claimed"]
    finally:
        agent.close()


def test_the_centre_proves_its_claims_and_one_history(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.db"
    first_claims = _claims(grpc_env, tmp_path, "q1", 30, outbox, 100_000)
    log_key = grpc_env.ledger.keys.log.verifier
    signing = grpc_env.data_dir / "centres" / "nscc-cd" / "signing.key"
    mine = Signer.parse(signing.read_text().strip()).verifier
    with TestClient(create_app(grpc_env.service)) as http, Outbox(outbox) as box:

        def check(**kw: object) -> object:
            return check_log("http://testserver", [log_key], box, "nscc-cd", mine,
                             client=http, **kw)  # type: ignore[arg-type]  # fmt: skip

        first = check()
        assert first.previous_size is None  # type: ignore[attr-defined]
        assert first.claims_proven == first_claims  # type: ignore[attr-defined]
        size_one = first.size  # type: ignore[attr-defined]

        # More claims: the next check proves the tree grew from the one checked before
        # and proves only the new claims.
        more = _claims(grpc_env, tmp_path, "q2", 20, outbox, 200_000) - first_claims
        second = check()
        assert second.previous_size == size_one  # type: ignore[attr-defined]
        assert second.claims_proven == more > 0  # type: ignore[attr-defined]

        # Another log key, or a witness quorum the checkpoint does not carry: refused.
        with pytest.raises(LogCheckFailed, match="not signed by the pinned log key"):
            check_log("http://testserver", [Signer.generate("other").verifier], box,
                      "nscc-cd", mine, client=http)  # fmt: skip
        czj = CosignatureVerifier.from_signer(witness_key("czj.example/witness"))
        with pytest.raises(LogCheckFailed, match=r"witnesses: .*no cosignature"):
            check(policy=k_of_n([czj], 1))

        # A history the centre did not see before (the remembered root differs): refused.
        remembered = box.get_meta(LAST_CHECKPOINT)
        assert remembered is not None
        size, _ = remembered.split()
        box.set_meta(LAST_CHECKPOINT, f"{size} {base64.b64encode(b'x' * 32).decode()}")
        with pytest.raises(LogCheckFailed, match=r"two different trees|does not extend"):
            check()
        box.set_meta(LAST_CHECKPOINT, remembered)

        # An acknowledged claim whose index holds someone else's entry: refused, naming it.
        box.set_meta(CHECKED_THROUGH, "0")
        with box.db:
            box.db.execute(
                "UPDATE records SET log_index = 0 WHERE seq = (SELECT min(seq) FROM records)"
            )
        with pytest.raises(LogCheckFailed, match="is not this centre's signed claim"):
            check()


def test_the_command_says_what_is_missing(tmp_path: Path) -> None:
    key = Signer.generate("suanli.localhost/chengdu-2023").verifier.vkey
    done = CliRunner().invoke(
        centre_app,
        ["check-log", "--ledger", "http://127.0.0.1:9", "--log-key", key,
         "--data-dir", str(tmp_path)],
    )  # fmt: skip
    assert done.exit_code == 2
    assert "signing.key" in done.output or "no outbox" in done.output
    assert isinstance(Verifier.parse(key), Verifier)
