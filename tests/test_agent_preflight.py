"""The centre side against bad exports and bad configuration, through the real command
(``suanli centre run / quarantine / requeue``) and a real gRPC server with TLS: bad rows
are quarantined while the good rows are claimed; pre-flight names each configuration
failure with its cause before anything is sent; a configuration refusal is sent again,
once, after the fix."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from grpc_fixtures import GrpcEnv, grpc_env, grpc_env_factory
from test_agent import claim_entries, ledger_claims, make_agent, write_sacct
from typer.testing import CliRunner

from adapters.cli import app
from adapters.credentials import CentreFiles
from adapters.mapping import AccountMap
from api.devpki import ensure_dev_pki

runner = CliRunner()
FIXTURES = (grpc_env, grpc_env_factory)


def mapping_file(path: Path, accounts: dict[str, str]) -> Path:
    path.write_text(json.dumps({"accounts": accounts}), encoding="utf-8")
    return path


def run_args(env: GrpcEnv, source: Path, mapping: Path, *more: str) -> list[str]:
    return ["run", "--source", f"sacct:{source}", "--mapping", str(mapping),
            "--data-dir", str(env.data_dir), "--target", env.target, "--quiet", *more]  # fmt: skip


def spoil(path: Path, line: int, column: int, value: str) -> str:
    """Set one field of one line (1-based) of a sacct export; return what it was."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fields = lines[line - 1].split("|")
    fields[column], was = value, fields[column]
    lines[line - 1] = "|".join(fields)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return was


def test_bad_rows_are_quarantined_and_good_rows_claimed(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    voucher = grpc_env.voucher("industry")
    source = write_sacct(tmp_path / "jobs.log", 30, ["chem"], gpu_share=0.0, extras=False)
    # Three jobs' allocation rows (lines 1, 6 and 7; the others are steps or other jobs).
    spoil(source, 1, 18, "99999999999999999999")  # NCPUS
    end = spoil(source, 6, 13, "9999-12-31T23:59:59")  # End
    start = spoil(source, 7, 12, "1999-12-31T23:00:00")  # Start before 2000
    mapping = mapping_file(tmp_path / "accounts.json", {"chem": voucher})

    result = runner.invoke(app, run_args(grpc_env, source, mapping))
    assert result.exit_code == 1, result.output
    assert "3 bad rows are quarantined (the good rows were claimed)" in result.stderr
    assert len(ledger_claims(grpc_env)) == 27  # every good row, once
    assert set(claim_entries(grpc_env).values()) == {1}

    listed = runner.invoke(app, ["quarantine", "--data-dir", str(grpc_env.data_dir)])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert [line.split(" ")[0].rsplit(":", 1)[1] for line in lines] == ["1", "6", "7"]
    assert "NCPUS=999999999999... (20 digits) is out of range" in lines[0]
    assert "End 9999-12-31T23:59:59 is outside the years" in lines[1]
    assert "Start 1999-12-31T23:00:00 is outside the years" in lines[2]
    assert "3 of 3 quarantined rows" in listed.stderr
    page = runner.invoke(app, ["quarantine", "--data-dir", str(grpc_env.data_dir), "--limit", "2"])
    assert len(page.stdout.splitlines()) == 2 and "next page: --after" in page.stderr
    cursor = page.stderr.rsplit("--after ", 1)[1].split()[0]
    rest = runner.invoke(
        app, ["quarantine", "--data-dir", str(grpc_env.data_dir), "--after", cursor, "--json"]
    )
    assert [json.loads(line)["line_no"] for line in rest.stdout.splitlines()] == [7]

    # --skip-bad accepts them; a fixed export empties the quarantine and claims the rest.
    assert runner.invoke(app, run_args(grpc_env, source, mapping, "--skip-bad")).exit_code == 0
    spoil(source, 1, 18, "4")
    good = runner.invoke(app, run_args(grpc_env, source, mapping))
    assert good.exit_code == 1 and "2 bad rows" in good.stderr  # lines 6, 7
    spoil(source, 6, 13, end)
    spoil(source, 7, 12, start)
    fixed = runner.invoke(app, run_args(grpc_env, source, mapping))
    assert fixed.exit_code == 0, fixed.output
    assert len(ledger_claims(grpc_env)) == 30
    assert set(claim_entries(grpc_env).values()) == {1}
    empty = runner.invoke(app, ["quarantine", "--data-dir", str(grpc_env.data_dir)])
    assert empty.stdout == "" and "0 of 0" in empty.stderr


def test_preflight_names_each_failure_and_sends_nothing(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    voucher = grpc_env.voucher("industry")
    only_icc = grpc_env.voucher("industry", centres=["cd-icc"])
    source = write_sacct(tmp_path / "jobs.log", 10, ["chem"], gpu_share=0.0, extras=False)
    good = mapping_file(tmp_path / "good.json", {"chem": voucher})
    size = grpc_env.log_size()

    # A mapping typo and a voucher of the other centre: both named, nothing sent.
    typo = mapping_file(tmp_path / "typo.json", {"chem": voucher + "x", "bio": only_icc})
    result = runner.invoke(app, run_args(grpc_env, source, typo))
    assert result.exit_code == 1, result.output
    assert f"voucher {voucher}x (account chem): the ledger has no such voucher" in result.stderr
    assert f"voucher {only_icc} (account bio): is not accepted at nscc-cd" in result.stderr
    assert "nothing was sent" in result.stderr and "Traceback" not in result.output

    # The other centre's certificate for --centre nscc-cd.
    wrong = runner.invoke(
        app, [*run_args(grpc_env, source, good), "--centre-dir",
              str(grpc_env.data_dir / "centres" / "cd-icc"), "--centre", "nscc-cd"],
    )  # fmt: skip
    assert wrong.exit_code == 1, wrong.output
    assert "is centre cd-icc's (suanli:centre:cd-icc), not --centre nscc-cd's" in wrong.stderr

    # A CA that did not sign the server's certificate.
    other = tmp_path / "other"
    ensure_dev_pki(other)
    centre_dir = tmp_path / "nscc-cd"
    shutil.copytree(grpc_env.data_dir / "centres" / "nscc-cd", centre_dir)
    shutil.copy(other / "tls" / "ca.pem", centre_dir / "ca.pem")
    untrusted = runner.invoke(
        app, [*run_args(grpc_env, source, good), "--centre-dir", str(centre_dir)]
    )
    assert untrusted.exit_code == 1, untrusted.output
    assert "TLS verify failure: ca.pem does not verify the server's certificate" in (
        untrusted.stderr
    )

    # Nothing listening: the cause, exit 3 (run again later).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    down = runner.invoke(
        app, [*run_args(grpc_env, source, good), "--target", dead, "--give-up-after", "1"]
    )
    assert down.exit_code == 3, down.output
    assert f"ledger at {dead}: connection refused" in down.stderr
    assert grpc_env.log_size() == size  # nothing was sent by any of them

    ok = runner.invoke(app, run_args(grpc_env, source, good))
    assert ok.exit_code == 0, ok.output
    assert len(ledger_claims(grpc_env)) == 10


def test_configuration_refusals_are_requeued_and_claimed_once(
    grpc_env: GrpcEnv, tmp_path: Path
) -> None:
    """Records refused UNKNOWN_VOUCHER (a mapping typo) and CERTIFICATE_MISMATCH (the
    agent ran with another centre's credentials): after the fix, requeue reads each
    record's voucher again from the mapping, and the next run claims each exactly once."""
    voucher = grpc_env.voucher("industry")
    source = write_sacct(tmp_path / "jobs.log", 12, ["chem", "bio"], gpu_share=0.0, extras=False)
    outbox = tmp_path / "outbox.db"
    agent = make_agent(
        grpc_env, tmp_path, {"chem": voucher + "x", "bio": voucher}, [f"sacct:{source}"],
        outbox=outbox,
    )  # fmt: skip
    agent.files = CentreFiles(grpc_env.data_dir / "centres" / "cd-icc")  # the wrong identity
    agent.run()
    refusals = agent.outbox.refusals("nscc-cd")
    assert set(refusals) <= {"UNKNOWN_VOUCHER", "CERTIFICATE_MISMATCH"}
    assert sum(refusals.values()) == 12 and not ledger_claims(grpc_env)
    agent.close()
    agent.outbox.close()

    fixed = mapping_file(tmp_path / "fixed.json", {"chem": voucher, "bio": voucher})
    args = ["requeue", "--mapping", str(fixed), "--outbox", str(outbox)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "12 refused records back to pending" in result.stdout

    again = make_agent(
        grpc_env, tmp_path, {"chem": voucher, "bio": voucher}, [f"sacct:{source}"],
        outbox=outbox,
    )  # fmt: skip
    again.run()
    counts = again.outbox.counts("nscc-cd")
    assert counts == {"pending": 0, "claimed": 12, "refused": 0}
    assert {r.record.voucher for r in again.outbox.rows()} == {voucher}
    assert len(ledger_claims(grpc_env)) == 12
    assert set(claim_entries(grpc_env).values()) == {1}
    size = grpc_env.log_size()
    assert runner.invoke(app, args).stdout.startswith("0 refused records")
    assert again.run().answered == 0 and grpc_env.log_size() == size
    again.close()


def test_mapping_vouchers_name_their_entry() -> None:
    mapping = AccountMap.from_dict(
        {"accounts": {"chem": "V-1"}, "users": {"ann": "V-2"},
         "account_users": {"bio": {"bob": "V-3"}}, "wckeys": {"w": "V-1"}}
    )  # fmt: skip
    assert mapping.vouchers() == {
        "V-1": "wckey w",
        "V-3": "account bio user bob",
        "V-2": "user ann",
    }


SUANLI = str(Path(sys.executable).parent / "suanli")


def test_quiet_is_quiet_and_idle_cycles_print_one_line(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    """The real command in its own process: --quiet prints nothing when all is well; under
    --interval a cycle that did something prints its table, an idle one a single line."""
    voucher = grpc_env.voucher("industry")
    source = write_sacct(tmp_path / "jobs.log", 8, ["chem"], gpu_share=0.0, extras=False)
    mapping = mapping_file(tmp_path / "accounts.json", {"chem": voucher})
    base = [SUANLI, "centre", "run", "--source", f"sacct:{source}", "--mapping", str(mapping),
            "--data-dir", str(grpc_env.data_dir), "--target", grpc_env.target,
            "--no-progress"]  # fmt: skip
    quiet = subprocess.run([*base, "--quiet"], capture_output=True, timeout=120, check=False)
    assert quiet.returncode == 0, quiet.stderr
    assert (quiet.stdout, quiet.stderr) == (b"", b"")
    assert len(ledger_claims(grpc_env)) == 8

    more = write_sacct(tmp_path / "jobs.log", 12, ["chem"], gpu_share=0.0, extras=False)
    agent = subprocess.Popen(
        [*base, "--interval", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    idle = threading.Event()

    def read() -> None:
        assert agent.stderr is not None
        for line in agent.stderr:
            lines.append(line.rstrip("\n"))
            if sum("nothing new" in x for x in lines) >= 3:
                idle.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert idle.wait(120), "\n".join(lines)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
        reader.join(10)
        assert agent.stderr is not None
        agent.stderr.close()
    assert more == source and len(ledger_claims(grpc_env)) == 12
    first_idle = next(i for i, x in enumerate(lines) if "nothing new" in x)
    assert any("this run" in x and "4 claimed" in x for x in lines[:first_idle]), lines
    after = [x for x in lines[first_idle:] if "stopping (signal" not in x]
    assert after and all(
        x == "nscc-cd: nothing new (12 claimed, 0 refused, 0 pending)" for x in after
    ), lines
