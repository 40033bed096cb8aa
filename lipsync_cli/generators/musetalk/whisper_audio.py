"""MuseTalk's audio conditioning: speech → whisper-tiny encoder hidden states → one context per video frame.

Upstream (musetalk/utils/audio_processor.py) casts fps to int and indexes steps by frame number, so a
29.97 fps video gets 29 fps chunks and drifts. Here every output frame takes its window at its own
timestamp (as timing.mel_windows does for Wav2Lip), which equals upstream's chunks exactly at 25 fps,
the rate MuseTalk was trained at, and keeps NTSC and variable-rate clips in sync.
"""

from __future__ import annotations

import numpy as np

from lipsync_cli.timing import RecentParts

SAMPLE_RATE = 16_000  # Hz, whisper's input rate
SEGMENT_SECONDS = 30  # whisper encodes 30 s segments
SEGMENT_SAMPLES = SAMPLE_RATE * SEGMENT_SECONDS
STEPS_PER_SECOND = 50  # encoder output rate: 1500 steps per 30 s segment (20 ms each)
SEGMENT_STEPS = STEPS_PER_SECOND * SEGMENT_SECONDS  # 1500
TRAIN_FPS = 25  # the video rate MuseTalk was trained at: its window is defined in frames of 1/25 s
PAD_FRAMES_LEFT = PAD_FRAMES_RIGHT = 2  # upstream audio_padding_length_left / _right
STEPS_PER_TRAIN_FRAME = STEPS_PER_SECOND // TRAIN_FPS  # 2
LEAD_STEPS = STEPS_PER_TRAIN_FRAME * PAD_FRAMES_LEFT  # 4: the window starts 80 ms before the frame
WINDOW_STEPS = STEPS_PER_TRAIN_FRAME * (PAD_FRAMES_LEFT + 1 + PAD_FRAMES_RIGHT)  # 10 steps = 200 ms


def input_features(signal: np.ndarray, extractor):
    """(n,) float32 16 kHz mono → (S, 80, 3000) float32 torch log-mel, one row per 30 s segment.

    Each segment is passed to the feature extractor on its own, as upstream does, so each gets its
    own log-mel clamp (max − 8) and the last one is zero-padded to 30 s by the extractor.
    """
    import torch

    segments = [signal[i:i + SEGMENT_SAMPLES] for i in range(0, max(len(signal), 1), SEGMENT_SAMPLES)]
    feats = [extractor(seg, return_tensors="pt", sampling_rate=SAMPLE_RATE).input_features for seg in segments]
    return torch.cat(feats).float()


def hidden_states(features, encoder, n_samples: int) -> np.ndarray:
    """(S, 80, 3000) features → (T, L, D) float32: every encoder hidden state (L = layers + 1) per
    20 ms step, segments joined in time and cut to floor(seconds · 50) steps as upstream does.

    Index 0 is the input of layer 0 (convolutions + positions), the last is the final LayerNorm."""
    import torch

    param = next(encoder.parameters())
    steps = []
    with torch.inference_mode():
        for segment in features:  # one segment at a time bounds memory on long audio
            out = encoder(segment[None].to(param.device, param.dtype), output_hidden_states=True)
            steps.append(torch.stack(out.hidden_states, dim=2)[0].float().cpu())  # (1500, L, D)
    n_steps = int(np.floor(n_samples / SAMPLE_RATE * STEPS_PER_SECOND))
    return torch.cat(steps)[:n_steps].numpy()


def window_starts(timestamps: np.ndarray) -> np.ndarray:
    """(N,) frame timestamps in seconds → (N,) int64 first hidden-state step of each frame's window.

    Upstream's frame i starts at padded index floor(i · 50 / fps) with LEAD_STEPS zero steps in
    front, i.e. at step 2i − 4 for 25 fps; using the timestamp instead of i keeps any rate in sync."""
    t = np.asarray(timestamps, dtype=np.float64)
    # the epsilon stops a product such as 50 * 0.58 = 28.999999... from truncating a whole step early
    return np.floor(STEPS_PER_SECOND * t + 1e-9).astype(np.int64) - LEAD_STEPS


def frame_chunks(hidden: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """hidden (T, L, D) float32, timestamps (N,) s → (N, WINDOW_STEPS · L, D) float32 contexts.

    Frame n takes the WINDOW_STEPS steps from window_starts; steps before 0 or past T are zeros (the
    explicit padding upstream reads, not the encoder's output for padded silence). Flattened
    step-major: token L·s + h is hidden state h of window step s."""
    n_steps, n_layers, width = hidden.shape
    idx = window_starts(timestamps)[:, None] + np.arange(WINDOW_STEPS)[None, :]  # (N, 10)
    inside = (idx >= 0) & (idx < n_steps)
    out = np.zeros((len(idx), WINDOW_STEPS, n_layers, width), dtype=np.float32)
    out[inside] = hidden[idx[inside]]
    return out.reshape(len(idx), WINDOW_STEPS * n_layers, width)


def positional_encoding(n_tokens: int, width: int):
    """(n_tokens, width) float32 torch: upstream's sinusoidal table, computed the way it computes it
    (float32, over the flattened token index, not time): sin in even columns, cos in odd ones."""
    import math

    import torch

    position = torch.arange(0, n_tokens, dtype=torch.float).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, width, 2).float() * (-math.log(10000.0) / width))
    table = torch.zeros(n_tokens, width)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    return table


class FrameContexts:
    """Every frame's whisper context, made a chunk of frames at a time: `contexts[part]` (a slice of frames) →
    (n, WINDOW_STEPS · L, D) float32, equal to frame_chunks(hidden_states(all of it), timestamps)[part].

    Only the 30 s segments the chunk's windows reach are encoded and kept (one, or two across a segment
    boundary), so memory stays flat in the audio's length: all contexts at once took ~1.15 GB per 10 minutes
    at 25 fps, all hidden states ~230 MB."""

    def __init__(self, signal: np.ndarray, timestamps: np.ndarray, extractor, encoder):
        self.signal, self.timestamps = signal, np.asarray(timestamps)
        self.extractor, self.encoder = extractor, encoder
        self.n_steps = int(np.floor(len(signal) / SAMPLE_RATE * STEPS_PER_SECOND))
        self.segments = RecentParts(self._encode)  # segment index → (SEGMENT_STEPS, L, D) float32 hidden states

    def __len__(self) -> int:
        return len(self.timestamps)

    def __getitem__(self, part: slice) -> np.ndarray:
        idx = window_starts(self.timestamps[part])[:, None] + np.arange(WINDOW_STEPS)[None, :]  # (n, 10)
        inside = (idx >= 0) & (idx < self.n_steps)
        segments = self.segments.reach(sorted(set((idx[inside] // SEGMENT_STEPS).tolist())))
        first = next(iter(segments.values())) if segments else np.zeros((1, 1, 1), np.float32)
        out = np.zeros((*idx.shape, *first.shape[1:]), dtype=np.float32)
        for k, states in segments.items():
            here = inside & (idx // SEGMENT_STEPS == k)
            out[here] = states[idx[here] - k * SEGMENT_STEPS]
        return out.reshape(len(idx), -1, out.shape[-1])

    def _encode(self, k: int) -> np.ndarray:
        segment = self.signal[k * SEGMENT_SAMPLES:(k + 1) * SEGMENT_SAMPLES]
        feats = input_features(segment, self.extractor)  # (1, 80, 3000): this segment alone, as upstream
        return hidden_states(feats, self.encoder, SEGMENT_SAMPLES)
