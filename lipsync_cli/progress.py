"""Progress bars per stage (rich, with ETA) and per-stage wall-clock accounting; silent when quiet."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator


class Stages:
    """Times named stages (seconds add up across calls) and drives one rich progress bar per stage."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.seconds: dict[str, float] = defaultdict(float)
        self._progress = None
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> "Stages":
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), console=Console(stderr=True), transient=False)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def bar(self, name: str, total: int) -> None:
        """Start (or restart) the bar of a stage with `total` steps."""
        if self._progress is not None:
            self._tasks[name] = self._progress.add_task(name, total=total)

    def advance(self, name: str, steps: int = 1) -> None:
        if self._progress is not None and name in self._tasks:
            self._progress.advance(self._tasks[name], steps)

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def print(self, text: str) -> None:
        """One line on stderr, never wrapped by rich (batch logs are grepped), unless quiet."""
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(text, highlight=False, markup=False, soft_wrap=True)
        else:
            import sys

            print(text, file=sys.stderr)
