"""LatentSync's face alignment: three landmark groups → similarity transform to its template → 3:4 crop.

Upstream (latentsync/utils/affine_transform.py, image_processor.py) averages insightface 106-point
groups (left brow, right brow, nose); the same groups in our 68-point contract are the iBUG brows
17–21 and 22–26 and the nose points 29, 30, 31, 35 (the reference vectors use exactly these).
The fit, the smoothing bias (normalised units added to a pixel translation: upstream's quirk, kept so
the crops equal the ones the weights were trained on), the bilinear warp with fill 127, the
truncating uint8 cast and the Lanczos stretch to a square follow the reference README, step 7.
"""

from __future__ import annotations

import numpy as np

GROUPS_68 = ([17, 18, 19, 20, 21], [22, 23, 24, 25, 26], [29, 30, 31, 35])  # left brow, right brow, nose
TEMPLATE_256 = np.array([[17.0, 20.0], [58.0, 20.0], [37.5, 40.0]])  # template points at ratio 1
TEMPLATE_RATIO = 2.8  # template scale at 256 px (upstream: resolution / 256 · 2.8)
CROP_W, CROP_H = 75, 100  # crop size at ratio 1 (3:4, stretched to a square for the model)
SMOOTH_KEEP = 0.2  # weight of the previous frame's bias in the smoothed one
FILL = 127.0  # value of crop pixels outside the frame


def ratio(resolution: int) -> float:
    return resolution / 256 * TEMPLATE_RATIO


def template(resolution: int) -> np.ndarray:
    """(3, 2) float64 template points for a model resolution."""
    return TEMPLATE_256 * ratio(resolution)


def crop_size(resolution: int) -> tuple[int, int]:
    """(width, height) of the 3:4 crop: 210×280 at 256, 420×560 at 512."""
    return int(CROP_W * ratio(resolution)), int(CROP_H * ratio(resolution))


def points3(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) landmarks → (3, 2) float32 group means; points rounded to integers first and the means half
    to even, as upstream does with insightface's points."""
    pts = np.round(np.asarray(landmarks, dtype=np.float64))
    return np.round(np.stack([pts[g].mean(axis=0) for g in GROUPS_68])).astype(np.float32)


def similarity(points: np.ndarray, resolution: int, prev_bias=None) -> tuple[np.ndarray, np.ndarray]:
    """(3, 2) frame points → ((2, 3) float32 frame → crop matrix, (2,) float32 smoothing bias for the next frame).

    Umeyama-style fit in float32 torch, as upstream: centre, divide by the unbiased std of all six
    numbers, SVD of the cross-covariance."""
    import torch

    p1 = torch.tensor(points, dtype=torch.float32)
    p2 = torch.tensor(template(resolution), dtype=torch.float32)
    c1, c2 = p1.mean(dim=0), p2.mean(dim=0)
    s1, s2 = torch.std(p1 - c1), torch.std(p2 - c2)
    n1, n2 = (p1 - c1) / s1, (p2 - c2) / s2
    u, _, v = torch.svd(n1.T @ n2)
    rot = v @ u.T
    if torch.det(rot) < 0:
        v[:, -1] = -v[:, -1]
        rot = v @ u.T
    matrix = torch.cat([(s2 / s1) * rot, c2.reshape(2, 1) - (s2 / s1) * (rot @ c1.reshape(2, 1))], dim=1)
    bias = n2[2] - n1[2]
    if prev_bias is not None:
        bias = torch.as_tensor(prev_bias) * SMOOTH_KEEP + bias * (1 - SMOOTH_KEEP)
    matrix[:, 2] += bias
    return matrix.numpy(), bias.numpy()


def track_matrices(landmarks: np.ndarray, resolution: int) -> np.ndarray:
    """(N, 68, 2) landmarks per source frame (NaN: no face) → (N, 2, 3) float32 matrices (NaN: no face).

    The smoothing runs in source-frame order and restarts after a frame without a face."""
    out = np.full((len(landmarks), 2, 3), np.nan, dtype=np.float32)
    bias = None
    for i, marks in enumerate(landmarks):
        if not np.isfinite(marks).all():
            bias = None
            continue
        out[i], bias = similarity(points3(marks), resolution, bias)
    return out


def warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], fill: float = FILL, dtype=np.float32):
    """(H, W, C) image (any dtype) → (h, w, C) `dtype`: bilinear affine warp, out-of-frame pixels `fill`.

    Pixel-centre convention with corners aligned, and the fill blended in at the border by the
    sampled coverage (kornia's warp_affine with padding "fill", which upstream uses)."""
    import torch

    w_out, h_out = size
    src = torch.from_numpy(np.ascontiguousarray(image, dtype=dtype)).permute(2, 0, 1)[None]
    h_in, w_in = image.shape[:2]
    grid = _grid(np.asarray(matrix, dtype=np.float64), (w_in, h_in), (w_out, h_out)).to(src.dtype)
    sample = torch.nn.functional.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    cover = torch.nn.functional.grid_sample(torch.ones_like(src[:, :1]), grid, mode="bilinear",
                                            padding_mode="zeros", align_corners=True)
    return (sample + (1 - cover) * fill)[0].permute(1, 2, 0).numpy()


def _grid(matrix: np.ndarray, src_size, dst_size):
    """The grid_sample grid of the source→destination pixel matrix (2, 3), in align_corners coordinates."""
    import torch

    def norm(w, h):  # pixel → [-1, 1]
        return np.array([[2 / (w - 1), 0, -1], [0, 2 / (h - 1), -1], [0, 0, 1]], dtype=np.float64)

    full = np.vstack([matrix, [0, 0, 1]])
    dst_from_src = norm(*dst_size) @ full @ np.linalg.inv(norm(*src_size))
    src_from_dst = np.linalg.inv(dst_from_src)[:2]
    theta = torch.from_numpy(src_from_dst)[None]
    return torch.nn.functional.affine_grid(theta, [1, 1, dst_size[1], dst_size[0]], align_corners=True)


def crop(frame: np.ndarray, matrix: np.ndarray, resolution: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame → (R, R, 3) uint8 RGB model input: warp to the 3:4 crop (truncated to uint8),
    then OpenCV Lanczos to R×R (stretched)."""
    import cv2

    face = warp(frame, matrix, crop_size(resolution)).astype(np.uint8)
    return cv2.resize(face, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4)
