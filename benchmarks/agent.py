"""The centre side: sacct parsing rows/s, and the agent end to end in claims/s.

* **sacct parsing**: ``adapters.slurm.parse_sacct`` over a generated export (``--parsable2``,
  the Open XDMoD column order, with ``.batch``/``.extern``/step rows, array and
  heterogeneous jobs, GPU TRES) held in memory, so the figure is the parser's, not the
  disk's; rows/s counts every data row (steps included), records/s what it produced.
* **agent end to end**: ``adapters.agent.Agent`` as ``suanli centre run`` runs it: the
  export read, priced and stored in a fresh SQLite outbox (fsync'd), then every record
  claimed over one ``ClaimStream`` per 5 000 (mutual TLS, each claim signed with the
  centre's Ed25519 key), each answer written back to the outbox. The ledger is
  ``suanli serve`` in its own process (SQLite or PostgreSQL, its clock inside the 2023
  round, vouchers seeded through the log by ``benchmarks.seed``); the agent runs in this
  process. "ingest" is read + price + outbox; "claims/s" is the submit phase alone, from the
  first claim sent to the last answer stored.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import BACKENDS, Table, Timer, fmt_rate, rate


def sacct_lines(jobs: int, seed: int = 2023) -> list[str]:
    from api.cli.demo.samples import sample_sacct
    from ledger.timeutil import parse_time

    return sample_sacct(
        jobs,
        start=parse_time("2023-01-15T00:00:00+08:00"),
        end=parse_time("2023-07-30T00:00:00+08:00"),
        accounts=["chem", "bio", "astro", "phys"],
        seed=seed,
        header=True,
    )


def parse_rate(jobs: int) -> tuple[int, int, float]:
    """(rows, records, seconds) for parsing an export of ``jobs`` jobs (best of 3)."""
    from adapters.slurm import parse_sacct

    lines = sacct_lines(jobs)
    best = float("inf")
    rows = records = 0
    for _ in range(3):
        with Timer() as t:
            result = parse_sacct(lines, centre="nscc-cd")
        best = min(best, t.seconds)
        rows, records = result.rows, len(result.records)
    return rows, records, best


def agent_rate(backend: str, jobs: int) -> dict[str, float]:
    """Ingest and submit ``jobs`` jobs' records through a real server on ``backend``."""
    from adapters.agent import Agent
    from adapters.credentials import CentreFiles
    from adapters.mapping import AccountMap
    from adapters.outbox import Outbox
    from adapters.progress import Progress
    from adapters.rates import RateBook
    from adapters.sources import UsageSource
    from benchmarks.grpc import serve
    from benchmarks.seed import seed

    with BACKENDS[backend]() as (url, tmp_dir), tempfile.TemporaryDirectory() as work:
        tmp = Path(work)
        seeded = seed(url, tmp_dir / "data", 4)
        export = tmp / "sacct.log"
        export.write_text("\n".join(sacct_lines(jobs, seed=7)) + "\n", encoding="utf-8")
        accounts = dict(zip(("chem", "bio", "astro", "phys"), seeded.vouchers, strict=True))
        mapping = tmp / "accounts.json"
        mapping.write_text(json.dumps({"accounts": accounts}), encoding="utf-8")
        with serve(seeded, tmp) as server:
            agent = Agent(
                centre="nscc-cd",
                outbox=Outbox(tmp / "outbox.db"),
                target=server.target,
                files=CentreFiles(seeded.data_dir / "centres" / "nscc-cd"),
                mapping=AccountMap.load(mapping),
                rates=RateBook.load(),
                sources=[UsageSource.parse(f"sacct:{export}")],
                progress=Progress("bench", bar=False, every=3600),
            )
            try:
                with Timer() as ingest_time:
                    ingest = agent.ingest()
                started = time.perf_counter()
                report = agent.submit(give_up_after=120)
                submit_seconds = time.perf_counter() - started
                server_cpu = server.cpu_seconds()
            finally:
                agent.close()
                agent.outbox.close()
        if not report.finished or report.refused:
            raise RuntimeError(f"agent benchmark on {backend}: {report}")
        return {
            "records": ingest.added,
            "ingest_s": ingest_time.seconds,
            "claims": report.claimed,
            "submit_s": submit_seconds,
            "server_cpu": server_cpu,
        }


def run(backends: list[str], quick: bool = False) -> list[Table]:
    parse_jobs = 50_000 if quick else 200_000
    agent_jobs = 3_000 if quick else 12_000
    rows, records, seconds = parse_rate(parse_jobs)
    parsing = Table(
        "sacct parsing (adapters.slurm.parse_sacct, in memory)",
        ["jobs", "rows (with steps)", "records", "rows/s", "records/s"],
    )
    parsing.add(
        f"{parse_jobs:,}",
        f"{rows:,}",
        f"{records:,}",
        fmt_rate(rate(rows, seconds)),
        fmt_rate(rate(records, seconds)),
    )
    agent = Table(
        "Centre agent end to end: sacct export -> outbox -> ClaimStream -> ledger (server in"
        " its own process)",
        ["backend", "records", "ingest (parse, price, outbox)", "claims", "claims/s",
         "server CPU / claim"],
    )  # fmt: skip
    for backend in backends:
        found = agent_rate(backend, agent_jobs)
        agent.add(
            backend,
            f"{int(found['records']):,}",
            fmt_rate(rate(int(found["records"]), found["ingest_s"])),
            f"{int(found['claims']):,}",
            fmt_rate(rate(int(found["claims"]), found["submit_s"])),
            f"{found['server_cpu'] / max(found['claims'], 1) * 1000:.2f} ms",
        )
    agent.notes.append(
        "claims/s: from the first claim sent to the last answer stored in the outbox; each"
        " claim signed (Ed25519), sent over mutual TLS, decided by the fold, committed and"
        " checkpointed by the group-commit sequencer before it is answered"
    )
    agent.notes.append("server CPU / claim includes the server's start-up and the seeding reads")
    return [parsing, agent]
