"""syncnet_python's face crop (run_pipeline.py crop_video): what LSE-D / LSE-C are measured on.

Not our model crop (faces/crop.py): upstream takes a square about 2.8 box half-sizes wide reaching 1
half-size above and 1.8 below the box centre, pads the frame with grey (110) where it runs off the
edge, and smooths the box sizes and centres with a zero-padded median filter. Every step is float64
with Python int() truncation, as upstream; ../shared/reference/syncnet/README.md §4 is the specification.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

CROP_SCALE = 0.4  # upstream's --crop_scale: the crop reaches bs*(1 + 2*scale) below the centre
MEDFILT_KERNEL = 13  # frames of the median filter over box sizes and centres
PAD_VALUE = 110  # grey of the padding, every channel
SIZE = 224  # SyncNet's input side


def smoothed_boxes(boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 4) x1 y1 x2 y2 -> (s, x, y), each (N,) float64: half the larger side and the centre, each
    through scipy.signal.medfilt(13), which zero-pads (the first and last 6 values are pulled down)."""
    from scipy import signal

    boxes = np.asarray(boxes, np.float64)
    s = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    y = (boxes[:, 1] + boxes[:, 3]) / 2
    x = (boxes[:, 0] + boxes[:, 2]) / 2
    return tuple(signal.medfilt(v, kernel_size=MEDFILT_KERNEL) for v in (s, x, y))


def crop_window(s: float, x: float, y: float, crop_scale: float = CROP_SCALE) -> Tuple[int, Tuple[int, int, int, int]]:
    """(bsi, (row0, row1, col0, col1)): the padding and the end-exclusive cut in padded-frame pixels."""
    bs = float(s)
    bsi = int(bs * (1 + 2 * crop_scale))
    my, mx = float(y) + bsi, float(x) + bsi
    rows = (int(my - bs), int(my + bs * (1 + 2 * crop_scale)))
    cols = (int(mx - bs * (1 + crop_scale)), int(mx + bs * (1 + crop_scale)))
    return bsi, rows + cols


def crop_face(frame: np.ndarray, s: float, x: float, y: float, crop_scale: float = CROP_SCALE) -> np.ndarray:
    """One frame's crop: (H, W, 3) uint8 (BGR in, BGR out) -> (224, 224, 3) uint8, cv2.resize bilinear."""
    import cv2

    bsi, (r0, r1, c0, c1) = crop_window(s, x, y, crop_scale)
    face = _cut_padded(frame, bsi, r0, r1, c0, c1)
    return cv2.resize(face, (SIZE, SIZE))


def _cut_padded(frame: np.ndarray, pad: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """np.pad(frame, pad, constant PAD_VALUE)[r0:r1, c0:c1] without building the padded frame (a 1080p
    frame padded by a large face would be ~12 MB per frame). r0, c0 >= 0 always: bsi >= bs - 1."""
    height, width = frame.shape[:2]
    r1, c1 = min(r1, height + 2 * pad), min(c1, width + 2 * pad)  # numpy's slice clamping
    out = np.full((max(r1 - r0, 0), max(c1 - c0, 0), frame.shape[2]), PAD_VALUE, frame.dtype)
    sr0, sr1 = max(r0 - pad, 0), min(r1 - pad, height)
    sc0, sc1 = max(c0 - pad, 0), min(c1 - pad, width)
    if sr1 > sr0 and sc1 > sc0:
        out[sr0 + pad - r0:sr1 + pad - r0, sc0 + pad - c0:sc1 + pad - c0] = frame[sr0:sr1, sc0:sc1]
    return out
