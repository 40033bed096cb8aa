"""Face tracks cached on disk, so one video dubbed into many languages is detected and tracked once.

A track is keyed by the video's content (SHA-256 of its bytes, not its name or time stamp), the detector that
found it and every face option that changes it, and always covers every frame of the video, so rows of
different lengths share it (each takes the frames it uses). Rows in one process, re-runs of a batch and the
Ray workers of one node share the folder; a lock per key makes a worker that wants a track another worker is
computing wait for it instead of detecting it again. Files are small (~560 bytes a frame) and written
atomically; deleting the folder is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from lipsync_cli.config import FaceConfig
from lipsync_cli.faces.track import FaceTrack
from lipsync_cli.media.atomic import lock_file
from lipsync_cli.weights import cache_dir

FORMAT = 1  # bump when the stored arrays or the tracking maths change: old files then miss instead of lying
# Options that only decide what is done with a finished track (not the track itself) stay out of the key.
NOT_IN_KEY = ("box", "crossfade_frames")
_hashes: dict = {}  # (path, size, mtime_ns) → sha256 hex: one read of a video per process, however many rows


def default_folder() -> Path:
    """<cache dir>/face-tracks ($LIPSYNC_CACHE_DIR, else ~/.cache/lipsync-cli on Linux)."""
    return cache_dir() / "face-tracks"


def video_hash(video: Path) -> str:
    stat = video.stat()
    memo = (str(video.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _hashes:
        digest = hashlib.sha256()
        with open(video, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):  # hashlib.file_digest is 3.11+; we support 3.10
                digest.update(block)
        _hashes[memo] = digest.hexdigest()
    return _hashes[memo]


def track_key(video: Path, detector_name: str, cfg: FaceConfig, span: tuple = (0.0, None)) -> str:
    """span: (--start, --duration) of the dub, which decide the frames the track begins and ends with."""
    options = {k: v for k, v in asdict(cfg).items() if k not in NOT_IN_KEY}
    options.pop("detector")  # "auto" is resolved: the backend actually used is detector_name
    text = json.dumps({"format": FORMAT, "video": video_hash(video), "detector": detector_name,
                       "faces": options, "span": list(span)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_track(folder: Path, key: str, compute: Callable[[], FaceTrack]) -> tuple[FaceTrack, bool]:
    """(the track stored under `key`, False), or (compute() stored there, True)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.npz"
    with open(folder / f"{key}.lock", "a") as lock:
        lock_file(lock)  # released when the file closes, or by the kernel if this process dies (Windows: none)
        if path.is_file():
            try:
                return load(path), False
            except (OSError, ValueError, KeyError):  # damaged (disk trouble): computed again and replaced
                pass
        track = compute()
        save(path, track)
        return track, True


def save(path: Path, track: FaceTrack) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, boxes=track.boxes, landmarks=track.landmarks)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(path: Path) -> FaceTrack:
    with np.load(path) as data:
        return FaceTrack(data["boxes"].astype(np.float32), data["landmarks"].astype(np.float32))
