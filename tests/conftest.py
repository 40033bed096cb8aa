"""Shared test data: made here (a real face photo, real synthetic speech) or read from ../shared.

Nothing in ../shared is ever modified; tests that need it skip with a reason when it is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MEDIA = SHARED / "media"
DATASETS = SHARED / "datasets"
REFERENCE = SHARED / "reference"

# The longest modules, longest first (measured with --durations): under `-n N --dist loadfile --no-loadscope-reorder`
# the workers start on them and the short ones fill in at the end, so no worker waits alone on a long one.
FIRST_MODULES = ("test_learnability", "test_ray_batch", "test_syncnet", "test_training", "test_dub", "test_musetalk",
                 "test_mediapipe")


def pytest_configure(config):
    """Under pytest-xdist (`-n N`) each worker gets its share of the cores, for torch and for the processes it
    starts (the CLI, Ray workers), so N workers never run N x cores threads that wait on each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory):
    """Face tracks (and any weights) the tests cache go to this session's own folder, never the user's cache:
    every session starts as empty as CI's, and parallel workers never share an entry."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIPSYNC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.module.__name__
        return FIRST_MODULES.index(name) if name in FIRST_MODULES else len(FIRST_MODULES)

    items.sort(key=rank)  # stable: within a module, and among the rest, the order stays pytest's


SENTENCE = "The quick brown fox jumps over the lazy dog. Lip sync dubbing should follow every word."


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300.0, poll_s: float = 0.02):
    """Poll until condition() is truthy (the moment to interrupt `proc`) and return it; fail if the process
    ends first or the time runs out (then it is killed)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"process ended (exit {proc.returncode}) before the moment to interrupt it:\n"
                        f"{proc.stderr.read()}")
        time.sleep(poll_s)
    proc.kill()
    pytest.fail("timed out waiting for the moment to interrupt")


def stop_with(proc: subprocess.Popen, sig: int, timeout: float = 120.0) -> str:
    """Send `sig` and wait for the process to end; its stderr. Fails (after killing it) if it does not stop."""
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the process did not stop after signal {sig}")


def shared_path(*parts: str) -> Path:
    """A file under ../shared, or skip the test when that folder is absent (as on users' machines)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is only present in the project's dev/CI machines)")
    return path


def ffmpeg_bin() -> str:
    from lipsync_cli.media import ffmpeg_exe

    return ffmpeg_exe()


def make_speech(path: Path, text: str = SENTENCE) -> Path:
    """Real synthetic speech: espeak-ng when installed, else ffmpeg's flite filter."""
    espeak = shutil.which("espeak-ng") or shutil.which("espeak")
    if espeak:
        subprocess.run([espeak, "-w", str(path), text], check=True, capture_output=True)
    else:
        subprocess.run([ffmpeg_bin(), "-y", "-v", "error", "-f", "lavfi", "-i", f"flite=text='{text}'", str(path)],
                       check=True, capture_output=True)
    return path


def astronaut_face() -> np.ndarray:
    """scikit-image's astronaut photo (a real face), RGB uint8, 512x512."""
    from skimage import data

    return data.astronaut()


def make_face_clip(path: Path, seconds: float = 3.0, fps: int = 25, size: int = 256, audio: Path | None = None) -> Path:
    """A video of the astronaut's face drifting a few pixels per frame (so tracking/smoothing work)."""
    import cv2

    face = astronaut_face()[0:300, 100:400]  # head and shoulders
    n = int(round(seconds * fps))
    cmd = [ffmpeg_bin(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size}x{size}",
           "-r", str(fps), "-i", "-"]
    if audio is not None:
        cmd += ["-i", str(audio), "-shortest", "-c:a", "aac"]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    base = cv2.resize(face, (size + 16, size + 16), interpolation=cv2.INTER_AREA)
    for i in range(n):
        dx = int(round(4 + 4 * np.sin(i / 7)))
        dy = int(round(4 + 4 * np.cos(i / 9)))
        proc.stdin.write(np.ascontiguousarray(base[dy:dy + size, dx:dx + size]).tobytes())
    proc.stdin.close()
    assert proc.wait() == 0
    return path


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """About 5.3 s of real synthetic speech (longer than face_clip, so dubbing loops the clip)."""
    return make_speech(tmp_path_factory.mktemp("speech") / "speech.wav")


def audio_piece(src: Path, out: Path, seconds: float, start: float = 0.0) -> Path:
    """SECONDS of the audio file SRC from START, written to OUT (ffmpeg picks the format from OUT's suffix)."""
    subprocess.run([ffmpeg_bin(), "-y", "-v", "error", "-ss", str(start), "-i", str(src), "-t", str(seconds), str(out)],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def short_speech(speech_wav, tmp_path_factory) -> Path:
    """The first 1.2 s of speech_wav (30 frames at 25 fps): for end-to-end checks whose subject is not the length
    (formats, exit codes, errors), so each dub costs a quarter of speech_wav's."""
    return audio_piece(speech_wav, tmp_path_factory.mktemp("short_speech") / "speech.wav", 1.2)


@pytest.fixture(scope="session")
def face_clip(tmp_path_factory) -> Path:
    """3 s, 25 fps, 256x256 clip of a real face, no audio stream."""
    return make_face_clip(tmp_path_factory.mktemp("clip") / "face.mp4")


@pytest.fixture(scope="session")
def face_image(tmp_path_factory) -> Path:
    """The astronaut photo as a PNG (a still image input)."""
    import cv2

    path = tmp_path_factory.mktemp("image") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(astronaut_face()[0:300, 100:400], cv2.COLOR_RGB2BGR))
    return path


def ffprobe_streams(path: Path) -> dict:
    """{'video': {...}, 'audio': {...}, 'format': {...}} from ffprobe (the system one: CI installs it), packets
    counted (nb_read_packets)."""
    import json

    exe = shutil.which("ffprobe")
    if exe is None:
        pytest.skip("ffprobe not installed (apt-get install ffmpeg)")
    out = subprocess.run([exe, "-v", "error", "-count_packets", "-show_streams", "-show_format", "-of", "json",
                          str(path)],
                         check=True, capture_output=True, text=True).stdout
    info = json.loads(out)
    streams = {s["codec_type"]: s for s in info["streams"]}
    streams["format"] = info["format"]
    return streams


def check_dub_output(out: Path, width: int, height: int, seconds: float, fps: float) -> dict:
    """A dub's output as every family must write it: H.264 yuv420p + AAC, this size, frame rate and duration
    (within 1.5 frames); returns ffprobe's streams for further checks."""
    from fractions import Fraction

    s = ffprobe_streams(out)
    v, a = s["video"], s["audio"]
    assert v["codec_name"] == "h264" and v["pix_fmt"] == "yuv420p" and a["codec_name"] == "aac"
    assert (int(v["width"]), int(v["height"])) == (width, height)
    assert float(Fraction(v["avg_frame_rate"])) == pytest.approx(float(fps), rel=1e-3)
    assert float(s["format"]["duration"]) == pytest.approx(seconds, abs=1.5 / float(fps) + 0.05)
    return s


@pytest.fixture(scope="session")
def wav2lip_ckpt(tmp_path_factory) -> Path:
    """A random-weight generator checkpoint in the public Wav2Lip file layout."""
    from ckpt_utils import write_public_checkpoint

    return write_public_checkpoint(tmp_path_factory.mktemp("ckpt") / "wav2lip_gan.pth", "wav2lip", seed=0)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """The synthetic talking-face dataset (tests/synthetic.py): 16 clips of 3 s (12 train, 4 val),
    audio aligned with the mouth; many short clips give the expert more poses and voices than a few long ones."""
    from synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), n_clips=16, seconds=3.0, seed=0)


@pytest.fixture(scope="session")
def random_face_alignment(tmp_path_factory):
    """face-alignment's real S3FD and 2D-FAN-4 networks with random weights, saved where it loads them from
    (torch.hub's checkpoints folder, under the file names of its download URLs): the real integration, offline."""
    import torch
    from ckpt_utils import write_random_face_alignment

    hub = tmp_path_factory.mktemp("torch_hub")
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    detector_file = write_random_face_alignment(hub / "checkpoints")
    yield {"s3fd": detector_file}
    torch.hub.set_dir(old)
