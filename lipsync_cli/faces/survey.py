"""`lipsync faces VIDEO`: every face a dub could follow, by the index `--face N` takes, before any dub.

One detection pass over the video keeps each frame's boxes (not the frames); then each index N is followed
exactly as a dub with `--face N` would (track._Follower: chosen on the first frame with N + 1 faces, then
followed by IoU), so the listing and the dub agree. The frame showing the most faces is kept to draw them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple

import numpy as np

from lipsync_cli import media
from lipsync_cli.config import FaceConfig
from lipsync_cli.errors import InputError
from lipsync_cli.faces import get_detector
from lipsync_cli.faces.base import Face, FaceDetector
from lipsync_cli.faces.track import DETECT_BATCH, _chunks, _Follower, left_to_right
from lipsync_cli.progress import Stages

BOX_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180)]  # RGB


@dataclass
class TrackedFace:
    index: int  # as --face N takes it
    frames: int  # frames in which the face was followed
    first: int  # first and last such frame
    last: int
    mean_box: Tuple[float, float, float, float]  # x1 y1 x2 y2, display pixels, unpadded
    default: bool = False  # the face a dub picks with the default --face (largest)


@dataclass
class Survey:
    faces: List[TrackedFace]
    n_frames: int
    shown_frame: int  # the frame drawn in the picture (the first with the most faces), -1 if none
    picture: Optional[np.ndarray]  # (H, W, 3) uint8 RGB with numbered boxes, None without faces


def survey(frames: Iterable[np.ndarray], detector: FaceDetector, cfg: FaceConfig,
           progress: Optional[Callable[[int], None]] = None) -> Survey:
    """Detect every frame once, follow each face index as a dub would, and draw the busiest frame."""
    per_frame: List[List[Face]] = []
    best, best_count, size = None, 0, (0, 0)
    for chunk in _chunks(frames, DETECT_BATCH):
        size = chunk[0].shape[:2]
        for frame, faces in zip(chunk, detector.detect(chunk, max_side=cfg.detect_max_side)):
            if len(faces) > best_count:
                best, best_count = (len(per_frame), frame.copy()), len(faces)
            per_frame.append(faces)
        if progress is not None:
            progress(len(chunk))
    tracked = [_follow(per_frame, str(i), cfg, size) for i in range(best_count)]
    default = _follow(per_frame, cfg.face, cfg, size) if not cfg.face.isdigit() else None
    faces = [_summary(i, boxes, default) for i, boxes in enumerate(tracked)]
    if best is None:
        return Survey(faces, len(per_frame), -1, None)
    shown, frame = best
    return Survey(faces, len(per_frame), shown, draw(frame, per_frame[shown]))


def _follow(per_frame: List[List[Face]], choice: str, cfg: FaceConfig, size) -> np.ndarray:
    """(N, 4) float32 boxes of the face `choice` picks, NaN where it is not followed."""
    follower = _Follower(choice, cfg.track_min_iou)
    rows = [follower.follow(faces, size) for faces in per_frame]
    return np.array([face.box if face is not None else [np.nan] * 4 for face in rows], dtype=np.float32).reshape(-1, 4)


def _summary(index: int, boxes: np.ndarray, default: Optional[np.ndarray]) -> TrackedFace:
    found = np.flatnonzero(np.isfinite(boxes).all(axis=1))
    mean = tuple(float(v) for v in boxes[found].mean(axis=0)) if len(found) else (np.nan,) * 4
    same = default is not None and len(found) > 0 and bool(np.allclose(default[found[0]], boxes[found[0]]))
    return TrackedFace(index, len(found), int(found[0]) if len(found) else -1,
                       int(found[-1]) if len(found) else -1, mean, same)


def draw(frame: np.ndarray, faces: List[Face]) -> np.ndarray:
    """The frame with each face's box and its --face index written above it."""
    import cv2

    out = np.ascontiguousarray(frame)
    thick = max(2, round(max(frame.shape[:2]) / 300))
    for number, position in enumerate(left_to_right(faces)):
        x1, y1, x2, y2 = (int(round(v)) for v in faces[position].box)
        colour = BOX_COLOURS[number % len(BOX_COLOURS)]
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        scale = max(0.8, (x2 - x1) / 120)
        cv2.putText(out, str(number), (x1 + thick, max(y1 - 2 * thick, int(30 * scale))), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, colour, thick, cv2.LINE_AA)
    return out


def write_picture(path: Path, picture: np.ndarray) -> None:
    """PNG/JPEG by the name's suffix, written atomically."""
    import cv2

    with media.atomic_output(path) as tmp:
        ok, data = cv2.imencode(path.suffix or ".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"could not encode {path.name}")
        tmp.write_bytes(data.tobytes())


def list_faces(video: Path, image: Optional[Path], cfg: FaceConfig, device: str = "cpu", start: float = 0.0,
               duration: Optional[float] = None, as_json: bool = False, quiet: bool = False) -> Survey:
    """`lipsync faces`: survey VIDEO (or its --start/--duration piece), print the table, write the picture."""
    info = media.starting_at(media.probe(video), start)
    if not info.has_video:
        raise InputError(f"no video stream in {video} (pass a video or an image of a face)")
    n = info.n_frames if duration is None else max(1, min(info.n_frames, round(duration * float(info.fps or 1))))
    detector = get_detector(cfg.detector, device=device)
    frames = media.iter_frames(video, info) if not info.is_image else iter([media.read_image(video)])
    with Stages(quiet or as_json) as stages:
        stages.bar("detect", n)
        found = survey((f for _, f in zip(range(n), frames)), detector, cfg, lambda k: stages.advance("detect", k))
    if image is not None and found.picture is not None:
        write_picture(image, found.picture)
    print_survey(found, info, image if found.picture is not None else None, detector.name, as_json)
    return found


def print_survey(found: Survey, info, image: Optional[Path], detector: str, as_json: bool) -> None:
    fps = float(info.fps) if info.fps else 1.0
    offset = info.first_frame
    if as_json:
        import json
        from dataclasses import asdict

        rows = [{**asdict(f), "first_second": (f.first + offset) / fps, "last_second": (f.last + offset) / fps}
                for f in found.faces]
        print(json.dumps({"frames": found.n_frames, "detector": detector, "faces": rows,
                          "image": str(image) if image else None}, indent=2))
        return
    if not found.faces:
        print(f"no face found in {found.n_frames} frames ({detector})")
        return
    print(f"{len(found.faces)} face(s) in {found.n_frames} frames ({detector}); pass --face N to dub face N")
    print("face\tframes\tseconds\tmean box (x1 y1 x2 y2)")
    for f in found.faces:
        seconds = f"{(f.first + offset) / fps:.2f}-{(f.last + offset) / fps:.2f}" if f.frames else "-"
        box = " ".join(f"{v:.0f}" for v in f.mean_box) if f.frames else "-"
        note = "\t(default: --face largest)" if f.default else ""
        print(f"{f.index}\t{f.frames}/{found.n_frames}\t{seconds}\t{box}{note}")
    if image is not None:
        print(f"boxes drawn on frame {found.shown_frame + offset}: {image}")
