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


def measure(backend: str, quick: bool) -> dict[str, Any]:
    from benchmarks.grpc import Options, Phase, checkpoint_count, run_phase, serve
    from benchmarks.seed import seed
    from ledger.store.db import make_engine
    from ledger.store.tokens import TokenStore
    from ledger.uscc import complete

    options = Options.quick() if quick else Options()
    with BACKENDS[backend]() as (url, tmp):
        seeded = seed(url, tmp / "data", 8)
        engine = make_engine(url)
        try:
            token = TokenStore(engine).create("admin")[0]
        finally:
            engine.dispose()
        commits = checkpoint_count(url)
        heavy = complete("91510100MA7000000")  # the holder of the first voucher
        with serve(seeded, tmp) as server:
            fill = Phase("fill", "stream", 1, 1, 3.0 if quick else 15.0)
            filled = run_phase(server, seeded, fill, f"{backend[:2]}f", commits)
            paced = Phase("Claim @100/s", "paced", 1, 1, options.paced_seconds)
            alone = run_phase(server, seeded, paced, f"{backend[:2]}a", commits)
            base = f"http://{server.http}"
            paths = _history_paths(base, token, heavy)
            ctx = mp.get_context("spawn")
            stop, results = ctx.Event(), ctx.Queue()
            job = ReadJob(base, token, paths, READER_THREADS)
            readers = [
                ctx.Process(target=_reader, args=(job, stop, results))
                for _ in range(READER_PROCESSES)
            ]
            for process in readers:
                process.start()
            time.sleep(3.0)  # the readers connected and reading
            try:
                loaded = run_phase(server, seeded, paced, f"{backend[:2]}r", commits)
            finally:
                stop.set()
            read_latencies: list[float] = []
            failures: list[str] = []
            for _ in readers:
                try:
                    got, failed = results.get(timeout=120)
                except Empty:
                    raise RuntimeError("a reader process did not answer") from None
                read_latencies += got
                failures += failed
            for process in readers:
                process.join(30)
        if failures:
            raise RuntimeError(f"reads failed: {failures[0]}")
        return {
            "claims": filled.outcome.ok,
            "alone": alone,
            "loaded": loaded,
            "reads": read_latencies,
            "read_seconds": loaded.seconds + 3.0,
        }


def run(backends: list[str], quick: bool = False) -> list[Table]:
    table = Table(
        "Claim latency at 100 claims/s over gRPC, alone and while 32 HTTP clients read"
        " (open loop, from the scheduled send)",
        ["backend", "heavy grantee's claims", "readers", "claims", "p50", "p99", "max",
         "reads", "read p50", "read p99", "load avg at start", "goal p99 ≤ 20 ms"],
    )  # fmt: skip
    for backend in backends:
        found = measure(backend, quick)
        for label, m, reads in (
            ("none", found["alone"], None),
            ("32", found["loaded"], found["reads"]),
        ):
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
    table.notes.append(f"machine: {os.cpu_count()} cores; the readers, the claim client and"
                       " the server share them")  # fmt: skip
    return [table]
