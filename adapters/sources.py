"""Where a centre's usage comes from: ``kind:spec`` (``UsageSource``).

* ``sacct:FILE``: sacct ``--parsable``/``--parsable2`` output (``delimiter``, ``tz``);
* ``sacct-cmd:COMMAND``: run ``COMMAND`` (split like a shell would, but no shell) and
  parse its standard output as sacct output;
* ``events:DIR`` (or ``events:FILE``): CloudEvents usage events;
* ``csv:FILE``: usage CSV (``record_id,account,resource,quantity,start,end``).
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, tzinfo
from pathlib import Path

from adapters.errors import AgentError
from adapters.mapping import AccountMap
from adapters.slurm import ParseResult, parse_sacct
from ledger.errors import InvalidInput

SOURCE_KINDS = ("sacct", "sacct-cmd", "events", "csv")
EVENT_SUFFIXES = (".json", ".jsonl", ".ndjson")


@dataclass(frozen=True)
class UsageSource:
    """Where usage comes from: ``kind:spec``.

    * ``sacct:FILE``: sacct ``--parsable``/``--parsable2`` output (``delimiter``, ``tz``);
    * ``sacct-cmd:COMMAND``: run ``COMMAND`` (split like a shell would, but no shell) and
      parse its standard output as sacct output, e.g.
      ``sacct-cmd:sacct -a -P -X --starttime now-2days --format ...``;
    * ``events:DIR`` (or ``events:FILE``): CloudEvents usage events, every ``*.json``,
      ``*.jsonl`` and ``*.ndjson`` file of the directory in name order;
    * ``csv:FILE``: usage CSV (``record_id,account,resource,quantity,start,end``).
    """

    kind: str
    spec: str
    delimiter: str = "|"
    tz: tzinfo = UTC
    cluster: str | None = None  # the cluster of sacct rows without one

    @classmethod
    def parse(
        cls, text: str, *, delimiter: str = "|", tz: tzinfo = UTC, cluster: str | None = None
    ) -> UsageSource:
        kind, sep, spec = text.partition(":")
        if not sep or kind not in SOURCE_KINDS or not spec:
            raise AgentError(
                f"source {text!r}: expected one of "
                + ", ".join(f"{k}:..." for k in SOURCE_KINDS)
                + " (e.g. sacct:jobs.log)"
            )
        return cls(kind, spec, delimiter, tz, cluster)

    def __str__(self) -> str:
        return f"{self.kind}:{self.spec}"

    def files(self) -> list[Path]:
        """The files this source reads (empty for ``sacct-cmd``)."""
        if self.kind == "sacct-cmd":
            return []
        path = Path(self.spec)
        if self.kind == "events" and path.is_dir():
            return sorted(
                p
                for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix in EVENT_SUFFIXES
            )
        if not path.exists():
            raise AgentError(f"source {self}: {path} does not exist")
        return [path]

    def parse_file(
        self, path: Path, centre: str, accounts: AccountMap | None, *, skip_unmapped: bool = True
    ) -> ParseResult:
        try:
            with path.open(encoding="utf-8-sig", errors=self.errors, newline=self.newline) as f:
                return self.parse_lines(f, centre, accounts, skip_unmapped=skip_unmapped)
        except (OSError, UnicodeDecodeError, InvalidInput) as exc:
            message = exc.message if isinstance(exc, InvalidInput) else str(exc)
            raise AgentError(f"source {self.kind}:{path}: {message}") from exc

    @property
    def errors(self) -> str:
        """sacct output is decoded with undecodable bytes replaced (a job name in GBK must
        not sink an export); events and CSV must be UTF-8."""
        return "replace" if self.kind in ("sacct", "sacct-cmd") else "strict"

    @property
    def newline(self) -> str | None:
        return "" if self.kind == "csv" else None

    def parse_lines(
        self,
        lines: Iterable[str],
        centre: str,
        accounts: AccountMap | None,
        *,
        skip_unmapped: bool = True,
    ) -> ParseResult:
        """Parse this source's text (InvalidInput when it cannot be read at all)."""
        from adapters.events import parse_events, parse_usage_csv

        if self.kind in ("sacct", "sacct-cmd"):
            return parse_sacct(
                lines,
                centre=centre,
                delimiter=self.delimiter,
                tz=self.tz,
                accounts=accounts,
                cluster=self.cluster,
                skip_unmapped=skip_unmapped,
            )
        mapped = accounts if skip_unmapped else None
        if self.kind == "events":
            types = accounts.instance_types if accounts is not None else None
            return parse_events(lines, centre=centre, accounts=mapped, instance_types=types)
        return parse_usage_csv(lines, centre=centre, accounts=mapped)

    def run_command(self, centre: str, accounts: AccountMap, timeout: float = 600.0) -> ParseResult:
        argv = shlex.split(self.spec)
        if not argv:
            raise AgentError("sacct-cmd: the command is empty")
        try:
            done = subprocess.run(  # noqa: S603 - the operator's own command, no shell
                argv, capture_output=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AgentError(f"sacct-cmd: cannot run {argv[0]}: {exc}") from exc
        if done.returncode != 0:
            error = done.stderr.decode("utf-8", "replace").strip()[:500]
            raise AgentError(f"sacct-cmd: {argv[0]} exited with {done.returncode}: {error}")
        text = done.stdout.decode("utf-8", "replace")
        try:
            return self.parse_lines(text.splitlines(), centre, accounts)
        except InvalidInput as exc:
            raise AgentError(f"sacct-cmd: {exc.message}") from exc
