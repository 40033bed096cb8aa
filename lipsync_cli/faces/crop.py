"""Face box ⇄ square model crop. Both directions round the box to whole pixels the same way
(`pixel_box`), so a crop pasted back lands exactly where it was cut from."""

from __future__ import annotations

from typing import Tuple

import numpy as np


def pixel_box(box: np.ndarray, frame_shape: Tuple[int, ...]) -> Tuple[int, int, int, int]:
    """Float x1 y1 x2 y2 → whole-pixel x1 y1 x2 y2 inside the frame, at least 1 pixel wide and tall."""
    height, width = frame_shape[:2]
    x1 = int(np.clip(np.floor(box[0]), 0, width - 1))
    y1 = int(np.clip(np.floor(box[1]), 0, height - 1))
    x2 = int(np.clip(np.ceil(box[2]), x1 + 1, width))
    y2 = int(np.clip(np.ceil(box[3]), y1 + 1, height))
    return x1, y1, x2, y2


def crop(frame: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """The box region resized to (size, size, 3) uint8 RGB (stretched, not letterboxed: the same
    geometry Wav2Lip-style models are trained on). frame: (H, W, 3) uint8 RGB."""
    import cv2

    x1, y1, x2, y2 = pixel_box(box, frame.shape)
    region = frame[y1:y2, x1:x2]
    shrinking = region.shape[0] * region.shape[1] >= size * size
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def uncrop(generated: np.ndarray, box: np.ndarray, frame_shape: Tuple[int, ...]) -> np.ndarray:
    """Inverse of crop: a (S, S, 3) uint8 RGB crop resized to the box's pixel size, (h, w, 3) uint8,
    to be placed at frame[y1:y2, x1:x2] of pixel_box(box, frame_shape)."""
    import cv2

    x1, y1, x2, y2 = pixel_box(box, frame_shape)
    width, height = x2 - x1, y2 - y1
    shrinking = width * height < generated.shape[0] * generated.shape[1]
    # cubic is sharper than linear when enlarging the 96-pixel mouth; cv2 saturates its overshoot to uint8
    return cv2.resize(generated, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
