"""LatentSync's audio conditioning: speech → whisper-tiny encoder states → one (50, 384) context per frame.

Upstream's front end (its vendored openai-whisper) differs from MuseTalk's in three ways the
reference README pins down: the log-mel of the whole signal is taken without first padding it to
30 s (so its maximum and floor come from the real audio only); each 3000-frame segment is padded
with 0.0 in log-mel space; and the five states kept per step exclude the encoder's final LayerNorm.
The window of each frame is taken at that frame's own timestamp (musetalk.whisper_audio.window_starts, the
same 80 ms lead and 200 ms span), which equals upstream's chunk i at 25 fps; windows clamp at the
ends (repeat the first/last step) as upstream's do.
"""

from __future__ import annotations

import functools

import numpy as np

from lipsync_cli.errors import InputError
from lipsync_cli.generators.musetalk.whisper_audio import SAMPLE_RATE, WINDOW_STEPS, window_starts
from lipsync_cli.timing import RecentParts

N_FFT, HOP = 400, 160  # whisper's STFT: 25 ms windows every 10 ms
N_MELS = 80
SEGMENT_FRAMES = 3000  # log-mel frames per encoder call (30 s)
LOG_FLOOR_DB = 8.0  # log10 units below the maximum that the log-mel is floored at


def _log10_mel(stft):
    """(201, T) complex STFT → (80, T) float32 torch log10 mel power."""
    import torch

    return torch.clamp(_mel_filters() @ (stft.abs() ** 2), min=1e-10).log10()


@functools.lru_cache(maxsize=1)
def _mel_filters():
    """(80, 201) float32 torch mel filter bank, built once (each segment's spectrum is made twice: peak, then use)."""
    import librosa
    import torch

    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS))


def _scaled(log_spec, peak):
    """whisper's scaling: floored LOG_FLOOR_DB below the whole signal's peak, then (x + 4) / 4."""
    import torch

    return (torch.maximum(log_spec, peak - LOG_FLOOR_DB) + 4.0) / 4.0


def segment_states(mel, encoder) -> np.ndarray:
    """(80, T ≤ 3000) log-mel of one 30 s segment → (T // 2, 5, 384) float32: per 20 ms step the block input after
    the positions and the outputs of the 4 blocks, without the final LayerNorm; the segment is padded to 3000
    frames with 0.0 in log-mel space (not silence), as upstream does."""
    import torch

    padded = torch.nn.functional.pad(mel, (0, SEGMENT_FRAMES - mel.shape[1]))
    param = next(encoder.parameters())
    return _layer_states(encoder, padded[None].to(param.device, param.dtype))[:mel.shape[1] // 2].numpy()


def _layer_states(encoder, features):
    """(1, 80, 3000) → (1500, layers + 1, D) float32 cpu, captured with hooks around the encoder layers."""
    import torch

    captured = []
    hooks = [encoder.layers[0].register_forward_pre_hook(lambda _m, args: captured.append(args[0]))]
    hooks += [layer.register_forward_hook(lambda _m, _a, out: captured.append(out[0] if isinstance(out, tuple) else out))
              for layer in encoder.layers]
    try:
        with torch.inference_mode():
            encoder(features)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack([c[0] for c in captured], dim=1).float().cpu()


def chunk_index(n_steps: int, timestamps: np.ndarray) -> np.ndarray:
    """(N,) frame timestamps in seconds → (N, 10) int64 feature steps of each frame's window, clamped."""
    idx = window_starts(timestamps)[:, None] + np.arange(WINDOW_STEPS)[None, :]
    return np.clip(idx, 0, n_steps - 1)


def frame_chunks(states, timestamps: np.ndarray) -> np.ndarray:
    """states (L, 5, D) (an array or SegmentStates), timestamps (N,) → (N, 50, D) float32 contexts, token 5·s + h
    (step-major)."""
    idx = chunk_index(len(states), timestamps)
    picked = states[idx]  # (N, 10, 5, D)
    return picked.reshape(len(idx), -1, picked.shape[-1]).astype(np.float32)


class SegmentStates:
    """The encoder states of a whole signal, (steps, 5, 384) float32, made one 30 s segment at a time when indexed
    (`states[idx]`, any int array of steps), keeping only the segments the last index reached: the whole clip's
    states grew 384 kB per second of speech (23 MB a minute). Upstream takes the log-mel of the whole signal,
    floored 8 log10 units below its peak, and cuts it into 3000-frame segments, so the peak is found first, in
    one pass over the segments' spectra that keeps nothing else."""

    def __init__(self, signal: np.ndarray, encoder):
        import torch

        self.encoder = encoder
        audio = torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))
        # torch.stft's centring: frame t is padded[160 t : 160 t + 400]; the last frame is dropped, as whisper does
        self.padded = torch.nn.functional.pad(audio[None, None], (N_FFT // 2, N_FFT // 2), mode="reflect")[0, 0]
        n_frames = len(audio) // HOP
        self.bounds = [(a, min(a + SEGMENT_FRAMES, n_frames)) for a in range(0, n_frames, SEGMENT_FRAMES)]
        self.n_steps = sum((b - a) // 2 for a, b in self.bounds)
        if self.n_steps == 0:
            raise InputError(f"the speech is too short for LatentSync ({len(audio)} samples at {SAMPLE_RATE} Hz): "
                             "pass at least 0.02 s")
        self.peak = max(self._log_spec(k).max() for k in range(len(self.bounds)))
        self.segments = RecentParts(self._encode)  # segment index → its (steps, 5, D) float32 states

    def __len__(self) -> int:
        return self.n_steps

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx)
        segment = idx // (SEGMENT_FRAMES // 2)
        out = None
        for k, states in self.segments.reach(sorted(set(segment.ravel().tolist()))).items():
            out = np.zeros((*idx.shape, *states.shape[1:]), np.float32) if out is None else out
            here = segment == k
            out[here] = states[idx[here] - k * (SEGMENT_FRAMES // 2)]
        return out

    def log_mel(self, k: int):
        """(80, frames of segment k) float32 torch: whisper's log-mel, floored below the whole signal's peak."""
        return _scaled(self._log_spec(k), self.peak)

    def _log_spec(self, k: int):
        import torch

        first, stop = self.bounds[k]
        samples = self.padded[HOP * first:HOP * (stop - 1) + N_FFT]
        stft = torch.stft(samples, N_FFT, HOP, window=torch.hann_window(N_FFT), center=False, return_complex=True)
        return _log10_mel(stft)

    def _encode(self, k: int) -> np.ndarray:
        return segment_states(self.log_mel(k), self.encoder)


class FrameContexts:
    """The (N, 50, 384) contexts of a clip, cut from the encoder states when indexed (a chunk of frames at a time):
    a frame's window overlaps its neighbours' five-fold, so the states are held instead of the windows, and made
    a 30 s segment at a time (SegmentStates) so memory does not grow with the clip."""

    def __init__(self, states, timestamps: np.ndarray):
        self.states, self.timestamps = states, np.asarray(timestamps, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.timestamps)

    def __getitem__(self, index) -> np.ndarray:
        return frame_chunks(self.states, np.atleast_1d(self.timestamps[index]))


def contexts(speech: np.ndarray, timestamps: np.ndarray, encoder) -> FrameContexts:
    """(n,) float32 16 kHz speech, (N,) frame times → (N, 50, 384) float32 cross-attention contexts (indexable)."""
    return FrameContexts(SegmentStates(speech, encoder), timestamps)
