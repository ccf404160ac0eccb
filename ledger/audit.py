"""The offline audit: everything an auditor checks about a suanli log, from its bytes alone.

Given every entry (``(index, canonical bytes)`` in index order), the log's latest signed
checkpoint and the genesis log key the auditor trusts, ``verify_log``:

1. checks each entry is canonical (``Entry.from_bytes``) and that no index is missing;
2. rebuilds the RFC 9162 tree (``CompactRange``) and keeps every leaf hash;
3. replays every entry through the service's own fold (``ledger.state.apply``), which
   decides key registration, roles, key lifetimes and every domain rule;
4. verifies every entry signature against the key registry in the log, in parallel over
   chunks in a ``ProcessPoolExecutor`` (one worker per core by default);
5. checks that entry 0 is a ``log.genesis`` naming the trusted key: the chain of trust
   starts there and follows ``log.rotate`` entries, so the key that must have signed a
   checkpoint of size N is the registry's ``log_key_for_size(N)``;
6. opens the latest checkpoint with that key, checks its origin is the log's and its root
   is the rebuilt root at its size;
7. when a pinned checkpoint (one the auditor saved earlier) is given, opens it the same
   way and checks that the rebuilt tree at the pinned size has the pinned root.

The report names the FIRST bad index and why. A tree mismatch alone does not say which
entry is wrong, so the audit then reads the log's stored signed checkpoints (an
``Evidence``): the first one whose signed root differs from the rebuilt root at its size,
and the last one before it that matches, bracket the bad index; within the bracket the
log's stored leaf hashes (the level-0 tiles) name it, and when those stored hashes
reproduce the signed root the naming is proved, not guessed.

The module is pure: no I/O, no clock. Sources (HTTP, export directory, database) live in
``api/audit_source.py``; they hand this module iterables and callables.

Cost per entry in the main process: one SHA-256, one compact-range append, one
``Entry.from_bytes``, one fold step, and slicing the signed message out of the canonical
bytes (the canonical form puts ``sigs`` just before ``"v":1}``, so the message is the bytes
with the ``sigs`` member cut out; ``Entry.from_bytes`` has checked the form first). The
Ed25519 verifications, which dominate, run in the worker processes.
"""

from __future__ import annotations

import base64
import gc
import math
import multiprocessing
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import erasure
from ledger.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint
from ledger.entry import SIGNING_PREFIX, Entry
from ledger.errors import LedgerError
from ledger.fold import PUBLIC_KINDS, apply, apply_public
from ledger.keys import Verifier
from ledger.merkle import EMPTY_ROOT, HASH_SIZE, CompactRange, leaf_hash
from ledger.note import parse_note
from ledger.projection import differences, summary
from ledger.snapshot import SnapshotHeader, summary_digest
from ledger.state import LedgerState

__all__ = [
    "Evidence",
    "Failure",
    "Missing",
    "Report",
    "signed_message",
    "verify_log",
]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the OS says)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


# --- inputs and results -----------------------------------------------------------------------


@dataclass(frozen=True)
class Missing:
    """What a source yields in place of an entry it could not supply.

    ``index``: the position with no entry; ``why``: what the source saw (a missing entry
    bundle, a bundle with fewer entries than its width, an unreadable file).
    """

    index: int
    why: str


EntryItem = tuple[int, bytes] | Missing


@dataclass(frozen=True)
class Evidence:
    """What a log stores besides its entries, used only to name a bad index.

    ``checkpoints``: returns the stored signed checkpoints as ``(size, note)``, smallest
    size first; each is trusted only if it verifies with the log key in force at its size.
    ``leaf_hashes``: ``(start, end)`` -> the stored leaf hashes of entries [start, end)
    (the level-0 tiles), or ``None`` if they cannot be read; they are trusted only where
    they reproduce a signed root.
    """

    checkpoints: Callable[[], Iterable[tuple[int, str]]]
    leaf_hashes: Callable[[int, int], Sequence[bytes] | None] | None = None


CHECKS = ("source", "entry", "genesis", "tree", "signature", "fold", "checkpoint", "pin")


@dataclass(frozen=True)
class Failure:
    """One failed check.

    ``check``: which check failed (one of ``CHECKS``); ``message``: why, for people;
    ``index``: the bad entry's index, or ``None`` when the failure is not about one entry
    (a checkpoint signature, for example); ``end``: when set, the bad entry is known only to
    lie in [index, end).
    """

    check: str
    message: str
    index: int | None = None
    end: int | None = None

    @property
    def is_range(self) -> bool:
        return self.index is not None and self.end is not None and self.end > self.index + 1

    def sort_key(self) -> tuple[float, int]:
        # Definite indices first, by index; a range sorts by its last index, so that it is
        # named first only when it certainly precedes every definite bad index.
        if self.index is None:
            return (math.inf, 0)
        if self.is_range:
            assert self.end is not None
            return (float(self.end - 1), 1)
        return (float(self.index), 0)

    def describe(self) -> str:
        if self.index is None:
            return f"FAIL ({self.check}): {self.message}"
        if self.is_range:
            assert self.end is not None
            return f"FAIL in entries {self.index}..{self.end - 1} ({self.check}): {self.message}"
        return f"FAIL at index {self.index} ({self.check}): {self.message}"


@dataclass
class Report:
    """The outcome of ``verify_log``.

    ``entries``: how many entries were read; ``root``: the rebuilt root over them;
    ``checkpoint``: the latest checkpoint, once verified; ``checkpoint_key``: the key id
    that verified it; ``pinned``: the pinned checkpoint, once verified; ``log_keys``:
    ``(from_size, key id)`` of every log key, from the registry in the log; ``kinds``:
    entries per kind; ``failures``: every failed check, first bad index first.
    """

    entries: int = 0
    root: bytes = EMPTY_ROOT
    checkpoint: Checkpoint | None = None
    checkpoint_key: str | None = None
    pinned: Checkpoint | None = None
    log_keys: list[tuple[int, str]] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    snapshots: list[int] = field(default_factory=list)  # sizes of fold snapshots checked
    mode: str = "full"  # "full": every rule replayed with disclosures; "public": without
    unchecked: Counter[str] = field(default_factory=Counter)  # public: entries per kind
    # full mode: entries whose disclosures an erase entry deleted -> that entry's index
    erased: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures and self.checkpoint is not None

    @property
    def first(self) -> Failure | None:
        return self.failures[0] if self.failures else None

    def _mode_lines(self) -> list[str]:
        if self.mode == "full":
            lines = [
                "full audit: every entry replayed through the fold with its disclosures "
                "(every rule, cap and settlement checked)"
            ]
            if self.erased:
                lines.append(
                    f"erased: {len(self.erased)} entries of "
                    f"{len(set(self.erased.values()))} erased applications (erase entries "
                    f"{', '.join(map(str, sorted(set(self.erased.values()))))}): their "
                    "signatures and time were checked, not what they decided (their "
                    "disclosures were deleted)"
                )
            return lines
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.unchecked.items()))
        return [
            "public audit (no disclosures): signatures, the tree, checkpoints, the key "
            "registry, that every restricted field is concealed, statement totals and "
            "settled amounts within each voucher's face value were checked",
            f"not checked without disclosures (run with an auditor token): the rules of "
            f"{sum(self.unchecked.values())} entries ({kinds})",
        ]

    def verdict(self) -> list[str]:
        """Lines for people: the verdict first, then details."""
        root = base64.b64encode(self.root).decode()
        if self.ok:
            assert self.checkpoint is not None
            lines = [
                f"OK: {self.entries} entries, root {root}, checkpoint size "
                f"{self.checkpoint.size} verified with key {self.checkpoint_key}"
            ]
            lines += self._mode_lines()
            if self.pinned is not None:
                lines.append(
                    f"pinned checkpoint of size {self.pinned.size} is consistent "
                    "(same root at that size)"
                )
            if self.snapshots:
                sizes = ", ".join(str(s) for s in self.snapshots)
                lines.append(f"fold snapshots at sizes {sizes} match the replay")
        else:
            lines = [f.describe() for f in self.failures[:1]]
            lines += [f"  also: {f.describe()}" for f in self.failures[1:10]]
            if len(self.failures) > 10:
                lines.append(f"  ... and {len(self.failures) - 10} more")
            lines.append(f"read {self.entries} entries, rebuilt root {root}")
        if len(self.log_keys) > 1 or not self.ok:
            lines += [f"log key from size {size}: {key}" for size, key in self.log_keys]
        return lines


# --- signatures, in worker processes ------------------------------------------------------------

_SIGS_MEMBER = b',"sigs":['
_LAST_MEMBER = b',"v":1}'
_KEY_CACHE: dict[bytes, Ed25519PublicKey] = {}

SigItem = tuple[int, bytes, tuple[tuple[str, bytes], ...]]


def signed_message(data: bytes, entry: Entry) -> bytes:
    """``entry.message()``, cut out of its canonical bytes ``data`` without re-encoding.

    ``data`` must be the canonical form (``Entry.from_bytes(data)`` returned ``entry``).
    RFC 8785 sorts the members ``at, body, kind, logged, sigs, v``, so the signed entry is
    ``data`` without ``,"logged":"…"`` and ``,"sigs":[...]``. The last ``,"sigs":[`` in
    ``data`` is that member: after it come only signature objects, whose strings cannot
    hold an unescaped quote; ``logged``, when there, stands just before it.
    """
    pos = data.rfind(_SIGS_MEMBER)
    if pos > 0 and data.endswith(b"]" + _LAST_MEMBER):
        if entry.logged is not None:
            logged = b',"logged":"' + entry.logged.encode() + b'"'
            if not data[:pos].endswith(logged):
                return entry.message()
            pos -= len(logged)
        return SIGNING_PREFIX + data[:pos] + _LAST_MEMBER
    return entry.message()  # not reached for a canonical version-1 entry


def _public_key(raw: bytes) -> Ed25519PublicKey:
    key = _KEY_CACHE.get(raw)
    if key is None:
        key = _KEY_CACHE[raw] = Ed25519PublicKey.from_public_bytes(raw)
    return key


def verify_signatures(items: Sequence[SigItem], keys: dict[str, bytes]) -> tuple[int, str] | None:
    """Verify a chunk (in index order); return the first ``(index, why)`` that fails.

    ``keys`` maps the key ids the chunk names to raw Ed25519 public keys taken from the
    registry in the log; a key id it lacks was never registered.
    """
    for index, message, sigs in items:
        for key_id, sig in sigs:
            raw = keys.get(key_id)
            if raw is None:
                return index, f"signed by key {key_id}, which the log never registered"
            try:
                _public_key(raw).verify(sig, message)
            except InvalidSignature:
                return index, f"signature by key {key_id} does not verify"
    return None


class _SignatureChecker:
    """Chunks of signature checks, run in a process pool (or inline with one job)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.pool: Executor | None = None
        if jobs > 1:
            methods = multiprocessing.get_all_start_methods()
            # forkserver: workers never inherit the caller's threads or locks (the HTTP
            # source prefetches in threads); it is also what Python 3.14 defaults to.
            method = "forkserver" if "forkserver" in methods else "spawn"
            context = multiprocessing.get_context(method)
            self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context)
        self.pending: deque[Future[tuple[int, str] | None]] = deque()
        self.first: tuple[int, str] | None = None

    def _record(self, result: tuple[int, str] | None) -> None:
        if result is not None and (self.first is None or result[0] < self.first[0]):
            self.first = result

    def submit(self, items: list[SigItem], keys: dict[str, bytes]) -> None:
        if not items:
            return
        if self.pool is None:
            self._record(verify_signatures(items, keys))
            return
        self.pending.append(self.pool.submit(verify_signatures, items, keys))
        while len(self.pending) > 2 * self.jobs:  # bounded: never read far ahead of the workers
            self._record(self.pending.popleft().result())
        while self.pending and self.pending[0].done():
            self._record(self.pending.popleft().result())

    def finish(self) -> tuple[int, str] | None:
        while self.pending:
            self._record(self.pending.popleft().result())
        return self.first

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


# --- what anyone can check without disclosures ------------------------------------------------


class _PublicChecks:
    """The money checks the public log allows: each statement's lines add up to its close,
    no claim is settled twice, and what statements paid on a voucher is within its face
    value. Everything else a rule decides needs disclosures; it is counted as unchecked."""

    def __init__(self) -> None:
        self.unchecked: Counter[str] = Counter()
        self.face: dict[str, int] = {}
        self.settled: dict[str, int] = {}  # voucher -> net amount paid on statements
        self.settled_claims: dict[int, int] = {}  # claim index -> statement line's index
        self.statements: dict[str, tuple[int, int, int]] = {}  # id -> lines, cost, amount
        self.problems: list[tuple[str, int | None]] = []

    def add(self, entry: Entry, index: int, audit: _Audit) -> None:
        if entry.kind not in PUBLIC_KINDS:
            self.unchecked[entry.kind] += 1
        body = entry.body
        if entry.kind == "voucher.issue":
            self.face[str(body["voucher"])] = int(body["face_value_fen"])
        elif entry.kind == "statement.lines":
            self._lines(body, index)
        elif entry.kind == "statement.close":
            self._close(body, index)

    def _lines(self, body: Mapping[str, object], index: int) -> None:
        sid = str(body.get("statement"))
        lines, cost, amount = self.statements.get(sid, (0, 0, 0))
        for line in body.get("lines", []):  # type: ignore[attr-defined]
            claim = int(line["claim_index"])
            if line["type"] == "claim":
                if claim in self.settled_claims:
                    self.problems.append(
                        (f"claim {claim} is settled again (first at entry "
                         f"{self.settled_claims[claim]})", index)
                    )  # fmt: skip
                self.settled_claims[claim] = index
            voucher = str(line["voucher"])
            self.settled[voucher] = self.settled.get(voucher, 0) + int(line["amount_fen"])
            lines, cost, amount = (
                lines + 1,
                cost + int(line["cost_fen"]),
                amount + int(line["amount_fen"]),
            )
        self.statements[sid] = (lines, cost, amount)

    def _close(self, body: Mapping[str, object], index: int) -> None:
        sid = str(body.get("statement"))
        totals = body.get("totals")
        counted = self.statements.get(sid, (0, 0, 0))
        if (
            not isinstance(totals, dict)
            or (totals.get("lines"), totals.get("cost_fen"), totals.get("amount_fen")) != counted
        ):
            self.problems.append(
                (f"statement {sid}: its totals are not the sum of its published lines", index)
            )

    def finish(self) -> list[tuple[str, int | None]]:
        for voucher, paid in self.settled.items():
            face = self.face.get(voucher)
            if face is None or paid > face:
                self.problems.append(
                    (f"statements paid {paid} fen on voucher {voucher}, over its face value "
                     f"{face}", None)
                )  # fmt: skip
        return self.problems


# --- the pipeline ---------------------------------------------------------------------------------


def _unverified_checkpoint(note: str) -> Checkpoint:
    """The checkpoint text of a note, NOT verified: only for sizes and for comparing roots
    before deciding which signature to check."""
    return parse_checkpoint(parse_note(note).text)


class _Audit:
    def __init__(
        self, genesis_key: Verifier, origin: str | None, jobs: int, chunk_size: int
    ) -> None:
        self.genesis_key = genesis_key
        self.origin = origin
        self.state = LedgerState()
        self.range = CompactRange(0, [])
        self.leaves = bytearray()
        self.count = 0
        self.want_roots: set[int] = set()  # sizes whose root is recorded while reading
        self.roots: dict[int, bytes] = {}
        self.failures: list[Failure] = []
        self.stop_at: int | None = None  # first known bad index: nothing after it matters
        self.kinds: Counter[str] = Counter()
        self.signatures = _SignatureChecker(jobs)
        self.chunk: list[SigItem] = []
        self.chunk_keys: set[str] = set()
        self.chunk_size = chunk_size
        self.projection: tuple[int, dict[str, int]] | None = None  # stored (size, summary)
        self.snapshots: dict[int, SnapshotHeader] = {}  # by size
        self.snapshots_checked: list[int] = []
        self.disclosures: Callable[[int, int], Mapping[int, tuple[str, ...]]] | None = None
        self._opened: Mapping[int, tuple[str, ...]] = {}
        self._opened_window = (0, 0)
        self.public = _PublicChecks()

    def opened(self, index: int) -> tuple[str, ...]:
        """The disclosures of entry ``index``, fetched a window of entries at a time."""
        start, end = self._opened_window
        if not start <= index < end:
            assert self.disclosures is not None
            start, end = index, index + 4096
            self._opened, self._opened_window = self.disclosures(start, end), (start, end)
        return self._opened.get(index, ())

    # failures that name an index stop the per-entry checks after it
    def fail(self, check: str, message: str, index: int | None = None) -> None:
        self.failures.append(Failure(check, message, index))
        if index is not None and (self.stop_at is None or index < self.stop_at):
            self.stop_at = index

    def stopped(self, index: int) -> bool:
        return self.stop_at is not None and index > self.stop_at

    def add_leaf(self, hashed: bytes) -> None:
        self.range.append(hashed)
        self.leaves += hashed
        self.count += 1
        if self.count in self.want_roots:
            self.roots[self.count] = self.range.root()

    def missing(self, index: int, why: str) -> None:
        self.fail("source", f"entry is missing: {why}", index)
        # Keep positions: a placeholder leaf (no SHA-256 output is known to be all zeros).
        self.add_leaf(bytes(HASH_SIZE))

    def entry(self, index: int, data: bytes) -> None:
        self.add_leaf(leaf_hash(data))
        if self.stopped(index):
            return
        try:
            entry = Entry.from_bytes(data)
        except LedgerError as exc:
            self.fail("entry", f"not a canonical suanli entry: {exc.message}", index)
            return
        self.kinds[entry.kind] += 1
        try:
            if self.disclosures is None:
                self.state = apply_public(self.state, entry, index)
                self.public.add(entry, index, self)
            else:
                self.state, _ = apply(self.state, entry.disclosed(self.opened(index)), index)
        except LedgerError as exc:
            self.fail("fold", f"{entry.kind} refused by the fold: {exc.message}", index)
        except Exception as exc:  # a bug in a rule is still a refusal of this log, with a name
            self.fail("fold", f"{entry.kind}: the fold raised {type(exc).__name__}: {exc}", index)
        if index == 0:
            self.check_genesis(entry)
        if self.projection is not None and self.projection[0] == index + 1:
            self.check_projection(index)
        if index + 1 in self.snapshots:
            self.check_snapshot(self.snapshots[index + 1], index)
        sigs = tuple((s.key, s.sig) for s in entry.sigs)
        self.chunk.append((index, signed_message(data, entry), sigs))
        self.chunk_keys.update(key for key, _ in sigs)
        if len(self.chunk) >= self.chunk_size:
            self.flush()

    def check_projection(self, index: int) -> None:
        """The service's stored projection must equal this replay at the same size."""
        assert self.projection is not None
        size, stored = self.projection
        drift = differences(stored, summary(self.state))
        if drift:
            self.fail(
                "projection",
                f"the service's stored projection at size {size} differs from the replay: "
                + "; ".join(drift),
                index,
            )

    def check_snapshot(self, header: SnapshotHeader, index: int) -> None:
        """A fold snapshot must hold this replay's state: its root, its signer (the log key
        in force at its size) and its money summary are checked; its bytes are not loaded."""
        where = f"the fold snapshot at size {header.size}"
        key = self.key_for_size(header.size)
        origin = self.expected_origin() or ""
        if header.root != self.range.root():
            self.fail("snapshot", f"{where} names another root than the log's", index)
        elif key is None or key.key_id != header.key_id:
            self.fail("snapshot", f"{where} is not signed by the log key in force there", index)
        elif not key.is_valid(header.message(origin), header.signature):
            self.fail("snapshot", f"{where}: its signature does not verify", index)
        elif header.summary_sha256 != summary_digest(self.state):
            self.fail("snapshot", f"{where} does not hold the replay's money state", index)
        else:
            self.snapshots_checked.append(header.size)

    def check_genesis(self, entry: Entry) -> None:
        epochs = self.state.registry.log_epochs
        if entry.kind != "log.genesis" or not epochs:
            self.fail("genesis", f"entry 0 must be a valid log.genesis, not {entry.kind}", 0)
            return
        named = epochs[0].verifier
        if named.public != self.genesis_key.public or named.name != self.genesis_key.name:
            self.fail(
                "genesis",
                f"log.genesis names log key {named.key_id}, not the trusted key "
                f"{self.genesis_key.key_id} (--key must be the log's genesis key)",
                0,
            )

    def flush(self) -> None:
        items = [item for item in self.chunk if not self.stopped(item[0])]
        registered = self.state.registry.keys
        keys = {k: registered[k].verifier.public for k in self.chunk_keys if k in registered}
        self.signatures.submit(items, keys)
        self.chunk, self.chunk_keys = [], set()
        if self.signatures.first is not None and (
            self.stop_at is None or self.signatures.first[0] < self.stop_at
        ):
            self.stop_at = self.signatures.first[0]

    def leaf(self, i: int) -> bytes:
        return bytes(self.leaves[i * HASH_SIZE : (i + 1) * HASH_SIZE])

    def key_for_size(self, size: int) -> Verifier | None:
        chosen = None
        for epoch in self.state.registry.log_epochs:
            if epoch.from_size <= size:
                chosen = epoch.verifier
        return chosen

    def expected_origin(self) -> str | None:
        return self.origin if self.origin is not None else self.state.registry.origin

    def open(self, note: str, size: int | None = None) -> tuple[Checkpoint, Verifier]:
        """Verify a checkpoint with the log key in force at its size; raise LedgerError."""
        size = _unverified_checkpoint(note).size if size is None else size
        key = self.key_for_size(size)
        if key is None:
            raise LedgerError(f"the log names no log key for size {size}")
        return open_checkpoint(note, key, origin=self.expected_origin()), key

    def verifies(self, note: str, size: int) -> bool:
        try:
            cp, _key = self.open(note, size)
        except LedgerError:
            return False
        return cp.size == size

    def root_at(self, size: int) -> bytes:
        """The rebuilt root at ``size`` (at most ``self.count``)."""
        if size in self.roots:
            return self.roots[size]
        if size == 0:
            return EMPTY_ROOT
        cr = CompactRange(0, [])
        for i in range(size):
            cr.append(self.leaf(i))
        return cr.root()

    # --- naming the bad index when a signed root does not match -------------------------------

    def locate(
        self, evidence: Evidence | None, upper: Checkpoint, what: str, whose: str = "signed"
    ) -> Failure:
        """Bracket the first bad index between signed checkpoints, then name it.

        ``upper`` is a verified checkpoint whose root differs from the rebuilt root at its
        size (which is at most ``self.count``); stored checkpoints may give a tighter bracket.
        """
        good, bad = self.bracket(evidence, (upper.size, upper.root, what), whose)
        bracket = f"{bad[2]} does not match the entries" + (
            f"; the {whose} checkpoint of size {good} does" if good else ""
        )
        read = evidence.leaf_hashes if evidence is not None else None
        stored = read(good, bad[0]) if read is not None else None
        if stored is None or len(stored) != bad[0] - good:
            return Failure("tree", f"{bracket} (stored leaf hashes unavailable)", good, bad[0])
        assert read is not None
        return self.name(good, bad, list(stored), bracket, read)

    def bracket(
        self, evidence: Evidence | None, bad: tuple[int, bytes, str], whose: str
    ) -> tuple[int, tuple[int, bytes, str]]:
        """``(good, (bad size, bad root, description))``: the first bad index is in
        [good, bad size). Both ends are checkpoints that verify with the log key."""
        lower: deque[tuple[int, str]] = deque(maxlen=16)
        cr = CompactRange(0, [])
        for size, note in evidence.checkpoints() if evidence is not None else ():
            if size >= bad[0]:
                break
            try:
                cp = _unverified_checkpoint(note)
            except LedgerError:
                continue
            if cp.size != size:
                continue
            while cr.size < size:
                cr.append(self.leaf(cr.size))
            if cr.root() == cp.root:
                lower.append((size, note))
            elif self.verifies(note, size):  # unsigned ones prove nothing: skip them
                bad = (size, cp.root, f"the {whose} checkpoint of size {size}")
                break
        good = next((s for s, n in reversed(lower) if self.verifies(n, s)), 0)
        return good, bad

    def name(
        self,
        good: int,
        bad: tuple[int, bytes, str],
        stored: list[bytes],
        bracket: str,
        read: Callable[[int, int], Sequence[bytes] | None],
    ) -> Failure:
        """The first entry in [good, bad size) whose leaf differs from the stored leaf hash.

        The stored hashes are trusted only if, after the entries before ``good`` (which
        match a signed root), they reproduce the signed root at the bad size.
        """
        bad_size, bad_root, _what = bad
        check = CompactRange(0, [])
        for i in range(good):
            check.append(self.leaf(i))
        for h in stored:
            check.append(h)
        proved = check.root() == bad_root
        first = next((i for i in range(good, bad_size) if self.leaf(i) != stored[i - good]), None)
        if first is None:  # not reached when proved: equal leaves would give the signed root
            return Failure(
                "tree",
                f"{bracket}; the log's stored leaf hashes agree with the entries but not with "
                "the signed root, so they were altered too",
                good,
                bad_size,
            )
        if not proved:
            return Failure(
                "tree",
                f"{bracket}; the first entry that differs from the stored leaf hashes is "
                f"{first}, but those hashes do not reproduce the signed root either",
                good,
                bad_size,
            )
        return Failure("tree", f"{self.explain(first, read)} ({bracket})", first)

    def explain(self, first: int, read: Callable[[int, int], Sequence[bytes] | None]) -> str:
        """Say what happened to entry ``first`` (proved bad), using all stored leaf hashes.

        Only the index is proved; where its data came from is read off the stored hashes of
        the whole tree, which is a description, not a proof.
        """
        try:
            everything = read(0, self.count)
        except (LedgerError, ValueError):
            everything = None
        where = {h: i for i, h in enumerate(everything or ())}
        moved = where.get(self.leaf(first))
        if moved is None or everything is None:
            return f"entry {first} was altered: its leaf hash is not the one the log signed"
        took_mine = moved < self.count and self.leaf(moved) == everything[first]
        if took_mine:
            return f"entries {first} and {moved} are swapped"
        if moved == first + 1:
            return (
                f"entry {first} is missing: the entry read at {first} is the log's entry "
                f"{moved} (a row was deleted, the ones after it moved up)"
            )
        return f"entry {first} holds the data the log stores as entry {moved} (entries moved)"


def verify_log(
    entries: Iterable[EntryItem],
    checkpoint: str,
    genesis_key: Verifier,
    *,
    origin: str | None = None,
    pinned: str | None = None,
    evidence: Evidence | None = None,
    pinned_evidence: Evidence | None = None,
    jobs: int | None = None,
    chunk_size: int = 512,
    progress: Callable[[int], None] | None = None,
    projection: tuple[int, dict[str, int]] | None = None,
    snapshots: Sequence[SnapshotHeader] = (),
    disclosures: Callable[[int, int], Mapping[int, tuple[str, ...]]] | None = None,
) -> Report:
    """Audit a whole log. See the module docstring for what is checked.

    ``entries``: every entry from index 0, in order (``Missing`` for any the source could
    not supply); ``checkpoint``: the latest signed checkpoint note; ``genesis_key``: the
    trusted genesis log key; ``origin``: the expected origin (default: the one log.genesis
    names); ``pinned``: a checkpoint note saved earlier; ``evidence``: the log's stored
    checkpoints and leaf hashes; ``pinned_evidence``: the same, saved when the pin was (an
    earlier export), to name the index when the log was rewritten before the pinned size;
    ``jobs``: signature worker processes (default: every core; 1 checks inline);
    ``progress``: called with the number of entries read so far, now and then;
    ``projection``: the service's stored projection (size, ``ledger.projection.summary``),
    compared with the replay when the replay reaches that size; ``snapshots``: the headers
    of the service's fold snapshots, each checked when the replay reaches its size;
    ``disclosures(start, end)``: the disclosures of entries [start, end) by index — with
    them the audit is *full* (every entry replayed through the fold, every opening checked
    against its digest); without, *public* (``ledger.fold.apply_public``: what anyone can
    check, and the report says what it could not).
    """
    jobs = max(1, jobs if jobs is not None else usable_cores())
    audit = _Audit(genesis_key, origin, jobs, chunk_size)
    if disclosures is not None:  # only a full replay has the state they describe
        audit.projection = projection
        audit.snapshots = {h.size: h for h in snapshots}
    audit.disclosures = disclosures
    report = Report(mode="full" if disclosures is not None else "public")
    size: int | None = None
    try:
        size = _unverified_checkpoint(checkpoint).size
        audit.want_roots.add(size)
    except LedgerError as exc:
        audit.fail("checkpoint", f"the latest checkpoint is malformed: {exc.message}")
    pin_size: int | None = None
    if pinned is not None:
        try:
            pin_size = _unverified_checkpoint(pinned).size
            audit.want_roots.add(pin_size)
        except LedgerError as exc:
            audit.fail("pin", f"the pinned checkpoint is malformed: {exc.message}")
    try:
        _read(audit, entries, progress)
        first_sig = audit.signatures.finish()
    finally:
        audit.signatures.close()
    if first_sig is not None:
        audit.fail("signature", first_sig[1], first_sig[0])
    if audit.count == 0:
        audit.fail("source", "the log has no entries", 0)

    report.entries, report.root, report.kinds = audit.count, audit.range.root(), audit.kinds
    report.snapshots = audit.snapshots_checked
    _finish_mode(audit, report)
    report.log_keys = [(e.from_size, e.verifier.key_id) for e in audit.state.registry.log_epochs]
    if size is not None:
        _check_latest(audit, report, checkpoint, size, evidence)
    if pinned is not None and pin_size is not None:
        _check_pin(audit, report, pinned, pin_size, evidence, pinned_evidence)
    report.failures = sorted(audit.failures, key=Failure.sort_key)
    return report


def _finish_mode(audit: _Audit, report: Report) -> None:
    """Public mode: the money checks over the whole log; full mode: the erasures."""
    if report.mode == "public":
        report.unchecked = audit.public.unchecked
        for message, index in audit.public.finish():
            audit.fail("public", message, index)
        return
    report.erased = dict(erasure.book(audit.state).erased)
    for index, by in sorted(erasure.unresolved(audit.state).items()):
        audit.fail("erasure", f"its disclosures are marked erased by entry {by}, "
                   "which does not erase it", index)  # fmt: skip


def _read(
    audit: _Audit, entries: Iterable[EntryItem], progress: Callable[[int], None] | None
) -> None:
    expected = 0
    for item in entries:
        if isinstance(item, Missing):
            index, data = item.index, None
        else:
            index, data = item
        while expected < index:  # the source skipped indices without saying why
            audit.missing(expected, "the source did not supply it")
            expected += 1
        if index < expected:
            audit.fail("source", f"the source supplied index {index} twice or out of order", index)
            continue
        if data is None:
            assert isinstance(item, Missing)
            audit.missing(index, item.why)
        else:
            audit.entry(index, data)
        expected += 1
        if expected % 4096 == 0:
            # The replayed state only grows: keep it out of the collector's full passes,
            # which otherwise walk all of it again and again (a third of the audit's time
            # at 2*10^4 claims, growing with the log).
            gc.freeze()
            if progress is not None:
                progress(expected)
    audit.flush()
    if progress is not None:
        progress(expected)


def _check_latest(
    audit: _Audit, report: Report, note: str, size: int, evidence: Evidence | None
) -> None:
    try:
        cp, key = audit.open(note, size)
    except LedgerError as exc:
        in_force = audit.key_for_size(size)
        named = f" (the log key in force at size {size} is {in_force.key_id})" if in_force else ""
        audit.fail("checkpoint", f"the latest checkpoint does not verify: {exc.message}{named}")
        return
    report.checkpoint, report.checkpoint_key = cp, key.key_id
    if audit.count < cp.size:
        audit.fail(
            "source",
            f"the checkpoint has size {cp.size} but only {audit.count} entries were read",
            audit.count,
        )
        return
    if audit.root_at(cp.size) != cp.root:
        audit.failures.append(audit.locate(evidence, cp, f"the latest checkpoint (size {cp.size})"))


def _check_pin(
    audit: _Audit,
    report: Report,
    note: str,
    size: int,
    evidence: Evidence | None,
    pinned_evidence: Evidence | None,
) -> None:
    try:
        cp, _key = audit.open(note, size)
    except LedgerError as exc:
        audit.fail("pin", f"the pinned checkpoint does not verify: {exc.message}")
        return
    if audit.count < cp.size:
        audit.fail(
            "pin",
            f"the log has {audit.count} entries, fewer than the pinned size {cp.size}: it "
            f"was truncated (entries from index {audit.count} on are gone)",
            audit.count,
        )
        return
    rebuilt = audit.root_at(cp.size)
    if rebuilt == cp.root:
        report.pinned = cp
        return
    b64 = base64.b64encode
    mismatch = (
        f"the log's root at the pinned size {cp.size} is {b64(rebuilt).decode()}, the pinned "
        f"checkpoint says {b64(cp.root).decode()}: entries before {cp.size} were rewritten"
    )
    if pinned_evidence is not None:
        located = audit.locate(
            pinned_evidence,
            cp,
            f"the pinned checkpoint (size {cp.size})",
            "earlier export's signed",
        )
        audit.failures.append(
            Failure("pin", f"{located.message}; {mismatch}", located.index, located.end)
        )
        return
    audit.failures.append(
        Failure(
            "pin",
            f"{mismatch} (a pinned checkpoint alone cannot say which entry; pin an earlier "
            "export to name it)",
            0,
            cp.size,
        )
    )
