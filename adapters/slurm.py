"""Slurm ``sacct`` accounting output -> UsageRecord (国家超算成都中心, centre ``nscc-cd``).

Input
-----
``sacct --parsable`` (every line ends with the delimiter) or ``--parsable2`` (it does not),
with any ``--delimiter`` (one or more characters), with or without a header line:

* with a header (``JobID|JobIDRaw|Cluster|...``), columns are found by name, case-insensitive;
* without one (``--noheader``), the columns are in the order Open XDMoD exports them
  (``XDMOD_COLUMNS``; see tests/samples/slurm/*.SOURCE.md)::

    TZ=UTC sacct --allusers --parsable2 --noheader --allocations --duplicates \\
      --format jobid,jobidraw,cluster,partition,qos,account,group,gid,user,uid,submit,\\
      eligible,start,end,elapsed,exitcode,state,nnodes,ncpus,reqcpus,reqmem,reqtres,\\
      alloctres,timelimit,nodelist,jobname

Columns used: JobID and/or JobIDRaw, Cluster, Start, End, State, ElapsedRaw or Elapsed
(if neither is there, End - Start), NCPUS (or AllocCPUS) and/or AllocTRES; and, when
present, Account, User, Partition, QOS and WCKey, which choose the job's voucher
(``adapters.mapping``: by account, user, account+user, partition, QOS or wckey) and, for
partition and QOS, its GPU model. A header that lacks a needed column is refused with
InvalidInput naming it; an export without a Cluster column needs ``cluster`` (the
``--cluster NAME`` option), since the cluster is part of every record id.

Blank lines are ignored; a header line repeated later (concatenated
exports) is not a row. If JobName is the last column, delimiters inside a job name are
tolerated (the surplus fields are joined back into the name); any other line with the
wrong number of fields is skipped with its line number.

sacct prints times without a zone: they are read in ``tz`` (default UTC, which is what
XDMoD's export command sets with ``TZ=UTC``) and the records carry UTC.

What becomes a record
---------------------
A job counts once, from its allocation row. For each job that ran:

* ``cpu``: NCPUS (or AllocTRES ``cpu=`` when NCPUS is absent, empty or 0) x elapsed
  seconds, in core-seconds;
* GPU: cards x elapsed seconds, in card-seconds, as one record whose resource is
  ``gpu:<model>`` or ``gpu`` (see ``gpu_allocation`` for the AllocTRES rules).

Elapsed is sacct's Elapsed (wall time minus suspended time), never more than End - Start.

Record ids: ``<cluster>/<jobidraw>`` for the cpu record and ``<cluster>/<jobidraw>:gpu``
for the GPU record (whatever its model), so every record of a file has its own id and the
id is stable across exports. JobIDRaw is unique per cluster even for array tasks
(JobID ``123_4``) and heterogeneous components (``123+1``); the cluster keeps two clusters
of one centre apart. The GPU suffix does not carry the model on purpose: if a later export
attributes the same cards to a different model, the ledger sees the same idempotency key
with a different body and refuses it as a conflict instead of paying twice.

Skipped, each with its line number, job id, reason and a stable ``code``:

* ``step``: ``.batch``, ``.extern``, ``.interactive`` and numbered step rows (``123.0``),
  whose usage is inside their job's allocation;
* ``requeued``: State REQUEUED (an earlier run that ``--duplicates`` lists; the job's final
  run is the one claimed, as sacct shows by default);
* ``never-started``: Start is Unknown/None (pending, or cancelled before it started);
* ``running``: End is Unknown/None, or State is RUNNING, PENDING, SUSPENDED, COMPLETING...
  A running job is never claimed in part: its quantity would change between exports and
  its record id with it would be refused as a conflict. It is claimed from the first export
  made after it ends. (So there is no ``as_of`` cut-off, deliberately.)
* ``zero-elapsed``: nothing to claim;
* ``unmapped``: ``accounts`` given and the account has no voucher (``account X has no
  voucher mapping``);
* ``no-resources``: neither CPUs nor GPUs allocated;
* ``duplicate``: the same cluster/JobIDRaw already produced records earlier in the input;
* ``invalid``: a malformed line or field (the reason says which and what was expected),
  or a value outside the ledger's bounds (``adapters.bounds``: times within
  2000-01-01..2100-01-01, counts and quantities within safe integers). These are the *bad
  rows* the agent quarantines; the other codes are rows with nothing to claim.

``CANCELLED by <uid>``, TIMEOUT, FAILED, OUT_OF_MEMORY, NODE_FAIL... jobs are claimed for the
time they ran: the centre's machines were used whatever the exit.

Lines are read one at a time (``lines`` may be an open file), and the work per line is
constant, so time is linear in the input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from adapters.bounds import MAX_CARDS, MAX_CPUS, MAX_QUANTITY, check_count
from adapters.mapping import AccountMap, JobKeys
from ledger.errors import InvalidInput
from ledger.timeutil import EARLIEST, LATEST
from ledger.usage import RESOURCE_UNITS, UsageRecord, check_centre_id

XDMOD_COLUMNS: tuple[str, ...] = (
    "jobid", "jobidraw", "cluster", "partition", "qos", "account", "group", "gid", "user",
    "uid", "submit", "eligible", "start", "end", "elapsed", "exitcode", "state", "nnodes",
    "ncpus", "reqcpus", "reqmem", "reqtres", "alloctres", "timelimit", "nodelist", "jobname",
)  # fmt: skip

# States in which a job still holds (or may again hold) its allocation.
RUNNING_STATES = frozenset(
    {
        "RUNNING",
        "PENDING",
        "SUSPENDED",
        "COMPLETING",
        "CONFIGURING",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
    }
)
REQUEUED_STATES = frozenset({"REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})
_UNKNOWN_TIMES = frozenset({"", "Unknown", "None", "unknown", "none", "UNKNOWN", "NONE"})

_SACCT_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", re.ASCII)
# [[DD-]HH:]MM:SS ; sacct writes days only together with hours.
_ELAPSED = re.compile(r"(?:(?:(\d{1,6})-)?(\d{1,9}):)?(\d{1,2}):(\d{1,2})", re.ASCII)
_SECOND = timedelta(seconds=1)
_CLUSTER = re.compile(r"[A-Za-z0-9_.\-]{1,64}", re.ASCII)


@dataclass(frozen=True)
class Skipped:
    """An input row that produced no record, and why.

    line_no: 1-based physical line in the input (header and blank lines included).
    job_id: the row's id as the input writes it (sacct JobID, event id, CSV record_id),
        or "" when the row is too broken to tell.
    reason: a sentence for people.
    code: a stable slug for counting (``step``, ``running``, ``unmapped``, ``invalid``...).
    """

    line_no: int
    job_id: str
    reason: str
    code: str = "invalid"


@dataclass
class ParseResult:
    """What a parser made of its input: the records, the rows it skipped, and rows read."""

    records: list[UsageRecord] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    rows: int = 0  # data rows read (not counting header and blank lines)
    keys: dict[str, JobKeys] = field(default_factory=dict)  # by record id (sacct only)

    @property
    def bad(self) -> list[Skipped]:
        """The rows that are wrong (code ``invalid``), as opposed to rows with nothing to
        claim: what the agent quarantines."""
        return [s for s in self.skipped if s.code == "invalid"]

    def keys_of(self, record: UsageRecord) -> JobKeys:
        return self.keys.get(record.record_id) or JobKeys(account=record.account)


SacctResult = ParseResult


def parse_elapsed(text: str) -> int:
    """sacct Elapsed (``10-13:27:06``, ``1:02:03``, ``05:06``) -> seconds."""
    match = _ELAPSED.fullmatch(text)
    if not match:
        raise InvalidInput(f"Elapsed {text!r} is not [[DD-]HH:]MM:SS")
    days, hours, minutes, seconds = match.groups()
    if int(minutes) > 59 or int(seconds) > 59 or (days is not None and int(hours) > 23):
        raise InvalidInput(f"Elapsed {text!r} has a field out of range")
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)


def parse_tres(text: str) -> dict[str, str]:
    """``billing=12,cpu=12,gres/gpu=2,mem=31000M`` -> {name: value}; empty text -> {}."""
    tres: dict[str, str] = {}
    if not text:
        return tres
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidInput(f"TRES item {item!r} is not name=value")
        tres[name] = value
    return tres


def gpu_allocation(alloctres: str) -> tuple[str, int] | None:
    """(resource, cards) for the GPUs in an AllocTRES string, or None when there are none.

    * ``gres/gpu=N`` (untyped) is the job's total when present; typed entries
      ``gres/gpu:<model>=N`` are not added to it (newer Slurm writes both:
      ``gres/gpu:a100=4,gres/gpu=4`` is 4 cards, not 8). Without an untyped entry, the
      typed counts are summed.
    * The resource is ``gpu:<model>`` (model lower-cased) when exactly one model is listed,
      it accounts for every card, and ``gpu:<model>`` is in the resource catalogue;
      otherwise (an unknown model such as ``p100``, several models, or fewer typed cards
      than the total) it is ``gpu``, the GPU of unspecified model.
    * Other TRES that merely start with ``gres/gpu`` (``gres/gpumem``, ``gres/gpuutil``)
      are not GPUs.
    """
    if "gres/gpu" not in alloctres:
        return None
    untyped: int | None = None
    typed: dict[str, int] = {}
    for name, value in parse_tres(alloctres).items():
        if name == "gres/gpu":
            untyped = _count(value, name)
        elif name.startswith("gres/gpu:"):
            model = name[len("gres/gpu:") :].lower()
            count = _count(value, name)
            if count:
                typed[model] = typed.get(model, 0) + count
    total = untyped if untyped is not None else sum(typed.values())
    if total == 0:
        return None
    resource = "gpu"
    if len(typed) == 1:
        ((model, count),) = typed.items()
        if count == total and f"gpu:{model}" in RESOURCE_UNITS:
            resource = f"gpu:{model}"
    return resource, total


def _count(value: str, what: str, maximum: int = MAX_CARDS) -> int:
    if not (value.isascii() and value.isdigit()):
        raise InvalidInput(f"{what}={value[:40]!r} is not a whole number")
    if len(value) > 18:
        raise InvalidInput(
            f"{what}={value[:12]}... ({len(value)} digits) is out of range (0 to {maximum})",
            reason="OUT_OF_RANGE",
        )
    return check_count(int(value), what, maximum)


@dataclass(frozen=True)
class _Layout:
    """Where each column the parser uses sits in a line."""

    width: int
    job: int | None
    raw: int | None
    cluster: int | None
    account: int | None
    user: int | None
    partition: int | None
    qos: int | None
    wckey: int | None
    start: int
    end: int
    state: int
    elapsed: int | None
    elapsed_raw: int | None
    ncpus: int | None
    alloctres: int | None
    jobname_last: bool

    @classmethod
    def from_names(cls, names: list[str], line_no: int, cluster: str | None = None) -> _Layout:
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            if not name:
                raise InvalidInput(f"line {line_no}: header column {i + 1} is empty")
            index.setdefault(name, i)
        if "ncpus" not in index and "alloccpus" in index:
            index["ncpus"] = index["alloccpus"]
        missing = [c for c in ("start", "end", "state") if c not in index]
        if "cluster" not in index and not cluster:
            missing.append("cluster (or give --cluster NAME)")
        if "jobid" not in index and "jobidraw" not in index:
            missing.append("jobidraw (or jobid)")
        if "ncpus" not in index and "alloctres" not in index:
            missing.append("ncpus or alloctres")
        if missing:
            raise InvalidInput(
                f"line {line_no}: the sacct header lacks {', '.join(missing)}"
                " (add them to --format; the cluster is part of every record id)",
                details={"missing": ", ".join(missing)},
            )
        return cls(
            width=len(names),
            job=index.get("jobid"),
            raw=index.get("jobidraw"),
            cluster=index.get("cluster"),
            account=index.get("account"),
            user=index.get("user"),
            partition=index.get("partition"),
            qos=index.get("qos"),
            wckey=index.get("wckey"),
            start=index["start"],
            end=index["end"],
            state=index["state"],
            elapsed=index.get("elapsed"),
            elapsed_raw=index.get("elapsedraw"),
            ncpus=index.get("ncpus"),
            alloctres=index.get("alloctres"),
            jobname_last=names[-1] == "jobname",
        )


def _looks_like_header(fields: list[str]) -> bool:
    first = fields[0].strip()
    if not first or first[0].isdigit():
        return False
    return any(f.strip().lower() in ("jobid", "jobidraw") for f in fields)


class _RowSkip(Exception):
    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class _SacctParser:
    def __init__(
        self,
        centre: str,
        delimiter: str,
        tz: tzinfo,
        accounts: AccountMap | None,
        *,
        cluster: str | None = None,
        skip_unmapped: bool = True,
    ) -> None:
        self.centre = centre
        self.cluster = cluster
        self.skip_unmapped = skip_unmapped
        self.delimiter = delimiter
        self.tz = tz
        self.utc = tz is UTC
        self.accounts = accounts
        self.seen: dict[tuple[str, str], int] = {}
        self.keys: dict[str, JobKeys] = {}

    def time(self, text: str, column: str) -> datetime:
        if not _SACCT_TIME.fullmatch(text):
            raise _RowSkip(
                f"{column} {text!r} is not a sacct time (YYYY-MM-DDTHH:MM:SS)", "invalid"
            )
        try:
            moment = datetime.fromisoformat(text).replace(tzinfo=self.tz)
            utc = moment if self.utc else moment.astimezone(UTC)
        except (ValueError, OverflowError) as exc:
            raise _RowSkip(f"{column} {text!r} is not a valid time: {exc}", "invalid") from exc
        if not EARLIEST <= utc < LATEST:
            raise _RowSkip(
                f"{column} {text} is outside the years the ledger accepts (2000-01-01 up to"
                " 2100-01-01)",
                "invalid",
            )
        return utc

    def row(self, layout: _Layout, fields: list[str], line_no: int) -> list[UsageRecord]:
        """The records of one data line, or _RowSkip saying why there are none."""
        self.fit(layout, fields)
        raw = self.job_ids(layout, fields)
        start, end, elapsed = self.run_time(layout, fields)
        cluster = _field(layout.cluster, fields) or self.cluster
        if not cluster:
            raise _RowSkip("no Cluster (it is part of the record id; see --cluster)", "invalid")
        keys = JobKeys(
            _field(layout.account, fields),
            _field(layout.user, fields),
            _field(layout.partition, fields),
            _field(layout.qos, fields),
            _field(layout.wckey, fields),
        )
        if not (keys.account or keys.user or keys.wckey):
            raise _RowSkip("no Account, User or WCKey: no voucher can be chosen", "invalid")
        mapped = self.accounts.voucher_of(keys) if self.accounts is not None else ""
        if mapped is None and self.skip_unmapped:
            raise _RowSkip(f"{keys.describe()} has no voucher mapping", "unmapped")
        try:
            cpus, gpu = self.allocation(layout, fields)
        except InvalidInput as exc:
            raise _RowSkip(exc.message, "invalid") from exc
        if gpu is not None and gpu[0] == "gpu" and self.accounts is not None:
            gpu = (self.accounts.gpu_resource(keys) or "gpu", gpu[1])
        if not cpus and gpu is None:
            raise _RowSkip("no CPUs or GPUs allocated", "no-resources")

        key = (cluster, raw)
        first = self.seen.get(key)
        if first is not None:
            raise _RowSkip(
                f"job {raw} of cluster {cluster} was already claimed from line {first}",
                "duplicate",
            )
        record_id = f"{cluster}/{raw}"
        records: list[UsageRecord] = []
        try:
            if cpus:
                records.append(
                    UsageRecord(self.centre, record_id, keys.account, "cpu", cpus * elapsed,
                                start, end)
                )  # fmt: skip
            if gpu is not None:
                resource, cards = gpu
                gpu_id = f"{record_id}:gpu"
                quantity = cards * elapsed
                records.append(
                    UsageRecord(self.centre, gpu_id, keys.account, resource, quantity, start, end)
                )
            for record in records:  # the times were checked when read
                check_count(record.quantity, "quantity", MAX_QUANTITY)
        except InvalidInput as exc:
            raise _RowSkip(exc.message, "invalid") from exc
        self.seen[key] = line_no
        for record in records:
            self.keys[record.record_id] = keys
        return records

    def fit(self, layout: _Layout, fields: list[str]) -> None:
        """Bring the line to the layout's width, in place, or refuse it."""
        width = layout.width
        if len(fields) == width:
            return
        if len(fields) == width + 1 and fields[-1] == "":
            fields.pop()  # --parsable: every line ends with the delimiter
        elif len(fields) > width and layout.jobname_last:
            fields[width - 1 :] = [self.delimiter.join(fields[width - 1 :])]
        else:
            raise _RowSkip(f"expected {width} fields, got {len(fields)}", "invalid")

    @staticmethod
    def job_ids(layout: _Layout, fields: list[str]) -> str:
        """JobIDRaw (JobID when there is no JobIDRaw column) of an allocation row."""
        job_id = fields[layout.job] if layout.job is not None else ""
        raw = fields[layout.raw] if layout.raw is not None else job_id
        if not raw:
            raise _RowSkip("no JobID/JobIDRaw", "invalid")
        if "." in raw or "." in job_id:
            raise _RowSkip("job step: its usage is counted once, from its job's row", "step")
        return raw

    def run_time(self, layout: _Layout, fields: list[str]) -> tuple[datetime, datetime, int]:
        """(start, end, elapsed seconds) of a job that ran and ended, or _RowSkip."""
        state_text = fields[layout.state]
        state = state_text.split(" ", 1)[0].rstrip("+").upper()
        if state in REQUEUED_STATES:
            raise _RowSkip(
                f"State {state_text}: an earlier run of a requeued job (its final run is claimed)",
                "requeued",
            )
        start_text = fields[layout.start]
        if start_text in _UNKNOWN_TIMES:
            raise _RowSkip(f"never started (Start is {start_text or 'empty'})", "never-started")
        end_text = fields[layout.end]
        if end_text in _UNKNOWN_TIMES or state in RUNNING_STATES:
            raise _RowSkip(
                f"still running (State {state_text}, End {end_text or 'empty'}): claimed once"
                " it has ended",
                "running",
            )
        start = self.time(start_text, "Start")
        end = self.time(end_text, "End")
        if end < start:
            raise _RowSkip(f"End {end_text} is before Start {start_text}", "invalid")
        wall = (end - start) // _SECOND
        elapsed = wall
        if layout.elapsed_raw is not None and fields[layout.elapsed_raw]:
            text = fields[layout.elapsed_raw]
            if not (text.isascii() and text.isdigit()) or len(text) > 18:
                raise _RowSkip(f"ElapsedRaw {text[:40]!r} is not a whole number", "invalid")
            elapsed = int(text)
        elif layout.elapsed is not None:
            try:
                elapsed = parse_elapsed(fields[layout.elapsed])
            except InvalidInput as exc:
                raise _RowSkip(exc.message, "invalid") from exc
        if elapsed == 0:
            raise _RowSkip("zero elapsed time: nothing to claim", "zero-elapsed")
        if elapsed > wall:
            raise _RowSkip(f"Elapsed {elapsed} s is more than End - Start ({wall} s)", "invalid")
        return start, end, elapsed

    @staticmethod
    def allocation(layout: _Layout, fields: list[str]) -> tuple[int, tuple[str, int] | None]:
        cpus = 0
        if layout.ncpus is not None and fields[layout.ncpus]:
            cpus = _count(fields[layout.ncpus], "NCPUS", MAX_CPUS)
        tres_text = fields[layout.alloctres] if layout.alloctres is not None else ""
        if not cpus and tres_text:
            cpu_value = parse_tres(tres_text).get("cpu")
            if cpu_value:
                cpus = _count(cpu_value, "AllocTRES cpu", MAX_CPUS)
        return cpus, gpu_allocation(tres_text)


def _field(column: int | None, fields: list[str]) -> str:
    return fields[column] if column is not None else ""


def _row_id(layout: _Layout, fields: list[str]) -> str:
    for column in (layout.job, layout.raw):
        if column is not None and column < len(fields) and fields[column]:
            return fields[column]
    return ""


def parse_sacct(
    lines: Iterable[str],
    *,
    centre: str,
    delimiter: str = "|",
    tz: tzinfo = UTC,
    accounts: AccountMap | None = None,
    cluster: str | None = None,
    skip_unmapped: bool = True,
) -> SacctResult:
    """Parse sacct ``--parsable``/``--parsable2`` output (see the module doc for the rules).

    ``accounts``: the mapping (jobs it maps to no voucher are skipped as ``unmapped``
    unless ``skip_unmapped`` is False; partitions and QOS it names give GPU models).
    ``cluster``: the cluster of rows without one (an export without a Cluster column).
    Raises InvalidInput for a bad argument or a header that lacks a needed column; every
    other problem is a row in ``skipped``.
    """
    check_centre_id(centre)
    if not delimiter or "\n" in delimiter or "\r" in delimiter:
        raise InvalidInput(f"delimiter {delimiter!r} must be one or more non-newline characters")
    if cluster is not None and not _CLUSTER.fullmatch(cluster):
        raise InvalidInput(f"cluster {cluster!r} must be 1-64 of A-Z a-z 0-9 _ . -")
    parser = _SacctParser(
        centre, delimiter, tz, accounts, cluster=cluster, skip_unmapped=skip_unmapped
    )
    result = ParseResult(keys=parser.keys)
    layout: _Layout | None = None
    header: str | None = None
    for line_no, line in enumerate(lines, 1):
        text = line.rstrip("\r\n")
        if line_no == 1:
            text = text.removeprefix("\ufeff")
        if not text.strip():
            continue
        fields = text.split(delimiter)
        if layout is None:
            if _looks_like_header(fields):
                names = [f.strip().lower() for f in fields]
                if len(names) > 1 and names[-1] == "":
                    names.pop()  # --parsable
                layout = _Layout.from_names(names, line_no, cluster)
                header = text
                continue
            layout = _Layout.from_names(list(XDMOD_COLUMNS), line_no, cluster)
        elif text == header:
            continue
        result.rows += 1
        try:
            result.records.extend(parser.row(layout, fields, line_no))
        except _RowSkip as skip:
            result.skipped.append(Skipped(line_no, _row_id(layout, fields), skip.reason, skip.code))
    return result


DELIMITER_CANDIDATES = ("|", ",", "\t", ";", " ")


def guess_delimiter(lines: Iterable[str]) -> str | None:
    """The delimiter a sample of sacct output seems to use: the candidate found the same
    (non-zero) number of times on the most lines, more often than the others; None when
    none is."""
    sample = [line.rstrip("\r\n") for line in lines if line.strip()]
    if not sample:
        return None
    best: tuple[int, int, str] | None = None
    for candidate in DELIMITER_CANDIDATES:
        counts = [line.count(candidate) for line in sample]
        common = max(set(counts), key=counts.count)
        if common == 0:
            continue
        score = (counts.count(common), common, candidate)
        if best is None or score[:2] > best[:2]:
            best = score
    return None if best is None else best[2]


def delimiter_name(delimiter: str) -> str:
    return {"\t": "tab (--delimiter '\\t')", " ": "space (--delimiter ' ')"}.get(
        delimiter, f"{delimiter!r} (--delimiter '{delimiter}')"
    )
