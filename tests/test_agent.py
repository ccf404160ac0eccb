"""The centre agent (adapters.agent) and its outbox (adapters.outbox) against a real gRPC
server (in-process, TLS, port 0) with the 2023 round seeded through the log.

The server's clock is set inside the 2023 round; the agent signs with this machine's
clock, so every test also exercises the agent's CLOCK_SKEW correction.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from domain_helpers import local
from grpc_fixtures import GrpcEnv, grpc_env, grpc_env_factory
from typer.testing import CliRunner

from adapters.agent import Agent, classify
from adapters.cli import app
from adapters.client import ClaimItem, RedemptionError, StreamResult
from adapters.credentials import CentreFiles
from adapters.errors import AgentError
from adapters.mapping import AccountMap
from adapters.outbox import Claimed, Outbox, OutboxRecord, Refusal, Transient
from adapters.progress import Progress
from adapters.rates import RateBook
from adapters.sources import UsageSource
from api.cli.demo.samples import sample_events, sample_sacct
from ledger import claims
from ledger.fold import opened
from ledger.timeutil import format_time

SAMPLES = Path(__file__).parent / "samples"
PHILLIPS = SAMPLES / "slurm" / "sacct_P_xdmod_phillips_excerpt.log"
WINDOW = (local("2023-02-01 00:00"), local("2023-07-30 00:00"))

runner = CliRunner()
FIXTURES = (grpc_env, grpc_env_factory)  # pytest finds fixtures by the names imported here


def make_agent(
    env: GrpcEnv,
    tmp_path: Path,
    accounts: dict[str, str],
    sources: list[str],
    centre: str = "nscc-cd",
    outbox: Path | None = None,
    **kw: Any,
) -> Agent:
    box = Outbox(outbox or tmp_path / f"{centre}-outbox.db")
    return Agent(
        centre=centre,
        outbox=box,
        target=env.target,
        files=CentreFiles(env.data_dir / "centres" / centre),
        mapping=AccountMap.from_dict({"accounts": accounts}),
        rates=kw.pop("rates", None) or RateBook.load(),
        sources=[UsageSource.parse(s) for s in sources],
        progress=Progress(centre, bar=False),
        **kw,
    )


def write_sacct(path: Path, jobs: int, accounts: list[str], **kw: Any) -> Path:
    lines = sample_sacct(jobs, start=WINDOW[0], end=WINDOW[1], accounts=accounts, **kw)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ledger_claims(env: GrpcEnv, centre: str = "nscc-cd") -> dict[str, claims.ClaimRecord]:
    book = claims.book(env.ledger.refresh())
    return {rid: rec for (c, rid), rec in book.claims.items() if c == centre}


def claim_entries(env: GrpcEnv) -> Counter[str]:
    """How many claim entries the log holds per record id (not the fold: the log itself)."""
    counted: Counter[str] = Counter()
    for published in env.ledger.store.replay(0):
        entry = opened(published)  # the record id is concealed in the public leaf
        if entry.kind == "claim":
            counted[f"{entry.body['centre']}/{entry.body['record_id']}"] += 1
    return counted


def redated_phillips(path: Path, copies: int = 1) -> Path:
    """The real phillips sacct excerpt, moved into the 2023 usage window and renumbered
    (``copies`` times), with its accounts kept."""
    from adapters.slurm import XDMOD_COLUMNS
    from ledger.timeutil import parse_time

    column = {name: i for i, name in enumerate(XDMOD_COLUMNS)}
    rows = [line.split("|") for line in PHILLIPS.read_text().splitlines() if line.strip()]
    first = min(parse_time(r[column["start"]] + "Z") for r in rows)
    out = []
    for copy in range(copies):
        shift = WINDOW[0] - first + timedelta(days=copy % 20, hours=copy)
        for row in rows:
            new = list(row)
            for name in ("submit", "eligible", "start", "end"):
                text = row[column[name]]
                if text[:1].isdigit():
                    moment = parse_time(text + "Z") + shift
                    new[column[name]] = moment.strftime("%Y-%m-%dT%H:%M:%S")
            for name in ("jobid", "jobidraw"):
                head, sep, tail = row[column[name]].partition(".")
                new[column[name]] = f"{head}{copy:03d}{sep}{tail}"
            out.append("|".join(new))
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


# --- back-fill ---------------------------------------------------------------------------------


def test_backfill_claims_every_record_once(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    vouchers = [grpc_env.voucher("industry") for _ in range(3)]
    accounts = {"chem": vouchers[0], "bio": vouchers[1], "ai": vouchers[2]}
    source = write_sacct(tmp_path / "jobs.log", 400, list(accounts))
    agent = make_agent(grpc_env, tmp_path, accounts, [f"sacct:{source}"])

    report = agent.run()
    assert report.finished
    counts = agent.outbox.counts("nscc-cd")
    assert counts["pending"] == 0 and counts["refused"] == 0
    assert report.claimed == counts["claimed"] > 400  # cpu records and GPU records
    assert report.transient == 0  # the clock was found with the first claim alone
    assert abs(agent.offset) > 3600 * 24 * 300

    ledger = ledger_claims(grpc_env)
    rows = {row.record.record_id: row for row in agent.outbox.rows("nscc-cd")}
    assert set(ledger) == set(rows)
    for record_id, row in rows.items():
        found = ledger[record_id]
        assert row.claimed is not None
        assert (row.claimed.subsidy_fen, row.claimed.log_index) == (found.subsidy_fen, found.index)
        assert found.voucher == accounts[row.record.account]
        assert found.body["cost_fen"] == row.record.cost_fen
    assert set(claim_entries(grpc_env).values()) == {1}
    assert agent.outbox.subsidy_total("nscc-cd") == sum(c.subsidy_fen for c in ledger.values())

    # Reading the same export again adds nothing and sends nothing.
    size = grpc_env.log_size()
    again = agent.run()
    assert (again.answered, grpc_env.log_size()) == (0, size)
    agent.close()


def test_real_sacct_sample_redated(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    """The phillips excerpt (real sacct output) moved into 2023: the agent claims what the
    parser reads, GPU records included; taifl has no voucher and is skipped as unmapped."""
    voucher = grpc_env.voucher("industry")
    source = redated_phillips(tmp_path / "phillips.log")
    agent = make_agent(grpc_env, tmp_path, {"chaff": voucher}, [f"sacct:{source}"])
    ingest = agent.ingest()
    assert ingest.skipped["unmapped"] == 10  # taifl: no voucher mapping
    assert ingest.added == 5  # chaff: 3 cpu records and 2 GPU records (gres/gpu=2)
    agent.submit()
    ledger = ledger_claims(grpc_env)
    assert sorted(ledger) == sorted(
        r.record.record_id for r in agent.outbox.rows() if r.status == "claimed"
    )
    gpu = [r for r in ledger.values() if r.body["resource"] == "gpu"]
    assert len(gpu) == 2
    agent.close()


def test_reingest_is_keyed_by_record_id(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    voucher = grpc_env.voucher("industry")
    source = write_sacct(tmp_path / "jobs.log", 50, ["chem"], gpu_share=0.0, extras=False)
    agent = make_agent(grpc_env, tmp_path, {"chem": voucher}, [f"sacct:{source}"])
    first = agent.ingest()
    assert (first.added, first.known) == (50, 0)
    assert agent.ingest().unchanged_files == 1  # same file: not parsed again

    # The same jobs in a new export (a longer one, one job's CPUs changed): no new rows
    # for known records; the changed one keeps its first body and is counted.
    lines = source.read_text().splitlines()
    fields = lines[0].split("|")
    fields[18] = str(int(fields[18]) * 2)  # NCPUS
    lines[0] = "|".join(fields)
    export = write_sacct(tmp_path / "more.log", 60, ["chem"], gpu_share=0.0, extras=False)
    export.write_text("\n".join(lines) + "\n" + export.read_text(), encoding="utf-8")
    agent.sources = [UsageSource.parse(f"sacct:{export}")]
    second = agent.ingest()
    assert (second.known, second.changed) == (49, 1)
    assert second.added == 60 - 50  # the 10 jobs new in the longer export (same seed)
    assert sum(agent.outbox.counts().values()) == 60
    agent.close()


def test_final_refusals_are_recorded_and_not_retried(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    """A small voucher: its cap is reached; later records are refused CAP_EXHAUSTED naming
    the cap, recorded once, and never sent again."""
    small = grpc_env.voucher("industry", amount_fen=100_000, face_value_fen=100_000)
    source = write_sacct(tmp_path / "jobs.log", 120, ["chem"], gpu_share=1.0, extras=False)
    agent = make_agent(grpc_env, tmp_path, {"chem": small}, [f"sacct:{source}"])
    agent.run()
    refusals = agent.outbox.refusals("nscc-cd")
    assert set(refusals) == {"CAP_EXHAUSTED"}
    refused = [r for r in agent.outbox.rows() if r.status == "refused"]
    assert refused[0].refusal is not None
    assert refused[0].refusal.code == "RESOURCE_EXHAUSTED"
    assert refused[0].refusal.metadata["cap"] == "voucher"
    claimed = [r for r in agent.outbox.rows() if r.claimed is not None]
    assert claimed[-1].claimed is not None and claimed[-1].claimed.bound_by == "voucher"
    assert agent.outbox.subsidy_total() == 100_000  # exactly the face value, to the fen
    attempts = {r.record.record_id: r.attempts for r in refused}

    size = grpc_env.log_size()
    again = agent.run()
    assert again.answered == 0 and grpc_env.log_size() == size
    assert {r.record.record_id: r.attempts for r in agent.outbox.rows() if r.refusal} == attempts
    agent.close()


def test_server_down_leaves_records_pending(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    """Nothing listening: the agent gives up after the given time with every record still
    pending (exit 3 from the CLI); pointed at the server, it finishes them."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    voucher = grpc_env.voucher("industry")
    source = write_sacct(tmp_path / "jobs.log", 30, ["chem"], gpu_share=0.0, extras=False)
    agent = make_agent(grpc_env, tmp_path, {"chem": voucher}, [f"sacct:{source}"], timeout=1.0)
    agent.target = dead
    report = agent.run(give_up_after=1.0)
    assert not report.finished
    rows = list(agent.outbox.rows())
    assert len(rows) == 30 and all(r.status == "pending" for r in rows)
    agent.target = grpc_env.target
    agent.drop_client()
    assert agent.run().finished
    assert agent.outbox.counts()["claimed"] == 30
    agent.close()


def test_lost_answers_are_replayed_not_paid_twice(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    """The ledger committed claims whose answers never reached the outbox (the agent was
    killed): sending them again gets the first answers (replayed) and no new entries."""
    voucher = grpc_env.voucher("industry")
    source = write_sacct(tmp_path / "jobs.log", 40, ["chem"], gpu_share=0.0, extras=False)
    agent = make_agent(grpc_env, tmp_path, {"chem": voucher}, [f"sacct:{source}"])
    agent.ingest()
    rows = agent.outbox.pending(25)
    client = grpc_env.client()
    first = {
        r.record.record_id: client.claim(r.record.usage(), r.record.voucher, r.record.cost_fen)
        for r in rows
    }
    size = grpc_env.log_size()
    report = agent.submit()
    assert report.replayed == 25 and report.claimed == 40
    assert grpc_env.log_size() == size + 15
    for row in agent.outbox.rows():
        if row.record.record_id in first:
            assert row.claimed is not None and row.claimed.replayed
            assert row.claimed.log_index == first[row.record.record_id].log_index
    assert set(claim_entries(grpc_env).values()) == {1}
    agent.close()


def test_events_directory_and_unpriced_records(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    """cd-icc's event directory: files read in name order, unchanged ones skipped, a new one
    picked up; a resource its rate card does not price is refused locally (LOCAL) and sent
    once the rate cards price it (--retry-refused)."""
    voucher = grpc_env.voucher("industry")
    events = tmp_path / "events"
    events.mkdir()
    lines = sample_events(20, start=WINDOW[0], end=WINDOW[1], tenants=["acme"])
    (events / "2023-03.jsonl").write_text("\n".join(lines[:10]) + "\n", encoding="utf-8")
    (events / "notes.txt").write_text("not events", encoding="utf-8")
    agent = make_agent(grpc_env, tmp_path, {"acme": voucher}, [f"events:{events}"], centre="cd-icc")
    agent.run()
    assert agent.outbox.counts("cd-icc")["claimed"] == 10
    (events / "2023-04.jsonl").write_text("\n".join(lines[10:]) + "\n", encoding="utf-8")
    v100 = json.loads(lines[0])
    v100["id"], v100["data"]["resource"] = "wl-v100", "gpu:v100"
    (events / "2023-05.jsonl").write_text(json.dumps(v100) + "\n", encoding="utf-8")
    ingest = agent.ingest()
    assert (ingest.files, ingest.unchanged_files, ingest.added) == (3, 1, 11)
    assert ingest.unpriced == 1
    agent.submit()
    unpriced = agent.outbox.get("cd-icc", "//cd-icc/aiplatform/wl-v100")
    assert unpriced is not None and unpriced.refusal is not None
    assert (unpriced.refusal.reason, unpriced.refusal.code) == ("UNKNOWN_RESOURCE", "LOCAL")
    assert agent.outbox.counts("cd-icc")["claimed"] == 20

    # The card gains a v100 price (a file of rate cards); the refused record goes again and
    # the ledger (whose card still lacks it) refuses it itself.
    cards = tmp_path / "cards.json"
    card = {
        "centre": "cd-icc",
        "version": 1,
        "effective_from": "2023-01-01",
        "prices": {"gpu:v100": {"price_fen": 700, "per_units": 3600}},
    }
    cards.write_text(json.dumps([card]), encoding="utf-8")
    agent.rates = RateBook.load(str(cards))
    assert agent.outbox.requeue(["UNKNOWN_RESOURCE"], "cd-icc", agent.reprice) == 1
    agent.submit()
    again = agent.outbox.get("cd-icc", "//cd-icc/aiplatform/wl-v100")
    assert again is not None and again.refusal is not None
    assert (again.refusal.reason, again.refusal.code) == ("UNKNOWN_RESOURCE", "INVALID_ARGUMENT")
    agent.close()


def test_rate_cards_from_the_ledger_over_http(grpc_env: GrpcEnv) -> None:
    """The agent can price with the ledger's own ratecard.publish entries: all of them from
    the auditor API, or a centre's own with its own token (GET /v1/centres/{id}/rate-cards)."""
    import socket
    import threading
    import time

    import uvicorn

    from api.http.app import create_app

    token, _ = grpc_env.service.tokens.create("auditor", label="centre agent")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(grpc_env.service), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        book = RateBook.load(base, token=token)
        with pytest.raises(AgentError, match="401"):
            RateBook.load(base, token="wrong")
        # A centre's own token reads its own cards, and only its own.
        own, _ = grpc_env.service.tokens.create("centre", label="agent", centre="nscc-cd")
        mine = RateBook.load(base, token=own, centre="nscc-cd")
        with pytest.raises(AgentError, match="403: a centre sees only its own records"):
            RateBook.load(base, token=own, centre="cd-icc")
        with pytest.raises(AgentError, match="403"):
            RateBook.load(base, token=own)  # the auditor API: not for a centre token
        runner_env = {"SUANLI_CENTRE_TOKEN": own}
        source = write_sacct(Path(grpc_env.data_dir) / "jobs.log", 5, ["chem"], extras=False)
        mapping = Path(grpc_env.data_dir) / "accounts.json"
        mapping.write_text(json.dumps({"accounts": {"chem": grpc_env.voucher()}}))
        result = runner.invoke(
            app,
            ["run", "--source", f"sacct:{source}", "--mapping", str(mapping), "--data-dir",
             str(grpc_env.data_dir), "--target", grpc_env.target, "--rates", base, "--json",
             "--quiet"],
            env=runner_env,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["claimed"] == len(ledger_claims(grpc_env)) > 0
    finally:
        server.should_exit = True
        thread.join(10)
    assert book.fingerprint() == RateBook.load().fingerprint()
    assert mine.cards == {"nscc-cd": RateBook.load().cards["nscc-cd"]}


def test_classify_and_sources() -> None:
    usage_item = ClaimItem.__new__(ClaimItem)
    error = RedemptionError.__new__(RedemptionError)
    import grpc

    for code, reason, expected in (
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "CAP_EXHAUSTED", Refusal),
        (grpc.StatusCode.FAILED_PRECONDITION, "VOUCHER_EXPIRED", Refusal),
        (grpc.StatusCode.FAILED_PRECONDITION, "CLOCK_SKEW", Transient),
        (grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE", Transient),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", Transient),
        (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_CLAIMED", Refusal),
        (grpc.StatusCode.INTERNAL, "INTERNAL", Transient),  # a bug: never final
        (grpc.StatusCode.UNKNOWN, "UNKNOWN", Transient),
        (grpc.StatusCode.NOT_FOUND, "UNKNOWN_VOUCHER", Refusal),  # final until requeue
        (grpc.StatusCode.PERMISSION_DENIED, "CERTIFICATE_MISMATCH", Refusal),
        (grpc.StatusCode.INVALID_ARGUMENT, "OUT_OF_RANGE", Refusal),
    ):
        error = RedemptionError(code, reason, "m", {})
        assert isinstance(classify(StreamResult(usage_item, None, error)), expected)
    with pytest.raises(AgentError, match="expected one of"):
        UsageSource.parse("slurm:jobs.log")
    with pytest.raises(AgentError, match="does not exist"):
        UsageSource.parse("sacct:/no/such/file").files()


def test_outbox_survives_reopen(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    start = format_time(datetime(2023, 3, 1, tzinfo=UTC))
    record = OutboxRecord("nscc-cd", "c/1", "acct", "V-1", "cpu", 3600, start, start, 10)
    with Outbox(tmp_path / "o.db") as box:
        assert box.add([record, record]).added == 1
        box.answer([(record, Claimed(3, 42, "rate", 97, 3000, "ab" * 32, start, False))])
    with Outbox(tmp_path / "o.db") as box:
        row = box.get("nscc-cd", "c/1")
        assert row is not None and row.status == "claimed"
        assert row.claimed is not None and row.claimed.log_index == 42
        # A later answer never overwrites the first.
        box.answer([(record, Refusal("CAP_EXHAUSTED", "RESOURCE_EXHAUSTED", "m"))])
        again = box.get("nscc-cd", "c/1")
        assert again is not None and again.status == "claimed"
    assert (tmp_path / "o.db").stat().st_mode & 0o777 == 0o600  # the owner's only
    # An outbox made before the job-keys column gets it when opened, its rows intact.
    import sqlite3

    with sqlite3.connect(tmp_path / "o.db") as db:
        db.execute("ALTER TABLE records DROP COLUMN job_keys")
    with Outbox(tmp_path / "o.db") as box:
        old = box.get("nscc-cd", "c/1")
        assert old is not None and old.status == "claimed" and old.record.keys == ""


# --- the command -----------------------------------------------------------------------------


def test_centre_run_command(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    voucher = grpc_env.voucher("industry")
    source = write_sacct(tmp_path / "jobs.log", 40, ["chem", "guest"], gpu_share=0.2)
    mapping = tmp_path / "accounts.json"
    mapping.write_text(json.dumps({"accounts": {"chem": voucher}}), encoding="utf-8")
    args = [
        "run",
        "--source",
        f"sacct:{source}",
        "--mapping",
        str(mapping),
        "--data-dir",
        str(grpc_env.data_dir),
        "--target",
        grpc_env.target,
        "--json",
        "--quiet",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["centre"] == "nscc-cd" and info["pending"] == 0 and info["refused"] == 0
    assert info["claimed"] == len(ledger_claims(grpc_env)) > 0
    assert info["outbox"] == str(grpc_env.data_dir / "centres" / "nscc-cd" / "outbox.db")
    assert info["subsidy_fen"] == sum(c.subsidy_fen for c in ledger_claims(grpc_env).values())

    bad = runner.invoke(app, [*args[:2], "nope:x", *args[3:]])
    assert bad.exit_code == 1 and "expected one of" in bad.output, bad.output
    missing = runner.invoke(
        app, ["run", "--source", f"sacct:{source}", "--mapping", str(mapping),
              "--centre-dir", str(tmp_path / "nowhere")],
    )  # fmt: skip
    assert missing.exit_code == 1 and "lacks client.pem" in missing.output


def test_centre_run_gives_up_with_exit_3(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    source = write_sacct(tmp_path / "jobs.log", 5, ["chem"], extras=False)
    mapping = tmp_path / "accounts.json"
    mapping.write_text(json.dumps({"accounts": {"chem": "V-x"}}), encoding="utf-8")
    result = runner.invoke(
        app,
        ["run", "--source", f"sacct:{source}", "--mapping", str(mapping), "--data-dir",
         str(grpc_env.data_dir), "--target", dead, "--give-up-after", "1", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "connection refused" in result.output and "nothing was sent" in result.output


def test_docs_centre_names_real_options() -> None:
    """docs/centre.md: every option its usage blocks name exists on the command, and its
    table of transient failures is the agent's."""
    import re

    import typer

    from adapters.agent import TRANSIENT_CODES, TRANSIENT_REASONS

    doc = (Path(__file__).parent.parent / "docs" / "centre.md").read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    for name in ("run", "reconcile"):
        block = doc.split(f"suanli centre {name} --", 1)[1].split("```", 1)[0]
        named = set(re.findall(r"--[a-z][a-z-]*", "--" + block))
        command = group.commands[name]  # type: ignore[attr-defined]
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        assert named <= known, f"{name}: {sorted(named - known)} not options"
    row = next(line for line in doc.splitlines() if line.startswith("| `UNAVAILABLE`"))
    listed = set(re.findall(r"`([A-Z_]+)`", row.split("|")[1]))
    assert listed == {c.name for c in TRANSIENT_CODES}
    assert all(f"`{reason}`" in doc for reason in TRANSIENT_REASONS)


def test_sacct_command_on_a_schedule(grpc_env: GrpcEnv, tmp_path: Path) -> None:
    """``sacct-cmd:`` runs a command each cycle; with an interval, jobs that appear in a
    later cycle are claimed then, and the ones already claimed are not sent again."""
    import threading

    voucher = grpc_env.voucher("industry")
    export = write_sacct(tmp_path / "jobs.log", 30, ["chem"], gpu_share=0.0, extras=False)
    first = export.read_text().splitlines()
    export.write_text("\n".join(first[:20]) + "\n", encoding="utf-8")
    agent = make_agent(grpc_env, tmp_path, {"chem": voucher}, [f"sacct-cmd:cat {export}"])
    cycles: list[tuple[int, int]] = []
    second = threading.Event()

    def on_cycle(ingest: Any, submitted: Any) -> None:
        cycles.append((ingest.added, submitted.claimed))
        if len(cycles) == 1:  # sacct now shows the jobs that ended since
            export.write_text("\n".join(first) + "\n", encoding="utf-8")
        else:
            agent.stop()
            second.set()

    thread = threading.Thread(target=lambda: agent.run(interval=1.0, on_cycle=on_cycle))
    thread.start()
    assert second.wait(60)
    thread.join(30)
    (added, claimed), (more, claimed_more) = cycles[:2]
    assert 0 < added == claimed < 30 and more == claimed_more == 30 - added
    assert agent.outbox.counts()["claimed"] == 30 == len(ledger_claims(grpc_env))
    agent.close()

    broken = make_agent(grpc_env, tmp_path, {}, ["sacct-cmd:false"], outbox=tmp_path / "x.db")
    with pytest.raises(AgentError, match="exited with 1"):
        broken.ingest()
    broken.close()
