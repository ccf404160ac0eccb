"""Ledger core: append throughput, proof latency, audit verify rate vs raw Ed25519.

Appends are ``log.note`` entries signed by the service key, through the real unit of work
(fold, canonical bytes, Merkle nodes, signed checkpoint per commit). "single" commits each
entry on its own; "batched" commits BATCH entries per transaction (as the group-commit
sequencer does under load). Each is measured at a log of 10^3 entries and again at 10^6.
"""

from __future__ import annotations

import random
from pathlib import Path

from api.bootstrap import open_service
from api.settings import Settings
from benchmarks.common import BACKENDS, Table, Timer, fmt_ms, fmt_rate, percentile, rate
from ledger import merkle
from ledger.entry import Entry
from ledger.store.unit_of_work import FoldedLog, Transaction

BATCH = 1000
SINGLES = 200
BATCHED = 20_000


def _note(tx: Transaction, i: int) -> Entry:
    return tx.sign("log.note", {"text": f"benchmark note {i}"}, tx.ledger.keys.service)


def append_single(ledger: FoldedLog, count: int) -> float:
    with Timer() as t:
        for i in range(count):
            with ledger.transaction() as tx:
                tx.append(_note(tx, i))
    return rate(count, t.seconds)


def append_batched(ledger: FoldedLog, count: int, batch: int = BATCH) -> float:
    with Timer() as t:
        for start in range(0, count, batch):
            with ledger.transaction() as tx:
                for i in range(start, min(count, start + batch)):
                    tx.append(_note(tx, i))
    return rate(count, t.seconds)


def fill_to(ledger: FoldedLog, size: int) -> None:
    missing = size - ledger.state.size
    if missing > 0:
        append_batched(ledger, missing, 5000)


def proof_latency(ledger: FoldedLog, samples: int = 1000) -> tuple[list[float], list[float]]:
    size = ledger.store.size()
    read = ledger.store.node_reader()
    rng = random.Random(7)
    inclusion, consistency = [], []
    for _ in range(samples):
        index = rng.randrange(size)
        with Timer() as t:
            merkle.inclusion_proof(index, size, read)
        inclusion.append(t.seconds)
        old = rng.randrange(1, size)
        with Timer() as t:
            merkle.consistency_proof(old, size, read)
        consistency.append(t.seconds)
    return inclusion, consistency


def raw_verify_rate(count: int = 20_000) -> float:
    """Ed25519 verifications per second on one core, by ``cryptography`` alone."""
    from ledger.keys import Signer

    signer = Signer.generate("bench")
    message = b"suanli-entry/v1\n" + b"x" * 300
    signature = signer.sign(message)
    key = signer.verifier._key
    with Timer() as t:
        for _ in range(count):
            key.verify(signature, message)
    return rate(count, t.seconds)


def audit_rate(ledger: FoldedLog) -> tuple[float, int]:
    """Entries/s of the offline audit (every check, all cores) over the whole log."""
    from ledger.audit import usable_cores, verify_log

    latest = ledger.store.latest_checkpoint()
    assert latest is not None
    genesis = ledger.state.registry.log_epochs[0].verifier
    with Timer() as t:
        report = verify_log(ledger.store.iter_entries(), latest[1], genesis)
    if report.failures:
        raise RuntimeError(f"audit failed: {report.failures[0]}")
    return rate(report.entries, t.seconds), usable_cores()


def run(big: int, backends: list[str]) -> list[Table]:
    appends = Table(
        "Ledger core: append throughput (entries/s)",
        [
            "backend",
            "single @10^3",
            "batched @10^3",
            f"single @{big:,}",
            f"batched @{big:,}",
            "ratio big/10^3 (single, batched)",
        ],
    )
    proofs = Table(
        f"Ledger core: proof latency at {big:,} entries (store reads included)",
        ["backend", "inclusion p50", "inclusion p99", "consistency p50", "consistency p99"],
    )
    audits = Table(
        f"Offline audit (`suanli audit verify`'s pipeline) over {big:,} entries",
        [
            "backend",
            "audit entries/s",
            "raw Ed25519 verify/s (1 core)",
            "cores",
            "audit / (cores × raw)",
            "goal",
        ],
    )
    for name in backends:
        with BACKENDS[name]() as (url, tmp):
            service = open_service(Settings(data_dir=Path(tmp) / "data", db=url))
            ledger = service.ledger
            fill_to(ledger, 1000)
            s1 = append_single(ledger, SINGLES)
            b1 = append_batched(ledger, BATCHED)
            fill_to(ledger, big)
            s2 = append_single(ledger, SINGLES)
            b2 = append_batched(ledger, BATCHED)
            appends.add(
                name,
                fmt_rate(s1),
                fmt_rate(b1),
                fmt_rate(s2),
                fmt_rate(b2),
                f"{s2 / s1:.2f}, {b2 / b1:.2f}",
            )
            audited, cores = audit_rate(ledger)
            raw = raw_verify_rate()
            audits.add(
                name,
                fmt_rate(audited),
                fmt_rate(raw),
                cores,
                f"{audited / (cores * raw):.2f}",
                "≥ 0.80",
            )
            inc, con = proof_latency(ledger)
            proofs.add(
                name,
                fmt_ms(percentile(inc, 50)),
                fmt_ms(percentile(inc, 99)),
                fmt_ms(percentile(con, 50)),
                fmt_ms(percentile(con, 99)),
            )
            ledger.close()
    appends.notes.append(
        f"single = one entry per commit ({SINGLES} commits), each with fsync and a signed "
        f"checkpoint; batched = {BATCH} entries per commit ({BATCHED:,} entries)."
    )
    audits.notes.append(
        "audit = read every entry from the store, check canonical form, rebuild the tree, "
        "replay the fold, verify every signature (worker processes), verify the checkpoint; "
        "raw = `Ed25519PublicKey.verify` in a loop, measured right after, in the same run."
    )
    return [appends, proofs, audits]
