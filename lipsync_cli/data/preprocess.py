"""`lipsync preprocess SRC OUT`: a folder of talking-face videos -> the training dataset layout.

Layout: OUT/manifest.json, OUT/clips/<id>/{faces,mel,landmarks,boxes}.npy + meta.json.
Skipped clips leave OUT/skipped/<id>.json with the reason. Per-clip work is in data/clip.py.

Re-runs and shards: a clip is finished when its meta.json (written last, atomically) or its skip
record exists for the same source size and mtime; finished clips are never redone. Every run ends
by rebuilding manifest.json from all meta.json and skip files under OUT and writing it atomically,
so shards sharing OUT (even on several machines over a shared disk) leave a manifest with every
clip finished so far, and the last shard to finish leaves the complete one. The train/val split
is a pure function of the finished clips' groups, the fraction and the seed.

Unexpected failures inside one clip (a bug, a crashing decoder) are recorded as reason "error"
and retried on the next run; the run itself carries on. Missing weights or a bad option abort.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lipsync_cli.config import PreprocessConfig
from lipsync_cli.data.clip import ClipSkipped, is_done, process_clip, source_stamp, write_json_atomic
from lipsync_cli.data.sources import ClipSource, assign_splits, find_clips, shard
from lipsync_cli.device import pick_device
from lipsync_cli.errors import InputError, LipsyncError, UsageError
from lipsync_cli.faces import get_detector
from lipsync_cli.progress import Stages

MANIFEST_VERSION = 1
RETRIED_REASON = "error"  # skip records with this reason are not final: the clip is tried again next run


@dataclass
class PreprocessReport:
    """What one run did and what the dataset now holds (all shards together)."""

    manifest: Path
    clips: int  # clips in the dataset
    val_clips: int  # of which in the validation split
    seconds: float  # seconds of video in the dataset
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> clips, whole dataset
    processed: int = 0  # clips worked on by this run (done or skipped)
    already_done: int = 0  # clips of this shard found finished by an earlier run
    frames: int = 0  # source frames decoded by this run into new clips
    kept_frames: int = 0  # of which kept (the rest lay outside the longest face-continuous stretch)
    wall_s: float = 0.0  # this run's wall-clock time


def preprocess(src: Path, out: Path, cfg: PreprocessConfig, quiet: bool = False) -> PreprocessReport:
    """Process this shard's unfinished clips of SRC into OUT, rebuild the manifest, print the table."""
    src, out = Path(src), Path(out)
    started = time.perf_counter()
    _check(src, out, cfg)
    out.mkdir(parents=True, exist_ok=True)
    clips = shard(find_clips(src), *cfg.shard)
    todo = [clip for clip in clips if not _finished(clip, out)]
    try:
        outcomes = _run(todo, out, cfg, quiet)
    finally:  # also after Ctrl-C or a fatal error: the manifest then lists every clip finished so far
        manifest = write_manifest(out, cfg)
    report = _report(out, manifest, outcomes, len(clips) - len(todo), time.perf_counter() - started)
    if not quiet:
        print_report(report)
    return report


def write_manifest(out: Path, cfg: PreprocessConfig) -> dict:
    """Rebuild OUT/manifest.json from every clip's meta.json and every skip record, atomically."""
    metas = {p.parent.relative_to(out / "clips").as_posix(): json.loads(p.read_text())
             for p in sorted((out / "clips").rglob("meta.json"))}
    splits = assign_splits({cid: meta.get("group", cid) for cid, meta in metas.items()}, cfg.val_fraction, cfg.seed)
    skips = [json.loads(p.read_text()) for p in sorted((out / "skipped").rglob("*.json"))]
    manifest = {
        "version": MANIFEST_VERSION, "size": cfg.size, "fps": cfg.fps,
        "clips": [{"id": cid, "split": splits[cid], "frames": meta["frames"], "seconds": meta["seconds"]}
                  for cid, meta in metas.items()],
        "skipped": [{"src": s["src"], "reason": s["reason"], "detail": s.get("detail", "")} for s in skips],
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def _check(src: Path, out: Path, cfg: PreprocessConfig) -> None:
    if not src.is_dir():
        raise InputError(f"source folder not found: {src} (pass a folder of videos, flat or speaker/clip.mp4)")
    old = out / "manifest.json"
    if old.exists():
        made = json.loads(old.read_text())
        if (made.get("size"), made.get("fps")) != (cfg.size, cfg.fps):
            raise UsageError(f"{out} holds a dataset made with --size {made.get('size')} at {made.get('fps')} fps; "
                             f"use the same settings or a new OUT folder")
    if not find_clips(src):
        raise InputError(f"no videos under {src} (looked for .mp4 .mpg .avi .mov .mkv files, any depth)")


def _skip_path(out: Path, clip: ClipSource) -> Path:
    return out / "skipped" / f"{clip.id}.json"


def _finished(clip: ClipSource, out: Path) -> bool:
    if is_done(clip, out / "clips" / clip.id):
        return True
    record = _skip_path(out, clip)
    if not record.exists():
        return False
    skip = json.loads(record.read_text())
    return skip["reason"] != RETRIED_REASON and all(skip.get(k) == v for k, v in source_stamp(clip.path).items())


# --- running clips: in-process for one worker, else a process pool (one detector per worker) ---

_DETECTORS: dict = {}  # (name, device) -> this process's detector, built on first use (detectors don't pickle)


def _work(clip: ClipSource, out: Path, cfg: PreprocessConfig) -> tuple[str, str, int, int]:
    """Process one clip -> (clip id, "done" or the skip reason, frames decoded, frames kept). Runs in a worker."""
    key = (cfg.detector, _device(cfg.device))
    if key not in _DETECTORS:
        _DETECTORS[key] = get_detector(*key)
    record = _skip_path(out, clip)
    try:
        meta = process_clip(clip, out / "clips" / clip.id, cfg, _DETECTORS[key])
    except ClipSkipped as skip:
        reason, detail = skip.reason, skip.detail
    except LipsyncError as err:
        if not isinstance(err, InputError):
            raise  # missing weights, a bad option: every clip would fail the same way
        reason, detail = "undecodable", str(err)
    except Exception as err:  # a bug or a crashing library: keep going, retry this clip next run
        reason, detail = RETRIED_REASON, f"{type(err).__name__}: {err}"
    else:
        record.unlink(missing_ok=True)
        return clip.id, "done", meta["source_frames"], meta["frames"]
    record.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, {"src": str(clip.path), "reason": reason, "detail": detail, **source_stamp(clip.path)})
    return clip.id, reason, 0, 0


def _init_worker(threads: int) -> None:
    """Split the CPU between workers: each would otherwise start one math thread per core."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _device(name: str) -> str:
    return pick_device(name)


def _run(todo: list[ClipSource], out: Path, cfg: PreprocessConfig, quiet: bool) -> list[tuple[str, str, int, int]]:
    """Process clips with a progress bar; returns _work's tuple per clip."""
    outcomes = []
    with Stages(quiet=quiet) as stages:
        stages.bar("clips", len(todo))
        for outcome in _outcomes(todo, out, cfg):
            outcomes.append(outcome)
            stages.advance("clips")
    return outcomes


def _outcomes(todo: list[ClipSource], out: Path, cfg: PreprocessConfig):
    workers = min(cfg.workers, len(todo))
    if workers <= 1:
        yield from (_work(clip, out, cfg) for clip in todo)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: forking a process that already holds torch/OpenMP threads can deadlock
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(_work, clip, out, cfg) for clip in todo]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


# --- the final table ---

def _report(out: Path, manifest: dict, outcomes: list, already_done: int, wall_s: float) -> PreprocessReport:
    clips = manifest["clips"]
    return PreprocessReport(
        manifest=out / "manifest.json", clips=len(clips), val_clips=sum(c["split"] == "val" for c in clips),
        seconds=sum(c["seconds"] for c in clips), skipped=dict(Counter(s["reason"] for s in manifest["skipped"])),
        processed=len(outcomes), already_done=already_done, frames=sum(o[2] for o in outcomes),
        kept_frames=sum(o[3] for o in outcomes), wall_s=wall_s)


def print_report(report: PreprocessReport) -> None:
    """Dataset totals (all shards) and this run's throughput, as a rich table on stderr."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"dataset {report.manifest.parent}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("clips done", f"{report.clips} ({report.clips - report.val_clips} train, {report.val_clips} val)")
    for reason, count in sorted(report.skipped.items()) or [("none", 0)]:
        table.add_row(f"skipped: {reason}", str(count))
    minutes, seconds = divmod(round(report.seconds), 60)
    table.add_row("hours of video", f"{report.seconds / 3600:.3f} ({minutes // 60}:{minutes % 60:02d}:{seconds:02d})")
    table.add_row("this run", f"{report.processed} clips processed, {report.already_done} already done")
    if report.frames:
        table.add_row("frames kept", f"{report.kept_frames} of {report.frames} (the rest fell outside the face stretch)")
    rate = max(report.wall_s, 1e-9)
    table.add_row("wall time", f"{report.wall_s:.1f} s ({report.processed / rate:.2f} clips/s, "
                               f"{report.frames / rate:.0f} frames/s)")
    Console(stderr=True).print(table)
