"""Frame <-> mel-window maths: windows follow each frame's timestamp at any frame rate and
clamp at the end of the audio."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from lipsync_cli.audio import HOP_LENGTH, MEL_FRAMES_PER_SECOND, SAMPLE_RATE, log_mel
from lipsync_cli.timing import MEL_WINDOW, frame_times, mel_index, mel_windows, window_start


def _ramp_mel(t: int) -> np.ndarray:
    """(80, t) mel whose every value is its column index, so a window reveals where it starts."""
    return np.tile(np.arange(t, dtype=np.float32), (80, 1))


def test_constants_are_derived():
    assert MEL_FRAMES_PER_SECOND == SAMPLE_RATE / HOP_LENGTH == 80.0


def test_log_mel_gives_80_frames_per_second(speech_wav):
    import librosa

    wav, _ = librosa.load(speech_wav, sr=SAMPLE_RATE, mono=True)
    mel = log_mel(wav)
    assert mel.shape == (80, 1 + len(wav) // HOP_LENGTH) and mel.dtype == np.float32
    assert mel.min() >= -4 and mel.max() <= 4 and mel.std() > 0.5  # real speech spans the range


def test_mel_index_follows_timestamps_not_25_fps():
    assert mel_index(0.0) == 0
    assert mel_index(1 / 25) == 3  # 3.2 truncates
    assert mel_index(0.29) == 23  # 80 * 0.29 = 23.199999... in floats; still 23
    assert mel_index(7 / 80) == 7  # exact multiples never fall one short
    # 29.97 fps: frame 1001 is shown at 33.4 s, i.e. mel frame 2672 (a 25 fps assumption says 3203)
    assert window_start(1001, Fraction(30000, 1001)) == 2672
    assert window_start(30, 60) == 40 and window_start(5, 25) == 16


def test_frame_times_at_ntsc_rate():
    t = frame_times(4, Fraction(30000, 1001))
    assert t.dtype == np.float64
    np.testing.assert_allclose(t, np.arange(4) * 1001 / 30000)


def test_mel_windows_at_non_25_fps_timestamps():
    mel = _ramp_mel(200)
    times = frame_times(5, 30)  # 0, 1/30, 2/30, ... -> starts 0, 2, 5, 8, 10
    windows = mel_windows(mel, times)
    assert windows.shape == (5, 80, MEL_WINDOW) and windows.dtype == np.float32
    np.testing.assert_array_equal(windows[:, 0, 0], [0, 2, 5, 8, 10])
    np.testing.assert_array_equal(windows[2, 7], np.arange(5, 5 + MEL_WINDOW))


def test_variable_frame_rate_timestamps_are_used_as_given():
    times = np.array([0.0, 0.05, 0.06, 0.5])  # irregular gaps, as in VFR phone video
    np.testing.assert_array_equal(mel_windows(_ramp_mel(100), times)[:, 0, 0], [0, 4, 4, 40])


def test_windows_past_the_end_take_the_last_16_frames():
    mel = _ramp_mel(50)
    windows = mel_windows(mel, np.array([0.4, 0.5, 10.0]))  # starts 32, 40 (too late), 800 (way past)
    np.testing.assert_array_equal(windows[:, 0, 0], [32, 34, 34])
    np.testing.assert_array_equal(windows[2, 0], np.arange(34, 50))


def test_audio_shorter_than_a_window_is_edge_padded():
    windows = mel_windows(_ramp_mel(10), np.array([0.0, 1.0]))
    assert windows.shape == (2, 80, MEL_WINDOW)
    np.testing.assert_array_equal(windows[0, 0], [*range(10), *[9] * 6])


def test_log_mel_loads_no_numba_compiled_librosa_module():
    """The mel must not pay librosa's numba compile (~20-50 s on a fresh install, container or Ray worker):
    in a fresh process log_mel imports none of librosa's modules with compiled kernels (core.audio,
    core.spectrum, util.utils' guvectorized ones run at import of those). Same numbers: test_conformance."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\nfrom lipsync_cli.audio import log_mel\n"
            "mel = log_mel(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)\n"
            "assert mel.shape == (80, 81), mel.shape\n"
            "print(sorted(m for m in sys.modules if m in ('librosa.core.audio', 'librosa.core.spectrum')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
