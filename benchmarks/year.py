"""A year at real volume, end to end: ``python -m benchmarks --only year [--quick]``.

1. **Seed** (in this process, through the log): entities, each with two approved
   applications and two vouchers (``benchmarks.seed``), in the 2023 round.
2. **Four quarters** (2023-Q3 … 2024-Q2). For each, ``suanli serve`` is started with its
   clock (``SUANLI_CLOCK``) a week into the quarter, and the two centres' agents
   (``adapters.agent.Agent``, as ``suanli centre run`` runs them, each in its own process)
   read that quarter's files and claim every record over ``ClaimStream``: ``nscc-cd`` a
   ``sacct --parsable2`` export (``api.cli.demo.samples.sample_sacct``), ``cd-icc``
   CloudEvents JSON Lines (``sample_events``). Accounts and tenants map one to one to
   vouchers; one voucher's account carries 1% of all jobs (the heaviest grantee). Usage
   dates lie in the vouchers' usage window (2023-01 … 2023-07): this is a back-fill.
   The start of each quarter after the first issues the previous quarter's statements of
   both centres (``POST /v1/statements``), timed, with the server's peak RSS.
3. After the last quarter: its statements; the bureau reports and the heaviest grantee's
   history, page p99 over HTTP; ``suanli audit verify`` over the whole log (all cores)
   beside the raw Ed25519 verify rate of one core measured in the same run; the server's
   restart time (launch to gRPC healthy: load the fold snapshot, replay the tail) and RSS;
   the database's size per claim.

Sizes: full 2,000 entities, 4,000 vouchers, 10^6 claims; ``--quick`` 100, 200 and 20,000;
``SUANLI_YEAR_CLAIMS`` (and ``SUANLI_YEAR_ENTITIES``) choose others.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.common import BACKENDS, Table, Timer, fmt_ms, fmt_rate, percentile, rate

QUARTERS = (
    ("2023-Q3", "2023-08-27T10:00:00+08:00"),
    ("2023-Q4", "2023-10-08T10:00:00+08:00"),
    ("2024-Q1", "2024-01-08T10:00:00+08:00"),
    ("2024-Q2", "2024-04-08T10:00:00+08:00"),
)
AFTER_LAST = "2024-07-08T10:00:00+08:00"
USAGE = ("2023-01-15T00:00:00+08:00", "2023-07-30T00:00:00+08:00")
HEAVY_SHARE = 0.01  # of all jobs, on the first voucher's account
READS = 40  # requests per read figure


@dataclass(frozen=True)
class Size:
    entities: int
    claims: int

    @property
    def vouchers(self) -> int:
        return 2 * self.entities

    @classmethod
    def chosen(cls, quick: bool) -> Size:
        claims = int(os.environ.get("SUANLI_YEAR_CLAIMS") or (20_000 if quick else 1_000_000))
        entities = int(os.environ.get("SUANLI_YEAR_ENTITIES") or (100 if quick else 2_000))
        return cls(entities, claims)


def seed_year(url: str, data_dir: Path, entities: int) -> Any:
    """The round with ``entities`` entities of two vouchers each (``benchmarks.seed``)."""
    from api.bootstrap import open_service
    from api.devpki import ensure_dev_pki
    from api.settings import Settings
    from benchmarks.seed import INPUTS, PROGRAMME, START, Seeded, _Clock, issue, usage_at
    from ledger.uscc import complete
    from ledger.usecases.commands.applications import Approval
    from ledger.usecases.commands.vouchers import voucher_for

    service = open_service(Settings(data_dir=data_dir, db=url), clock=_Clock(START))
    try:
        ids: list[str] = []
        for n in range(entities):
            ids.append(issue(service, n))
            uscc = complete(f"91510100MA{7_000_000 + n:07d}")
            approval = Approval(f"A-bench-{n:04d}-b", PROGRAMME, uscc, INPUTS, reviewer="bench")
            done = service.write(voucher_for, approval, f"V-bench-{n:04d}-b", entity=None)
            ids.append(str(done.entry.body["voucher"]))
        usage = {c: usage_at(service.ledger, c) for c in ("nscc-cd", "cd-icc")}
        size = service.ledger.store.size()
        vkey = service.ledger.refresh().registry.log_epochs[0].verifier.vkey
        token = service.tokens.create("admin")[0]
    finally:
        service.close()
    ensure_dev_pki(data_dir)
    seeded = Seeded(data_dir, url, tuple(ids), usage, 100, size, QUARTERS[0][1])
    return seeded, vkey, token


def _accounts(vouchers: int, jobs: int) -> list[str]:
    """Account names to draw jobs from: every voucher's once per pass, and the first one's
    often enough to carry ``HEAVY_SHARE`` of the jobs."""
    names = [f"a{n:04d}" for n in range(vouchers)]
    heavy = max(1, int(HEAVY_SHARE * vouchers / (1 - HEAVY_SHARE)))
    return names + ["a0000"] * heavy


def write_sources(work: Path, quarter: int, size: Size) -> dict[str, Path]:
    """This quarter's sacct export (nscc-cd) and CloudEvents file (cd-icc)."""
    from api.cli.demo.samples import sample_events, sample_sacct
    from ledger.timeutil import parse_time

    per_centre = size.claims // 8  # two centres, four quarters
    start, end = (parse_time(t) for t in USAGE)
    accounts = _accounts(size.vouchers, per_centre)
    sacct = sample_sacct(
        per_centre,
        start=start,
        end=end,
        accounts=accounts,
        first_job=1_000_000 + quarter * per_centre,
        seed=100 + quarter,
        header=True,
        gpu_share=0.0,
        max_hours=2.0,
        extras=False,
    )
    events = sample_events(
        per_centre, start=start, end=end, tenants=accounts, seed=200 + quarter, max_hours=0.5
    )
    out = {"nscc-cd": work / f"sacct-{quarter}.log", "cd-icc": work / f"events-{quarter}"}
    out["nscc-cd"].write_text("\n".join(sacct) + "\n", encoding="utf-8")
    out["cd-icc"].mkdir()
    (out["cd-icc"] / "usage.jsonl").write_text("\n".join(events) + "\n", encoding="utf-8")
    return out


@dataclass(frozen=True)
class AgentJob:
    centre: str
    target: str
    data_dir: Path
    outbox: Path
    mapping: Path
    source: str


def run_agent(job: AgentJob) -> dict[str, float]:
    """One centre's agent: ingest its files, then claim every record (a child process)."""
    from adapters.agent import Agent
    from adapters.credentials import CentreFiles
    from adapters.mapping import AccountMap
    from adapters.outbox import Outbox
    from adapters.progress import Progress
    from adapters.rates import RateBook
    from adapters.sources import UsageSource

    agent = Agent(
        centre=job.centre,
        outbox=Outbox(job.outbox),
        target=job.target,
        files=CentreFiles(job.data_dir / "centres" / job.centre),
        mapping=AccountMap.load(job.mapping),
        rates=RateBook.load(),
        sources=[UsageSource.parse(job.source)],
        progress=Progress(job.centre, bar=False, every=3600),
    )
    try:
        ingest = agent.ingest()
        started = time.monotonic()
        report = agent.submit(give_up_after=300)
        return {
            "records": ingest.added,
            "unpriced": ingest.unpriced,
            "claimed": report.claimed,
            "refused": report.refused,
            "finished": float(report.finished),
            "started": started,
            "ended": time.monotonic(),
        }
    finally:
        agent.close()
        agent.outbox.close()


def _rss(pid: int, field: str = "VmRSS") -> int:
    """A /proc/<pid>/status memory figure in bytes (VmRSS now, VmHWM the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _db_bytes(url: str, data_dir: Path) -> int:
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def _get_p99(base: str, token: str, paths: list[str]) -> tuple[float, float]:
    """p50 and p99 of READS sequential GETs over ``paths`` (each must answer 200)."""
    import httpx

    took: list[float] = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
        client.timeout = httpx.Timeout(120)
        for k in range(READS):
            path = paths[k % len(paths)]
            with Timer() as t:
                answer = client.get(path)
            if answer.status_code != 200:
                raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:300]}")
            took.append(t.seconds)
    return percentile(took, 50), percentile(took, 99)


def _issue_statements(base: str, token: str, period: str, pid: int) -> list[dict[str, Any]]:
    import httpx

    out = []
    for centre in ("nscc-cd", "cd-icc"):
        before = _rss(pid)
        with Timer() as t:
            answer = httpx.post(
                f"{base}/v1/statements",
                json={"centre": centre, "period": period},
                headers={"Authorization": f"Bearer {token}"},
                timeout=1800,
            )
        if answer.status_code != 201:
            raise RuntimeError(f"statement {centre} {period}: {answer.status_code} {answer.text}")
        body = answer.json()
        out.append(
            {
                "centre": centre,
                "period": period,
                "lines": body["totals"]["lines"],
                "seconds": t.seconds,
                "rss_before": before,
                "peak": _rss(pid, "VmHWM"),
            }
        )
    return out


def _quarter(
    q: int, seeded: Any, tmp: Path, work: Path, size: Size, token: str, found: dict[str, Any]
) -> None:
    """One quarter: the server at its clock, last quarter's statements, both agents."""
    from benchmarks.grpc import serve

    period, clock = QUARTERS[q]
    sources = write_sources(work, q, size)
    launched = time.monotonic()
    with serve(replace(seeded, clock_start=_iso(clock)), tmp) as server:
        found["restarts"].append(time.monotonic() - launched)
        if q > 0:
            found["statements"] += _issue_statements(
                f"http://{server.http}", token, QUARTERS[q - 1][0], server.process.pid
            )
        jobs = [
            AgentJob(c, server.target, seeded.data_dir, work / f"outbox-{c}.db", work / MAPPING, s)
            for c, s in (
                ("nscc-cd", f"sacct:{sources['nscc-cd']}"),
                ("cd-icc", f"events:{sources['cd-icc']}"),
            )
        ]
        with mp.get_context("spawn").Pool(2) as pool:
            results = pool.map(run_agent, jobs)
    for r in results:
        if not r["finished"]:
            raise RuntimeError(f"{period}: an agent did not finish: {r}")
    found["backfill"].append(
        {
            "period": period,
            "claimed": sum(int(r["claimed"]) for r in results),
            "refused": sum(int(r["refused"]) for r in results),
            "unpriced": sum(int(r["unpriced"]) for r in results),
            "seconds": max(r["ended"] for r in results) - min(r["started"] for r in results),
        }
    )


def _after_the_year(seeded: Any, tmp: Path, token: str, found: dict[str, Any]) -> None:
    """The last statements, then the reads: the heaviest history, the reports, RSS."""
    import httpx

    from benchmarks.grpc import serve

    launched = time.monotonic()
    with serve(replace(seeded, clock_start=_iso(AFTER_LAST)), tmp) as server:
        found["restarts"].append(time.monotonic() - launched)
        base, pid = f"http://{server.http}", server.process.pid
        found["statements"] += _issue_statements(base, token, QUARTERS[-1][0], pid)
        heavy = found["heavy"] = _heaviest(base, token)
        history = f"/v1/entities/{heavy['uscc']}/history?limit=100"
        found["history"] = _get_p99(base, token, [history, history + "&cursor=" + heavy["mid"]])
        found["reports"] = _get_p99(base, token, REPORT_PATHS)
        found["rss_served"] = _rss(pid)
        found["log_size"] = int(httpx.get(f"{base}/checkpoint").text.splitlines()[1])


def _restart_and_audit(seeded: Any, tmp: Path, vkey: str, found: dict[str, Any]) -> None:
    """The server's restart on the whole log, then ``suanli audit verify`` over it."""
    from benchmarks.grpc import serve
    from benchmarks.ledger_core import raw_verify_rate
    from ledger.audit import usable_cores

    launched = time.monotonic()
    with serve(replace(seeded, clock_start=_iso(AFTER_LAST)), tmp) as server:
        found["restart_s"] = time.monotonic() - launched
        found["rss_restarted"] = _rss(server.process.pid)
    cores = usable_cores()
    with Timer() as t:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "suanli"), "audit", "verify", seeded.db, "--key",
             vkey, "--jobs", str(cores), "--no-progress"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"audit verify failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    found["audit_s"] = t.seconds
    found["raw_verify"] = raw_verify_rate()
    found["cores"] = cores


MAPPING = "accounts.json"
REPORT_PATHS = [
    "/v1/bureau/entities?year=2023&limit=100",
    "/v1/bureau/budget?year=2023",
    "/v1/bureau/centres?year=2023",
    "/v1/bureau/months?year=2024",
]


def measure(backend: str, size: Size) -> dict[str, Any]:
    found: dict[str, Any] = {"statements": [], "backfill": [], "restarts": []}
    with BACKENDS[backend]() as (url, tmp), tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        with Timer() as t:
            seeded, vkey, token = seed_year(url, tmp / "data", size.entities)
        found["seed_s"] = t.seconds
        accounts = {f"a{n:04d}": v for n, v in enumerate(seeded.vouchers)}
        (work / MAPPING).write_text(json.dumps({"accounts": accounts}), encoding="utf-8")
        for q in range(len(QUARTERS)):
            _quarter(q, seeded, tmp, work, size, token, found)
        _after_the_year(seeded, tmp, token, found)
        found["db_bytes"] = _db_bytes(url, tmp / "data")
        _restart_and_audit(seeded, tmp, vkey, found)
    return found


def _iso(text: str) -> str:
    from ledger.timeutil import format_time, parse_time

    return format_time(parse_time(text))


def _heaviest(base: str, token: str) -> dict[str, Any]:
    """The entity with the most claims in 2023 (bureau entity report, every page), and a
    cursor in the middle of its history."""
    import httpx

    rows: list[dict[str, Any]] = []
    cursor = None
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
        client.timeout = httpx.Timeout(120)
        while True:
            params = {"year": "2023", "limit": "1000", **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/bureau/entities", params=params).json()
            rows += page["entities"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        heavy = max(rows, key=lambda r: r["claims"])
        first = client.get(
            f"/v1/entities/{heavy['uscc']}/history", params={"limit": str(heavy["claims"] // 2)}
        ).json()
    return {"uscc": heavy["uscc"], "claims": heavy["claims"], "mid": str(first["next_cursor"])}


def _rows(f: dict[str, Any], load: float) -> list[tuple[str, str, str, bool | None]]:
    """Each figure of one backend's year beside its goal."""
    claimed = sum(b["claimed"] for b in f["backfill"])
    seconds = sum(b["seconds"] for b in f["backfill"])
    backfill = rate(claimed, seconds)
    rows: list[tuple[str, str, str, bool | None]] = [
        ("load avg at start", f"{load:.2f}", "–", None),
        ("seed (entities, applications, vouchers)", f"{f['seed_s']:.0f} s", "–", None),
        (
            "back-fill through the agents",
            f"{fmt_rate(backfill)} ({claimed:,} claimed, "
            f"{sum(b['refused'] for b in f['backfill'])} refused)",
            "≥ 2,000/s",
            backfill >= 2000,
        ),
    ]
    biggest = max(f["statements"], key=lambda s: s["lines"])
    scaled = biggest["seconds"] * 250_000 / max(biggest["lines"], 1)
    rows.append(
        (
            "largest statement",
            f"{biggest['lines']:,} lines in {biggest['seconds']:.1f} s "
            f"(≈ {scaled:.0f} s per 250k lines); server peak RSS {_mib(biggest['peak'])}",
            "250k lines ≤ 60 s, ≤ 512 MiB",
            scaled <= 60 and biggest["peak"] <= 512 * 2**20,
        )
    )
    rows.append(
        (
            "statements issued",
            f"{len(f['statements'])}, {sum(s['lines'] for s in f['statements']):,} lines",
            "every claim once",
            sum(s["lines"] for s in f["statements"]) == claimed,
        )
    )
    h50, h99 = f["history"]
    rows.append(
        (
            f"heaviest grantee's history page (100 items of {f['heavy']['claims']:,})",
            f"p50 {fmt_ms(h50)}, p99 {fmt_ms(h99)}",
            "p99 ≤ 200 ms",
            h99 <= 0.2,
        )
    )
    r50, r99 = f["reports"]
    rows.append(
        ("bureau report page", f"p50 {fmt_ms(r50)}, p99 {fmt_ms(r99)}", "p99 ≤ 200 ms",
         r99 <= 0.2)
    )  # fmt: skip
    audit = rate(f["log_size"], f["audit_s"])
    goal = 0.8 * f["cores"] * f["raw_verify"]
    rows.append(
        (
            "suanli audit verify, whole log",
            f"{f['log_size']:,} entries in {f['audit_s']:.1f} s = {fmt_rate(audit)} "
            f"(raw Ed25519 {fmt_rate(f['raw_verify'])} × {f['cores']} cores)",
            f"≥ {fmt_rate(goal)}",
            audit >= goal,
        )
    )
    rows.append(("restart", f"{f['restart_s']:.1f} s", "≤ 10 s", f["restart_s"] <= 10))
    per_claim = f["db_bytes"] / max(claimed, 1)
    rows.append(
        ("database", f"{_mib(f['db_bytes'])} = {per_claim:,.0f} B per claim",
         "≤ 2 KiB per claim", per_claim <= 2048)
    )  # fmt: skip
    rows.append(
        (
            "server RSS",
            f"{_mib(f['rss_served'])} after the reads; {_mib(f['rss_restarted'])} restarted",
            "≤ 2 GiB at 10^7",
            None,
        )
    )
    return rows


def run(backends: list[str], quick: bool = False) -> list[Table]:
    size = Size.chosen(quick)
    table = Table(
        f"A year: {size.entities:,} entities, {size.vouchers:,} vouchers, {size.claims:,} claims"
        " over four quarters, two centres' agents (sacct, CloudEvents)",
        ["backend", "figure", "measured", "goal", "verdict"],
    )
    for backend in backends:
        load = os.getloadavg()[0]
        f = measure(backend, size)
        rows = _rows(f, load)
        for name, measured, target, ok in rows:
            verdict = "–" if ok is None else ("met" if ok else "not met")
            table.add(backend, name, measured, target, verdict)
    table.notes.append(
        "back-fill: claims ÷ the time from the first claim sent to the last answer stored, per"
        " quarter (both agents at once, each in its own process), summed; the server restarts"
        " each quarter with its clock a week in"
    )
    table.notes.append(
        "statement time: POST /v1/statements to its answer (open, lines parts, close), one"
        " centre at a time; RSS: the server's VmHWM (peak since its start, replay included)"
    )
    table.notes.append(
        "restart: launch of suanli serve to its gRPC health check answering, on the whole log"
    )
    return [table]
