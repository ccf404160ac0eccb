"""Centres come and go (``suanli centres add|rotate-key|retire|list``): a third centre,
added with the policy version that accepts it, redeems over real gRPC with mutual TLS; a
rotated key and a retired centre's key are refused; a production data dir takes only the
centre's verifier key."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from grpc_fixtures import GrpcEnv, grpc_env, grpc_env_factory
from typer.testing import CliRunner

from adapters.client import RedemptionError
from api.cli.app import app
from ledger.keys import Signer
from ledger.policy import Policy
from ledger.timeutil import format_time

__all__ = ["grpc_env", "grpc_env_factory"]  # fixtures used here

THIRD = "wh-icc"
runner = CliRunner()


def cli(env: GrpcEnv, *args: str) -> str:
    db = str(env.service.settings.database_url())
    clock = {"SUANLI_CLOCK": format_time(env.clock())}  # the round's time, as the service's
    result = runner.invoke(app, [*args, "--data-dir", str(env.data_dir), "--db", db], env=clock)
    assert result.exit_code == 0, result.output
    return result.stdout  # stderr names the data dir and database


def third_centre_policy(path: Path) -> Path:
    """The packaged policy with a third centre: its rate card (the prices of nscc-cd) and
    every programme that accepts centres accepting it too: a new policy version."""
    doc = Policy.load().to_json()
    doc["centres"].append({"id": THIRD, "name": "测试智算中心", "kind": "intelligent"})
    card = dict(next(c for c in doc["rate_cards"] if c["centre"] == "nscc-cd"), centre=THIRD)
    doc["rate_cards"].append(card)
    for programme in doc["programmes"]:
        if programme.get("centres"):
            programme["centres"] = [*programme["centres"], THIRD]
    path.write_text(json.dumps(doc, ensure_ascii=False))
    return path


def refused(call: object) -> RedemptionError:
    with pytest.raises(RedemptionError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_a_third_centre_redeems_after_being_added_and_not_after_retiring(
    grpc_env: GrpcEnv, tmp_path: Path
) -> None:
    out = cli(
        grpc_env, "centres", "add", THIRD, "--policy", str(third_centre_policy(tmp_path / "p.json"))
    )
    assert f"URI SAN suanli:centre:{THIRD}" in out and "signing key:" in out
    centre_dir = grpc_env.data_dir / "centres" / THIRD
    assert {"client.pem", "client.key", "ca.pem", "signing.key"} <= {
        p.name for p in centre_dir.iterdir()
    }

    voucher = grpc_env.voucher()  # under the new version: its programme accepts the third
    client = grpc_env.client(THIRD)
    usage = grpc_env.usage(50_000, "wh-job-1", centre=THIRD)
    done = client.claim(usage, voucher, 50_000)
    assert done.subsidy_fen > 0 and not done.replayed

    listed = cli(grpc_env, "centres", "list", "--json")
    row = next(c for c in json.loads(listed)["centres"] if c["centre"] == THIRD)
    assert [k["active"] for k in row["keys"]] == [True]

    # rotation: the old key is refused from the rotation on, the new one redeems
    old_key = Signer.parse((centre_dir / "signing.key").read_text().strip())
    out = cli(grpc_env, "centres", "rotate-key", THIRD)
    assert f"retired {old_key.key_id}" in out
    stale = refused(
        lambda: client.claim(grpc_env.usage(50_000, "wh-job-2", centre=THIRD), voucher, 50_000)
    )
    assert (stale.code, stale.reason) == (grpc.StatusCode.PERMISSION_DENIED, "KEY_INACTIVE")
    fresh = grpc_env.client(THIRD)  # reads the new signing.key
    assert fresh.claim(
        grpc_env.usage(50_000, "wh-job-2", centre=THIRD), voucher, 50_000
    ).subsidy_fen

    # retirement: nothing the centre signs is accepted any more
    cli(grpc_env, "centres", "retire", THIRD)
    gone = refused(
        lambda: fresh.claim(grpc_env.usage(50_000, "wh-job-3", centre=THIRD), voucher, 50_000)
    )
    assert (gone.code, gone.reason) == (grpc.StatusCode.PERMISSION_DENIED, "KEY_INACTIVE")
    listed = json.loads(cli(grpc_env, "centres", "list", "--json"))
    row = next(c for c in listed["centres"] if c["centre"] == THIRD)
    assert [k["active"] for k in row["keys"]] == [False, False]
    # the other centres are untouched
    other = grpc_env.client("nscc-cd")
    assert other.claim(grpc_env.usage(50_000, "nscc-1"), voucher, 50_000).subsidy_fen


def test_a_provider_added_as_data_is_refused_by_a_round_that_names_its_centres(
    grpc_env: GrpcEnv, tmp_path: Path
) -> None:
    """``--provider``: the centre and its rate card registered without a policy version; the
    2023 round whitelists its two centres, so the provider's claim is refused with the
    reason, over gRPC (docs/policy.md, "Providers")."""
    card = {
        "version": 1,
        "effective_from": "2023-01-01",
        "prices": {"cpu": {"price_fen": 10, "per_units": 3600}},
    }
    spec = {
        "format": "suanli-provider/v1",
        "id": THIRD,
        "name": "测试算力服务机构",
        "kind": "intelligent",
        "rate_card": card,
    }
    path = tmp_path / "provider.json"
    path.write_text(json.dumps(spec, ensure_ascii=False))
    out = cli(grpc_env, "centres", "add", THIRD, "--provider", str(path))
    assert f"URI SAN suanli:centre:{THIRD}" in out and "policy:" not in out
    listed = json.loads(cli(grpc_env, "centres", "list", "--json"))
    assert THIRD in {c["centre"] for c in listed["centres"]}
    voucher = grpc_env.voucher()
    usage = grpc_env.usage(50_000, "p-job-1", centre=THIRD)
    no = refused(lambda: grpc_env.client(THIRD).claim(usage, voucher, 50_000))
    assert (no.code, no.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CENTRE_NOT_ACCEPTED")
    assert "nscc-cd, cd-icc" in no.message
    # a provider file must name the centre being added
    other = runner.invoke(
        app,
        [
            "centres",
            "add",
            "xx-other",
            "--provider",
            str(path),
            "--data-dir",
            str(grpc_env.data_dir),
        ],
    )
    assert other.exit_code == 2 and f"describes centre {THIRD}" in other.output
    assert not (grpc_env.data_dir / "centres" / "xx-other").exists()  # no key made for it


def test_refusals_write_nothing(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    size = grpc_env.log_size()
    db = grpc_env.service.settings.database_url()
    common = ["--data-dir", str(grpc_env.data_dir), "--db", db]
    unknown = runner.invoke(app, ["centres", "add", THIRD, *common])
    assert unknown.exit_code == 2 and f"centre {THIRD} is not registered" in unknown.output
    twice = runner.invoke(app, ["centres", "add", "nscc-cd", *common])
    assert twice.exit_code == 2 and "already has an active key" in twice.output
    bad = runner.invoke(app, ["centres", "add", "nscc-cd", "--vkey", "nonsense", *common])
    assert bad.exit_code == 2 and "error:" in bad.output
    # the policy version and the key are one commit: a key refused, no policy published
    policy = str(third_centre_policy(tmp_path / "p.json"))
    both = runner.invoke(app, ["centres", "add", "nscc-cd", "--policy", policy, *common])
    assert both.exit_code == 2 and "already has an active key" in both.output
    assert grpc_env.log_size() == size


def test_a_production_data_dir_takes_only_a_verifier_key(tmp_path: Path) -> None:
    data = tmp_path / "prod"
    assert runner.invoke(app, ["init", "--data-dir", str(data)]).exit_code == 0
    no_key = runner.invoke(app, ["centres", "add", "nscc-cd", "--data-dir", str(data)])
    assert no_key.exit_code == 2 and "give --vkey" in no_key.output
    made = runner.invoke(app, ["centres", "keygen", "nscc-cd", "--out", str(tmp_path / "k")])
    vkey = made.output.strip()
    assert Signer.parse((tmp_path / "k").read_text().strip()).verifier.vkey == vkey
    added = runner.invoke(
        app, ["centres", "add", "nscc-cd", "--vkey", vkey, "--data-dir", str(data)]
    )
    assert added.exit_code == 0, added.output
    assert not (data / "centres").exists()  # no private key, no certificate made here
    again = runner.invoke(app, ["centres", "keygen", "nscc-cd", "--out", str(tmp_path / "k")])
    assert again.exit_code == 2 and "never overwritten" in again.output


def test_the_list_pages(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "dev")]
    assert runner.invoke(app, ["init", "--dev", *data]).exit_code == 0
    first = runner.invoke(app, ["centres", "list", "--limit", "1", *data]).stdout
    assert first.startswith("cd-icc") and "more: --after cd-icc" in first
    second = runner.invoke(app, ["centres", "list", "--limit", "1", "--after", "cd-icc", *data])
    assert second.stdout.startswith("nscc-cd") and "more:" not in second.stdout
    assert "active key nscc-cd+" in second.output
