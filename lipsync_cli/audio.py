"""Wav2Lip's log-mel front-end, reproduced exactly so the public checkpoints see the features
they were trained on (checked against ../shared/reference/wav2lip_mel.npz).

The STFT is numpy's rfft over reflect-padded Hann frames (what librosa.stft(center=True, pad_mode="reflect")
computes), not librosa.stft itself: importing librosa's core compiles its numba kernels, about 20-50 s on a
fresh install, container or Ray worker before the first dub could start. librosa.filters.mel is plain numpy
and imports none of them.

Each constant is named once; everything else is derived from them.
"""

from __future__ import annotations

import functools

import numpy as np

from lipsync_cli.errors import InputError

SAMPLE_RATE = 16000  # Hz; every waveform entering log_mel is 16 kHz mono
N_FFT = 800  # 50 ms FFT
HOP_LENGTH = 200  # 12.5 ms hop
WIN_LENGTH = 800  # Hann window as long as the FFT
N_MELS = 80
FMIN = 55  # Hz, lowest mel band edge
FMAX = 7600  # Hz, highest mel band edge (below Nyquist to skip resampling artefacts)
PREEMPHASIS = 0.97  # first-order high-pass y[n] = x[n] - 0.97 x[n-1]
REF_LEVEL_DB = 20  # subtracted after the dB conversion
MIN_LEVEL_DB = -100  # dB floor; also sets the normalisation range
MAX_ABS_VALUE = 4.0  # features are scaled symmetrically into [-4, 4]

MEL_FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH  # 80.0 mel frames per second of audio
MEL_PART = 800  # mel frames (10 s) made at a time: log_mel's memory does not grow with the audio's length
AMPLITUDE_FLOOR = 10 ** (MIN_LEVEL_DB / 20)  # 1e-5: amplitude of the dB floor


@functools.lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) float32 Slaney-normalised mel filter bank, built once on first use."""
    import librosa.filters  # plain numpy; `import librosa.filters` loads no numba-compiled module

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX,
                               htk=False, norm="slaney").astype(np.float32)


def preemphasis(wav: np.ndarray) -> np.ndarray:
    """y[0] = x[0], y[n] = x[n] - PREEMPHASIS * x[n-1] (what scipy's lfilter([1, -k], [1]) computes)."""
    out = np.empty_like(wav)
    out[:1] = wav[:1]
    out[1:] = wav[1:] - PREEMPHASIS * wav[:-1]
    return out


@functools.lru_cache(maxsize=1)
def hann_window() -> np.ndarray:
    """(WIN_LENGTH,) periodic Hann window (scipy's get_window("hann", fftbins=True), as librosa uses)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN_LENGTH) / WIN_LENGTH)).astype(np.float32)


def _frames(wav: np.ndarray) -> np.ndarray:
    """(1 + samples // HOP_LENGTH, N_FFT) float32 frames centred on multiples of HOP_LENGTH, a view (no copy):
    reflect padding of N_FFT // 2 at both ends (Wav2Lip's training padding; librosa >= 0.10 defaults to zeros)."""
    padded = np.pad(wav, N_FFT // 2, mode="reflect")
    return np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]


def _magnitude(frames: np.ndarray) -> np.ndarray:
    """(n, N_FFT) frames → (N_FFT // 2 + 1, n) float32 |STFT| under the Hann window."""
    return np.abs(np.fft.rfft(frames * hann_window(), axis=1)).T.astype(np.float32)


def log_mel(wav: np.ndarray) -> np.ndarray:
    """(samples,) float mono 16 kHz in [-1, 1] -> (80, 1 + samples // 200) float32 in [-4, 4].

    Made MEL_PART frames at a time: the whole signal's STFT at once took ~1.2 MB of temporary arrays per second
    of audio (70 MB a minute), and every frame depends only on its own 800 padded samples."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"log_mel expects a mono 1-D waveform, got shape {wav.shape}")
    if wav.size <= N_FFT // 2:  # reflect padding needs more than half a window of signal
        raise InputError(f"audio too short ({wav.size} samples at {SAMPLE_RATE} Hz): pass at least 0.1 s of sound")
    frames = _frames(preemphasis(wav))
    return np.concatenate([_log_mel_of(frames[i:i + MEL_PART]) for i in range(0, len(frames), MEL_PART)], axis=1)


def _log_mel_of(frames: np.ndarray) -> np.ndarray:
    """(n, N_FFT) padded-signal frames -> (80, n) float32 in [-4, 4]."""
    mel = mel_filters() @ _magnitude(frames)
    db = 20 * np.log10(np.maximum(AMPLITUDE_FLOOR, mel)) - REF_LEVEL_DB
    scaled = 2 * MAX_ABS_VALUE * (db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS_VALUE
    return np.clip(scaled, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)
