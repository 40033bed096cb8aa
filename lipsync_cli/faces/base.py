"""The detector interface every face backend implements, and the box maths they share.

A backend only has to turn a batch of RGB frames into faces (`_detect`). Downscaling before
detection and scaling the results back lives here, once, so every backend gets it the same way.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

N_LANDMARKS = 68  # the iBUG 300-W point layout that both backends produce
# Regions of that layout, named once (indices into the 68 points):
JAW = list(range(0, 17))  # the jaw contour, ear to ear
CHIN = list(range(4, 13))  # the part of the jaw below the mouth corners
NOSE_TIP = 30
NOSE_BOTTOM = [31, 32, 33, 34, 35]  # the base of the nose, left to right
MOUTH = list(range(48, 68))  # outer + inner lip contours


@dataclass
class Face:
    """One detected face, in the pixels of the frame it was found in."""

    box: np.ndarray  # (4,) float32 x1, y1, x2, y2
    score: float  # detector confidence (backend-specific scale; higher is surer)
    landmarks: Optional[np.ndarray] = None  # (68, 2) float32 x, y; None when the backend gives none

    def scaled(self, factor: float) -> "Face":
        """The same face in a frame `factor` times larger."""
        landmarks = None if self.landmarks is None else (self.landmarks * factor).astype(np.float32)
        return Face((self.box * factor).astype(np.float32), self.score, landmarks)

    def shifted(self, dx: float, dy: float, width: int, height: int) -> "Face":
        """The same face found in a crop whose top-left corner is (dx, dy) of a width x height frame."""
        offset = np.array([dx, dy], dtype=np.float32)
        landmarks = None if self.landmarks is None else (self.landmarks + offset).astype(np.float32)
        return Face(clip_box(self.box + np.tile(offset, 2), width, height), self.score, landmarks)


class FaceDetector:
    """Finds faces in batches of frames. Subclasses implement `_detect`; callers use `detect`."""

    name = "base"
    weights: tuple = ()  # the weights.toml entries the backend runs (their licences are the run's)

    def detect(self, frames: Sequence[np.ndarray], max_side: Optional[int] = None) -> List[List[Face]]:
        """Faces per frame, largest-scored first, in the given frames' pixels.

        frames: (H, W, 3) uint8 RGB, all the same size. With `max_side`, detection runs on copies
        downscaled so their longer side is at most max_side (detection cost grows with pixels; faces
        in dubbing footage are large), and boxes/landmarks are scaled back.
        """
        if len(frames) == 0:
            return []
        small, scale = downscale_batch(frames, max_side)
        found = self._detect(small)
        if scale == 1.0:
            return found
        return [[face.scaled(1.0 / scale) for face in faces] for faces in found]

    def _detect(self, frames: Sequence[np.ndarray]) -> List[List[Face]]:
        raise NotImplementedError

    @contextmanager
    def session(self, fps: Optional[float] = None) -> Iterator["FaceDetector"]:
        """A detector for one video's frames at `fps`, given in order chunk after chunk (fps None: unrelated
        stills). Backends that follow the face from frame to frame (MediaPipe's VIDEO mode) open a fresh
        tracking session here; the others detect every frame on its own and are their own session."""
        yield self


def downscale_batch(frames: Sequence[np.ndarray], max_side: Optional[int]) -> Tuple[List[np.ndarray], float]:
    """Frames resized so the longer side is <= max_side (never upscaled), and the factor used."""
    height, width = frames[0].shape[:2]
    scale = 1.0 if not max_side else min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return list(frames), 1.0
    import cv2

    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # The exact factor may differ from `scale` by rounding; use the width ratio so x maps back exactly.
    return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames], size[0] / width


def clip_box(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """(…, 4) x1 y1 x2 y2 boxes clipped to the frame [0, width] x [0, height]."""
    out = np.asarray(box, dtype=np.float32).copy()
    out[..., 0::2] = np.clip(out[..., 0::2], 0, width)
    out[..., 1::2] = np.clip(out[..., 1::2], 0, height)
    return out


def box_area(box: np.ndarray) -> np.ndarray:
    """Area of (…, 4) boxes (0 for degenerate ones)."""
    return np.clip(box[..., 2] - box[..., 0], 0, None) * np.clip(box[..., 3] - box[..., 1], 0, None)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of (…, 4) boxes, broadcast; a NaN (missing) box gives 0."""
    inter = np.stack([np.maximum(a[..., 0], b[..., 0]), np.maximum(a[..., 1], b[..., 1]),
                      np.minimum(a[..., 2], b[..., 2]), np.minimum(a[..., 3], b[..., 3])], axis=-1)
    overlap = box_area(inter)
    union = box_area(a) + box_area(b) - overlap
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, overlap / np.where(union > 0, union, 1), 0.0)


def box_from_landmarks(landmarks: np.ndarray, forehead: float = 0.2) -> np.ndarray:
    """An S3FD-like face box from 68 points: jaw extent across, chin at the bottom, forehead on top.

    Landmarks stop at the brows; S3FD's boxes (what Wav2Lip was trained on) reach about a fifth of
    the brow-to-chin height higher, so the top is raised by `forehead` x that height.
    """
    x1, y1 = landmarks.min(axis=0)
    x2, y2 = landmarks.max(axis=0)
    return np.array([x1, y1 - forehead * (y2 - y1), x2, y2], dtype=np.float32)
