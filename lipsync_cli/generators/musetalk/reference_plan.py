"""`--reference kmeans`: a few reference frames per clip and which one each frame is conditioned on.

Upstream conditions every frame on itself (`--reference same`): the model then sees the very mouth it
must replace, half of which it is meant to ignore. With kmeans the clip's frames are clustered by lip
and jaw shape (generators/refs/kmeans_references.py, as the refs family does), the frame nearest each
centroid is a reference, and each frame takes the reference whose head pose is closest to its own, preferring a
closed mouth (a closed mouth leaks least of the old speech into the new one).
"""

from __future__ import annotations

import numpy as np

from lipsync_cli.generators.refs.kmeans_references import select_references

N_REFS = 5  # K references per clip
EYES_NOSE = np.arange(27, 48)  # iBUG-68 nose (27-35) and eyes (36-47): rigid points that follow head pose
UPPER_INNER_LIP, LOWER_INNER_LIP = [61, 62, 63], [67, 66, 65]  # paired top/bottom inner-lip points
OPENNESS_WEIGHT = 1.0  # how much a wider-open reference mouth costs against pose distance (both box fractions)


def _normalised(landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    origin = boxes[:, None, :2]
    extent = np.maximum(boxes[:, None, 2:] - boxes[:, None, :2], 1e-6)
    return (landmarks.astype(np.float64) - origin) / extent


def pose_features(landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, 68, 2), (N, 4) → (N, 42) float64: eyes and nose in box fractions (yaw, pitch, roll, not mouth)."""
    return _normalised(landmarks, boxes)[:, EYES_NOSE].reshape(len(landmarks), -1)


def mouth_openness(landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N,) float64: mean inner-lip gap as a fraction of the box height (0 = closed)."""
    pts = _normalised(landmarks, boxes)
    return np.clip(pts[:, LOWER_INNER_LIP, 1] - pts[:, UPPER_INNER_LIP, 1], 0, None).mean(axis=1)


def reference_plan(landmarks: np.ndarray, boxes: np.ndarray, k: int = N_REFS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """landmarks (N, 68, 2), boxes (N, 4) frame pixels (NaN rows: no face) → (picks (R,) int64 distinct
    frame indices, R ≤ k; assign (N,) int64 index into picks for every frame)."""
    picks = np.array(list(dict.fromkeys(int(i) for i in select_references(landmarks, boxes, k=k, seed=seed))))
    assign = np.zeros(len(boxes), dtype=np.int64)
    if len(picks) == 1 or not np.isfinite(landmarks[picks]).all():
        return picks, assign
    pose = pose_features(landmarks, boxes)
    dist = np.sqrt(((pose[:, None, :] - pose[None, picks, :]) ** 2).mean(axis=2))  # (N, R) RMS box fractions
    cost = dist + OPENNESS_WEIGHT * mouth_openness(landmarks, boxes)[picks][None, :]
    known = np.isfinite(cost).all(axis=1)
    assign[known] = np.argmin(cost[known], axis=1)
    return picks, assign
