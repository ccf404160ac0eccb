"""Prometheus metrics, defined once; HTTP serves them at /metrics (the gRPC server and the
store's commits update them)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ledger.usecases.commands.redemption import Redeemed

REGISTRY = CollectorRegistry()

CLAIMS = Counter(
    "suanli_claims_total",
    "Claims accepted, by centre and kind (claim, capture)",
    ["centre", "kind"],
    registry=REGISTRY,
)
SUBSIDY_FEN = Counter(
    "suanli_subsidy_fen_total", "Subsidy granted, in fen, by centre", ["centre"], registry=REGISTRY
)
REFUSALS = Counter(
    "suanli_refusals_total", "Refused requests, by reason", ["reason"], registry=REGISTRY
)
RPC_LATENCY = Histogram(
    "suanli_rpc_seconds",
    "gRPC call latency by method",
    ["method"],
    registry=REGISTRY,
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
STANDBY_BEHIND = Counter(
    "suanli_standby_behind",
    "Reads answered from the primary because the standby had not reached the size asked for",
    registry=REGISTRY,
)
WORKER_RESTARTS = Counter(
    "suanli_worker_restarts",
    "gRPC worker processes started again after one exited (suanli serve --workers/--grpc-apart)",
    registry=REGISTRY,
)
LOG_SIZE = Gauge("suanli_log_size", "Entries in the log (latest checkpoint)", registry=REGISTRY)
CHECKPOINT_AGE = Gauge(
    "suanli_checkpoint_age_seconds",
    "Seconds since this process last signed a checkpoint",
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "suanli_commit_batch_entries",
    "Entries per commit",
    registry=REGISTRY,
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
WITNESS_COSIGNED_SIZE = Gauge(
    "suanli_witness_cosigned_size",
    "The largest log size each witness has cosigned (docs/witness.md)",
    ["witness"],
    registry=REGISTRY,
)
WITNESS_LAG_ENTRIES = Gauge(
    "suanli_witness_lag_entries",
    "Entries the log has beyond what each witness has cosigned",
    ["witness"],
    registry=REGISTRY,
)
WITNESS_LAG_SECONDS = Gauge(
    "suanli_witness_lag_seconds",
    "Seconds since each witness was last up to date (0 while it is)",
    ["witness"],
    registry=REGISTRY,
)
WITNESS_FAILURES = Counter(
    "suanli_witness_failures_total",
    "Failed submissions to each witness, by reason (unavailable, or the witness's refusal)",
    ["witness", "reason"],
    registry=REGISTRY,
)

_last_commit = time.monotonic()


def committed(entries: int, size: int) -> None:
    global _last_commit  # noqa: PLW0603 - one process-wide timestamp
    _last_commit = time.monotonic()
    BATCH_SIZE.observe(entries)
    LOG_SIZE.set(size)


# the counters of a centre's claims and subsidy by (centre, kind): one dict lookup a claim
# instead of two label lookups (each takes the metric's lock)
_REDEEMED: dict[tuple[str, str], tuple[Counter, Counter]] = {}


def redeemed(outcome: Redeemed) -> None:
    """Count a centre's claim or capture and its subsidy (a replayed answer only once)."""
    if outcome.replayed or outcome.kind not in ("claim", "capture"):
        return
    centre = str(outcome.body.get("centre", ""))
    counters = _REDEEMED.get((centre, outcome.kind))
    if counters is None:
        counters = CLAIMS.labels(centre, outcome.kind), SUBSIDY_FEN.labels(centre)
        _REDEEMED[(centre, outcome.kind)] = counters
    counters[0].inc()
    counters[1].inc(int(outcome.result.get("subsidy_fen", 0)))


def refresh_ages() -> None:
    CHECKPOINT_AGE.set(time.monotonic() - _last_commit)
