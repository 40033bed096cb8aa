"""Sync scored by OUR lip-sync expert: face crops and speech → embeddings → distance per offset → figures.

Sync follows SyncNet's evaluation recipe but with OUR expert, so the numbers are named
expert_sync_distance / expert_sync_confidence, never LSE-D / LSE-C (papers compute those with the
original SyncNet, whose scale differs): the face track gives a lower-half crop per frame, the expert
embeds every 5-frame window and the mel window at each offset of −15…+15 frames, the distance is
averaged over windows per offset, and the report gives the smallest mean distance, the confidence
(median − min over offsets) and the best offset, over the whole video and per second.

Offsets are in frames of EXPERT_FPS video with upstream syncnet_python's sign, as LSE reports them: positive
means the audio is early (it leads the picture).
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from lipsync_cli import timing
from lipsync_cli.audio import log_mel
from lipsync_cli.config import PreprocessConfig
from lipsync_cli.device import release_freed_memory
from lipsync_cli.errors import InputError
from lipsync_cli.evaluation import metrics
from lipsync_cli.faces.crop import crop
from lipsync_cli.timing import EXPERT_FRAMES as WINDOW

# experts are trained on clips resampled to the dataset rate (5 frames ↔ 16 mel frames = 0.2 s at 25 fps),
# so videos are decoded at that rate too, whatever their own
EXPERT_FPS = PreprocessConfig.fps
MAX_OFFSET = 15  # offsets searched: −15…+15 frames (±0.6 s), SyncNet's vshift
BATCH = 64  # windows per expert forward pass


def lower_halves(frames: Iterable[np.ndarray], track, size: int) -> Iterator[np.ndarray]:
    """The lower half of each frame's face crop, (size/2, size, 3) uint8 RGB (what the expert sees), one per
    track row as the frames arrive; zeros where there is no face or the video ends early (those windows are
    dropped later)."""
    blank = np.zeros((size // 2, size, 3), np.uint8)
    seen = 0
    for i, frame in zip(range(len(track.boxes)), frames):
        seen += 1
        yield crop(frame, track.boxes[i], size)[size // 2:] if np.isfinite(track.boxes[i]).all() else blank
    for _ in range(seen, len(track.boxes)):
        yield blank


# ---- the expert's embeddings ---------------------------------------------------------------------


def embed(net, halves: Iterable[np.ndarray], has_face: np.ndarray, wav: np.ndarray,
          device: str) -> tuple[np.ndarray, np.ndarray]:
    """(video_emb (N-4, D), audio_emb (M, D)) float64, L2-normalised.

    halves: the N lower halves (S/2, S, 3) uint8 RGB in order, an array or a stream (lower_halves), read once: a
    batch of windows is embedded as soon as its frames are in, so only BATCH + 4 are ever held (all of them, with
    their 5-frame windows, took ~80 KB a frame); has_face (N,) bool.
    video_emb[i] embeds frames i..i+4 (NaN when one of them has no face); audio_emb[j] embeds the mel window
    starting at frame j's time, for every frame time whose full window lies inside the audio, up to MAX_OFFSET
    frames past the video's end.
    """
    n_win = len(has_face) - WINDOW + 1
    if n_win < 1:
        raise InputError(f"the video has {len(has_face)} frames at {EXPERT_FPS} fps; evaluate needs at least "
                         f"{WINDOW}")
    mel = log_mel(wav)  # (80, T) float32
    n_audio = _full_mel_windows(mel.shape[1], n_win + MAX_OFFSET)
    if n_audio < 1:
        raise InputError(f"the audio is shorter than one {WINDOW}-frame window; pass longer speech")
    # (M, 80, 16) float32, made a batch at a time
    mels = timing.FrameWindows(lambda times: timing.mel_windows(mel, times), timing.frame_times(n_audio, EXPERT_FPS))
    video_emb, audio_emb = _run_expert(net, _window_batches(halves, n_win), n_win, mels, device)
    complete = np.array([has_face[i:i + WINDOW].all() for i in range(n_win)])
    video_emb[~complete] = np.nan
    return video_emb, audio_emb


def _full_mel_windows(n_mel: int, limit: int) -> int:
    """How many frame times (0, 1/fps, …) have a whole mel window inside n_mel mel frames (≤ limit)."""
    n = 0
    while n < limit and timing.mel_index(n / EXPERT_FPS) + timing.MEL_WINDOW <= n_mel:
        n += 1
    return n


def _window_batches(halves: Iterable[np.ndarray], n_win: int) -> Iterator[np.ndarray]:
    """The n_win 5-frame windows, BATCH at a time (the last one shorter), each (B, 3*WINDOW, H, W): frames i..i+4
    on channels, frame-major then RGB, as the expert was trained; holds BATCH + 4 frames at most."""
    held, start = [], 0  # held: frames start..
    for half in halves:
        held.append(half)
        if len(held) == BATCH + WINDOW - 1 and start + BATCH <= n_win:
            yield _stack_windows(np.stack(held), BATCH)
            held, start = held[BATCH:], start + BATCH
    if start < n_win:
        yield _stack_windows(np.stack(held), n_win - start)


def _stack_windows(crops: np.ndarray, n_win: int) -> np.ndarray:
    """(n_win + 4, H, W, 3) → (n_win, 3*WINDOW, H, W): frames i..i+4 on channels, as the expert was trained."""
    idx = np.arange(n_win)[:, None] + np.arange(WINDOW)[None, :]
    win = crops[idx]  # (n_win, 5, H, W, 3)
    return win.transpose(0, 1, 4, 2, 3).reshape(n_win, 3 * WINDOW, crops.shape[1], crops.shape[2])


def _run_expert(net, windows: Iterator[np.ndarray], n: int, mels, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Embed the n face windows (BATCH at a time, from `windows`) and the mel windows in batches. The expert's
    forward takes both at once, so the shorter side of a batch is padded with zeros and the padding's embeddings
    are discarded."""
    import torch

    m = len(mels)
    video, audio = None, None  # (n, D) and (m, D) float64, filled batch by batch (no list of batches to join)
    faces = mel = None  # set by the first batch, which both sides always have
    with torch.inference_mode():
        for start in range(0, max(n, m), BATCH):
            stop = min(start + BATCH, max(n, m))
            # past the end of one side: none of its rows (an empty slice of its first batch, which always exists)
            faces = _padded(next(windows) if start < n else faces[:0], stop - start)
            mel = _padded(mels[start:min(stop, m)] if start < m else mel[:0], stop - start)
            face_t = torch.from_numpy(faces).to(device).float() / 255.0  # (B, 15, S/2, S) in [0, 1], RGB
            mel_t = torch.from_numpy(mel).to(device).float().unsqueeze(1)  # (B, 1, 80, 16)
            a, v = net(mel_t, face_t)
            if video is None:
                video, audio = np.empty((n, v.shape[1])), np.empty((m, a.shape[1]))
            video[start:min(stop, n)] = v[: max(0, min(stop, n) - start)].double().cpu().numpy()
            audio[start:min(stop, m)] = a[: max(0, min(stop, m) - start)].double().cpu().numpy()
            release_freed_memory()  # else the batches' activations fragment the heap and RSS creeps up
    return video, audio


def _padded(x: np.ndarray, rows: int) -> np.ndarray:
    if len(x) == rows:
        return x
    pad = np.zeros((rows - len(x),) + x.shape[1:], x.dtype)
    return np.concatenate([x, pad])


# ---- the figures ---------------------------------------------------------------------------------


def sync_report(video_emb: np.ndarray, audio_emb: np.ndarray) -> dict:
    """Whole-video sync numbers (SyncNet recipe, our expert) plus the expert's loss at offset 0."""
    summary = metrics.sync_summary(metrics.offset_distances(video_emb, audio_emb, MAX_OFFSET), MAX_OFFSET)
    out = _named(summary)
    out["expert_sync_loss"] = metrics.expert_loss(video_emb, audio_emb)
    return out


def per_second(video_emb: np.ndarray, audio_emb: np.ndarray) -> list[dict]:
    """The same numbers for the windows starting in each second of video (where sync breaks)."""
    dist = metrics.offset_distances(video_emb, audio_emb, MAX_OFFSET)
    rows = []
    for start in range(0, len(dist), EXPERT_FPS):
        block = metrics.sync_summary(dist[start:start + EXPERT_FPS], MAX_OFFSET)
        rows.append({"second": start // EXPERT_FPS, **_named(block)})
    return rows


def _named(summary: dict) -> dict:
    """metrics.sync_summary's keys → report keys that cannot be mistaken for the papers' LSE-D/LSE-C."""
    # metrics.sync_summary's offset k pairs video i with audio i + k (positive: audio late); the report uses
    # upstream's sign (positive: audio early), so one report never holds two opposite conventions
    frames = None if summary["offset_frames"] is None else -summary["offset_frames"]
    return {
        "expert_sync_distance": summary["distance"],
        "expert_sync_confidence": summary["confidence"],
        "offset_frames": frames,
        "offset_ms": None if frames is None else round(1000.0 * frames / EXPERT_FPS),
        "windows": summary["windows"],
    }
