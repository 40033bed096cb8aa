"""Batch dubbing from a CSV job file: models loaded once, failures reported per row, restartable.

Columns: video, audio, output (output may be empty: then `<video stem>_dubbed.mp4`). Relative paths are
relative to the job file's folder. A row whose output exists is skipped, so re-running a batch resumes it.
"""

from __future__ import annotations

import csv
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Optional

from lipsync_cli.config import DubConfig
from lipsync_cli.device import pick_device
from lipsync_cli.errors import InputError, LipsyncError, UsageError
from lipsync_cli.faces import get_detector
from lipsync_cli.generators.registry import load_for
from lipsync_cli.media.atomic import atomic_output, check_output_folder
from lipsync_cli.pipeline import check_commercial, dub

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("video", "audio")
# Loads made by this process, over every Models instance: the report's proof that a worker loads its models once
# however many rows it dubs (a count kept per instance could not tell one long-lived instance from one per row).
PROCESS_LOADS = {"generator": 0, "detector": 0}


@dataclass(frozen=True)
class Job:
    row: int  # 1-based data row number in the CSV (header excluded)
    video: Path
    audio: Path
    output: Path


@dataclass
class Outcome:
    job: Job
    status: str  # "done", "skipped" or "failed" ("interrupted" when Ctrl-C stopped the row)
    reason: str = ""
    seconds: float = 0.0  # wall-clock seconds of the row's dub (0 when skipped)
    frames: int = 0  # frames written
    frames_edited: int = 0  # frames whose mouth was re-generated
    attempts: int = 0  # times the row was started (more than 1 only when a Ray worker died during it)
    worker: str = ""  # host:pid of the process that dubbed it
    generator_loads: int = 0  # generator loads that process had made when the row ended (1: loaded once)
    detector_loads: int = 0  # the same for the face detector (0 with --box)


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


def skip_outcome(job: Job) -> Optional[Outcome]:
    """The "skipped" outcome of a row whose output exists (outputs are atomic, so an existing one is whole)."""
    return Outcome(job, "skipped", "output exists") if job.output.exists() else None


def run_batch(jobs_file: Path, cfg: DubConfig, shard: tuple[int, int] = (0, 1), report: Optional[Path] = None) -> int:
    """Dub every row of this shard; returns the exit code (1 if any row failed)."""
    check_report_path(report)
    jobs = shard_jobs(read_jobs(jobs_file), shard)
    row_cfg = replace(cfg, force=False, quiet=True)
    models = Models(cfg)
    if any(not job.output.exists() for job in jobs):
        # Load once before the first row: a wrong --model or detector (weights missing, bad checkpoint) is one
        # error and its own exit code, not the same failure repeated on every row of a long batch.
        check_commercial(cfg)
        models.generator()
        models.detector()
    outcomes = []
    try:
        for job in jobs:
            outcomes.append(skip_outcome(job) or dub_row(job, row_cfg, models, dub))
            if not cfg.quiet:
                print_row(outcomes[-1])
    finally:  # Ctrl-C included: the report then lists the rows that finished
        if report is not None:
            write_report(report, outcomes)
    if not cfg.quiet:
        print_outcomes(outcomes)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def dub_row(job: Job, cfg: DubConfig, models: "Models", dub, attempt: int = 1) -> Outcome:
    """One row; any failure becomes the row's outcome (one broken row must not stop thousands of others)."""
    start = time.perf_counter()
    try:
        result = dub(job.video, job.audio, job.output, cfg, generator=models.generator(), detector=models.detector())
        outcome = Outcome(job, "done", frames=result.frames, frames_edited=result.frames_edited)
    except LipsyncError as err:
        outcome = Outcome(job, "failed", str(err))
    except Exception as err:
        log.debug("row %d failed", job.row, exc_info=True)
        outcome = Outcome(job, "failed", f"internal error: {type(err).__name__}: {err}")
    return replace(outcome, seconds=time.perf_counter() - start, attempts=attempt, worker=models.name,
                   generator_loads=PROCESS_LOADS["generator"], detector_loads=PROCESS_LOADS["detector"])


class Models:
    """Generator and detector, loaded on first use and shared by every row."""

    def __init__(self, cfg: DubConfig):
        self.cfg = cfg
        self.name = f"{socket.gethostname()}:{os.getpid()}"  # the process that dubs, as the report names it
        self._generator = None
        self._detector = None

    def generator(self):
        if self._generator is None:
            self._generator = load_for(self.cfg)
            PROCESS_LOADS["generator"] += 1
        return self._generator

    def detector(self) -> Optional[object]:
        if self.cfg.faces.box is not None:
            return None
        if self._detector is None:
            self._detector = get_detector(self.cfg.faces.detector, device=pick_device(self.cfg.device),
                                          commercial=self.cfg.commercial)
            PROCESS_LOADS["detector"] += 1
        return self._detector


def row_line(outcome: Outcome) -> str:
    note = f": {outcome.reason}" if outcome.reason else ""
    return f"row {outcome.job.row} {outcome.status}{note} ({outcome.job.output})"


def print_row(outcome: Outcome) -> None:
    import sys

    print(row_line(outcome), file=sys.stderr)


def print_outcomes(outcomes: list[Outcome]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="batch")
    for col in ("status", "rows", "reasons"):
        table.add_column(col)
    extra = sorted({o.status for o in outcomes} - {"done", "skipped", "failed"})  # "interrupted" after Ctrl-C
    for status in ("done", "skipped", "failed", *extra):
        rows = [o for o in outcomes if o.status == status]
        reasons = "; ".join(f"row {o.job.row}: {o.reason}" for o in rows if o.reason)
        table.add_row(status, str(len(rows)), reasons)
    Console(stderr=True).print(table)


REPORT_SUFFIXES = (".csv", ".json")


def check_report_path(path: Optional[Path]) -> None:
    """Before any row runs: a report that cannot be written must not surface only after hours of dubbing."""
    if path is None:
        return
    if Path(path).suffix.lower() not in REPORT_SUFFIXES:
        raise UsageError(f"--report must end in .csv or .json, got {path}")
    check_output_folder(Path(path))


def report_rows(outcomes: list[Outcome]) -> list[dict]:
    """One flat dict per row, in job-file order: the job's paths, then every Outcome field."""
    rows = []
    for o in sorted(outcomes, key=lambda o: o.job.row):
        job = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(o.job).items()}
        rest = {f.name: getattr(o, f.name) for f in fields(o) if f.name != "job"}
        rows.append({**job, **rest, "seconds": round(o.seconds, 3)})
    return rows


def write_report(path: Path, outcomes: list[Outcome]) -> None:
    """Per-row status, seconds, frames and error as CSV or JSON (by suffix), written atomically."""
    import json

    rows = report_rows(outcomes)
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        if Path(path).suffix.lower() == ".json":
            json.dump(rows, f, indent=1)
        else:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["row"])
            writer.writeheader()
            writer.writerows(rows)
