"""OUR silence measure (not a published metric): does the mouth stay closed while nobody speaks?

Dubbing models often keep the lips moving through pauses. We find the silent stretches of the audio
(energy-based: librosa.effects.split, at least MIN_SILENT_FRAMES long, so the gaps between words do not
count) and compare the mouth opening there with the opening while speaking. The opening is the inner-lip
gap (68-point landmarks 62-66) divided by the jaw width (points 0-16), so it does not depend on face size
or on how far the jaw drops. A good dub has silent_opening well below speaking_opening (ratio << 1).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

SAMPLE_RATE = 16000  # Hz of the float32 audio evaluate loads
TOP_DB = 35  # a stretch is silent when its energy is this far below the loudest part of the track
MIN_SILENT_FRAMES = 5  # 0.2 s at 25 fps: shorter pauses are the gaps between words, not silence
UPPER_INNER_LIP, LOWER_INNER_LIP = 62, 66  # centres of the inner lip contour (iBUG 68-point layout)
JAW_LEFT, JAW_RIGHT = 0, 16


def silent_frames(wav: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """(n_frames,) bool: video frames whose audio (wav (M,) float32 at 16 kHz) lies in a silent stretch."""
    import librosa

    voiced = np.zeros(len(wav), bool)
    for start, stop in librosa.effects.split(np.asarray(wav, np.float32), top_db=TOP_DB):
        voiced[start:stop] = True
    centres = ((np.arange(n_frames) + 0.5) * SAMPLE_RATE / fps).astype(np.int64)
    inside = centres < len(wav)
    silent = np.zeros(n_frames, bool)
    silent[inside] = ~voiced[centres[inside]]  # frames past the audio's end are neither
    return _drop_short_runs(silent, MIN_SILENT_FRAMES)


def _drop_short_runs(mask: np.ndarray, min_len: int) -> np.ndarray:
    out = mask.copy()
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2]):
        if stop - start < min_len:
            out[start:stop] = False
    return out


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """(N, 68, 2) landmarks -> (N,) float64 inner-lip gap / jaw width; NaN without landmarks."""
    lm = np.asarray(landmarks, np.float64)
    gap = np.linalg.norm(lm[:, LOWER_INNER_LIP] - lm[:, UPPER_INNER_LIP], axis=1)
    width = np.linalg.norm(lm[:, JAW_RIGHT] - lm[:, JAW_LEFT], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return gap / width


def silence_report(wav: np.ndarray, landmarks: np.ndarray, fps: float) -> dict:
    """Mean mouth opening in silent vs speaking frames (frames with landmarks only) and their ratio."""
    silent = silent_frames(wav, len(landmarks), fps)
    speaking = ~silent & (np.arange(len(landmarks)) < len(wav) * fps / SAMPLE_RATE)
    opening = mouth_opening(landmarks)
    known = np.isfinite(opening)
    silent_open, speaking_open = _mean(opening[silent & known]), _mean(opening[speaking & known])
    ratio = None if silent_open is None or not speaking_open else silent_open / speaking_open
    return {"metric": "ours (not a published metric)", "silent_seconds": float(silent.sum() / fps),
            "speaking_seconds": float(speaking.sum() / fps), "mouth_opening_silent": silent_open,
            "mouth_opening_speaking": speaking_open, "silent_to_speaking_ratio": ratio}


def _mean(values: np.ndarray) -> Optional[float]:
    return float(values.mean()) if len(values) else None
