"""Choosing the K reference frames of a clip for the reference-attention generator (issue 5).

Frames are clustered by the shape of the lips and chin (landmarks normalised to the face box) with KMeans;
the frame nearest each centroid becomes a reference, so the K references span the mouth shapes the person
makes in the clip (open, closed, teeth showing...) instead of one arbitrary frame. The same K references
serve every frame of the clip, which is what lets the generator encode them once per clip.

What the generator sees of a reference is only its mouth half: `models.refs.mouth_region` zeroes rows
[0, S/2) inside `RefsGenerator.encode_references`, so training and dubbing cannot disagree about it.
Training adds two things here: references never come from the target's own 5-frame window (else the
model copies the answer), and they are Gaussian-blurred with a random sigma (so it learns appearance, not
pixels; sigma can be 0, so sharp references at dub time stay in distribution).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from lipsync_cli.config import RefsConfig
from lipsync_cli.faces.base import CHIN, MOUTH

N_REFS = RefsConfig.n_refs  # K: references per clip (its one default lives in config)
LIP_CHIN = np.array(CHIN + MOUTH)  # what the clusters are made of: the lips and the chin below them


def lip_features(landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """landmarks (N, 68, 2) and boxes (N, 4) x1,y1,x2,y2 in the same pixels → (N, 2*29) float32.

    Coordinates are normalised to the face box so that head motion and zoom do not form clusters;
    frames without landmarks (NaN) give NaN rows.
    """
    pts = landmarks[:, LIP_CHIN].astype(np.float64)
    origin = boxes[:, None, :2]
    extent = np.maximum(boxes[:, None, 2:] - boxes[:, None, :2], 1e-6)
    return ((pts - origin) / extent).reshape(len(pts), -1).astype(np.float32)


def pixel_features(crops: np.ndarray) -> np.ndarray:
    """crops (N, S, S, 3) uint8 RGB → (N, 8*16) float32: the lower half in grey, downscaled.

    The fallback when a clip has no landmarks (synthetic data, a fixed --box): at 8x16 pixels head jitter
    and texture blur away and what is left is mostly how open the mouth is.
    """
    import cv2

    s = crops.shape[1]
    grey = crops[:, s // 2:].astype(np.float32).mean(axis=3) / 255
    return np.stack([cv2.resize(g, (16, 8), interpolation=cv2.INTER_AREA) for g in grey]).reshape(len(crops), -1)


def clip_features(landmarks: Optional[np.ndarray], boxes: np.ndarray, crops: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """Lip+chin features when at least half the frames have landmarks, else pixel features of the crops
    (None when neither is available)."""
    if landmarks is not None and np.isfinite(landmarks).all(axis=(1, 2)).mean() >= 0.5:
        return lip_features(landmarks, boxes)
    return pixel_features(crops) if crops is not None else None


def kmeans_references(features: np.ndarray, k: int = N_REFS, seed: int = 0) -> np.ndarray:
    """Indices (≤ k,) of distinct frames, the one nearest each KMeans centroid, in centroid order.

    features: (N, F) with NaN rows for frames to ignore. Fewer distinct valid frames than k gives that many
    clusters (and indices); with no valid frame at all, frame 0 is returned (the caller still has a face).
    """
    order = centroid_orders(features, k, seed)
    if not order:
        return np.zeros(1, dtype=np.int64)
    chosen: list[int] = []
    for ranked in order:  # two centroids can share a nearest frame: take the next nearest unused one
        chosen.append(next(int(i) for i in ranked if i not in chosen))
    return np.array(chosen, dtype=np.int64)


def centroid_orders(features: np.ndarray, k: int = N_REFS, seed: int = 0) -> list[np.ndarray]:
    """For each KMeans centroid, the valid frame indices sorted nearest first ([] without valid frames)."""
    from sklearn.cluster import KMeans

    valid = np.flatnonzero(np.isfinite(features).all(axis=1))
    if len(valid) == 0:
        return []
    x = features[valid]
    n_clusters = min(k, len(np.unique(x.round(4), axis=0)))
    km = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit(x)
    dist = ((x[None, :, :] - km.cluster_centers_[:, None, :]) ** 2).sum(-1)  # (clusters, valid frames)
    return [valid[np.argsort(row, kind="stable")] for row in dist]


def select_references(landmarks: Optional[np.ndarray], boxes: np.ndarray, k: int = N_REFS, mode: str = "kmeans",
                      seed: int = 0, crops: Optional[np.ndarray] = None) -> np.ndarray:
    """Dubbing: indices (k,) of the clip's reference frames (repeats when the clip has fewer distinct frames).

    landmarks (N, 68, 2) or None, boxes (N, 4) in the same pixels (NaN rows where no face); crops
    (N, S, S, 3) uint8, optional, are clustered instead when landmarks are missing. A still image (N = 1)
    gives one index: its only frame. mode "random" picks one random frame with a face (ablation).
    """
    n = len(boxes)
    has_face = np.flatnonzero(np.isfinite(boxes).all(axis=1))
    if n == 1 or len(has_face) == 0:
        return np.zeros(1, dtype=np.int64)
    if mode == "random":
        return np.array([np.random.default_rng(seed).choice(has_face)], dtype=np.int64)
    if mode != "kmeans":
        raise ValueError(f"reference mode must be kmeans or random, got {mode!r}")
    features = clip_features(landmarks, boxes, crops)
    if features is None:  # nothing to cluster on: spread the references over the clip instead
        return has_face[np.linspace(0, len(has_face) - 1, k).round().astype(np.int64)]
    features[~np.isfinite(boxes).all(axis=1)] = np.nan  # frames without a face never become references
    picked = kmeans_references(features, k, seed)
    return np.resize(picked, k)  # cycles through the distinct picks to fill k


class ClipReferences:
    """Training: a clip's KMeans clusters computed once, then K references per sample, avoiding the
    target's own window. landmarks (N, 68, 2) in crop pixels, crops (N, S, S, 3) uint8 RGB."""

    def __init__(self, landmarks: Optional[np.ndarray], crops: np.ndarray, k: int = N_REFS, seed: int = 0):
        s = crops.shape[1]
        boxes = np.tile(np.array([0, 0, s, s], dtype=np.float32), (len(crops), 1))
        self.k = k
        self.n = len(crops)
        self.orders = centroid_orders(clip_features(landmarks, boxes, crops), k, seed)

    def pick(self, start: int, window: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """(indices (≤ k,) of distinct frames outside [start, start + window), how many more to fill).

        The caller fills the missing ones with affine-augmented copies (`augmented_copies`)."""
        chosen: list[int] = []
        for ranked in self.orders:
            free = [int(i) for i in ranked if not start <= i < start + window and i not in chosen]
            if free:
                chosen.append(free[0])
        if not chosen:  # clip no longer than the window: the least bad choice is a frame of the window
            chosen = [int(rng.integers(self.n))]
        return np.array(chosen, dtype=np.int64), self.k - len(chosen)


def affine_augment(crop: np.ndarray, rng: np.random.Generator, max_rot: float = 8.0, max_scale: float = 0.06,
                   max_shift: float = 0.04) -> np.ndarray:
    """A randomly rotated/scaled/shifted copy of a (S, S, 3) uint8 RGB crop (border replicated)."""
    import cv2

    s = crop.shape[0]
    m = cv2.getRotationMatrix2D((s / 2, s / 2), rng.uniform(-max_rot, max_rot), 1 + rng.uniform(-max_scale, max_scale))
    m[:, 2] += rng.uniform(-max_shift, max_shift, size=2) * s
    return cv2.warpAffine(crop, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def augmented_copies(crops: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n affine-augmented copies of randomly chosen crops: (n, S, S, 3) uint8 (fills short clips to K)."""
    idx = rng.integers(len(crops), size=n)
    return np.stack([affine_augment(crops[i], rng) for i in idx]) if n else crops[:0]


def blur_references(crops: np.ndarray, rng: np.random.Generator, max_sigma: float = 1.5) -> np.ndarray:
    """Each (S, S, 3) uint8 crop Gaussian-blurred with its own sigma drawn from [0, max_sigma] (0 = as is)."""
    import cv2

    out = crops.copy()
    for i, sigma in enumerate(rng.uniform(0, max_sigma, size=len(crops))):
        if sigma > 0.3:  # below this the 3-tap kernel is the identity anyway
            out[i] = cv2.GaussianBlur(crops[i], (0, 0), sigma)
    return out
