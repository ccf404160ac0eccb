"""Progress of an agent's submission: a rich progress bar on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from typing import Any

log = logging.getLogger("suanli.agent")


class Progress:
    """A rich progress bar on a terminal; a log line every ``every`` seconds otherwise."""

    def __init__(self, label: str, *, bar: bool | None = None, every: float = 5.0) -> None:
        self.label = label
        self.bar_enabled = sys.stderr.isatty() if bar is None else bar
        self.every = every
        self.total = 0
        self.done = 0
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()
        self.last_line = self.started
        self._bar: Any = None
        self._task: Any = None

    def start(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        self.counts.clear()
        self.last_line = self.started
        if self.bar_enabled and total and self._bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import (
                Progress as RichProgress,
            )

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=total, detail="")
        elif total:
            log.info("%s: %d records to submit", self.label, total)

    def advance(self, status: str, n: int = 1) -> None:
        self.counts[status] += n
        if status != "retry":
            self.done += n
        if self._bar is not None:
            detail = (
                f"claimed {self.counts['claimed']}  refused {self.counts['refused']}"
                f"  retrying {self.counts['retry']}"
            )
            self._bar.update(self._task, completed=self.done, detail=detail)
            return
        now = time.monotonic()
        if now - self.last_line >= self.every:
            self.last_line = now
            self._line()

    def _line(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        log.info(
            "%s: %d/%d answered (%d claimed, %d refused, %d transient failures), %.0f claims/s",
            self.label,
            self.done,
            self.total,
            self.counts["claimed"],
            self.counts["refused"],
            self.counts["retry"],
            self.done / elapsed,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.total:
            self._line()
