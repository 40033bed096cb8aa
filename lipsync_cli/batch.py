"""Batch dubbing from a CSV job file: models loaded once, failures reported per row, restartable.

Columns: video, audio, output (output may be empty: then `<video stem>_<audio stem>_dubbed.mp4` beside the video,
so the rows of one video in several languages never share a name). Relative paths are relative to the job file's
folder. A row whose output exists is skipped, so re-running a batch resumes it.

The whole file is checked before any model loads (check_jobs): two rows writing one output stop the batch; rows
whose inputs are missing or unreadable are failed at once while the others run; output folders are created.
Every row gets a line in the report whatever ends the batch (a failure, Ctrl-C, SIGTERM).
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
from lipsync_cli.faces import cache as face_cache, get_detector
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
    status: str  # "done", "skipped", "failed" or "interrupted" (stopped mid-row, or never started: see reason)
    reason: str = ""
    seconds: float = 0.0  # wall-clock seconds of the row's dub (0 when skipped)
    frames: int = 0  # frames written
    frames_edited: int = 0  # frames whose mouth was re-generated
    attempts: int = 0  # times the row was started (more than 1 only when a Ray worker died during it)
    worker: str = ""  # host:pid of the process that dubbed it
    generator_loads: int = 0  # generator loads that process had made when the row ended (1: loaded once)
    detector_loads: int = 0  # the same for the face detector (0 with --box)
    detect_seconds: float = 0.0  # seconds spent detecting faces (0 when the video's face track came from the cache)


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
        video, audio = base / row["video"].strip(), base / row["audio"].strip()
        output = (row.get("output") or "").strip()
        jobs.append(Job(n, video, audio, base / output if output else default_output(video, audio)))
    check_duplicates(jobs, path)
    return jobs


def default_output(video: Path, audio: Path) -> Path:
    """`<video stem>_<audio stem>_dubbed.mp4` beside the video: one video dubbed into several languages gets one
    name per language, and a row's name depends on that row alone (adding a row never renames another's output)."""
    return video.with_name(f"{video.stem}_{audio.stem}_dubbed.mp4")


def check_duplicates(jobs: list[Job], path: Path) -> None:
    """Two rows writing one output would overwrite each other (or, in parallel, publish each other's half-written
    file): refuse the whole file, naming the rows. Checked over the whole file, not a shard, since shards run
    at the same time on other machines."""
    by_output: dict[str, list[int]] = {}
    for job in jobs:
        by_output.setdefault(os.path.normcase(os.path.abspath(job.output)), []).append(job.row)
    clashes = [(out, rows) for out, rows in by_output.items() if len(rows) > 1]
    if clashes:
        out, rows = clashes[0]
        more = f" (and {len(clashes) - 1} more output(s) shared by several rows)" if len(clashes) > 1 else ""
        raise InputError(f"job file {path}: rows {', '.join(map(str, rows))} all write {out}{more}; give each row "
                         "its own output")


def check_jobs(jobs: list[Job]) -> tuple[list[Job], list[Outcome]]:
    """(rows that can run, failed outcomes of rows whose video or audio is missing or unreadable), found before
    anything loads; the output folders of the rows that can run are created."""
    runnable, failed = [], []
    for job in jobs:
        problem = next((p for p in (_unreadable(job.video, "video"), _unreadable(job.audio, "audio")) if p), None)
        if problem:
            failed.append(Outcome(job, "failed", problem))
            continue
        try:
            job.output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            failed.append(Outcome(job, "failed", f"cannot create output folder {job.output.parent}: {err.strerror}"))
            continue
        runnable.append(job)
    return runnable, failed


def _unreadable(path: Path, what: str) -> str:
    """Why `path` cannot be read ("" when it can): opened and one byte read, as cheap as a check can be."""
    if not path.exists():
        return f"{what} {path} does not exist"
    if not path.is_file():
        return f"{what} {path} is not a file"
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        return f"{what} {path} cannot be read: {err.strerror}"
    return ""


def shard_jobs(jobs: list[Job], shard: tuple[int, int]) -> list[Job]:
    """Rows i, i+n, i+2n, ... of the file: deterministic, so n machines split one batch without talking."""
    i, n = shard
    return [job for k, job in enumerate(jobs) if k % n == i]


def skip_outcome(job: Job, force: bool = False) -> Optional[Outcome]:
    """The "skipped" outcome of a row whose output exists (outputs are atomic, so an existing one is whole);
    None with --force, which dubs every row again."""
    return Outcome(job, "skipped", "output exists") if job.output.exists() and not force else None


def prepare_jobs(jobs_file: Path, cfg: DubConfig, shard: tuple[int, int]) -> tuple[list[Job], list[Outcome]]:
    """(this shard's rows to dub, outcomes already known: rows failed by check_jobs, rows skipped). A done row is
    skipped before its inputs are checked: a resumed batch whose finished sources were moved away still exits 0."""
    skipped, pending = [], []
    for job in shard_jobs(read_jobs(jobs_file), shard):
        outcome = skip_outcome(job, cfg.force)
        if outcome:
            skipped.append(outcome)
        else:
            pending.append(job)
    todo, failed = check_jobs(pending)
    return todo, failed + skipped


def batch_config(cfg: DubConfig) -> DubConfig:
    """The batch's settings: face tracks cached (rows of one video share one detection, and so do re-runs)."""
    if cfg.face_cache is None and cfg.faces.box is None:
        cfg = replace(cfg, face_cache=str(face_cache.default_folder()))
    return cfg


def unfinished(jobs: list[Job], outcomes: list[Outcome], reason: str) -> list[Outcome]:
    """"interrupted" outcomes for the rows of `jobs` that have none yet, so the report lists every row."""
    ended = {o.job.row for o in outcomes}
    return [Outcome(job, "interrupted", reason) for job in jobs if job.row not in ended]


def run_batch(jobs_file: Path, cfg: DubConfig, shard: tuple[int, int] = (0, 1), report: Optional[Path] = None) -> int:
    """Dub every row of this shard; returns the exit code (1 if any row failed)."""
    check_report_path(report)
    cfg = batch_config(cfg)
    todo, outcomes = prepare_jobs(jobs_file, cfg, shard)
    for outcome in outcomes if not cfg.quiet else ():  # failed and skipped rows are known before row 1 runs
        print_row(outcome)
    row_cfg = replace(cfg, quiet=True)
    models = Models(cfg)
    reason, current = "not started", None
    try:
        if todo:
            # Load once before the first row: a wrong --model or detector (weights missing, bad checkpoint) is one
            # error and its own exit code, not the same failure repeated on every row of a long batch.
            check_commercial(cfg)
            models.generator()
            models.detector()
        for current in todo:
            outcomes.append(dub_row(current, row_cfg, models, dub))
            if not cfg.quiet:
                print_row(outcomes[-1])
    except KeyboardInterrupt:  # SIGTERM too (cli.Terminated): the row being dubbed removed its partial output
        outcomes += unfinished([current] if current else [], outcomes, "stopped mid-row")
        outcomes += unfinished(todo, outcomes, "not started")
        say_interrupted(outcomes)
        raise
    except BaseException as err:
        reason = f"not started: the batch stopped ({type(err).__name__}: {err})"
        raise
    finally:  # every exit: the report has a line for every row of the shard
        outcomes += unfinished(todo, outcomes, reason)
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
        outcome = Outcome(job, "done", frames=result.frames, frames_edited=result.frames_edited,
                          detect_seconds=round(result.seconds.get("detect", 0.0), 3))
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


def say_interrupted(outcomes: list[Outcome]) -> None:
    """The one line after Ctrl-C: which rows are finished, which are not (the same command resumes)."""
    import sys

    done = sorted(o.job.row for o in outcomes if o.status in ("done", "skipped"))
    left = sorted(o.job.row for o in outcomes if o.status == "interrupted")
    print(f"interrupted: rows finished: {_rows(done)}; not finished: {_rows(left)} "
          "(run the same command again to resume)", file=sys.stderr)


def _rows(rows: list[int]) -> str:
    return ", ".join(map(str, rows)) or "none"


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
