"""Reconstruction metrics of a generated video against its ground truth: PSNR, SSIM, LMD, sharpness.

Only meaningful when the reference holds the same frames (a dub of a clip against that clip's original):
both are compared frame by frame, inside the reference's face box and mouth box.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from lipsync_cli.evaluation import metrics
from lipsync_cli.errors import InputError


def reconstruction(frames: Iterator[np.ndarray], ref_frames: Iterator[np.ndarray], reference: str, track,
                   ref_track) -> dict:
    """Generated frames against ground-truth frames (both (H, W, 3) uint8 RGB at the tracks' rate), inside the
    reference's face box and mouth box (its mouth landmarks, or the lower half of the box without them).
    reference: the ground truth's name, for the report and the error message.

    PSNR is computed from the mean per-frame MSE (inf only when every frame matches exactly);
    SSIM and sharpness are means over frames; LMD is in units of the reference face box.
    """
    sums = {k: [] for k in ("mse_mouth", "mse_face", "ssim_mouth", "ssim_face", "sharp", "sharp_ref")}
    for i, (gen, ref) in enumerate(zip(frames, ref_frames)):
        if i >= len(ref_track.boxes) or not np.isfinite(ref_track.boxes[i]).all():
            continue
        for key, value in _frame_metrics(gen, ref, ref_track.boxes[i], ref_track.landmarks[i]).items():
            sums[key].append(value)
    if not sums["mse_face"]:
        raise InputError(f"no face found in {reference}; reconstruction metrics need the reference's face")
    mean = {k: float(np.mean(v)) for k, v in sums.items()}
    n = min(len(track.landmarks), len(ref_track.landmarks))
    boxes = ref_track.boxes[:n]
    gen_lm = np.stack([metrics.normalise_landmarks(track.landmarks[i], boxes[i]) for i in range(n)])
    ref_lm = np.stack([metrics.normalise_landmarks(ref_track.landmarks[i], boxes[i]) for i in range(n)])
    return {
        "reference": reference, "frames": len(sums["mse_face"]),
        "psnr_mouth": metrics.psnr_from_mse(mean["mse_mouth"]), "psnr_face": metrics.psnr_from_mse(mean["mse_face"]),
        "ssim_mouth": mean["ssim_mouth"], "ssim_face": mean["ssim_face"],
        "m_lmd": metrics.landmark_distance(gen_lm, ref_lm, metrics.MOUTH),
        "f_lmd": metrics.landmark_distance(gen_lm, ref_lm, metrics.FACE),
        "sharpness_mouth": mean["sharp"], "sharpness_mouth_reference": mean["sharp_ref"],
    }


def _frame_metrics(gen: np.ndarray, ref: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> dict:
    """One frame's metrics inside the face box (images cropped to it) and the mouth box."""
    face = metrics.box_mask(box, ref.shape[:2])
    ys, xs = np.nonzero(face.any(axis=1))[0], np.nonzero(face.any(axis=0))[0]
    sl = (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))  # SSIM maps only over the face region
    gen_face, ref_face = gen[sl], ref[sl]
    if np.isfinite(landmarks).all():
        mouth_box = metrics.mouth_box(landmarks)
    else:
        mouth_box = np.array([box[0], (box[1] + box[3]) / 2, box[2], box[3]], np.float32)
    mouth = metrics.box_mask(mouth_box, ref.shape[:2])[sl]
    smap = metrics.ssim_map(gen_face, ref_face)
    return {
        "mse_mouth": metrics.mse(gen_face, ref_face, mouth), "mse_face": metrics.mse(gen_face, ref_face),
        "ssim_mouth": float(smap[mouth].mean()), "ssim_face": float(smap.mean()),
        "sharp": metrics.sharpness(gen_face, mouth), "sharp_ref": metrics.sharpness(ref_face, mouth),
    }
