"""Frame <-> mel-window index maths, the one place training and dubbing both take it from.

A video frame with timestamp t (seconds) is paired with the MEL_WINDOW mel frames that start at
mel_index(t). Indexing by timestamp (not by an assumed 25 fps) keeps any frame rate in sync.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from lipsync_cli.audio import MEL_FRAMES_PER_SECOND

MEL_WINDOW = 16  # mel frames per video frame's audio window (0.2 s, the networks' (80, 16) input)
EXPERT_FRAMES = 5  # consecutive video frames the lip-sync expert sees at once (0.2 s at 25 fps)


def mel_index(t_seconds: float) -> int:
    """First mel frame of the window for a video frame shown at t_seconds (Wav2Lip truncates)."""
    # a float product can land a hair below an exact integer (e.g. 80 * 0.29 = 23.1999...), so
    # nudge by a tiny epsilon before truncating: 1e-9 frames is far below any real timestamp error
    return int(np.floor(MEL_FRAMES_PER_SECOND * float(t_seconds) + 1e-9))


def frame_times(n: int, fps: float | Fraction) -> np.ndarray:
    """(n,) float64 timestamps in seconds of frames 0..n-1 of a constant-rate video."""
    return np.arange(n, dtype=np.float64) / float(fps)


def window_start(frame_idx: int, fps: float | Fraction) -> int:
    """Mel index where the window of frame frame_idx starts; for the expert's 5-frame window
    this is the window of its first frame (the 16 mel frames cover EXPERT_FRAMES video frames)."""
    # rational maths so 30000/1001 fps never drifts over long videos
    return mel_index(Fraction(frame_idx) / Fraction(fps))


def window_starts(timestamps: np.ndarray) -> np.ndarray:
    """(N,) timestamps in seconds -> (N,) int64 window start indices (vectorised mel_index)."""
    t = np.asarray(timestamps, dtype=np.float64)
    return np.floor(MEL_FRAMES_PER_SECOND * t + 1e-9).astype(np.int64)


def mel_windows(mel: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """mel (80, T) float32, timestamps (N,) seconds -> (N, 80, MEL_WINDOW) float32.

    Windows running past the end take the last MEL_WINDOW frames (as Wav2Lip's inference does),
    so trailing video frames keep moving with the final syllable instead of freezing on padding;
    audio shorter than one window is edge-padded first.
    """
    mel = np.asarray(mel, dtype=np.float32)
    if mel.shape[1] < MEL_WINDOW:
        mel = np.pad(mel, ((0, 0), (0, MEL_WINDOW - mel.shape[1])), mode="edge")
    starts = np.clip(window_starts(timestamps), 0, mel.shape[1] - MEL_WINDOW)
    # (N, 16) column indices gathered at once: no Python loop over frames
    cols = starts[:, None] + np.arange(MEL_WINDOW)[None, :]
    return np.ascontiguousarray(mel[:, cols].transpose(1, 0, 2))


class FrameWindows:
    """Every frame's audio input, made a chunk of frames at a time: `windows[part]` (a slice of frames) is
    make(timestamps[part]). Holding all of them at once grew with the video (Wav2Lip: 5 KB a frame)."""

    def __init__(self, make, timestamps: np.ndarray):
        self.make, self.timestamps = make, np.asarray(timestamps)

    def __len__(self) -> int:
        return len(self.timestamps)

    def __getitem__(self, part: slice) -> np.ndarray:
        return self.make(self.timestamps[part])


class RecentParts:
    """Pieces of a long signal's features made on demand (`make(k)` for part k) keeping only those the last
    request reached: `parts.reach(ks)` → {k: part} for the wanted ks, the rest dropped before any is made (one part,
    or two across a boundary, whatever the signal's length). Used per 10 s or 30 s segment of audio features."""

    def __init__(self, make):
        self.make, self.kept = make, {}

    def reach(self, wanted) -> dict:
        self.kept = {k: self.kept.get(k) for k in wanted}
        for k, part in self.kept.items():
            if part is None:
                self.kept[k] = self.make(k)
        return self.kept
