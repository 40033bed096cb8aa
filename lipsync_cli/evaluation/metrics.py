"""Evaluation metrics as pure functions on arrays: image quality, landmarks, sharpness, sync offsets.

Images are RGB uint8 (H, W, 3) unless stated; masks are bool or float (H, W) where nonzero pixels
count. Nothing here knows about files, models or faces: evaluation.expert_sync and .reconstruction feed these.
Only numpy and cv2 (both runtime dependencies) are used, so no scikit-image at runtime.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from lipsync_cli.faces.base import MOUTH, N_LANDMARKS  # MOUTH: the 20 lip points of the 68-point layout
FACE = slice(0, N_LANDMARKS)  # all 68 points
SSIM_SIGMA = 1.5  # Gaussian window of Wang et al. 2004, as in scikit-image's gaussian_weights=True
OFFSET_ROWS = 64  # windows per block in offset_distances: 2 x 8 MB of 512-d pairs, whatever the video's length
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)  # scikit-image truncates its window at 3.5 sigma: 11x11
SSIM_K1, SSIM_K2 = 0.01, 0.03  # stabilising constants of the SSIM paper


def _mask_or_all(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """A bool (H, W) mask; None means every pixel."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(mask) > 0
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {shape}")
    return mask


def mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error over the masked pixels (all channels); NaN for an empty mask."""
    sel = _mask_or_all(mask, a.shape[:2])
    if not sel.any():
        return math.nan
    diff = a.astype(np.float64)[sel] - b.astype(np.float64)[sel]
    return float(np.mean(diff**2))


def psnr_from_mse(err: float, data_range: float = 255.0) -> float:
    """PSNR in dB of a mean squared error. Zero error (identical images) is math.inf: we do not cap
    it at an arbitrary number; reports print it as "inf"."""
    if math.isnan(err):
        return math.nan
    return math.inf if err == 0.0 else 10.0 * math.log10(data_range**2 / err)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over the masked pixels; math.inf for identical images."""
    return psnr_from_mse(mse(a, b, mask), data_range)


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    """Per-pixel SSIM (H, W) float64, averaged over colour channels; 1 where the images agree.

    Gaussian-weighted local statistics (sigma 1.5, 11x11, population covariance, reflected borders):
    the same recipe as skimage.metrics.structural_similarity(gaussian_weights=True,
    use_sample_covariance=False), which the tests check against.
    """
    import cv2

    x = a.astype(np.float64).reshape(a.shape[0], a.shape[1], -1)
    y = b.astype(np.float64).reshape(b.shape[0], b.shape[1], -1)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    size = 2 * SSIM_RADIUS + 1

    def blur(img: np.ndarray) -> np.ndarray:
        # BORDER_REFLECT (abc|cba) is scipy.ndimage's "reflect", scikit-image's default
        out = cv2.GaussianBlur(img, (size, size), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)
        return out.reshape(img.shape)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(axis=2)


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, data_range: float = 255.0) -> float:
    """Mean SSIM over the masked pixels; without a mask, over the image less a window-radius border
    (scikit-image's convention, where the window would hang over the edge)."""
    smap = ssim_map(a, b, data_range)
    if mask is None:
        r = SSIM_RADIUS
        inner = smap[r:-r, r:-r]
        return float(inner.mean() if inner.size else smap.mean())
    sel = _mask_or_all(mask, smap.shape)
    return float(smap[sel].mean()) if sel.any() else math.nan


def sharpness(img: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Variance of the Laplacian of the grey image over the masked pixels (higher = sharper).

    The Laplacian responds to edges and texture; a blurry mouth (a known generator failure) has
    little of either, so its variance drops.
    """
    import cv2

    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    lap = cv2.Laplacian(grey.astype(np.float64), cv2.CV_64F, ksize=1)
    sel = _mask_or_all(mask, grey.shape)
    return float(lap[sel].var()) if sel.any() else math.nan


def box_mask(box: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool (H, W), True inside box (x1, y1, x2, y2 in pixels, clipped to the image)."""
    h, w = shape
    x1, y1 = max(int(math.floor(box[0])), 0), max(int(math.floor(box[1])), 0)
    x2, y2 = min(int(math.ceil(box[2])), w), min(int(math.ceil(box[3])), h)
    mask = np.zeros(shape, dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def mouth_box(landmarks: np.ndarray, margin: float = 0.25) -> np.ndarray:
    """(4,) x1, y1, x2, y2: the mouth points' bounding box grown by `margin` of its width on each
    side, so lips, teeth and the skin the generator redraws around them are all inside."""
    pts = landmarks[MOUTH]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = margin * (hi[0] - lo[0])
    return np.array([lo[0] - pad, lo[1] - pad, hi[0] + pad, hi[1] + pad], dtype=np.float32)


def normalise_landmarks(landmarks: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(68, 2) pixel landmarks → coordinates in units of the face box (0..1 across the box).

    Both videos' landmarks are normalised by the SAME (reference) box, so LMD reads as a fraction
    of the face size and is comparable across resolutions.
    """
    origin = np.asarray(box[:2], dtype=np.float64)
    size = np.asarray([box[2] - box[0], box[3] - box[1]], dtype=np.float64)
    return (np.asarray(landmarks, dtype=np.float64) - origin) / size


def landmark_distance(a: np.ndarray, b: np.ndarray, points=FACE) -> float:
    """Mean Euclidean distance between corresponding landmarks (…, 68, 2) over the chosen points
    (MOUTH → M-LMD, FACE → F-LMD); NaN rows (no face found) are skipped."""
    d = np.linalg.norm(np.asarray(a)[..., points, :] - np.asarray(b)[..., points, :], axis=-1)
    return float(np.nanmean(d)) if np.isfinite(d).any() else math.nan


def offset_distances(video_emb: np.ndarray, audio_emb: np.ndarray, max_offset: int) -> np.ndarray:
    """Distance of every video window to the audio window `k` frames later, k = -max..+max.

    video_emb (N, D): embedding of the 5-frame window starting at frame i (NaN rows: no face).
    audio_emb (M, D): embedding of the mel window at frame j's time.
    Returns (N, 2*max_offset+1) float64: [i, k + max_offset] = |v_i - a_(i+k)|, NaN where i+k is
    outside the audio (SyncNet zero-pads there instead, which biases the edge offsets).
    """
    n, m = len(video_emb), len(audio_emb)
    offsets = np.arange(-max_offset, max_offset + 1)
    out = np.empty((n, len(offsets)), np.float64)
    # OFFSET_ROWS windows at a time: all at once held two (N, K, D) arrays, 254 KB a window for 512-d embeddings
    for first in range(0, n, OFFSET_ROWS):
        j = np.arange(first, min(first + OFFSET_ROWS, n))[:, None] + offsets[None, :]  # audio index per window, offset
        valid = (j >= 0) & (j < m)
        paired = audio_emb[np.clip(j, 0, max(m - 1, 0))]  # (rows, K, D)
        dist = np.linalg.norm(video_emb[first:first + len(j), None, :] - paired, axis=-1)
        out[first:first + len(j)] = np.where(valid, dist, np.nan)
    return out


def sync_summary(dist: np.ndarray, max_offset: int) -> dict:
    """SyncNet's evaluation rule on an (N, K) offset_distances block: average over windows for each
    offset, take the minimum over offsets; confidence = median over offsets − minimum.

    Returns distance, confidence, offset_frames (positive: the audio lags the picture) and windows.
    """
    rows = np.isfinite(dist).any(axis=1)
    if not rows.any():
        return {"distance": math.nan, "confidence": math.nan, "offset_frames": None, "windows": 0}
    with warnings.catch_warnings():  # an offset with no valid pair is NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(dist[rows], axis=0)  # (K,) mean distance per offset
    if not np.isfinite(mean).any():
        return {"distance": math.nan, "confidence": math.nan, "offset_frames": None, "windows": 0}
    best = int(np.nanargmin(mean))
    return {
        "distance": float(mean[best]),
        "confidence": float(np.nanmedian(mean) - mean[best]),
        "offset_frames": best - max_offset,
        "windows": int(rows.sum()),
    }


def expert_loss(video_emb: np.ndarray, audio_emb: np.ndarray, eps: float = 1e-7) -> float:
    """The expert's training loss on in-sync pairs: mean −log(cosine similarity), i.e. binary
    cross-entropy against "in sync" (Wav2Lip's sync loss). Rows are paired index by index;
    NaN rows are skipped. Embeddings are L2-normalised, so the dot product is the cosine."""
    n = min(len(video_emb), len(audio_emb))
    cos = np.sum(video_emb[:n] * audio_emb[:n], axis=1)
    cos = cos[np.isfinite(cos)]
    return float(np.mean(-np.log(np.clip(cos, eps, 1.0)))) if cos.size else math.nan
