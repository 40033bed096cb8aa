"""MuseTalk's face box (v1.5) from 68 landmarks, and the 256 px crop it is cut with.

Upstream takes the box from DWPose's face points (musetalk/utils/preprocessing.py); we feed it our
tracked iBUG-68 landmarks (dlib or face-alignment, the same point order), already smoothed over time
by faces.track, so the boxes are smooth too. Where the rule fails we use the tracked detector box,
as upstream falls back to S3FD's.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from lipsync_cli.faces.crop import pixel_box

SIZE = 256  # side of the crop the VAE encodes (32×32 latents)
NOSE_POINT = 29  # 0-based iBUG index of the lowest nose-bridge point: the box's vertical centre
EXTRA_MARGIN = 10  # v1.5: pixels added below the chin (extra_margin), then clipped to the frame


def landmark_box(landmarks: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """(68, 2) x, y → (x1, y1, x2, y2) int, exclusive ends as upstream slices; None where upstream
    falls back to the detector (empty box, or a point left of the frame after truncation)."""
    pts = np.trunc(np.asarray(landmarks, dtype=np.float64)).astype(np.int32)  # upstream casts to int32
    cy = int(pts[NOSE_POINT, 1])
    y2 = int(pts[:, 1].max())
    y1 = max(0, cy - (y2 - cy))  # as far above the nose as the chin lies below it
    x1, x2 = int(pts[:, 0].min()), int(pts[:, 0].max())
    if y2 - y1 <= 0 or x2 - x1 <= 0 or x1 < 0:
        return None
    return x1, y1, x2, y2


def v15_box(box: Tuple[int, int, int, int], frame_height: int, margin: int = EXTRA_MARGIN) -> Tuple[int, int, int, int]:
    """v1.5's final box: y2 lowered by `margin` and clipped to the frame height (x2 is never clipped
    upstream; slicing stops at the frame's edge, which pixel_box reproduces)."""
    x1, y1, x2, y2 = box
    return x1, y1, x2, min(y2 + margin, frame_height)


def musetalk_boxes(landmarks: np.ndarray, fallback: np.ndarray, frame_height: int,
                   margin: int = EXTRA_MARGIN) -> np.ndarray:
    """landmarks (N, 68, 2), fallback boxes (N, 4) float32 (NaN rows: no face) → (N, 4) float32 boxes.

    Frames with finite landmarks get the landmark rule; the others (rule failed, a fixed --box, no
    landmarks) keep their fallback box, and frames without a face stay NaN (they pass through)."""
    boxes = np.array(fallback, dtype=np.float32, copy=True)
    for i, marks in enumerate(landmarks):
        if not (np.isfinite(marks).all() and np.isfinite(fallback[i]).all()):
            continue
        box = landmark_box(marks)
        if box is not None:
            boxes[i] = v15_box(box, frame_height, margin)
    return boxes


def crop(frame: np.ndarray, box: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(H, W, 3) uint8 (any channel order) → (size, size, 3) uint8: rows y1..y2−1, columns x1..x2−1,
    stretched to a square with Lanczos-4, as upstream (aspect ratio is not kept)."""
    import cv2

    x1, y1, x2, y2 = pixel_box(box, frame.shape)
    return cv2.resize(frame[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_LANCZOS4)
