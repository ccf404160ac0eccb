"""The log gathers its witnesses' cosignatures (c2sp.org/tlog-witness, the log's side).

``suanli serve --witness-policy FILE`` names the witnesses in a c2sp.org/tlog-policy file
whose ``witness`` lines carry each witness's submission URL. One thread per witness sends
the newest checkpoint with a consistency proof from the size that witness last cosigned,
verifies the cosignature it gets back and keeps it beside the checkpoint
(``LogStore.add_cosignature``); ``GET /checkpoint`` then serves the newest checkpoint that
meets the policy's quorum, with its cosignatures (``LogStore.served_checkpoint``).

Nothing here is on the write path: a witness that is down or slow never delays a claim.
It is retried with back-off, and how far each witness lags is a metric
(``suanli_witness_lag_entries``, ``suanli_witness_lag_seconds``). A witness that answers
that it has cosigned a *different* history (a 409 with a size larger than the log, or a
422) is logged as an error every time: that is what witnesses exist to catch.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import httpx

from api import metrics
from api.witness.client import WitnessUnavailable, request_cosignature
from ledger import merkle
from ledger.checkpoint import cosignature_timestamp
from ledger.errors import LedgerError
from ledger.note import parse_note
from ledger.store.log import LogStore
from ledger.tlogpolicy import Policy, PolicyWitness
from ledger.witness import merge_cosignatures

log = logging.getLogger("suanli.witness")

POLL = 0.2  # seconds between looks at the log's size when a witness is up to date
MAX_BACKOFF = 30.0  # seconds, after repeated failures


def policy_witnesses(policy: Policy) -> list[PolicyWitness]:
    """The witnesses the log submits to: every one in the policy, each with its URL."""
    missing = [w.name for w in policy.witnesses if not w.url]
    if missing:
        raise ValueError(
            "the witness policy names no submission URL for "
            + ", ".join(missing)
            + " (write 'witness <name> <vkey> <url>')"
        )
    if not policy.witnesses:
        raise ValueError("the witness policy names no witness")
    return list(policy.witnesses)


@dataclass
class _Progress:
    cosigned: int  # the largest size this witness cosigned here
    since: float = field(default_factory=time.monotonic)  # when it was last up to date
    failures: int = 0


class WitnessGatherer:
    """One daemon thread per witness; ``stop()`` ends them (each within one request's
    timeout)."""

    def __init__(self, store: LogStore, policy: Policy, timeout: float = 5.0) -> None:
        self.store = store
        self.policy = policy
        self.timeout = timeout
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._run, args=(w,), name=f"suanli-witness-{w.name}", daemon=True
            )
            for w in policy_witnesses(policy)
        ]

    def start(self) -> WitnessGatherer:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, witness: PolicyWitness) -> None:
        progress = _Progress(self.store.cosigned_size(witness.key.vkey))
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                wait = self._round(witness, progress, client)
                self._stop.wait(wait)

    def _round(self, witness: PolicyWitness, progress: _Progress, client: httpx.Client) -> float:
        """One look at the log: submit the newest checkpoint if this witness is behind.
        Returns how long to wait before the next look."""
        try:
            latest = self.store.latest_checkpoint()
        except Exception:  # the database is away: look again later
            log.exception("witness %s: reading the latest checkpoint failed", witness.name)
            return MAX_BACKOFF / 10
        size, note = latest if latest is not None else (0, "")
        self._measure(witness, progress, size)
        if size <= progress.cosigned:
            progress.since = time.monotonic()
            return POLL
        try:
            self._cosign(witness, progress, size, note, client)
        except WitnessUnavailable as exc:
            return self._failed(witness, progress, "unavailable", exc.message, logging.WARNING)
        except LedgerError as exc:
            # A refusal: 409 past our size, 422, 403, 404 — a different history or a
            # misconfigured witness. Loud every time; keep trying in case it was transient.
            return self._failed(witness, progress, exc.reason, exc.message, logging.ERROR)
        except Exception as exc:  # a bug must not end the thread
            log.exception("witness %s: unexpected failure", witness.name)
            return self._failed(witness, progress, "internal", repr(exc), logging.ERROR)
        progress.failures = 0
        progress.since = time.monotonic()
        self._measure(witness, progress, size)
        return 0.0

    def _cosign(
        self,
        witness: PolicyWitness,
        progress: _Progress,
        size: int,
        note: str,
        client: httpx.Client,
    ) -> None:
        assert witness.url is not None
        read = self.store.node_reader()
        lines = request_cosignature(
            witness.url,
            note,
            size,
            lambda old: merkle.consistency_proof(old, size, read),
            progress.cosigned,
            timeout=self.timeout,
            client=client,
        )
        # Keep only this witness's line, verified over this checkpoint (unknown keys are
        # ignored; a bad line by this witness raises).
        merged = merge_cosignatures(note, lines, [witness.key])
        added = merged[len(note) :]
        if not added:
            raise WitnessUnavailable(
                f"witness {witness.name} answered without a cosignature by its key "
                f"{witness.key.key_id}",
                details={"witness": witness.name},
            )
        timestamp = cosignature_timestamp(parse_note(merged).signatures[-1].signature)
        self.store.add_cosignature(size, witness.key.vkey, added, timestamp)
        progress.cosigned = size

    def _failed(
        self, witness: PolicyWitness, progress: _Progress, reason: str, message: str, level: int
    ) -> float:
        progress.failures += 1
        metrics.WITNESS_FAILURES.labels(witness.name, reason).inc()
        log.log(level, "witness %s: %s (attempt %d)", witness.name, message, progress.failures)
        return float(min(MAX_BACKOFF, 0.5 * 2 ** min(progress.failures, 8)))

    def _measure(self, witness: PolicyWitness, progress: _Progress, size: int) -> None:
        behind = max(0, size - progress.cosigned)
        metrics.WITNESS_COSIGNED_SIZE.labels(witness.name).set(progress.cosigned)
        metrics.WITNESS_LAG_ENTRIES.labels(witness.name).set(behind)
        lag = time.monotonic() - progress.since if behind else 0.0
        metrics.WITNESS_LAG_SECONDS.labels(witness.name).set(lag)
