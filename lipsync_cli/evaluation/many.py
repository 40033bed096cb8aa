"""`lipsync evaluate FOLDER|LIST`: the single-video report for every video of a test set, and the mean.

Each video counts once in the mean, whatever its length (Wav2Lip's calculate_scores_LRS.py averages
per video this way). A video that cannot be measured (no face, no audio) is listed with its error and
left out of the mean, as LatentSync's eval_sync_conf.py skips videos without a face.

LIST is a text file with one video per line, optionally followed by a comma and its ground-truth original
(adds the reconstruction metrics); relative paths are relative to the list's folder; '#' starts a comment.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from lipsync_cli.errors import InputError, LipsyncError, UsageError
from lipsync_cli.evaluation.report import fmt

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
# figures averaged over videos: the sync numbers, then (when every video has a reference) reconstruction
MEAN_SYNC_KEYS = ("lse_d", "lse_c", "expert_sync_distance", "expert_sync_confidence")
MEAN_RECONSTRUCTION_KEYS = ("psnr_mouth", "psnr_face", "ssim_mouth", "ssim_face", "m_lmd", "f_lmd")


def is_many(path: Path) -> bool:
    """A folder or a text list of videos, rather than one video."""
    return path.is_dir() or path.suffix.lower() in (".txt", ".lst", ".csv")


def items(path: Path, reference: Optional[Path] = None) -> list[tuple[Path, Optional[Path]]]:
    """[(video, reference or None)] of a folder (sorted; --reference: a folder of same-named originals) or a list."""
    if path.is_dir():
        videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith("."))
        pairs = [(v, (reference / v.name) if reference else None) for v in videos]
    else:
        if reference is not None:
            raise UsageError("with a video list, give each original as the list's second column, not --reference")
        pairs = [_parse_line(line, path.parent) for line in path.read_text().splitlines()]
        pairs = [p for p in pairs if p is not None]
    if not pairs:
        raise InputError(f"no videos in {path} (a folder of {'/'.join(VIDEO_SUFFIXES[:3])}... or a list, one per line)")
    return pairs


def _parse_line(line: str, base: Path) -> Optional[tuple[Path, Optional[Path]]]:
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    video = base / parts[0]
    return video, (base / parts[1]) if len(parts) > 1 and parts[1] else None


def measure_many(pairs: list[tuple[Path, Optional[Path]]], measure_one) -> dict:
    """{"videos": [report per video], "failed": [{"video", "error"}], "mean": {...}}; measure_one(video, reference)
    is the single-video measure (its errors are recorded, not raised, so one bad file does not stop a test set)."""
    reports, failed = [], []
    for video, reference in pairs:
        try:
            reports.append(measure_one(video, reference))
        except LipsyncError as err:
            failed.append({"video": str(video), "error": str(err)})
    return {"videos": reports, "failed": failed, "mean": mean_over_videos(reports)}


def mean_over_videos(reports: list[dict]) -> dict:
    """The arithmetic mean of each figure over the videos that have it (each video once)."""
    out: dict = {"videos": len(reports)}
    for key in MEAN_SYNC_KEYS:
        out[key] = _mean([r["sync"].get(key) for r in reports])
    if reports and all("reconstruction" in r for r in reports):
        for key in MEAN_RECONSTRUCTION_KEYS:
            out[key] = _mean([r["reconstruction"][key] for r in reports])
    return out


def _mean(values: list) -> Optional[float]:
    known = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(known) / len(known) if known else None


def print_many(result: dict) -> None:
    """One row per video, then the mean row and the videos that failed."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{result['mean']['videos']} videos (mean: each video counts once)")
    for key in ("video", "LSE-D", "LSE-C", "AV offset", "expert distance", "expert confidence"):
        table.add_column(key, justify="left" if key == "video" else "right")
    for r in result["videos"]:
        s = r["sync"]
        table.add_row(Path(r["video"]).name, *(fmt(s.get(k)) for k in ("lse_d", "lse_c", "av_offset_frames",
                                                                          "expert_sync_distance", "expert_sync_confidence")))
    m = result["mean"]
    table.add_row("mean", fmt(m["lse_d"]), fmt(m["lse_c"]), "", fmt(m["expert_sync_distance"]),
                  fmt(m["expert_sync_confidence"]))
    console.print(table)
    for f in result["failed"]:
        console.print(f"not measured: {f['video']}: {f['error']}")
