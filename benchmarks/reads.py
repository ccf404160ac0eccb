"""Reads never wait for writes: claim latency at 100 claims/s while 32 clients read.

* **Seed and server** as in ``benchmarks.grpc``: ``suanli serve`` in its own process on a
  fresh SQLite or PostgreSQL database, 8 vouchers issued through the log.
* **Heavy grantee**: one ``ClaimStream`` fills the first voucher's holder with claims
  (``--quick``: 3 s, else 15 s of streaming: thousands of claims), so its history and the
  bureau's entity report have real work to do.
* **Claim @100/s alone**: the open-loop phase of ``benchmarks.grpc`` (latency from the
  scheduled send to the answer) with nothing else running: the baseline of the same run.
* **Claim @100/s with 32 readers**: the same phase while 32 HTTP clients (4 processes × 8
  threads, closed loop, keep-alive) read, in turn, the heavy grantee's history
  (``/v1/entities/{uscc}/history?limit=100``, the first page and the next), the bureau's
  entity report (``/v1/bureau/entities?limit=100``) and the budget report. Their answers'
  latencies and count are reported too; every answer must be 200.

Goal: claim p99 ≤ 20 ms with the readers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from dataclasses import dataclass
from queue import Empty
from typing import Any

from benchmarks.common import BACKENDS, Table, fmt_ms, percentile

READER_PROCESSES = 4
READER_THREADS = 8  # per process: 32 readers


@dataclass(frozen=True)
class ReadJob:
    base: str  # http://host:port
    token: str
    paths: tuple[str, ...]
    threads: int


def _reader(job: ReadJob, stop: Any, results: Any) -> None:
    """A reader process: ``threads`` closed-loop HTTP clients until ``stop`` is set."""
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def loop(offset: int) -> None:
        headers = {"Authorization": f"Bearer {job.token}"}
        with httpx.Client(base_url=job.base, headers=headers, timeout=60) as client:
            k = offset
            while not stop.is_set():
                path = job.paths[k % len(job.paths)]
                k += 1
                began = time.monotonic()
                answer = client.get(path)
                took = time.monotonic() - began
                with lock:
                    latencies.append(took)
                    if answer.status_code != 200:
                        failures.append(f"{path}: {answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(job.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((latencies, failures[:3]))


def _history_paths(base: str, token: str, uscc: str) -> tuple[str, ...]:
    import httpx

    first = f"/v1/entities/{uscc}/history?limit=100"
    answer = httpx.get(base + first, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    answer.raise_for_status()
    cursor = answer.json()["next_cursor"]
    second = f"{first}&cursor={cursor}" if cursor else first
    return (first, "/v1/bureau/entities?limit=100&year=2023", second, "/v1/bureau/budget")


def _paced_beside_readers(
    server: Any, seeded: Any, paced: Any, tag: str, commits: int, job: ReadJob
) -> tuple[Any, list[float]]:
    """The paced claim phase while ``READER_PROCESSES`` processes read as ``job`` says."""
    from benchmarks.grpc import run_phase

    ctx = mp.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    readers = [
        ctx.Process(target=_reader, args=(job, stop, results)) for _ in range(READER_PROCESSES)
    ]
    for process in readers:
        process.start()
    time.sleep(3.0)  # the readers connected and reading
    try:
        loaded = run_phase(server, seeded, paced, tag, commits)
    finally:
        stop.set()
    latencies: list[float] = []
    failures: list[str] = []
    for _ in readers:
        try:
            got, failed = results.get(timeout=120)
        except Empty:
            raise RuntimeError("a reader process did not answer") from None
        latencies += got
        failures += failed
    for process in readers:
        process.join(30)
    if failures:
        raise RuntimeError(f"reads failed: {failures[0]}")
    return loaded, latencies


def measure(backend: str, quick: bool) -> dict[str, Any]:
    """Fill the heavy grantee, then the paced phase alone and beside the readers, on one
    ``suanli serve`` and then on ``suanli serve --grpc-apart`` over the same database."""
    from benchmarks.grpc import Options, Phase, checkpoint_count, run_phase, serve
    from benchmarks.seed import seed
    from ledger.store.db import make_engine
    from ledger.store.tokens import TokenStore
    from ledger.uscc import complete

    options = Options.quick() if quick else Options()
    found: dict[str, Any] = {}
    with BACKENDS[backend]() as (url, tmp):
        seeded = seed(url, tmp / "data", 8)
        engine = make_engine(url)
        try:
            token = TokenStore(engine).create("admin")[0]
        finally:
            engine.dispose()
        commits = checkpoint_count(url)
        heavy = complete("91510100MA7000000")  # the holder of the first voucher
        paced = Phase("Claim @100/s", "paced", 1, 1, options.paced_seconds)
        for apart in (False, True):
            # The readers share one token: room for each one's request in flight, and for
            # its next arriving before the server has counted the last one out.
            limit = 2 * READER_PROCESSES * READER_THREADS
            with serve(seeded, tmp, grpc_apart=apart, max_requests_per_client=limit) as server:
                tag = f"{backend[:2]}{'g' if apart else ''}"
                if not apart:
                    fill = Phase("fill", "stream", 1, 1, 3.0 if quick else 15.0)
                    found["claims"] = run_phase(server, seeded, fill, f"{tag}f", commits).outcome.ok
                alone = run_phase(server, seeded, paced, f"{tag}a", commits)
                base = f"http://{server.http}"
                job = ReadJob(base, token, _history_paths(base, token, heavy), READER_THREADS)
                loaded, reads = _paced_beside_readers(
                    server, seeded, paced, f"{tag}r", commits, job
                )
                found[apart] = (alone, loaded, reads)
    return found


def run(backends: list[str], quick: bool = False) -> list[Table]:
    table = Table(
        "Claim latency at 100 claims/s over gRPC, alone and while 32 HTTP clients read"
        " (open loop, from the scheduled send)",
        ["backend", "heavy grantee's claims", "readers", "claims", "p50", "p99", "max",
         "reads", "read p50", "read p99", "load avg at start", "goal p99 ≤ 20 ms"],
    )  # fmt: skip
    for backend in backends:
        found = measure(backend, quick)
        rows = []
        for apart in (False, True):
            alone, loaded, reads = found[apart]
            where = ", gRPC apart" if apart else ""
            rows += [(f"none{where}", alone, None), (f"32{where}", loaded, reads)]
        for label, m, reads in rows:
            lat = m.outcome.latencies
            p99 = percentile(lat, 99)
            table.add(
                backend,
                f"{found['claims']:,}",
                label,
                f"{m.outcome.ok:,}",
                fmt_ms(percentile(lat, 50)),
                fmt_ms(p99),
                fmt_ms(max(lat)),
                f"{len(reads):,}" if reads else "–",
                fmt_ms(percentile(reads, 50)) if reads else "–",
                fmt_ms(percentile(reads, 99)) if reads else "–",
                f"{m.load:.2f}",
                ("met" if p99 <= 0.020 else "not met") if reads else "(baseline)",
            )
    table.notes.append(
        "readers: 4 processes × 8 threads, closed loop, each reading in turn the heavy"
        " grantee's history (pages 1 and 2 of 100 items), the bureau's entity report (100"
        " rows) and the budget report; every read answered 200"
    )
    table.notes.append(
        "gRPC apart: `suanli serve --grpc-apart` on the same database (HTTP in the first"
        " process, the claims in a worker process of their own)"
    )
    table.notes.append(f"machine: {os.cpu_count()} cores; the readers, the claim client and"
                       " the server share them")  # fmt: skip
    return [table]
