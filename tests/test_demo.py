"""``suanli demo``: the moved round, and the whole demo as a user runs it.

The end-to-end test runs the real command twice on a fresh data dir, with the service's
clock in real time as ``make run`` has it: first with no service running (the demo starts
``suanli serve`` and stops it), then against a ``suanli serve`` started beforehand (the
README's case), which also shows a second run on the same ledger works (the demo round is
reused, new applicants, vouchers and records).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from api.cli.demo.round import demo_policy
from api.cli.demo.samples import sample_events, sample_sacct
from ledger.policy import Policy
from ledger.timeutil import shanghai_start

SUANLI = str(Path(sys.executable).parent / "suanli")
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_demo_policy_moves_every_window() -> None:
    today = date(2026, 5, 14)
    doc = demo_policy(today)
    policy = Policy.from_json(doc)  # a valid policy document
    original = Policy.load()
    assert policy.round == original.round == "chengdu-2023-31"
    noon = shanghai_start(today) + timedelta(hours=12)
    assert policy.window("online_submission").contains(noon)
    assert policy.window("district_review").contains(noon)
    assert not policy.window("online_submission").contains(noon + timedelta(days=8))
    activity = policy.window("project_activity")
    assert activity.end is not None and activity.end < noon - timedelta(days=19)
    shift = timedelta(days=(today - date(2023, 8, 20)).days)
    for name, window in original.windows.items():
        assert policy.windows[name].end == (window.end + shift if window.end else None)
    for pid, programme in original.programmes.items():
        moved = policy.programmes[pid]
        assert (moved.rate_bp, moved.entity_cap, moved.pool) == (
            programme.rate_bp,
            programme.entity_cap,
            programme.pool,
        )
        if programme.usage_window is not None:
            assert moved.usage_window is not None
            assert moved.usage_window.earliest == programme.usage_window.earliest + shift
    assert policy.rate_cards == original.rate_cards  # the centres' cards are not the round's
    assert policy.version != original.version
    assert demo_policy(today) == doc  # the same day gives the same version


def test_samples_are_deterministic_and_parse() -> None:
    from adapters.events import parse_events
    from adapters.slurm import parse_sacct

    start = shanghai_start(date(2023, 2, 1))
    end = shanghai_start(date(2023, 7, 1))
    lines = sample_sacct(600, start=start, end=end, accounts=["a", "b"], seed=7, header=True)
    assert lines == sample_sacct(
        600, start=start, end=end, accounts=["a", "b"], seed=7, header=True
    )
    parsed = parse_sacct(lines, centre="nscc-cd")
    codes = {s.code for s in parsed.skipped}
    assert {"step", "running", "never-started"} <= codes
    assert len(parsed.records) > 600  # every job that ran, and GPU records
    assert all(start <= r.start and r.end <= end for r in parsed.records)
    assert any(r.resource == "gpu:a100" for r in parsed.records)
    assert any("_" in line.split("|")[0] for line in lines)  # array tasks (JobID 123_4)
    assert any("+" in line.split("|")[0] for line in lines)  # heterogeneous jobs (123+0)
    events = parse_events(sample_events(50, start=start, end=end, tenants=["t"]), centre="cd-icc")
    assert len(events.records) == 50 and not events.skipped
    assert all(start <= r.start and r.end <= end for r in events.records)


def _suanli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SUANLI, *args], capture_output=True, text=True, cwd=ROOT, check=False)


def _demo(data_dir: Path, http: int, grpc: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SUANLI, "demo", "--http", f"http://127.0.0.1:{http}", "--grpc", f"127.0.0.1:{grpc}",
         "--data-dir", str(data_dir), *extra],
        capture_output=True, text=True, timeout=240, cwd=ROOT, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    data_dir = tmp_path / "suanli-data"
    http, grpc = _free_port(), _free_port()

    # 0. The demo publishes a moved round: never on a missing or a production data dir.
    missing = _demo(data_dir, http, grpc)
    assert missing.returncode == 3 and "no data dir at" in missing.stderr, missing.stderr
    assert not data_dir.exists()
    production = tmp_path / "production"
    made = _suanli("init", "--data-dir", str(production))
    assert made.returncode == 0 and "(production)" in made.stdout, made.stderr
    refused = _demo(production, http, grpc)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "is not a development data dir" in refused.stderr
    assert "Traceback" not in refused.stderr
    dev = _suanli("init", "--dev", "--data-dir", str(data_dir))
    assert dev.returncode == 0 and "(development)" in dev.stdout, dev.stderr

    # 1. Nothing running: the demo starts suanli serve, runs the round, stops the service.
    first = _demo(data_dir, http, grpc)
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    for step in ("round", "applications", "district review", "decisions and vouchers",
                 "agent nscc-cd", "agent cd-icc", "cap reached", "settlement statements",
                 "reconcile nscc-cd", "reconcile cd-icc", "witnesses", "witnessed",
                 "audit verify"):  # fmt: skip
        assert step in out, f"{step} missing:\n{out}"
    assert "✗" not in out
    assert "CAP_EXHAUSTED (cap=voucher)" in out
    assert "DISTRICT_REJECTED" in out
    assert "differences: none" in out
    # Two witness processes cosigned; the audit demanded both (their policy file).
    policy = (data_dir / "demo" / "witnesses" / "witnesses.policy").read_text()
    assert policy.count("\nwitness ") == 2 and "quorum all-witnesses" in policy
    assert "cosigned by every witness" in out
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{http}/healthz", timeout=2)  # stopped again

    # 2. The README's case: a service already running on the data dir.
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [SUANLI, "serve", "--data-dir", str(data_dir), "--http", f"127.0.0.1:{http}",
         "--grpc", f"127.0.0.1:{grpc}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{http}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        second = _demo(data_dir, http, grpc, "--no-start")
        assert second.returncode == 0, second.stdout + second.stderr
        assert "(in force)" in second.stdout  # the day's demo version is reused
        assert "started" not in second.stdout
        assert server.poll() is None  # the demo leaves a service it did not start running

        # Pointed at the wrong data dir, it says so (its tokens are unknown to the service).
        other = tmp_path / "other"
        other.mkdir()
        (other / "DEVELOPMENT").write_text("a development dir without a ledger")
        wrong = _demo(other, http, grpc, "--no-start")
        assert wrong.returncode == 1
        assert "no database in" in wrong.stdout + wrong.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        log.close()

    # Its tokens were revoked; its files are there for a look.
    tokens = subprocess.run(
        [SUANLI, "token", "list", "--data-dir", str(data_dir)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    assert "suanli demo" not in tokens.stdout
    runs = sorted(p for p in (data_dir / "demo").iterdir() if p.is_dir() and p.name != "witnesses")
    assert len(runs) == 2
    assert (runs[0] / "nscc-cd-sacct.log").exists() and (runs[0] / "cd-icc-events").is_dir()
    assert (data_dir / "centres" / "nscc-cd" / "outbox.db").exists()
