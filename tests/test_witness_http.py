"""``suanli witness serve`` over real sockets: the C2SP tlog-witness protocol (statuses,
content types, bodies), restarts, concurrent conflicting requests to one process and to
two processes on one database, the log's client, and a split view end to end with two
witnesses and a quorum verifier. Each witness is its own process (``python -m api.witness
serve``), on SQLite or PostgreSQL."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner
from witness_helpers import LOG_KEY, MemLog, RunningWitness, start_witness

from api.witness.cli import app as cli_app
from api.witness.cli import read_logs
from api.witness.client import (
    WitnessUnavailable,
    add_checkpoint_url,
    request_cosignature,
    submit_checkpoint,
)
from api.witness.service import origin_hash
from ledger.errors import LedgerError
from ledger.note import parse_note
from ledger.witness import (
    InconsistentCheckpoint,
    LogSignatureRejected,
    MalformedRequest,
    OldSizeConflict,
    QuorumNotMet,
    UnknownLog,
    format_add_checkpoint,
    merge_cosignatures,
    require_cosignatures,
)

ORIGIN = LOG_KEY.name


@pytest.fixture
def witnesses(tmp_path: Path, db_url: str) -> Iterator[Callable[..., RunningWitness]]:
    """Start witness processes; ``same_as`` restarts (or doubles) one on its data dir."""
    started: list[RunningWitness] = []

    def start(
        name: str = "czj.example/witness", data: str = "czj", db: str | None = None
    ) -> RunningWitness:
        # Each witness its own database: SQLite in its data dir, or a table namespace
        # (its key ID) in the test's PostgreSQL database.
        url = db or (
            f"sqlite:///{tmp_path / data / 'witness.db'}" if db_url.startswith("sqlite") else db_url
        )
        running = start_witness(tmp_path / data, name, url, tmp_path / f"{data}.stderr")
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def post(url: str, body: bytes) -> httpx.Response:
    return httpx.post(add_checkpoint_url(url), content=body, timeout=30)


def body(log: MemLog, old: int, size: int | None = None) -> bytes:
    n = log.size if size is None else size
    return format_add_checkpoint(old, log.proof(old, n), log.checkpoint(n))


def test_add_checkpoint_statuses_content_types_and_bodies(
    witnesses: Callable[..., RunningWitness],
) -> None:
    w = witnesses()
    honest = MemLog().extend(10)
    fork = honest.fork(7).extend(3, "fork")

    ok = post(w.url, body(honest, 0))
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "text/plain; charset=utf-8"
    assert ok.text.startswith("— czj.example/witness ") and ok.text.count("\n") == 1
    require_cosignatures(honest.checkpoint() + ok.text, [w.vkey], 1, log_keys=[LOG_KEY.verifier])

    conflict = post(w.url, body(honest, 3))
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "text/x.tlog.size"  # exactly, no charset
    assert conflict.content == b"10\n"

    split = post(w.url, body(fork, 10))
    assert split.status_code == 422
    assert "another root for size 10" in split.text

    other = MemLog(type(LOG_KEY)("other.example/log", bytes(32))).extend(1)
    assert post(w.url, body(other, 0)).status_code == 404

    cp = honest.checkpoint()
    sig = parse_note(cp).signatures[0]
    forged = cp.replace(sig.line(), type(sig)(sig.name, sig.key_hash, bytes(64)).line())
    assert post(w.url, format_add_checkpoint(10, [], forged)).status_code == 403

    assert post(w.url, b"old 10\n").status_code == 400
    assert post(w.url, format_add_checkpoint(11, [], honest.checkpoint())).status_code == 400
    assert post(w.url, b"old 0\n\n" + b"x" * 300_000).status_code == 413
    assert httpx.get(add_checkpoint_url(w.url)).status_code == 405

    # The record did not move through any of the refusals.
    again = post(w.url, body(honest, 10))
    assert again.status_code == 200


def test_monitoring_checkpoint_and_health(witnesses: Callable[..., RunningWitness]) -> None:
    w = witnesses()
    path = f"{w.url}/{origin_hash(ORIGIN)}/checkpoint"
    assert httpx.get(path).status_code == 404  # never cosigned
    log = MemLog().extend(5)
    line = post(w.url, body(log, 0)).text
    latest = httpx.get(path)
    assert latest.status_code == 200
    assert latest.text == log.checkpoint() + line  # log signature and the cosignature
    assert httpx.get(f"{w.url}/{origin_hash('unknown')}/checkpoint").status_code == 404
    health = httpx.get(f"{w.url}/healthz")
    assert (health.status_code, health.text) == (200, "ok\n")


def test_a_restarted_witness_keeps_its_key_record_and_refusal(
    witnesses: Callable[..., RunningWitness],
) -> None:
    honest = MemLog().extend(12)
    fork = honest.fork(9).extend(3, "fork")
    first = witnesses()
    assert post(first.url, body(honest, 0)).status_code == 200
    first.stop()
    restarted = witnesses()  # the same data dir: new process, new port
    assert restarted.vkey == first.vkey
    split = post(restarted.url, body(fork, 12))
    assert split.status_code == 422
    stale = post(restarted.url, body(fork, 0))
    assert (stale.status_code, stale.text) == (409, "12\n")
    honest.extend(4)
    assert post(restarted.url, body(honest, 12)).status_code == 200


def race(requests: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(requests))
    answers: list[httpx.Response | None] = [None] * len(requests)

    def run(i: int) -> None:
        barrier.wait()
        answers[i] = requests[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def test_concurrent_conflicting_forks_exactly_one_wins(
    witnesses: Callable[..., RunningWitness],
) -> None:
    w = witnesses()
    base = MemLog().extend(3)
    assert post(w.url, body(base, 0)).status_code == 200
    forks = [base.fork(3).extend(2, f"fork {i}") for i in range(8)]
    answers = race([lambda f=f: post(w.url, body(f, 3)) for f in forks])  # type: ignore[misc]
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [409] * 7
    assert {a.text for a in answers if a.status_code == 409} == {"5\n"}
    winner = forks[next(i for i, a in enumerate(answers) if a.status_code == 200)]
    latest = httpx.get(f"{w.url}/{origin_hash(ORIGIN)}/checkpoint").text
    assert parse_note(latest).text == parse_note(winner.checkpoint()).text


def test_two_processes_of_one_witness_on_one_database_one_fork_wins(
    witnesses: Callable[..., RunningWitness], db_url: str, tmp_path: Path
) -> None:
    """A witness scaled out to two processes (same key, same database): the swap in the
    database, not a lock in one process, keeps the record single."""
    db = db_url if db_url.startswith("postgresql") else f"sqlite:///{tmp_path / 'shared.db'}"
    a = witnesses(data="czj", db=db)
    b = witnesses(data="czj", db=db)
    assert a.vkey == b.vkey and a.url != b.url
    base = MemLog().extend(2)
    forks = [base.fork(2).extend(3, f"fork {i}") for i in range(8)]
    answers = race(
        [lambda i=i: post((a, b)[i % 2].url, body(forks[i], 0)) for i in range(8)]  # type: ignore[misc]
    )
    assert sorted(x.status_code for x in answers) == [200] + [409] * 7


# --- the log's client -----------------------------------------------------------------------


def test_client_submit_and_merge(witnesses: Callable[..., RunningWitness]) -> None:
    w = witnesses()
    log = MemLog().extend(6)
    with httpx.Client() as client:  # keep-alive across calls
        lines = submit_checkpoint(w.url, 0, [], log.checkpoint(), client=client)
        assert len(lines) == 1 and lines[0].startswith("— czj.example/witness ")
        merged = merge_cosignatures(log.checkpoint(), lines, [w.vkey])
        require_cosignatures(merged, [w.vkey], 1, log_keys=[LOG_KEY.verifier])
        with pytest.raises(OldSizeConflict) as exc:
            submit_checkpoint(w.url, 2, log.proof(2), log.checkpoint(), client=client)
        assert exc.value.latest_size == 6
        fork = log.fork(4).extend(2, "fork")
        with pytest.raises(InconsistentCheckpoint):
            submit_checkpoint(w.url, 6, [], fork.checkpoint(), client=client)
        other = MemLog(type(LOG_KEY)("other.example/log", bytes(32))).extend(1)
        with pytest.raises(UnknownLog):
            submit_checkpoint(w.url, 0, [], other.checkpoint(), client=client)
        impostor = MemLog(type(LOG_KEY)(ORIGIN, bytes(32))).extend(7)
        with pytest.raises(LogSignatureRejected):
            submit_checkpoint(w.url, 6, [], impostor.checkpoint(), client=client)
        with pytest.raises(MalformedRequest):
            submit_checkpoint(w.url, 7, [], log.checkpoint(), client=client)


def test_request_cosignature_learns_the_witness_size(
    witnesses: Callable[..., RunningWitness],
) -> None:
    w = witnesses()
    log = MemLog().extend(4)
    submit_checkpoint(w.url, 0, [], log.checkpoint())
    log.extend(5)
    # The log forgot (or never knew) what the witness has: 409 4, then a proof from 4.
    lines = request_cosignature(w.url, log.checkpoint(), log.size, log.proof, 0)
    require_cosignatures(log.checkpoint() + lines[0], [w.vkey], 1, log_keys=[LOG_KEY.verifier])
    # Knowing the size, one request does it.
    log.extend(1)
    assert request_cosignature(w.url, log.checkpoint(), 10, log.proof, 9)
    # A witness ahead of the log (it saw a longer tree of this origin): raised, not retried.
    with pytest.raises(OldSizeConflict) as exc:
        request_cosignature(w.url, log.checkpoint(8), 8, lambda old: log.proof(old, 8), 0)
    assert exc.value.latest_size == 10


def test_client_when_no_witness_answers() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        with pytest.raises(WitnessUnavailable) as exc:
            submit_checkpoint(f"http://127.0.0.1:{port}", 0, [], MemLog().checkpoint(), timeout=5)
    assert exc.value.reason == "WITNESS_UNAVAILABLE"


def test_client_refuses_answers_outside_the_protocol() -> None:
    def answer(status: int, text: str, media: str = "text/plain") -> httpx.Client:
        return httpx.Client(
            transport=httpx.MockTransport(
                lambda _: httpx.Response(status, text=text, headers={"content-type": media})
            )
        )

    cp = MemLog().extend(1).checkpoint()
    cases = [
        answer(200, "not a signature line\n"),
        answer(409, "5\n", "text/plain"),
        answer(409, "five\n", "text/x.tlog.size"),
        answer(409, "5", "text/x.tlog.size"),
        answer(503, "later"),
    ]
    for client in cases:
        with client, pytest.raises(WitnessUnavailable):
            submit_checkpoint("http://witness.example", 0, [], cp, client=client)
    with answer(409, "5\n", "text/x.tlog.size") as client, pytest.raises(OldSizeConflict):
        submit_checkpoint("http://witness.example", 0, [], cp, client=client)


# --- a split view, end to end --------------------------------------------------------------


def test_split_view_two_witnesses_and_a_quorum_verifier(
    witnesses: Callable[..., RunningWitness],
) -> None:
    """The finance bureau and the audit office witness the log; a centre's verifier demands
    both. The operator shows a fork to the centre: no witness cosigns it, the verifier
    rejects it, and a witness restarted in between still refuses it."""
    bureau = witnesses("czj.example/witness", "czj")
    audit = witnesses("sjj.example/witness", "sjj")
    known = [bureau.vkey, audit.vkey]
    honest = MemLog().extend(20)
    fork = honest.fork(15).extend(5, "a different history")

    served = honest.checkpoint()
    for w in (bureau, audit):
        served = merge_cosignatures(served, submit_checkpoint(w.url, 0, [], served), known)
    assert len(require_cosignatures(served, known, 2, log_keys=[LOG_KEY.verifier]).cosigners) == 2

    audit.stop()
    audit = witnesses("sjj.example/witness", "sjj")  # restarted mid-test
    shown = fork.checkpoint()
    for w in (bureau, audit):
        with pytest.raises(LedgerError) as exc:
            submit_checkpoint(w.url, 20, [], shown)  # equal size, other root
        assert isinstance(exc.value, InconsistentCheckpoint)
        with pytest.raises(OldSizeConflict):
            submit_checkpoint(w.url, 15, fork.proof(15), shown)
    with pytest.raises(QuorumNotMet, match="0 of the 2 known witnesses"):
        require_cosignatures(shown, known, 2, log_keys=[LOG_KEY.verifier])
    # The honest log goes on.
    honest.extend(3)
    served = honest.checkpoint()
    for w in (bureau, audit):
        lines = request_cosignature(w.url, served, honest.size, honest.proof, 20)
        served = merge_cosignatures(served, lines, known)
    require_cosignatures(served, known, 2, log_keys=[LOG_KEY.verifier])


def test_cli_key_prints_the_served_vkey(
    witnesses: Callable[..., RunningWitness], tmp_path: Path
) -> None:
    w = witnesses()
    printed = subprocess.run(
        [sys.executable, "-m", "api.witness", "key", "--data-dir", str(tmp_path / "czj")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert printed == f"{w.vkey.vkey}\n"
    raw = base64.b64decode(printed.strip().split("+", 2)[2])
    assert raw[0] == 0x04 and len(raw) == 33


def test_cli_refuses_a_witness_without_logs_or_name(tmp_path: Path) -> None:
    def serve(*args: str) -> int:
        return CliRunner().invoke(cli_app, ["serve", "--data-dir", str(tmp_path), *args]).exit_code

    assert serve("--name", "w.example/w") == 2  # no log
    assert serve("--log", LOG_KEY.verifier.vkey) == 2  # no name, and no key yet
    assert serve("--name", "w.example/w", "--log", "nonsense") == 2
    assert not (tmp_path / "witness.key").exists()  # nothing created on a usage error


def test_cli_reads_logs_from_a_policy_style_file(tmp_path: Path) -> None:
    other = type(LOG_KEY)("other.example/log", bytes(32))
    logs = tmp_path / "logs"
    logs.write_text(f"# witnessed logs\nlog {other.verifier.vkey} https://other.example/\n")
    keys = read_logs([LOG_KEY.verifier.vkey], logs)
    assert [k.name for k in keys] == [ORIGIN, "other.example/log"]
    with pytest.raises(LedgerError, match="twice"):
        read_logs([other.verifier.vkey], logs)
