"""One source clip -> its dataset folder (OUT/clips/<id>/), or a ClipSkipped with the reason.

Steps: probe, load 16 kHz audio, track the face over the frames at cfg.fps (first decode), fill
short face gaps, keep the longest face-continuous stretch, then crop it (second decode) and write
faces.npy, mel.npy, landmarks.npy, boxes.npy and finally meta.json, the clip's done marker.

Missing faces inside a clip: gaps of at most cfg.max_gap_frames between two detected frames are
filled by interpolating the box linearly (a blink of the detector, e.g. motion blur); their
landmarks stay NaN ("unknown"). A longer gap cuts the clip, and only the longest face-continuous
stretch is kept, with its audio cut at exactly the same instants, so frame k of the stretch still
lines up with mel index k * MEL_FRAMES_PER_SECOND / fps. A stretch shorter than cfg.min_frames
skips the clip ("no face" when no frame had one, else "face missing").

Frames are decoded twice rather than held in memory, so a long 1080p video costs decode time,
not gigabytes.
"""

from __future__ import annotations

import json
from fractions import Fraction
from itertools import islice
from pathlib import Path

import numpy as np

from lipsync_cli.audio import SAMPLE_RATE, log_mel
from lipsync_cli.config import FaceConfig, PreprocessConfig
from lipsync_cli.data.sources import ClipSource
from lipsync_cli.errors import InputError
from lipsync_cli.faces.crop import crop, pixel_box
from lipsync_cli.faces.track import detect_track
from lipsync_cli.media import iter_frames, load_audio, probe
from lipsync_cli.media.atomic import atomic_output

ARRAYS = ("faces.npy", "mel.npy", "landmarks.npy", "boxes.npy")
DONE_MARKER = "meta.json"  # written last, atomically: its presence means every array is complete


class ClipSkipped(Exception):
    """A clip that cannot become training data; `reason` is a short category for the report table."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def source_stamp(path: Path) -> dict:
    """Size and mtime of the source file: a done clip whose source changed is processed again."""
    stat = path.stat()
    return {"src_bytes": stat.st_size, "src_mtime_ns": stat.st_mtime_ns}


def is_done(source: ClipSource, clip_dir: Path) -> bool:
    marker = clip_dir / DONE_MARKER
    if not marker.exists():
        return False
    meta = json.loads(marker.read_text())
    return all(meta.get(k) == v for k, v in source_stamp(source.path).items())


def process_clip(source: ClipSource, clip_dir: Path, cfg: PreprocessConfig, detector) -> dict:
    """Write the clip's folder and return its meta dict; raises ClipSkipped for unusable clips."""
    info = _probe(source.path)
    wav = _load_audio(source.path)  # (samples,) float32 mono 16 kHz in [-1, 1]
    n_max = min(int(info.duration * cfg.fps) + 1, len(wav) * cfg.fps // SAMPLE_RATE)
    if n_max < cfg.min_frames:
        raise ClipSkipped("too short", f"{n_max} frames with audio at {cfg.fps} fps, need {cfg.min_frames}")
    track = _track(source.path, info, n_max, cfg, detector)
    boxes = track.boxes.astype(np.float32)  # (N, 4) x1 y1 x2 y2 in frame pixels, NaN rows where no face
    n = len(boxes)
    if n < cfg.min_frames:  # the video stream ended well before its stated duration
        raise ClipSkipped("too short", f"{n} frames decoded at {cfg.fps} fps, need {cfg.min_frames}")
    found = ~np.isnan(boxes).any(axis=1)
    filled = fill_gaps(boxes, cfg.max_gap_frames)
    start, stop = longest_run(~np.isnan(filled).any(axis=1))
    if stop - start < cfg.min_frames:
        reason = "no face" if not found.any() else "face missing"
        raise ClipSkipped(reason, f"face in {found.sum()}/{n} frames, longest stretch {stop - start} < {cfg.min_frames}")

    clip_dir.mkdir(parents=True, exist_ok=True)
    (clip_dir / DONE_MARKER).unlink(missing_ok=True)  # a redo must never look done halfway through
    boxes = filled[start:stop]
    landmarks = track.landmarks[start:stop].astype(np.float32).copy()
    landmarks[~found[start:stop]] = np.nan  # interpolated frames: box guessed, landmarks unknown
    _write_crops(source.path, info, boxes, start, cfg, clip_dir / "faces.npy")
    audio = wav[first_sample(start, cfg.fps):first_sample(stop, cfg.fps)]  # cut at the kept frames' instants
    _save(clip_dir / "mel.npy", log_mel(audio))
    _save(clip_dir / "landmarks.npy", to_crop_coords(landmarks, crop_boxes(boxes, info), cfg.size))
    _save(clip_dir / "boxes.npy", boxes)
    meta = {"src": str(source.path), "group": source.group, "fps": cfg.fps, "frames": stop - start,
            "seconds": (stop - start) / cfg.fps, "size": cfg.size, "detector": detector.name, "start_frame": int(start), "source_frames": n,
            "interpolated_frames": int((~found[start:stop]).sum()), **source_stamp(source.path)}
    write_json_atomic(clip_dir / DONE_MARKER, meta)
    return meta


def first_sample(frame: int, fps: int) -> int:
    """Index of the 16 kHz sample where a frame starts (640 samples per frame at 25 fps)."""
    return frame * SAMPLE_RATE // fps


def fill_gaps(boxes: np.ndarray, max_gap: int) -> np.ndarray:
    """(N, 4) boxes with NaN rows -> copy with interior NaN runs of <= max_gap rows linearly interpolated."""
    out = boxes.copy()
    missing = np.isnan(boxes).any(axis=1)
    k = 0
    while k < len(out):
        if not missing[k]:
            k += 1
            continue
        end = k
        while end < len(out) and missing[end]:
            end += 1
        if k > 0 and end < len(out) and end - k <= max_gap:  # bounded by faces on both sides
            weights = (np.arange(k, end) - (k - 1)) / (end - (k - 1))
            out[k:end] = out[k - 1] + weights[:, None] * (out[end] - out[k - 1])
        k = end
    return out


def longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(start, stop) of the longest run of True in a 1-D bool array (the first one on ties); (0, 0) if none."""
    best, start = (0, 0), None
    for k, value in enumerate(list(mask) + [False]):
        if value and start is None:
            start = k
        elif not value and start is not None:
            if k - start > best[1] - best[0]:
                best = (start, k)
            start = None
    return best


def crop_boxes(boxes: np.ndarray, info) -> np.ndarray:
    """(N, 4) float boxes -> the whole-pixel regions faces.crop really cuts from an info-sized frame."""
    return np.array([pixel_box(box, (info.height, info.width)) for box in boxes], dtype=np.float32).reshape(-1, 4)


def to_crop_coords(landmarks: np.ndarray, regions: np.ndarray, size: int) -> np.ndarray:
    """(N, 68, 2) frame-pixel points -> crop pixels, for crops that stretch each whole-pixel region
    (N, 4) to size x size. Pixel centres sit on integer coordinates (as landmarks do), so the mapping
    is cv2.resize's: x' = (x - x1 + 0.5) * size / w - 0.5."""
    scale = size / np.maximum(regions[:, None, 2:] - regions[:, None, :2], 1)
    return ((landmarks - regions[:, None, :2] + 0.5) * scale - 0.5).astype(np.float32)


def write_json_atomic(path: Path, data: dict) -> None:
    """Temp file in the same folder + rename, so readers see the old file or the new one, never half."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def _probe(path: Path):
    try:
        info = probe(path)
    except InputError as err:
        raise ClipSkipped("undecodable", str(err)) from None
    if not info.has_video or info.is_image:
        raise ClipSkipped("no video", f"{path.name} has no video stream")
    if not info.has_audio:
        raise ClipSkipped("no audio", f"{path.name} has no audio stream")
    return info


def _load_audio(path: Path) -> np.ndarray:
    try:
        return load_audio(path, sr=SAMPLE_RATE)
    except InputError as err:
        raise ClipSkipped("no audio", str(err)) from None


def _frames(path: Path, info, cfg: PreprocessConfig, n: int):
    """The first n frames at cfg.fps: (H, W, 3) uint8 RGB, streamed."""
    return islice(iter_frames(path, info, fps=Fraction(cfg.fps)), n)


def _track(path: Path, info, n: int, cfg: PreprocessConfig, detector):
    try:
        return detect_track(_frames(path, info, cfg, n), detector, FaceConfig(detector=cfg.detector),
                            (info.height, info.width))
    except InputError as err:  # the decoder gave up part-way (corrupt stream)
        raise ClipSkipped("undecodable", str(err)) from None


def _write_crops(path: Path, info, boxes: np.ndarray, start: int, cfg: PreprocessConfig, target: Path) -> None:
    """Crop frames [start, start + len(boxes)) into an (N, S, S, 3) uint8 RGB .npy, filled frame by frame."""
    with atomic_output(target) as tmp:
        faces = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(boxes), cfg.size, cfg.size, 3))
        frames = islice(_frames(path, info, cfg, start + len(boxes)), start, None)
        k = -1
        for k, frame in enumerate(frames):
            faces[k] = crop(frame, boxes[k], cfg.size)
        faces.flush()
        del faces
        if k + 1 != len(boxes):  # the second decode must see the same frames as the first
            raise ClipSkipped("undecodable", f"{path.name}: second decode gave {k + 1} frames, expected {len(boxes)}")


def _save(target: Path, array: np.ndarray) -> None:
    with atomic_output(target) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
