"""The centre agent's durable outbox: every usage record, and the ledger's answer to it.

One SQLite file (stdlib ``sqlite3``, WAL, ``synchronous=FULL``: a committed write is on
disk before the call returns), by default ``<centre dir>/outbox.db``. A record goes in
before it is ever sent; its answer is written after the ledger has given it. So whatever
is killed, and whenever:

* a record read from the source but not yet committed here is read again on the next run
  (the source is re-read; the outbox is keyed by (centre, record id), so a re-read never
  makes a second row);
* a record sent but whose answer was not yet committed here is sent again, with the same
  body, and the ledger answers a repeated (centre, record id) with its first answer
  (``replayed``); it is never paid twice.

Rows, in the order they were added (``seq``), which is the order they are submitted:

=============  ===========================================================================
status         meaning
=============  ===========================================================================
``pending``    not answered yet (never sent, or only transient failures so far:
               ``attempts`` and ``last_error`` say which)
``claimed``    the ledger accepted it: ``subsidy_fen``, ``log_index``, ``bound_by``,
               ``voucher_balance_fen``, ``rate_bp``, ``policy_version``, ``claimed_at``
               (the entry's time in the ledger), ``replayed``
``refused``    a final refusal: ``reason`` (``CAP_EXHAUSTED``, ``VOUCHER_EXPIRED`` ...),
               ``code`` (the gRPC status name, or ``LOCAL`` for a record the agent could
               not price), ``message``, ``metadata`` (JSON, e.g. ``{"cap": "voucher"}``)
=============  ===========================================================================

A record read again with a *different* body (a later export changed a job) is not
written over: the first body stays, and the difference is counted (``changed``) and
logged; the ledger would refuse the new body as ``ALREADY_CLAIMED`` anyway.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.errors import AgentError
from ledger.timeutil import format_time, parse_time
from ledger.usage import UsageRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    centre TEXT NOT NULL,
    record_id TEXT NOT NULL,
    account TEXT NOT NULL,
    voucher TEXT NOT NULL,
    resource TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    usage_start TEXT NOT NULL,
    usage_end TEXT NOT NULL,
    cost_fen INTEGER NOT NULL,
    origin TEXT NOT NULL,
    added_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    answered_at TEXT,
    subsidy_fen INTEGER,
    log_index INTEGER,
    bound_by TEXT,
    voucher_balance_fen INTEGER,
    rate_bp INTEGER,
    policy_version TEXT,
    claimed_at TEXT,
    replayed INTEGER,
    reason TEXT,
    code TEXT,
    message TEXT,
    metadata TEXT,
    UNIQUE (centre, record_id)
);
CREATE INDEX IF NOT EXISTS records_status ON records (status, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, read_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    centre TEXT NOT NULL,
    origin TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    added_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_origin ON quarantine (centre, origin);
"""
# Columns added after the first release, for outboxes made before them.
ADDED_COLUMNS = (("records", "job_keys", "TEXT"),)

STATUSES = ("pending", "claimed", "refused")
BODY_FIELDS = ("voucher", "resource", "quantity", "usage_start", "usage_end", "cost_fen")
_CHUNK = 400  # host parameters per IN (...) query stay well under SQLite's limit


@dataclass(frozen=True)
class OutboxRecord:
    """A usage record as the agent will claim it: the voucher and the priced cost."""

    centre: str
    record_id: str
    account: str
    voucher: str
    resource: str
    quantity: int
    start: str  # the ledger's time form (ledger.timeutil.format_time), UTC
    end: str
    cost_fen: int
    origin: str = ""  # where it was read, e.g. "sacct:jobs.log:17"
    keys: str = ""  # JSON of the job's account, user, partition, QOS, wckey (JobKeys)

    @classmethod
    def of(
        cls, usage: UsageRecord, voucher: str, cost_fen: int, origin: str = "", keys: str = ""
    ) -> OutboxRecord:
        return cls(
            usage.centre,
            usage.record_id,
            usage.account,
            voucher,
            usage.resource,
            usage.quantity,
            format_time(usage.start),
            format_time(usage.end),
            cost_fen,
            origin,
            keys,
        )

    def usage(self) -> UsageRecord:
        return UsageRecord(
            self.centre,
            self.record_id,
            self.account,
            self.resource,
            self.quantity,
            parse_time(self.start),
            parse_time(self.end),
        )

    def body(self) -> tuple[Any, ...]:
        return (self.voucher, self.resource, self.quantity, self.start, self.end, self.cost_fen)


@dataclass(frozen=True)
class Claimed:
    """The ledger accepted a claim (fields of ``suanli.v1.ClaimResult``)."""

    subsidy_fen: int
    log_index: int
    bound_by: str
    voucher_balance_fen: int
    rate_bp: int
    policy_version: str
    at: str
    replayed: bool


@dataclass(frozen=True)
class Refusal:
    """A final refusal: the ledger's reason (or the agent's own, with code ``LOCAL``)."""

    reason: str
    code: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Transient:
    """A failure worth retrying; the record stays pending."""

    error: str


Answer = Claimed | Refusal | Transient


@dataclass(frozen=True)
class Row:
    """A record with its status and answer, as stored."""

    record: OutboxRecord
    seq: int
    status: str
    attempts: int
    last_error: str | None
    answered_at: str | None
    claimed: Claimed | None
    refusal: Refusal | None


@dataclass(frozen=True)
class Quarantined:
    """A bad row of an export, kept out of the outbox's records: where, and why."""

    seq: int
    centre: str
    origin: str  # the source it was read from, e.g. "sacct:jobs.log"
    line_no: int
    job_id: str
    reason: str
    added_at: str


@dataclass
class AddResult:
    added: int = 0
    known: int = 0  # already there, same body
    changed: list[tuple[OutboxRecord, tuple[Any, ...]]] = field(default_factory=list)


def _now() -> str:
    return format_time(datetime.now(UTC))


class Outbox:
    """The outbox file. One process writes it at a time (the agent); others may read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.db = self._open()
        except (OSError, sqlite3.Error) as exc:
            raise AgentError(f"cannot open the outbox {self.path}: {exc}") from exc

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One thread at a time uses it, but not always the one that opened it (an agent
        # built in one thread and run in another).
        db = sqlite3.connect(self.path, isolation_level=None, timeout=60.0, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=60000")
        db.executescript(SCHEMA)
        for table, column, kind in ADDED_COLUMNS:
            present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        if self.path.stat().st_mode & 0o077:
            self.path.chmod(0o600)  # the centre's record of its claims: its owner's only
        return db

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- adding ------------------------------------------------------------------------

    def add(self, records: Iterable[OutboxRecord]) -> AddResult:
        """Add records not there yet (one transaction, on disk when this returns)."""
        result = AddResult()
        batch: dict[tuple[str, str], OutboxRecord] = {}
        for record in records:
            batch.setdefault((record.centre, record.record_id), record)
        if not batch:
            return result
        now = _now()
        with self._write() as db:
            items = list(batch.values())
            for i in range(0, len(items), _CHUNK):
                chunk = items[i : i + _CHUNK]
                by_centre: dict[str, list[OutboxRecord]] = {}
                for record in chunk:
                    by_centre.setdefault(record.centre, []).append(record)
                existing: dict[tuple[str, str], tuple[Any, ...]] = {}
                for centre, group in by_centre.items():
                    marks = ",".join("?" * len(group))
                    rows = db.execute(
                        f"SELECT record_id, {', '.join(BODY_FIELDS)} FROM records"  # noqa: S608 - placeholders only
                        f" WHERE centre = ? AND record_id IN ({marks})",
                        [centre, *(r.record_id for r in group)],
                    )
                    for row in rows:
                        existing[(centre, row[0])] = tuple(row[1:])
                fresh = []
                for record in chunk:
                    first = existing.get((record.centre, record.record_id))
                    if first is None:
                        fresh.append(record)
                    elif first == record.body():
                        result.known += 1
                    else:
                        result.changed.append((record, first))
                db.executemany(
                    "INSERT INTO records (centre, record_id, account, voucher, resource, quantity,"
                    " usage_start, usage_end, cost_fen, origin, added_at, job_keys)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            r.centre,
                            r.record_id,
                            r.account,
                            r.voucher,
                            r.resource,
                            r.quantity,
                            r.start,
                            r.end,
                            r.cost_fen,
                            r.origin,
                            now,
                            r.keys or None,
                        )
                        for r in fresh
                    ],
                )
                result.added += len(fresh)
        return result

    # --- reading -----------------------------------------------------------------------

    _COLUMNS = (
        "seq, centre, record_id, account, voucher, resource, quantity, usage_start, usage_end,"
        " cost_fen, origin, status, attempts, last_error, answered_at, subsidy_fen, log_index,"
        " bound_by, voucher_balance_fen, rate_bp, policy_version, claimed_at, replayed, reason,"
        " code, message, metadata, job_keys"
    )

    @staticmethod
    def _row(values: Sequence[Any]) -> Row:
        (seq, centre, record_id, account, voucher, resource, quantity, start, end, cost,
         origin, status, attempts, last_error, answered_at, subsidy, log_index, bound_by,
         balance, rate_bp, policy_version, claimed_at, replayed, reason, code, message,
         metadata, keys) = values  # fmt: skip
        record = OutboxRecord(
            centre, record_id, account, voucher, resource, quantity, start, end, cost, origin,
            keys or "",
        )  # fmt: skip
        claimed = refusal = None
        if status == "claimed":
            claimed = Claimed(
                subsidy, log_index, bound_by, balance, rate_bp, policy_version, claimed_at,
                bool(replayed),
            )  # fmt: skip
        elif status == "refused":
            refusal = Refusal(reason, code, message or "", json.loads(metadata or "{}"))
        return Row(record, seq, status, attempts, last_error, answered_at, claimed, refusal)

    def pending(self, limit: int, after_seq: int = 0, centre: str | None = None) -> list[Row]:
        """Pending records in submission order (``seq`` > ``after_seq``), at most ``limit``."""
        where = "status = 'pending' AND seq > ?"
        args: list[Any] = [after_seq]
        if centre is not None:
            where += " AND centre = ?"
            args.append(centre)
        rows = self.db.execute(
            f"SELECT {self._COLUMNS} FROM records WHERE {where} ORDER BY seq LIMIT ?",  # noqa: S608
            [*args, limit],
        )
        return [self._row(r) for r in rows]

    def rows(self, centre: str | None = None) -> Iterator[Row]:
        """Every record, in submission order."""
        if centre is None:
            cursor = self.db.execute(f"SELECT {self._COLUMNS} FROM records ORDER BY seq")  # noqa: S608
        else:
            cursor = self.db.execute(
                f"SELECT {self._COLUMNS} FROM records WHERE centre = ? ORDER BY seq",  # noqa: S608
                [centre],
            )
        for values in cursor:
            yield self._row(values)

    def get(self, centre: str, record_id: str) -> Row | None:
        found = self.db.execute(
            f"SELECT {self._COLUMNS} FROM records WHERE centre = ? AND record_id = ?",  # noqa: S608
            [centre, record_id],
        ).fetchone()
        return None if found is None else self._row(found)

    def counts(self, centre: str | None = None) -> dict[str, int]:
        """Records by status (every status present, 0 when none)."""
        where, args = ("WHERE centre = ?", [centre]) if centre else ("", [])
        out = dict.fromkeys(STATUSES, 0)
        query = f"SELECT status, COUNT(*) FROM records {where} GROUP BY status"  # noqa: S608
        for status, n in self.db.execute(query, args):
            out[status] = n
        return out

    def subsidy_total(self, centre: str | None = None) -> int:
        where, args = ("AND centre = ?", [centre]) if centre else ("", [])
        query = (
            f"SELECT COALESCE(SUM(subsidy_fen), 0) FROM records WHERE status = 'claimed' {where}"  # noqa: S608
        )
        return int(self.db.execute(query, args).fetchone()[0])

    def refusals(self, centre: str | None = None) -> dict[str, int]:
        """Final refusals by reason."""
        where, args = ("AND centre = ?", [centre]) if centre else ("", [])
        query = (
            "SELECT reason, COUNT(*) FROM records WHERE status = 'refused'"  # noqa: S608
            f" {where} GROUP BY reason ORDER BY COUNT(*) DESC"
        )
        return dict(self.db.execute(query, args).fetchall())

    # --- answers -----------------------------------------------------------------------

    def answer(self, answers: Sequence[tuple[OutboxRecord, Answer]], at: str | None = None) -> None:
        """Record the ledger's answers (one transaction). A transient failure only counts an
        attempt; a record already answered keeps its first answer."""
        if not answers:
            return
        now = at or _now()
        claimed, refused, transient = [], [], []
        for record, answer in answers:
            key = (record.centre, record.record_id)
            if isinstance(answer, Claimed):
                claimed.append(
                    (
                        now,
                        answer.subsidy_fen,
                        answer.log_index,
                        answer.bound_by,
                        answer.voucher_balance_fen,
                        answer.rate_bp,
                        answer.policy_version,
                        answer.at,
                        int(answer.replayed),
                        *key,
                    )
                )
            elif isinstance(answer, Refusal):
                metadata = json.dumps(answer.metadata, ensure_ascii=False, sort_keys=True)
                refused.append((now, answer.reason, answer.code, answer.message, metadata, *key))
            else:
                transient.append((answer.error[:2000], *key))
        with self._write() as db:
            db.executemany(
                "UPDATE records SET status = 'claimed', attempts = attempts + 1, answered_at = ?,"
                " subsidy_fen = ?, log_index = ?, bound_by = ?, voucher_balance_fen = ?,"
                " rate_bp = ?, policy_version = ?, claimed_at = ?, replayed = ?"
                " WHERE centre = ? AND record_id = ? AND status = 'pending'",
                claimed,
            )
            db.executemany(
                "UPDATE records SET status = 'refused', attempts = attempts + 1, answered_at = ?,"
                " reason = ?, code = ?, message = ?, metadata = ?"
                " WHERE centre = ? AND record_id = ? AND status = 'pending'",
                refused,
            )
            db.executemany(
                "UPDATE records SET attempts = attempts + 1, last_error = ?"
                " WHERE centre = ? AND record_id = ? AND status = 'pending'",
                transient,
            )

    def requeue(
        self, reasons: Iterable[str], centre: str | None = None, reprice: Any = None
    ) -> int:
        """Put refused records with one of ``reasons`` back to pending (a refusal wrote
        nothing in the ledger, so sending them again is safe); ``reprice(record)`` may give
        a new cost. Returns how many."""
        wanted = sorted(set(reasons))
        if not wanted:
            return 0
        marks = ",".join("?" * len(wanted))
        where = f"status = 'refused' AND reason IN ({marks})"
        args: list[Any] = list(wanted)
        if centre is not None:
            where += " AND centre = ?"
            args.append(centre)
        with self._write() as db:
            rows = [
                self._row(r)
                for r in db.execute(f"SELECT {self._COLUMNS} FROM records WHERE {where}", args)  # noqa: S608
            ]
            for row in rows:
                cost = row.record.cost_fen if reprice is None else reprice(row.record)
                db.execute(
                    "UPDATE records SET status = 'pending', cost_fen = ?, reason = NULL,"
                    " code = NULL, message = NULL, metadata = NULL, answered_at = NULL,"
                    " last_error = ? WHERE seq = ?",
                    [cost, f"requeued after refusal {row.refusal.reason if row.refusal else ''}",
                     row.seq],
                )  # fmt: skip
        return len(rows)

    def remap(
        self, reasons: Iterable[str], centre: str, revise: Any
    ) -> list[tuple[OutboxRecord, OutboxRecord]]:
        """Put refused records with one of ``reasons`` back to pending with the voucher and
        cost ``revise(record)`` gives (a new record, or None to leave it refused): for a
        refusal that came from the centre's own configuration (a mapping typo, the wrong
        certificate), which the ledger wrote nothing for. Returns (old, new) pairs."""
        wanted = sorted(set(reasons))
        marks = ",".join("?" * len(wanted))
        query = (
            f"SELECT {self._COLUMNS} FROM records WHERE status = 'refused'"  # noqa: S608
            f" AND centre = ? AND reason IN ({marks}) ORDER BY seq"
        )
        changed: list[tuple[OutboxRecord, OutboxRecord]] = []
        with self._write() as db:
            for row in [self._row(r) for r in db.execute(query, [centre, *wanted])]:
                new = revise(row.record)
                if new is None:
                    continue
                why = row.refusal.reason if row.refusal else ""
                db.execute(
                    "UPDATE records SET status = 'pending', voucher = ?, cost_fen = ?,"
                    " reason = NULL, code = NULL, message = NULL, metadata = NULL,"
                    " answered_at = NULL, last_error = ? WHERE seq = ? AND status = 'refused'",
                    [new.voucher, new.cost_fen, f"requeued after refusal {why}", row.seq],
                )
                changed.append((row.record, new))
        return changed

    # --- quarantine --------------------------------------------------------------------

    def quarantine(self, centre: str, origin: str, rows: Sequence[tuple[int, str, str]]) -> None:
        """The bad rows of ``origin`` as last read, (line, job id, reason) each: they replace
        the rows quarantined from it before (a fixed export clears its entries)."""
        now = _now()
        with self._write() as db:
            db.execute("DELETE FROM quarantine WHERE centre = ? AND origin = ?", [centre, origin])
            db.executemany(
                "INSERT INTO quarantine (centre, origin, line_no, job_id, reason, added_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (centre, origin, line, job[:200], reason[:2000], now)
                    for line, job, reason in rows
                ],
            )

    def quarantined(
        self, centre: str | None = None, *, after: int = 0, limit: int = 100
    ) -> list[Quarantined]:
        """Quarantined rows in the order they were found (``seq`` > ``after``), a page."""
        where = "seq > ?"
        args: list[Any] = [after]
        if centre is not None:
            where += " AND centre = ?"
            args.append(centre)
        rows = self.db.execute(
            "SELECT seq, centre, origin, line_no, job_id, reason, added_at FROM quarantine"  # noqa: S608
            f" WHERE {where} ORDER BY seq LIMIT ?",
            [*args, limit],
        )
        return [Quarantined(*row) for row in rows]

    def quarantine_count(self, centre: str | None = None) -> int:
        where, args = ("WHERE centre = ?", [centre]) if centre else ("", [])
        query = f"SELECT COUNT(*) FROM quarantine {where}"  # noqa: S608
        return int(self.db.execute(query, args).fetchone()[0])

    # --- bookkeeping -------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        found = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return None if found is None else str(found[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )

    def source_seen(self, path: str) -> tuple[int, int] | None:
        """(size, mtime_ns) of a source file when it was last read completely."""
        found = self.db.execute(
            "SELECT size, mtime_ns FROM sources WHERE path = ?", [path]
        ).fetchone()
        return None if found is None else (int(found[0]), int(found[1]))

    def mark_source(self, path: str, size: int, mtime_ns: int) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO sources (path, size, mtime_ns, read_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (path) DO UPDATE SET size = excluded.size,"
                " mtime_ns = excluded.mtime_ns, read_at = excluded.read_at",
                [path, size, mtime_ns, _now()],
            )
