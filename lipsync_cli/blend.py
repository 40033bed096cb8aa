"""Masks and paste-back: pure functions. Build the mask once per frame, then alpha-blend the
generated crop into the full-resolution frame inside it.

The mask covers the lower face only (where the model redraws the mouth and jaw) and fades to zero
before the face box's edges, so the box itself never shows; wherever the mask is 0 the output pixel
is the input pixel, bit for bit.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from lipsync_cli.faces.base import JAW, NOSE_BOTTOM
from lipsync_cli.faces.crop import pixel_box, uncrop

FEATHER = 0.1  # soft-edge radius of the mask as a fraction of the face box's shorter side
# The outline of the blended region: the jaw from ear to ear without its two top points (0 and 16 sit at the
# temples, level with the eyes, where pasting would show) and the base of the nose right to left.
# Why not the refs mask head's training target (refs_losses.landmark_mask: all 17 jaw points + the nose tip,
# dilated): that target is where the generator must *redraw* (generous, so no moving pixel is left out); this
# is where pasting is *safe* inside the face box (tight, feathered). At dub time the two meet by product: the
# predicted mask can only narrow this region (lower_face_mask), never extend it past the box.
LOWER_FACE = [*JAW[1:16], *NOSE_BOTTOM[::-1]]
# Without landmarks: an ellipse over the mouth and chin of an S3FD-like box, as fractions of the box.
ELLIPSE_CENTRE = (0.5, 0.68)  # x, y
ELLIPSE_AXES = (0.36, 0.27)  # semi-axes: x, y


def lower_face_mask(box: np.ndarray, landmarks: Optional[np.ndarray], frame_shape: Tuple[int, ...],
                    feather: float = FEATHER, predicted: Optional[np.ndarray] = None) -> np.ndarray:
    """(H, W) float32 in [0, 1]: 1 over the lower face, feathered, exactly 0 outside the box and on a
    rim along its edges (so the top corners and the box outline are never blended).

    box: x1 y1 x2 y2 frame pixels. landmarks: (68, 2) frame pixels, or None / NaN for the fixed ellipse.
    predicted: optional (S, S) float32 in [0, 1] mask of a model that predicts where it drew (crop
    pixels); it can only narrow the lower-face region, never extend it.
    """
    x1, y1, x2, y2 = pixel_box(box, frame_shape)
    region = _lower_face_region(x2 - x1, y2 - y1, landmarks, (x1, y1))
    region = np.clip(_feather(region, max(1, int(round(feather * min(x2 - x1, y2 - y1))))), 0, 1)
    if predicted is not None:
        region *= np.clip(uncrop(np.ascontiguousarray(predicted, dtype=np.float32), box, frame_shape), 0, 1)
    mask = np.zeros(frame_shape[:2], dtype=np.float32)
    mask[y1:y2, x1:x2] = region
    return mask


def paste_back(frame: np.ndarray, generated: np.ndarray, box: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A new frame: `generated` (S, S, 3) uint8 RGB resized to the box and alpha-blended into `frame`
    (H, W, 3) uint8 RGB with `mask` (H, W) float32 in [0, 1]. Pixels where the mask is 0 (and all
    pixels outside the box) are the input frame's exactly. The input is not modified."""
    x1, y1, x2, y2 = pixel_box(box, frame.shape)
    alpha = mask[y1:y2, x1:x2, None]
    original = frame[y1:y2, x1:x2]
    patch = uncrop(generated, box, frame.shape).astype(np.float32)
    mixed = original + alpha * (patch - original)  # float32 (h, w, 3) in [0, 255]
    out = frame.copy()
    out[y1:y2, x1:x2] = np.where(alpha > 0, np.clip(np.rint(mixed), 0, 255).astype(np.uint8), original)
    return out


def _lower_face_region(width: int, height: int, landmarks: Optional[np.ndarray], origin: Tuple[int, int]) -> np.ndarray:
    """(height, width) float32 hard 0/1 lower-face shape in box pixels."""
    import cv2

    region = np.zeros((height, width), dtype=np.float32)
    if landmarks is not None and np.isfinite(landmarks).all():
        outline = np.asarray(landmarks, dtype=np.float64)[LOWER_FACE] - np.asarray(origin, dtype=np.float64)
        cv2.fillPoly(region, [np.round(outline).astype(np.int32)], 1.0)
    else:
        centre = (int(round(ELLIPSE_CENTRE[0] * width)), int(round(ELLIPSE_CENTRE[1] * height)))
        axes = (max(1, int(round(ELLIPSE_AXES[0] * width))), max(1, int(round(ELLIPSE_AXES[1] * height))))
        cv2.ellipse(region, centre, axes, 0, 0, 360, 1.0, thickness=-1)
    return region


def _feather(region: np.ndarray, radius: int) -> np.ndarray:
    """Gaussian-soften a hard 0/1 shape with a kernel reaching `radius` pixels. The shape is first
    cleared within radius + 1 of the edges, so the blur cannot reach the border: the soft mask ends
    at exactly 0 inside the box instead of being cut off by it (a visible rectangle)."""
    import cv2

    rim = radius + 1
    region[:rim] = 0
    region[-rim:] = 0
    region[:, :rim] = 0
    region[:, -rim:] = 0
    size = 2 * radius + 1
    # sigma = radius / 2: the kernel covers ±2 sigma, a smooth ramp about `radius` pixels wide
    return cv2.GaussianBlur(region, (size, size), sigmaX=radius / 2, sigmaY=radius / 2,
                            borderType=cv2.BORDER_CONSTANT)
