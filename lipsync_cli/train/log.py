"""Run logs: a start line, a progress bar (rich: steps, ETA, the latest losses) and a line per log step on
the terminal, every metric in RUN_DIR/metrics.csv, and TensorBoard event files too when the tensorboard
package is installed. Only rank 0 writes (under torchrun the other ranks print nothing).

metrics.csv is long-format (time, step, phase, metric, value): metrics that appear later (the sync
loss once it is switched on, the discriminator's with --gan) need no new columns, and rows from
steps after the checkpoint a run resumes from are dropped, so the file tells one consistent story.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

COLUMNS = ["time", "step", "phase", "metric", "value"]


class RunLog:
    def __init__(self, run_dir: Path, enabled: bool, quiet: bool, resume_step: int | None = None):
        self.enabled, self.quiet = enabled, quiet
        self._file = self._writer = self._tb = None
        self._progress = self._bar = None  # set by start() on rank 0 when not quiet
        if not enabled:
            return
        path = Path(run_dir) / "metrics.csv"
        if resume_step is not None and path.exists():
            _truncate_after(path, resume_step)
        new = not path.exists()
        self._file = open(path, "a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(COLUMNS)
        self._tb = _tensorboard(run_dir)
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)

    def start(self, line: str, step: int, max_steps: int) -> None:
        """Print the start line and show the progress bar from `step` (a resumed run) to `max_steps`."""
        self.say(line)
        if not self.enabled or self.quiet:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
                                  TimeRemainingColumn(), TextColumn("{task.fields[losses]}"), console=self.console)
        self._progress.start()
        self._bar = self._progress.add_task("train", total=max_steps, completed=step, losses="")

    def step(self, metrics: dict[str, float] | None = None) -> None:
        """One step done; `metrics` (when given) become the bar's latest losses."""
        if self._progress is None:
            return
        fields = {"losses": "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "samples_per_s")} \
            if metrics else {}
        self._progress.update(self._bar, advance=1, **fields)

    def write(self, step: int, phase: str, metrics: dict[str, float], echo: bool = True) -> None:
        if not self.enabled:
            return
        now = f"{time.time():.3f}"
        for name, value in metrics.items():
            self._writer.writerow([now, step, phase, name, f"{value:.6g}"])
            if self._tb is not None:
                self._tb.add_scalar(f"{phase}/{name}", value, step)
        self._file.flush()
        if echo:
            self.say(f"[bold]{phase:5}[/] step {step:>7}  " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    def say(self, line: str) -> None:
        if self.enabled and not self.quiet:
            self.console.print(line, soft_wrap=True)  # one line, whole words, for logs and grep

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: Path, phase: str, metric: str) -> list[tuple[int, float]]:
    """[(step, value)] of one metric from RUN_DIR/metrics.csv, in file order."""
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return [(int(r["step"]), float(r["value"])) for r in csv.DictReader(f)
                if r["phase"] == phase and r["metric"] == metric]


def _truncate_after(path: Path, step: int) -> None:
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: metrics.csv has everything
        return None
    return SummaryWriter(str(run_dir))
