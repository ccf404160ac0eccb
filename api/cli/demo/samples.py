"""Sample metering output, as the two centres' systems would export it: ``sacct`` lines for
国家超算成都中心 and CloudEvents usage events for 成都智算中心 (used by ``suanli demo``, the
agent's tests and the benchmarks). Deterministic for a seed."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from ledger.timeutil import SHANGHAI

_STATES = (
    ("COMPLETED", 70),
    ("FAILED", 8),
    ("TIMEOUT", 5),
    ("CANCELLED by 0", 6),
    ("OUT_OF_MEMORY", 2),
    ("NODE_FAIL", 1),
)
_PARTITIONS = ("cpu", "gpu", "bigmem", "debug")


def _elapsed(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def _sacct_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def sample_sacct(
    jobs: int,
    *,
    start: datetime,
    end: datetime,
    accounts: Sequence[str],
    cluster: str = "tianhe",
    first_job: int = 100_000,
    seed: int = 2023,
    header: bool = False,
    gpu_share: float = 0.3,
    gpu_models: Sequence[str] = ("a100", ""),
    max_hours: float = 30.0,
    extras: bool = True,
) -> list[str]:
    """``sacct --parsable2`` lines (UTC times) of ``jobs`` finished jobs run between ``start``
    and ``end``, in the column order Open XDMoD exports (``adapters.slurm.XDMOD_COLUMNS``),
    with the quirks of real exports: ``.batch``/``.extern``/numbered step rows, array jobs
    (``123_4``), heterogeneous jobs (``123+1``), ``CANCELLED by <uid>``, multi-day elapsed
    times, typed and untyped GPU TRES. With ``extras``, a few rows that produce no record
    are mixed in (a job still running, one that never started). Deterministic for a seed.
    """
    from adapters.slurm import XDMOD_COLUMNS

    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    span = max(int((end - start).total_seconds()), 3600)
    lines = ["|".join(c.capitalize() for c in XDMOD_COLUMNS)] if header else []
    raw = first_job
    states = [s for s, _ in _STATES]
    weights = [w for _, w in _STATES]
    for n in range(jobs):
        raw += 1
        account = accounts[n % len(accounts)] if n < len(accounts) else rng.choice(accounts)
        duration = rng.randint(60, int(max_hours * 3600))
        begin = start + timedelta(seconds=rng.randint(0, max(span - duration - 60, 1)))
        finish = begin + timedelta(seconds=duration)
        cpus = rng.choice((1, 4, 8, 16, 32, 64, 128))
        gpu = rng.random() < gpu_share
        tres = f"billing={cpus},cpu={cpus},mem={cpus * 4000}M,node=1"
        partition = "gpu" if gpu else rng.choice(_PARTITIONS)
        if gpu:
            cards = rng.choice((1, 2, 4, 8))
            model = rng.choice(gpu_models)
            typed = f"gres/gpu:{model}={cards}," if model else ""
            tres = f"billing={cpus},cpu={cpus},{typed}gres/gpu={cards},mem={cpus * 4000}M,node=1"
        state = rng.choices(states, weights)[0].replace("by 0", f"by {rng.randint(1000, 9999)}")
        job_id = str(raw)
        shape = rng.random()
        if shape < 0.05:
            job_id = f"{raw - rng.randint(1, 50)}_{rng.randint(0, 99)}"  # array task
        elif shape < 0.07:
            job_id = f"{raw}+0"  # heterogeneous job component
        row = [
            job_id, str(raw), cluster, partition, "normal", account, account, "5000",
            f"u{rng.randint(100, 999)}", str(rng.randint(10000, 99999)),
            _sacct_time(begin - timedelta(seconds=30)), _sacct_time(begin - timedelta(seconds=30)),
            _sacct_time(begin), _sacct_time(finish), _elapsed(duration), "0:0", state, "1",
            str(cpus), str(cpus), "4000Mc", f"cpu={cpus},node=1", tres, "2-00:00:00",
            f"cn{rng.randint(1, 512):04d}", f"job-{raw}",
        ]  # fmt: skip
        lines.append("|".join(row))
        if rng.random() < 0.5:
            for step in (".batch", ".extern", ".0"):
                step_row = list(row)
                step_row[0], step_row[1] = f"{job_id}{step}", f"{raw}{step}"
                step_row[5] = step_row[6] = ""
                lines.append("|".join(step_row))
    if extras:
        lines += _no_record_rows(raw, cluster, accounts[0], start + timedelta(seconds=span // 2))
    return lines


def _no_record_rows(raw: int, cluster: str, account: str, running: datetime) -> list[str]:
    """Two rows that produce no usage record: a job still running, one never started."""
    at = _sacct_time(running)
    head = f"{cluster}|cpu|normal|{account}|{account}|5000|u1|10001|{at}|{at}"
    return [
        f"{raw + 1}|{raw + 1}|{head}|{at}|Unknown|01:00:00|0:0|RUNNING|1|8|8|4000Mc|"
        "cpu=8,node=1|billing=8,cpu=8,node=1|2-00:00:00|cn0001|still-running",
        f"{raw + 2}|{raw + 2}|{head}|Unknown|Unknown|00:00:00|0:0|PENDING|1|8|8|4000Mc|"
        "cpu=8,node=1||2-00:00:00|None assigned|never-started",
    ]


def sample_events(
    count: int,
    *,
    start: datetime,
    end: datetime,
    tenants: Sequence[str],
    source: str = "//cd-icc/aiplatform",
    seed: int = 2023,
    resource: str = "gpu:910b",
    max_hours: float = 12.0,
) -> list[str]:
    """CloudEvents usage events (JSON Lines), one per finished workload on ``resource``,
    between ``start`` and ``end``, ``subject`` the tenant. Deterministic for a seed."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    span = max(int((end - start).total_seconds()), 3600)
    out = []
    for n in range(count):
        tenant = tenants[n % len(tenants)] if n < len(tenants) else rng.choice(tenants)
        duration = rng.randint(300, int(max_hours * 3600))
        finish = start + timedelta(seconds=rng.randint(duration + 60, max(span, duration + 61)))
        event = {
            "specversion": "1.0",
            "id": f"wl-{seed}-{n:06d}",
            "source": source,
            "type": "com.cdicc.workload.finished",
            "subject": tenant,
            "time": finish.astimezone(SHANGHAI).isoformat(),
            "data": {
                "resource": resource,
                "cards": rng.choice((1, 2, 4, 8, 16)),
                "duration_seconds": duration,
                "job": f"train-{n}",
            },
        }
        out.append(json.dumps(event, ensure_ascii=False))
    return out
