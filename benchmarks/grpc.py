"""Redemption over the real gRPC stack: claims/s, Claim latency at 100 req/s, pgbench -N.

Every figure goes through what a centre uses: ``adapters.client.RedemptionClient`` (signs
each claim with the centre's Ed25519 key, builds the protobuf), mutual TLS with the
development certificates, ``suanli serve`` in its own process (HTTP + gRPC, the group-commit
sequencer, SQLite or PostgreSQL), and the centre clients in other processes (``spawn``), so
that no client shares the server's GIL. The server's clock is ``SUANLI_CLOCK`` inside the
2023 round, and the clients' clocks run from the same start, so every claim is valid.

Phases, each on a fresh set of record ids (every claim is new, so each answer is one entry
appended and committed before it was acknowledged):

- ``Claim ×C``: C concurrent unary callers (over min(C, 4) processes), closed loop.
- ``ClaimStream ×1`` and ``×S``: S processes, one stream each, the client's window full.
- ``ClaimStream ×1, batches of N``: one stream whose requests carry N claims each
  (``claim_stream(per_message=N)``, as the centre agent sends them).
- ``Claim @100/s``: open loop. Sends are scheduled at fixed times (every 10 ms) and handed
  to a pool of threads; latency is measured from the *scheduled* time to the answer, so a
  slow answer that delays later sends is counted in theirs too (no coordinated omission).

``pgbench -N -T 10`` runs in the same invocation on the same PostgreSQL server, in its own
throwaway database, with 1 client and with C clients, while no suanli server is running.
The server's CPU time per claim (``/proc/<pid>/stat``) is reported beside each rate: unlike
the rate it does not depend on what else loads the machine's cores.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from queue import Empty
from typing import Any
from urllib.parse import urlsplit

from benchmarks.common import BACKENDS, PG_ADMIN, Table, fmt_ms, fmt_rate, percentile
from benchmarks.seed import Seeded, Usage, seed

PACED_RATE = 100.0  # requests per second for the latency figure
BATCH = 64  # claims per request in the batched stream phase (the agent's default)
BATCHED = f"ClaimStream ×1, batches of {BATCH}"
GOAL_STREAM = 2.0  # ClaimStream / pgbench tps
GOAL_UNARY = 0.5  # Claim / pgbench tps
GOAL_P99 = 0.020  # seconds
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Options:
    clients: int = 8  # concurrent unary callers (and pgbench -c)
    streams: int = 4  # concurrent ClaimStreams
    seconds: float = 10.0  # each throughput phase
    paced_seconds: float = 20.0  # the 100 req/s phase
    pgbench_seconds: int = 10

    @classmethod
    def quick(cls) -> Options:
        return cls(seconds=5.0, paced_seconds=10.0)


# --- the server in its own process -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    began: float  # time.monotonic() when it was launched (the clients' clocks start here)
    log: Path
    http: str = ""  # host:port of its HTTP API

    @property
    def target(self) -> str:
        return f"localhost:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU time the server's processes (with ``--workers``, the workers
        too) have used so far."""
        return sum(process_cpu_seconds(pid) for pid in [self.process.pid, *self.workers()])

    def workers(self) -> list[int]:
        """The pids of the worker processes ``suanli serve --workers`` started."""
        pid = self.process.pid
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` has used so far (0 once it has gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serve(
    seeded: Seeded,
    tmp: Path,
    *,
    echo: bool = False,
    workers: int = 1,
    grpc_apart: bool = False,
    **more: Any,
) -> Iterator[Server]:
    """``suanli serve [--workers N] [--grpc-apart]`` on the seeded data dir and database (or,
    with ``echo``, the echo server of this module on the same TLS material) in its own
    process, until exit; ``more``: other settings."""
    from api.settings import Settings

    port = _free_port()
    http = f"127.0.0.1:{_free_port()}"
    settings = Settings(
        data_dir=seeded.data_dir,
        db=seeded.db,
        clock=seeded.clock_start,
        log_level="WARNING",
        http=http,
        grpc=f"127.0.0.1:{port}",
        workers=workers,
        grpc_apart=grpc_apart,
        **more,
    )
    env = {**os.environ, **settings.environment()}
    log = tmp / f"serve-{port}.log"
    if echo:
        command = [sys.executable, "-m", "benchmarks.echo", str(seeded.data_dir), str(port)]
    else:
        command = [str(Path(sys.executable).parent / "suanli"), "serve"]
    with log.open("wb") as out:
        began = time.monotonic()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    server = Server(process, port, began, log, http)
    try:
        _wait_serving(server, seeded.data_dir)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_serving(server: Server, data_dir: Path) -> None:
    from adapters.client import RedemptionClient

    with RedemptionClient.from_data_dir(server.target, data_dir, "nscc-cd") as client:
        if not client.wait_serving(60, alive=lambda: server.process.poll() is None):
            raise RuntimeError(f"suanli serve did not become healthy:\n{server.log.read_text()}")


# --- the clients (each in its own process) ---------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What one client process does; plain data, so that it pickles into a spawned child."""

    mode: str  # "unary", "stream" or "paced"
    tag: str  # unique per process and phase: the record ids' prefix
    target: str
    data_dir: Path
    centre: str
    voucher: str
    usage: Usage
    cost_fen: int
    clock_start: str
    began: float  # the server's launch on time.monotonic() (system-wide on Linux)
    threads: int = 1
    seconds: float = 10.0
    rate: float = PACED_RATE
    per_message: int = 1  # claims per ClaimStream request


@dataclass
class Outcome:
    ok: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    first: float = 0.0  # monotonic time of the first send
    last: float = 0.0  # monotonic time of the last answer
    latencies: list[float] = field(default_factory=list)
    late: int = 0  # paced sends that left more than 1 ms after their scheduled time
    cpu: float = 0.0  # CPU seconds the client process(es) used while running


def _client(job: Job) -> Any:
    from adapters.client import RedemptionClient
    from ledger.timeutil import parse_time

    start = parse_time(job.clock_start)

    def clock() -> Any:  # runs like the server's SUANLI_CLOCK, from the server's launch
        return start + timedelta(seconds=time.monotonic() - job.began)

    return RedemptionClient.from_data_dir(
        job.target, job.data_dir, job.centre, clock=clock, timeout=60.0, retries=0
    )


def _worker(job: Job, ready: Any, go: Any, results: Any) -> None:
    """Entry point of a client process: warm up, say ready, wait for the start, run."""
    try:
        client = _client(job)
        for n in range(3):  # a connection, TLS session and the first calls' costs, paid now
            client.claim(job.usage.record(f"{job.tag}-warm{n}"), job.voucher, job.cost_fen)
        ready.put(job.tag)
        start_at = go.get()
        time.sleep(max(0.0, start_at - time.monotonic()))
        run = {"unary": _run_unary, "stream": _run_stream, "paced": _run_paced}[job.mode]
        before = _cpu()
        outcome = run(client, job, start_at)
        outcome.cpu = _cpu() - before
        client.close()
    except BaseException as exc:
        ready.put(job.tag)
        outcome = Outcome(errors=[f"{type(exc).__name__}: {exc}"])
    results.put((job.tag, outcome))


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def _run_unary(client: Any, job: Job, start: float) -> Outcome:
    from adapters.client import RedemptionError

    end = start + job.seconds
    out = Outcome(first=start)
    lock = threading.Lock()

    def caller(t: int) -> None:
        k = 0
        ok, refused, latencies, errors = 0, 0, [], []
        while (sent := time.monotonic()) < end:
            record = job.usage.record(f"{job.tag}-{t}-{k}")
            k += 1
            try:
                client.claim(record, job.voucher, job.cost_fen)
                ok += 1
            except RedemptionError as error:
                refused += 1
                errors.append(str(error))
            latencies.append(time.monotonic() - sent)
        with lock:
            out.ok += ok
            out.refused += refused
            out.latencies += latencies
            out.errors += errors[:3]
            out.last = max(out.last, time.monotonic())

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(job.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def _run_stream(client: Any, job: Job, start: float) -> Outcome:
    from adapters.client import ClaimItem

    end = start + job.seconds
    out = Outcome(first=start)

    def items() -> Iterator[ClaimItem]:
        k = 0
        while time.monotonic() < end:
            yield ClaimItem(job.usage.record(f"{job.tag}-{k}"), job.voucher, job.cost_fen)
            k += 1

    for answer in client.claim_stream(items(), per_message=job.per_message):
        if answer.ok:
            out.ok += 1
        else:
            out.refused += 1
            if len(out.errors) < 3:
                out.errors.append(str(answer.refusal))
    out.last = time.monotonic()
    return out


def _run_paced(client: Any, job: Job, start: float) -> Outcome:
    from adapters.client import RedemptionError

    out = Outcome(first=start)
    lock = threading.Lock()
    count = int(job.seconds * job.rate)

    def send(k: int, scheduled: float) -> None:
        late = time.monotonic() - scheduled > 0.001
        record = job.usage.record(f"{job.tag}-{k}")
        try:
            client.claim(record, job.voucher, job.cost_fen)
            error = None
        except RedemptionError as exc:
            error = str(exc)
        done = time.monotonic()
        with lock:
            out.latencies.append(done - scheduled)
            out.late += late
            out.last = max(out.last, done)
            if error is None:
                out.ok += 1
            else:
                out.refused += 1
                out.errors += [error][: 3 - len(out.errors)]

    with ThreadPoolExecutor(32) as pool:
        for k in range(count):
            scheduled = start + k / job.rate
            time.sleep(max(0.0, scheduled - time.monotonic()))
            pool.submit(send, k, scheduled)
    return out


@dataclass(frozen=True)
class Phase:
    name: str
    mode: str
    processes: int
    threads: int  # per process
    seconds: float
    per_message: int = 1

    @property
    def callers(self) -> int:
        return self.processes * self.threads


@dataclass
class Measured:
    phase: Phase
    outcome: Outcome
    seconds: float
    server_cpu: float  # seconds of server CPU during the phase
    load: float  # 1-minute load average when the phase started
    commits: int  # transactions (one signed checkpoint each) the server committed meanwhile
    machine_cpu: float  # CPU seconds all processes on the machine used during the phase

    @property
    def rate(self) -> float:
        return self.outcome.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def other_cpu(self) -> float:
        """Cores busy with neither the server nor the clients (PostgreSQL, other users)."""
        other = self.machine_cpu - self.server_cpu - self.outcome.cpu
        return max(0.0, other) / self.seconds if self.seconds else 0.0

    @property
    def per_commit(self) -> float:
        return self.outcome.ok / self.commits if self.commits else 0.0

    @property
    def cpu_per_claim(self) -> float:
        done = self.outcome.ok + self.outcome.refused
        return self.server_cpu / done if done else 0.0


def machine_cpu_seconds() -> float:
    """CPU time all processes have used so far (``/proc/stat``, idle and iowait excluded)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def checkpoint_count(url: str) -> Callable[[], int]:
    """A function that counts the checkpoints stored so far (one per committed batch)."""
    from sqlalchemy import func, select

    from ledger.store.db import make_engine
    from ledger.store.schema import checkpoints

    engine = make_engine(url)

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(checkpoints)).scalar_one())

    return count


def run_phase(
    server: Server, seeded: Seeded, phase: Phase, tag: str, commits: Callable[[], int]
) -> Measured:
    ctx = mp.get_context("spawn")
    ready, go, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    jobs = []
    for n in range(phase.processes):
        centre = seeded_centre(n)
        jobs.append(
            Job(
                mode=phase.mode,
                tag=f"{tag}-p{n}",
                target=server.target,
                data_dir=seeded.data_dir,
                centre=centre,
                voucher=seeded.vouchers[n % len(seeded.vouchers)],
                usage=seeded.usage[centre],
                cost_fen=seeded.cost_fen,
                clock_start=seeded.clock_start,
                began=server.began,
                threads=phase.threads,
                seconds=phase.seconds,
                per_message=phase.per_message,
            )
        )
    processes = [ctx.Process(target=_worker, args=(job, ready, go, results)) for job in jobs]
    for process in processes:
        process.start()
    waiting = len(processes)
    deadline = time.monotonic() + 120
    while waiting:
        try:
            ready.get(timeout=1)
            waiting -= 1
        except Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for process in processes:
                    process.kill()
                raise RuntimeError(f"{phase.name}: client processes failed to start") from None
    time.sleep(0.5)  # let the warm-ups' commits and the spawns settle
    load = os.getloadavg()[0]
    start_at = time.monotonic() + 0.2
    for _ in processes:
        go.put(start_at)
    cpu_before, commits_before = server.cpu_seconds(), commits()
    machine_before = machine_cpu_seconds()
    total = Outcome(first=start_at)
    for _ in processes:
        try:
            _, outcome = results.get(timeout=phase.seconds + 300)
        except Empty:
            raise RuntimeError(f"{phase.name}: a client process did not answer") from None
        total.ok += outcome.ok
        total.refused += outcome.refused
        total.errors += outcome.errors
        total.latencies += outcome.latencies
        total.late += outcome.late
        total.cpu += outcome.cpu
        total.last = max(total.last, outcome.last)
    cpu = server.cpu_seconds() - cpu_before
    machine = machine_cpu_seconds() - machine_before
    committed = commits() - commits_before
    for process in processes:
        process.join(30)
    if total.errors and not total.ok:
        raise RuntimeError(f"{phase.name}: {total.errors[0]}")
    return Measured(phase, total, total.last - start_at, cpu, load, committed, machine)


def seeded_centre(n: int) -> str:
    return ("nscc-cd", "cd-icc")[n % 2]


# --- pgbench -------------------------------------------------------------------------------


PGBENCH_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")


def pgbench(clients: list[int], seconds: int) -> dict[int, float]:
    """``pgbench -N -T seconds -c n`` for each n, in a throwaway database (scale 1)."""
    import psycopg

    url = urlsplit(PG_ADMIN)
    name = f"suanli_pgbench_{uuid.uuid4().hex[:10]}"
    base = ["-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432)]
    base += ["-U", url.username or "postgres"]
    env = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        subprocess.run(
            ["pgbench", "-i", "-q", *base, name], env=env, check=True, capture_output=True
        )
        found = {}
        for n in clients:
            jobs = min(n, os.cpu_count() or 1)
            command = ["pgbench", "-N", "-T", str(seconds), "-c", str(n), "-j", str(jobs)]
            done = subprocess.run(
                [*command, *base, name], env=env, check=True, capture_output=True, text=True
            )
            match = PGBENCH_TPS.search(done.stdout)
            if match is None:
                raise RuntimeError(f"no tps in pgbench's output:\n{done.stdout}")
            found[n] = float(match.group(1))
        return found
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the run -------------------------------------------------------------------------------


def phases(options: Options) -> list[Phase]:
    c, s = options.clients, options.streams
    procs = min(c, 4)
    return [
        Phase(f"Claim ×{c}", "unary", procs, max(1, c // procs), options.seconds),
        Phase("ClaimStream ×1", "stream", 1, 1, options.seconds),
        Phase(BATCHED, "stream", 1, 1, options.seconds, per_message=BATCH),
        Phase(f"ClaimStream ×{s}", "stream", s, 1, options.seconds),
        Phase(f"Claim @{PACED_RATE:.0f}/s", "paced", 1, 1, options.paced_seconds),
    ]


ECHO = "echo (no ledger)"


def measure(name: str, options: Options, workers: int = 1) -> list[Measured]:
    """Every phase against ``suanli serve [--workers N]`` on backend ``name``; then check
    that the log grew by exactly the claims acknowledged (warm-ups included)."""
    from ledger.store.db import make_engine
    from ledger.store.log import LogStore

    with BACKENDS[name]() as (url, tmp):
        seeded = seed(url, tmp / "data", 8)
        out = []
        commits = checkpoint_count(url)
        with serve(seeded, tmp, workers=workers) as server:
            for n, phase in enumerate(phases(options)):
                out.append(run_phase(server, seeded, phase, f"{name[:2]}{n}", commits))
        acknowledged = sum(m.outcome.ok for m in out)
        warm = sum(m.phase.processes * 3 for m in out)
        engine = make_engine(url)
        try:
            size = LogStore(engine).size()
        finally:
            engine.dispose()
        appended = size - seeded.log_size
        if appended != acknowledged + warm:  # every acknowledged claim is one committed entry
            raise RuntimeError(
                f"{name}: {acknowledged + warm} claims acknowledged, {appended} entries appended"
            )
        return out


def measure_echo(options: Options) -> list[Measured]:
    """The throughput phases against the echo server: what gRPC, TLS and the client cost."""
    with BACKENDS["sqlite"]() as (url, tmp):
        seeded = seed(url, tmp / "data", 8)
        with serve(seeded, tmp, echo=True) as server:
            return [
                run_phase(server, seeded, phase, f"ec{n}", lambda: 0)
                for n, phase in enumerate(phases(options))
                if phase.mode != "paced"
            ]


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}×" if base else "n/a"


def _verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def run(backends: list[str], options: Options | None = None, echo: bool = True) -> list[Table]:
    options = options or Options()
    load = os.getloadavg()
    c, s = options.clients, options.streams
    baseline = pgbench(sorted({1, c, s}), options.pgbench_seconds)
    measured = {name: measure(name, options) for name in backends}
    cores = os.cpu_count() or 1
    if "postgres" in backends and cores > 1:  # N = cores ÷ 1 processes beside N = 1
        measured[f"postgres, --workers {cores}"] = measure("postgres", options, workers=cores)
    if echo:
        measured[ECHO] = measure_echo(options)
    base = Table(
        "pgbench -N on the same PostgreSQL (baseline, same run)",
        ["clients", "threads (-j)", "tps"],
    )
    for n, tps in baseline.items():
        base.add(n, min(n, os.cpu_count() or 1), f"{tps:,.0f}")
    rates, latency, ratios = _tables(options)
    for name, results in measured.items():
        for m in results:
            _add_phase(name, m, rates, latency)
        _add_ratios(name, results, baseline, options, ratios)
    _add_notes(options, load, rates, latency, ratios)
    return [base, rates, latency, ratios]


def _tables(options: Options) -> tuple[Table, Table, Table]:
    """The rates, latency and ratio tables, empty."""
    c, s = options.clients, options.streams
    rates = Table(
        "gRPC redemption over mTLS: claims/s (server in its own process)",
        [
            "backend",
            "call",
            "concurrent",
            "claims",
            "refused",
            "claims/s",
            "claims / commit",
            "server CPU / claim",
            "server CPU use",
            "client CPU use",
            "other CPU use",
            "load avg at start",
        ],
    )
    latency = Table(
        f"Claim latency at a fixed {PACED_RATE:.0f} requests/s (open loop, from scheduled time)",
        ["backend", "requests", "p50", "p90", "p99", "p99.9", "max", "sent late (>1 ms)", "goal"],
    )
    ratios = Table(
        "Ratios to pgbench -N (goals: ClaimStream ≥ 2×, Claim ≥ 0.5×, p99 @100/s ≤ 20 ms)",
        [
            "backend",
            "ClaimStream ×1 / pgbench c1",
            f"batches of {BATCH} / pgbench c1",
            f"ClaimStream ×{s} / pgbench c{s}",
            f"Claim ×{c} / pgbench c{c}",
            f"Claim ×{c} / pgbench c1",
            "Claim p99 @100/s",
            "verdict (stream, claim, p99)",
        ],
    )
    return rates, latency, ratios


def _add_phase(name: str, m: Measured, rates: Table, latency: Table) -> None:
    o = m.outcome
    if m.phase.mode == "paced":
        lat = o.latencies
        latency.add(
            name,
            o.ok + o.refused,
            fmt_ms(percentile(lat, 50)),
            fmt_ms(percentile(lat, 90)),
            fmt_ms(percentile(lat, 99)),
            fmt_ms(percentile(lat, 99.9)),
            fmt_ms(max(lat)),
            o.late,
            f"p99 ≤ 20 ms: {_verdict(percentile(lat, 99) <= GOAL_P99)}",
        )
    rates.add(
        name,
        m.phase.name,
        m.phase.callers,
        f"{o.ok:,}",
        o.refused,
        fmt_rate(m.rate),
        f"{m.per_commit:.1f}" if m.commits else "–",
        f"{m.cpu_per_claim * 1e6:.0f} µs",
        f"{m.server_cpu / m.seconds:.0%}" if m.seconds else "n/a",
        f"{o.cpu / m.seconds:.0%}" if m.seconds else "n/a",
        f"{m.other_cpu:.0%}",
        f"{m.load:.2f}",
    )
    rates.notes += [f"{name} {m.phase.name}: {error}" for error in o.errors[:2]]


def _add_ratios(
    name: str,
    results: list[Measured],
    baseline: dict[int, float],
    options: Options,
    ratios: Table,
) -> None:
    c, s = options.clients, options.streams
    b1, bc, bs = baseline.get(1), baseline.get(c), baseline.get(s)
    by = {m.phase.name: m for m in results}
    one, many = by["ClaimStream ×1"].rate, by[f"ClaimStream ×{s}"].rate
    batched = by[BATCHED].rate
    unary = by[f"Claim ×{c}"].rate
    paced = by.get(f"Claim @{PACED_RATE:.0f}/s")
    p99 = percentile(paced.outcome.latencies, 99) if paced else None
    stream_ok = bool(b1 and bs and one >= GOAL_STREAM * b1 and many >= GOAL_STREAM * bs)
    unary_ok = bool(bc and unary >= GOAL_UNARY * bc)
    verdicts = [_verdict(stream_ok), _verdict(unary_ok)]
    verdicts.append(_verdict(p99 <= GOAL_P99) if p99 is not None else "–")
    ratios.add(
        name,
        _ratio(one, b1),
        f"{_ratio(batched, b1)} ({_verdict(bool(b1 and batched >= GOAL_STREAM * b1))})",
        _ratio(many, bs),
        _ratio(unary, bc),
        _ratio(unary, b1),
        fmt_ms(p99) if p99 is not None else "–",
        ", ".join(verdicts),
    )


def _add_notes(
    options: Options, load: tuple[float, float, float], rates: Table, latency: Table, ratios: Table
) -> None:
    c, s = options.clients, options.streams
    rates.notes.append(
        f"{os.cpu_count()} cores shared by the server, its database and the client processes; "
        f"load average before the run {load[0]:.2f}. Server CPU / claim: the server "
        "process's user+system time over the phase divided by the claims it answered; CPU use: "
        "that time (or the clients' processes' together) over the phase's wall time; other CPU: "
        "every other process on the machine (PostgreSQL's backends, other users' jobs), from "
        "/proc/stat, in cores (100% = one core)."
    )
    rates.notes.append(
        f"Claim ×{c}: {c} callers in {min(c, 4)} processes, closed loop; ClaimStream ×n: n "
        "processes with one stream each (client window 1024); each phase runs "
        f"{options.seconds:.0f} s on new record ids. {ECHO}: the same clients, TLS, "
        "interceptor and parsing against a server that answers at once (the gRPC ceiling)."
    )
    latency.notes.append(
        "A send that leaves late (its thread pool busy) counts its wait in its latency; "
        f"{options.paced_seconds:.0f} s at {PACED_RATE:.0f}/s, one client process."
    )
    ratios.notes.append(
        "Streams are compared with pgbench at the same concurrency (one stream with -c 1, "
        f"{s} streams with -c {s}); the verdict for ClaimStream needs both (one claim per "
        f"request); the batched stream's own verdict is beside its ratio. The {ECHO} row "
        "is the ceiling: the ratios this machine allows with no ledger work at all."
    )
