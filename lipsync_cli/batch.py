"""Batch dubbing from a CSV job file: models loaded once, failures reported per row, restartable.

Columns: video, audio, output (output may be empty: then `<video stem>_dubbed.mp4`). Relative paths are
relative to the job file's folder. A row whose output exists is skipped, so re-running a batch resumes it.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from lipsync_cli.config import DubConfig
from lipsync_cli.errors import InputError, LipsyncError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("video", "audio")


@dataclass(frozen=True)
class Job:
    row: int  # 1-based data row number in the CSV (header excluded)
    video: Path
    audio: Path
    output: Path


@dataclass
class Outcome:
    job: Job
    status: str  # "done", "skipped" or "failed"
    reason: str = ""


def read_jobs(path: Path) -> list[Job]:
    """Parse the job file; a malformed file is one clear InputError, never a partial batch."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"job file {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"job file {path} lacks column(s) {', '.join(missing)} (header must be video,audio,output)")
        rows = list(reader)
    base = path.parent
    jobs = []
    for n, row in enumerate(rows, start=1):
        if not (row["video"] or "").strip() or not (row["audio"] or "").strip():  # short rows read as None
            raise InputError(f"job file {path} row {n}: video and audio must both be given")
        video = base / row["video"].strip()
        output = (row.get("output") or "").strip()
        jobs.append(Job(n, video, base / row["audio"].strip(),
                        base / output if output else video.with_name(f"{video.stem}_dubbed.mp4")))
    return jobs


def shard_jobs(jobs: list[Job], shard: tuple[int, int]) -> list[Job]:
    """Rows i, i+n, i+2n, ... of the file: deterministic, so n machines split one batch without talking."""
    i, n = shard
    return [job for k, job in enumerate(jobs) if k % n == i]


def run_batch(jobs_file: Path, cfg: DubConfig, shard: tuple[int, int] = (0, 1)) -> int:
    """Dub every row of this shard; returns the exit code (1 if any row failed)."""
    from lipsync_cli.pipeline import dub

    jobs = shard_jobs(read_jobs(jobs_file), shard)
    row_cfg = replace(cfg, force=False, quiet=True)
    models = _Models(cfg)
    if any(not job.output.exists() for job in jobs):
        # Load once before the first row: a wrong --model or detector (weights missing, bad checkpoint) is one
        # error and its own exit code, not the same failure repeated on every row of a long batch.
        models.generator()
        models.detector()
    outcomes = []
    for job in jobs:
        if job.output.exists():
            outcomes.append(Outcome(job, "skipped", "output exists"))
        else:
            outcomes.append(_dub_row(job, row_cfg, models, dub))
        if not cfg.quiet:
            _print_row(outcomes[-1])
    if not cfg.quiet:
        print_outcomes(outcomes)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _dub_row(job: Job, cfg: DubConfig, models: "_Models", dub) -> Outcome:
    """One row; any failure becomes the row's outcome (one broken row must not stop thousands of others)."""
    try:
        dub(job.video, job.audio, job.output, cfg, generator=models.generator(), detector=models.detector())
        return Outcome(job, "done")
    except LipsyncError as err:
        return Outcome(job, "failed", str(err))
    except Exception as err:
        log.debug("row %d failed", job.row, exc_info=True)
        return Outcome(job, "failed", f"internal error: {type(err).__name__}: {err}")


class _Models:
    """Generator and detector, loaded on first use and shared by every row."""

    def __init__(self, cfg: DubConfig):
        self.cfg = cfg
        self._generator = None
        self._detector = None

    def generator(self):
        if self._generator is None:
            from lipsync_cli.inference import load_generator

            c = self.cfg
            self._generator = load_generator(c.model, c.device, c.precision, c.batch_size, c.musetalk)
        return self._generator

    def detector(self) -> Optional[object]:
        if self.cfg.faces.box is not None:
            return None
        if self._detector is None:
            from lipsync_cli.faces import get_detector
            from lipsync_cli.inference import pick_device

            self._detector = get_detector(self.cfg.faces.detector, device=pick_device(self.cfg.device))
        return self._detector


def _print_row(outcome: Outcome) -> None:
    import sys

    note = f": {outcome.reason}" if outcome.reason else ""
    print(f"row {outcome.job.row} {outcome.status}{note} ({outcome.job.output})", file=sys.stderr)


def print_outcomes(outcomes: list[Outcome]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="batch")
    for col in ("status", "rows", "reasons"):
        table.add_column(col)
    for status in ("done", "skipped", "failed"):
        rows = [o for o in outcomes if o.status == status]
        reasons = "; ".join(f"row {o.job.row}: {o.reason}" for o in rows if o.reason)
        table.add_row(status, str(len(rows)), reasons)
    Console(stderr=True).print(table)
