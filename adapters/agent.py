"""The centre agent: metering output in, signed claims out, each exactly once.

    suanli centre run --source sacct:jobs.log --mapping accounts.json --centre nscc-cd

What it does, in a loop (once, or every ``--interval`` seconds):

1. **Read** the source (``adapters.sources.UsageSource``): a sacct export file, a ``sacct``
   command it runs itself, a directory (or file) of CloudEvents usage events, or a usage
   CSV. The parsers (``adapters.slurm``, ``adapters.events``) turn it into usage records;
   accounts map to vouchers through the mapping file (``adapters.mapping``); rows the
   parsers skip are counted by reason. Unchanged files are not parsed again (size and
   mtime, remembered together with the mapping and rate-card fingerprint).
2. **Price** each record with the centre's rate card in force at the usage start
   (``adapters.rates.RateBook``: the packaged development cards, a JSON file, or the ledger's own
   ``ratecard.publish`` entries over HTTP), exactly as the ledger prices it:
   ``floor(quantity × price_fen / per_units)``.
3. **Store** every record in the outbox (``adapters.outbox``, SQLite, fsync'd) before it is
   ever sent, keyed by (centre, record id): reading the source again never adds a row.
4. **Submit** pending records in the order they were added, over one ``ClaimStream`` per
   batch, ``per_message`` claims per request (``adapters.client``: signed with the
   centre's Ed25519 key, mutual TLS, retried on UNAVAILABLE / DEADLINE_EXCEEDED). Each
   answer is written back to the outbox: a result (subsidy, log index, the cap that bound
   it), or a final refusal (reason, gRPC code, metadata: ``CAP_EXHAUSTED`` with ``cap``,
   ``VOUCHER_EXPIRED`` ...), which is never sent again. Transient failures (the server
   down, a deadline, a broken stream) leave the record pending; the agent backs off (0.5 s
   doubling to 30 s) and sends it again.

Exactly once: a record whose answer was lost (agent or server killed after the ledger
committed) is sent again with the same body and the ledger answers with its first answer
(``replayed``), never a second payment. ``CLOCK_SKEW`` (the service clock differs from this
machine's, e.g. a service started with ``SUANLI_CLOCK``) is not final either: the agent
takes the skew the service reports, signs with its clock corrected by it, and resends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from adapters.bounds import MAX_FEN
from adapters.client import ClaimItem, RedemptionClient, RedemptionError, StreamResult
from adapters.credentials import CentreFiles
from adapters.errors import AgentError
from adapters.mapping import AccountMap, JobKeys
from adapters.outbox import Answer, Claimed, Outbox, OutboxRecord, Refusal, Row, Transient
from adapters.progress import Progress
from adapters.rates import RateBook, Unpriced
from adapters.settings import CLAIMS_PER_MESSAGE
from adapters.slurm import ParseResult
from adapters.sources import UsageSource
from ledger.timeutil import format_time
from ledger.usage import UsageRecord

log = logging.getLogger("suanli.agent")

# Refusals that are not final: the record stays pending and is sent again.
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
TRANSIENT_REASONS = frozenset({"CLOCK_SKEW"})
LOCAL = "LOCAL"  # the code of a refusal the agent made itself (a record it cannot price)


# --- the agent -----------------------------------------------------------------------------


@dataclass
class IngestReport:
    """What reading the sources did: rows and records read, and what became of them."""

    rows: int = 0  # rows the parsers read
    records: int = 0  # usage records they made of them
    added: int = 0  # records new to the outbox
    known: int = 0  # records the outbox had already, unchanged
    changed: int = 0  # records the outbox had with another body (the first is kept)
    unpriced: int = 0  # records no rate card prices (refused locally)
    quarantined: int = 0  # bad rows found in what was read (kept in the quarantine)
    skipped: Counter[str] = field(default_factory=Counter)  # rows skipped, by reason
    files: int = 0
    unchanged_files: int = 0  # files not parsed again (same size and time)


@dataclass
class SubmitReport:
    """What submitting did: the answers the ledger gave, and how long it took."""

    answered: int = 0  # records with a final answer
    claimed: int = 0
    refused: int = 0
    transient: int = 0  # failures that leave the record pending
    replayed: int = 0  # first answers given again (the record was claimed before)
    subsidy_fen: int = 0
    seconds: float = 0.0
    finished: bool = True  # nothing left pending


def classify(result: StreamResult) -> Answer:
    """The ledger's answer to one claim, as the outbox stores it."""
    if result.result is not None:
        return claimed_of(result.result)
    error = result.refusal
    assert error is not None
    return answer_of_error(error)


def claimed_of(r: Any) -> Claimed:
    """From a ``suanli.v1.ClaimResult``."""
    return Claimed(
        r.subsidy_fen,
        r.log_index,
        r.bound_by,
        r.voucher_balance_fen,
        r.rate_bp,
        r.policy_version,
        r.at,
        r.replayed,
    )


def answer_of_error(error: RedemptionError) -> Answer:
    if error.code in TRANSIENT_CODES or error.reason in TRANSIENT_REASONS:
        return Transient(f"{error.code.name} {error.reason}: {error.message}")
    return Refusal(error.reason, error.code.name, error.message, dict(error.metadata))


def service_time(client: RedemptionClient, centre: str) -> datetime:
    """The service clock now, as the service itself tells it: a claim signed at
    2000-01-01 is refused with CLOCK_SKEW, whose metadata gives the skew (a refusal
    writes nothing). ``client`` must sign with ``client.clock``, which is replaced for
    the call."""
    probe_at = datetime(2000, 1, 1, tzinfo=UTC)
    saved = client.clock
    client.clock = lambda: probe_at
    usage = UsageRecord(centre, "clock-probe", "probe", "cpu", 1, probe_at, probe_at)
    asked = datetime.now(UTC)
    try:
        client.claim(usage, "V-clock-probe", 0)
    except RedemptionError as error:
        if error.reason != "CLOCK_SKEW":
            raise
        skew = float(error.metadata["skew_seconds"])
    else:  # pragma: no cover - a service clock within 300 s of 2000-01-01
        skew = 0.0
    finally:
        client.clock = saved
    offset = (probe_at - timedelta(seconds=skew)) - asked
    return datetime.now(UTC) + offset


class Agent:
    """One centre's agent over one outbox. Thread-safe only in that ``stop()`` may be called
    from another thread (a signal handler) while ``run`` runs."""

    def __init__(
        self,
        *,
        centre: str,
        outbox: Outbox,
        target: str,
        files: CentreFiles,
        mapping: AccountMap,
        rates: RateBook,
        sources: Iterable[UsageSource] = (),
        batch: int = 5000,
        window: int = 1024,
        per_message: int = CLAIMS_PER_MESSAGE,
        timeout: float = 10.0,
        progress: Progress | None = None,
        server_name: str | None = None,
        client_factory: Callable[[Callable[[], datetime]], RedemptionClient] | None = None,
    ) -> None:
        self.centre = centre
        self.outbox = outbox
        self.target = target
        self.files = files
        self.mapping = mapping
        self.rates = rates
        self.sources = list(sources)
        self.batch = batch
        self.window = window
        self.per_message = per_message
        self.timeout = timeout
        self.progress = progress or Progress(f"{centre}", bar=False)
        self.server_name = server_name
        self.client_factory = client_factory
        self.stopping = threading.Event()
        saved = outbox.get_meta(f"clock_offset:{centre}")
        self.offset = float(saved) if saved else 0.0
        self.clock_known = saved is not None
        self._client: RedemptionClient | None = None

    # -- clock and client --

    def clock(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def client(self) -> RedemptionClient:
        if self._client is None:
            if self.client_factory is not None:
                self._client = self.client_factory(self.clock)
            else:
                self.files.check()
                self._client = RedemptionClient.from_files(
                    self.target,
                    self.files,
                    self.centre,
                    timeout=self.timeout,
                    clock=self.clock,
                    server_name=self.server_name,
                )
        return self._client

    def drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def close(self) -> None:
        self.drop_client()

    def stop(self) -> None:
        self.stopping.set()

    # -- reading sources --

    def _config_fingerprint(self) -> str:
        mapping = json.dumps(self.mapping.fingerprint_doc(), sort_keys=True)
        return hashlib.sha256((mapping + self.rates.fingerprint()).encode()).hexdigest()

    def ingest(self) -> IngestReport:
        """Read every source into the outbox (records not there yet); report what was read."""
        report = IngestReport()
        fingerprint = self._config_fingerprint()
        key = f"config:{self.centre}"
        if self.outbox.get_meta(key) != fingerprint:
            # A new mapping or new rate cards: read every file again (an account mapped
            # now may have usage in a file read before).
            self.outbox.db.execute("DELETE FROM sources")
            self.outbox.set_meta(key, fingerprint)
        for source in self.sources:
            if source.kind == "sacct-cmd":
                result = source.run_command(self.centre, self.mapping)
                self._store(result, str(source), report)
                self._quarantine(result, str(source), report)
                continue
            for path in source.files():
                stat = path.stat()
                name = f"{source.kind}:{path.resolve()}"
                report.files += 1
                if self.outbox.source_seen(name) == (stat.st_size, stat.st_mtime_ns):
                    report.unchanged_files += 1
                    continue
                result = source.parse_file(path, self.centre, self.mapping)
                self._store(result, f"{source.kind}:{path.name}", report)
                self._quarantine(result, f"{source.kind}:{path}", report)
                self.outbox.mark_source(name, stat.st_size, stat.st_mtime_ns)
        return report

    def _quarantine(self, result: ParseResult, origin: str, report: IngestReport) -> None:
        """Keep the bad rows of what was just read (they replace the origin's earlier ones)."""
        bad = [(s.line_no, s.job_id, s.reason) for s in result.bad]
        self.outbox.quarantine(self.centre, origin, bad)
        report.quarantined += len(bad)
        for line_no, job_id, reason in bad[:5]:
            log.warning("%s line %d (%s): quarantined: %s", origin, line_no, job_id, reason)

    def _store(self, result: ParseResult, origin: str, report: IngestReport) -> None:
        report.rows += result.rows
        report.records += len(result.records)
        for skip in result.skipped:
            report.skipped[skip.code] += 1
        records: list[OutboxRecord] = []
        unpriced: list[tuple[OutboxRecord, Refusal]] = []
        for usage in result.records:
            keys = result.keys_of(usage)
            voucher = self.mapping.voucher_of(keys)
            if voucher is None:  # the parsers skip unmapped accounts; this is a safeguard
                report.skipped["unmapped"] += 1
                continue
            try:
                cost = self.price(usage)
            except Unpriced as why:
                record = OutboxRecord.of(usage, voucher, 0, origin, keys.to_json())
                unpriced.append((record, Refusal(why.reason, LOCAL, why.message)))
                records.append(record)
                continue
            records.append(OutboxRecord.of(usage, voucher, cost, origin, keys.to_json()))
        added = self.outbox.add(records)
        report.added += added.added
        report.known += added.known
        report.changed += len(added.changed)
        for record, first in added.changed[:5]:
            log.warning(
                "%s: record %s read again with a different body (kept the first): %s -> %s",
                origin,
                record.record_id,
                first,
                record.body(),
            )
        if unpriced:
            fresh = [
                (r, a)
                for r, a in unpriced
                if (row := self.outbox.get(r.centre, r.record_id)) and row.status == "pending"
            ]
            self.outbox.answer(fresh, at=format_time(self.clock()))
            report.unpriced += len(fresh)

    def price(self, usage: UsageRecord) -> int:
        """The record's cost by the rate cards; ``Unpriced`` beyond what a claim can carry."""
        cost = self.rates.cost(usage)
        if cost > MAX_FEN:
            raise Unpriced(
                "OUT_OF_RANGE", f"cost {cost} fen is more than a claim can carry ({MAX_FEN})"
            )
        return cost

    def reprice(self, record: OutboxRecord) -> int:
        try:
            return self.price(record.usage())
        except Unpriced:
            return record.cost_fen

    def remapped(self, record: OutboxRecord) -> OutboxRecord | None:
        """``record`` with the voucher the mapping gives it now and its cost repriced; None
        when the mapping no longer maps it."""
        voucher = self.mapping.voucher_of(JobKeys.from_json(record.keys, record.account))
        if voucher is None:
            return None
        return replace(record, voucher=voucher, cost_fen=self.reprice(record))

    # -- submitting --

    def submit(
        self, *, give_up_after: float | None = 300.0, max_backoff: float = 30.0
    ) -> SubmitReport:
        """Send every pending record until none is left (or ``give_up_after`` seconds pass
        without a single answer, or ``stop()``). Answers go to the outbox as they come."""
        report = SubmitReport()
        started = last_answer = time.monotonic()
        counts = self.outbox.counts(self.centre)
        self.progress.start(counts["pending"])
        backoff = 0.5
        quick = 0
        try:
            while not self.stopping.is_set():
                progressed, broken, retry = self._pass(report)
                if progressed:
                    last_answer = time.monotonic()
                    backoff = 0.5
                if not self.outbox.pending(1, centre=self.centre):
                    break
                if retry and not broken and quick < 3:
                    quick += 1
                    continue  # the clock was corrected: send again at once
                quick = 0
                if give_up_after is not None and time.monotonic() - last_answer > give_up_after:
                    report.finished = False
                    break
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, max_backoff)
        finally:
            self.progress.close()
            report.seconds = time.monotonic() - started
        report.finished = report.finished and not self.outbox.pending(1, centre=self.centre)
        return report

    def _pass(self, report: SubmitReport) -> tuple[bool, bool, bool]:
        """One pass over the pending records: (any answered, stream broke, resend now)."""
        progressed = broken = resend = False
        if not self.clock_known:
            probed, ok = self._probe(report)
            if not ok:
                return probed, True, False
            progressed = probed
        after = 0
        while not self.stopping.is_set():
            rows = self.outbox.pending(self.batch, after_seq=after, centre=self.centre)
            if not rows:
                break
            after = rows[-1].seq
            count, ok, skew = self._stream(rows, report)
            progressed = progressed or count > 0
            resend = resend or skew
            if not ok:
                broken = True
                break
        return progressed, broken, resend

    def _stream(self, rows: list[Row], report: SubmitReport) -> tuple[int, bool, bool]:
        """Claim ``rows`` over one stream; (answers recorded, stream finished, clock fixed)."""
        items = {row.record.record_id: row.record for row in rows}
        claims = (
            ClaimItem(r.record.usage(), r.record.voucher, r.record.cost_fen)
            for r in rows
            if not self.stopping.is_set()
        )
        buffer: list[tuple[OutboxRecord, Answer]] = []
        flushed = time.monotonic()
        answered = 0
        skew_fixed = False

        def flush() -> None:
            nonlocal flushed
            self.outbox.answer(buffer, at=format_time(self.clock()))
            buffer.clear()
            flushed = time.monotonic()

        try:
            stream = self.client().claim_stream(
                claims, window=self.window, per_message=self.per_message
            )
            for result in stream:
                record = items[result.item.usage.record_id]
                answer = classify(result)
                if (
                    isinstance(answer, Transient)
                    and result.refusal is not None
                    and result.refusal.reason == "CLOCK_SKEW"
                    and not skew_fixed
                ):
                    skew_fixed = self._fix_clock(result.refusal)
                buffer.append((record, answer))
                self._count(answer, report)
                if not isinstance(answer, Transient):
                    answered += 1
                if len(buffer) >= 500 or time.monotonic() - flushed > 0.25:
                    flush()
                if self.stopping.is_set():
                    break
        except RedemptionError as error:
            flush()
            if error.code not in TRANSIENT_CODES:
                raise AgentError(
                    f"the ledger at {self.target} refused the stream: {error}"
                    " (check the centre's certificate, key and --target)"
                ) from error
            log.warning("%s: stream to %s broke (%s); will resend", self.centre, self.target, error)
            self.drop_client()
            return answered, False, skew_fixed
        flush()
        return answered, True, skew_fixed

    def _probe(self, report: SubmitReport) -> tuple[bool, bool]:
        """Claim the first pending record on its own (unary) while the service clock is not
        known yet, correcting the clock on CLOCK_SKEW, so that the stream that follows is
        not refused wholesale and records are decided in the order they were read.
        Returns (answered, the service answered)."""
        rows = self.outbox.pending(1, centre=self.centre)
        if not rows:
            return False, True
        record = rows[0].record
        for _ in range(3):
            try:
                result = self.client().claim(record.usage(), record.voucher, record.cost_fen)
            except RedemptionError as error:
                if error.reason == "CLOCK_SKEW" and self._fix_clock(error):
                    continue
                answer = answer_of_error(error)
                self._count(answer, report)
                self.outbox.answer([(record, answer)], at=format_time(self.clock()))
                if isinstance(answer, Transient):
                    if error.code in TRANSIENT_CODES:
                        self.drop_client()
                    return False, False
                break
            else:
                answer = claimed_of(result)
                self._count(answer, report)
                self.outbox.answer([(record, answer)], at=format_time(self.clock()))
                break
        else:
            return False, False
        self.clock_known = True
        self.outbox.set_meta(f"clock_offset:{self.centre}", repr(self.offset))
        return True, True

    def _fix_clock(self, error: RedemptionError) -> bool:
        try:
            skew = float(error.metadata.get("skew_seconds", ""))
        except ValueError:
            return False
        self.offset -= skew
        self.outbox.set_meta(f"clock_offset:{self.centre}", repr(self.offset))
        log.info(
            "%s: the service clock is %+.1f s from this machine's; signing with it from now on",
            self.centre,
            self.offset,
        )
        return True

    def _count(self, answer: Answer, report: SubmitReport) -> None:
        if isinstance(answer, Claimed):
            report.answered += 1
            report.claimed += 1
            report.subsidy_fen += answer.subsidy_fen
            report.replayed += int(answer.replayed)
            self.progress.advance("claimed")
        elif isinstance(answer, Refusal):
            report.answered += 1
            report.refused += 1
            self.progress.advance("refused")
        else:
            report.transient += 1
            self.progress.advance("retry")

    # -- the loop --

    def run(
        self,
        *,
        interval: float | None = None,
        give_up_after: float | None = 300.0,
        on_cycle: Callable[[IngestReport, SubmitReport], None] | None = None,
    ) -> SubmitReport:
        """Ingest and submit once (``interval`` None), or every ``interval`` seconds until
        ``stop()``; returns the last cycle's submit report."""
        while True:
            ingest = self.ingest()
            level = logging.INFO if ingest.rows or ingest.added else logging.DEBUG  # idle: quiet
            log.log(
                level,
                "%s: read %d rows -> %d records (%d new, %d known, %d changed, %d unpriced);"
                " skipped %s",
                self.centre,
                ingest.rows,
                ingest.records,
                ingest.added,
                ingest.known,
                ingest.changed,
                ingest.unpriced,
                dict(ingest.skipped) or "none",
            )
            # On a schedule, a cycle stops trying after an interval (at least 30 s) without
            # an answer and reads the source again; the pending records are kept.
            wait = give_up_after if interval is None else max(interval, 30.0)
            submitted = self.submit(give_up_after=wait)
            if on_cycle is not None:
                on_cycle(ingest, submitted)
            if interval is None or self.stopping.wait(interval):
                return submitted
