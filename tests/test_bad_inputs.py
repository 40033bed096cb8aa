"""The bad-input matrix, through the real CLI: exit code, one clear line, no traceback, no output,
inputs untouched. Inputs that are unusual but valid (odd sizes, rotation, 10-bit, huge stills) must work."""

import hashlib
import os
import pickle
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_utils import held_capfd, hold_capfd, lipsync_in_process  # noqa: F401 (hold_capfd: autouse fixture)
from conftest import ffmpeg_bin, ffprobe_streams, shared_path


def run_dub(video, audio, out, *extra, env=None, preexec_fn=None, model=None):
    """`lipsync dub` in this process (tests/cli_utils.py); in a process of its own where a test gives it another
    environment or resource limits: those runs also show the exit code and the one line as the shell sees them."""
    args = ["dub", str(video), str(audio), "-o", str(out), "--detector", "dlib", "--device", "cpu", "-q", *extra]
    if model is not None:
        args += ["--model", str(model)]
    if env is None and preexec_fn is None:
        return lipsync_in_process(held_capfd(), *args)
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "lipsync_cli", *args], capture_output=True, text=True, env=full_env,
                          preexec_fn=preexec_fn, timeout=600)


def digest(path: Path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def assert_clean_failure(proc, out: Path, code: int, needle: str, inputs=()):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if "partial" in p.name or p.name.startswith(".")]
    assert not leftovers, leftovers
    for path, before in inputs:
        assert digest(path) == before, f"{path} was modified"


@pytest.fixture
def clip(tmp_path, face_clip):
    path = tmp_path / "in.mp4"
    shutil.copy(face_clip, path)
    return path


@pytest.fixture
def speech(tmp_path, short_speech):
    path = tmp_path / "speech.wav"
    shutil.copy(short_speech, path)
    return path


def ffmpeg(*args, exe=None):
    subprocess.run([exe or ffmpeg_bin(), "-y", "-v", "error", *map(str, args)], check=True, capture_output=True)


# ---- bad inputs: each fails cleanly -------------------------------------------------------------

def test_missing_video(tmp_path, speech, wav2lip_ckpt):
    out = tmp_path / "o.mp4"
    proc = run_dub(tmp_path / "nope.mp4", speech, out, model=wav2lip_ckpt)
    assert_clean_failure(proc, out, 1, "nope.mp4")


def test_not_a_media_file(tmp_path, speech, wav2lip_ckpt):
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are my notes, not a video\n" * 20)
    out = tmp_path / "o.mp4"
    proc = run_dub(fake, speech, out, model=wav2lip_ckpt)
    assert_clean_failure(proc, out, 1, "notes.mp4", [(fake, digest(fake))])


def test_zero_byte_audio(tmp_path, clip, wav2lip_ckpt):
    empty = tmp_path / "empty.wav"
    empty.touch()
    out = tmp_path / "o.mp4"
    proc = run_dub(clip, empty, out, model=wav2lip_ckpt)
    assert_clean_failure(proc, out, 1, "empty.wav", [(clip, digest(clip))])


def test_video_without_video_stream(tmp_path, speech, wav2lip_ckpt):
    video = shared_path("media", "12b_edge_no_video_stream.avi")
    out = tmp_path / "o.mp4"
    proc = run_dub(video, speech, out, model=wav2lip_ckpt)
    assert_clean_failure(proc, out, 1, "no video stream")


def test_audio_without_audio_stream(tmp_path, clip, wav2lip_ckpt):
    audio = shared_path("media", "12_edge_video_no_audio_stream.avi")
    out = tmp_path / "o.mp4"
    proc = run_dub(clip, audio, out, model=wav2lip_ckpt)
    assert_clean_failure(proc, out, 1, "no audio stream", [(clip, digest(clip))])


def test_silent_audio(tmp_path, clip, wav2lip_ckpt):
    silent = tmp_path / "silent.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "2", silent)
    out = tmp_path / "o.mp4"
    proc = run_dub(clip, silent, out, model=wav2lip_ckpt)
    assert_clean_failure(proc, out, 1, "silent")


def test_zero_length_audio(tmp_path, clip, wav2lip_ckpt):
    import wave

    path = tmp_path / "zero.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(b"")
    out = tmp_path / "o.mp4"
    proc = run_dub(clip, path, out, model=wav2lip_ckpt)
    assert_clean_failure(proc, out, 1, "zero.wav")


def test_output_folder_missing(tmp_path, clip, speech, wav2lip_ckpt):
    out = tmp_path / "no" / "such" / "dir" / "o.mp4"
    proc = run_dub(clip, speech, out, model=wav2lip_ckpt)
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    assert not (tmp_path / "no").exists()


def test_output_equal_to_input(tmp_path, clip, speech, wav2lip_ckpt):
    before = digest(clip)
    proc = run_dub(clip, speech, clip, "--force", model=wav2lip_ckpt)
    assert proc.returncode == 2 and "also an input" in proc.stderr
    assert digest(clip) == before


def test_disk_full_during_encoding(tmp_path, clip, speech, speech_wav, wav2lip_ckpt):
    shutil.copy(speech_wav, speech)  # the whole 5.3 s: its output outgrows the limit (1.2 s of it would not)
    out = tmp_path / "o.mp4"
    limit = 64 * 1024  # bytes any process may write: ffmpeg hits it while encoding

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = run_dub(clip, speech, out, preexec_fn=small_disk, model=wav2lip_ckpt)
    assert proc.returncode == 5, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "speech.wav"]


def test_truncated_checkpoint(tmp_path, clip, speech, wav2lip_ckpt):
    bad = tmp_path / "cut.pth"
    bad.write_bytes(wav2lip_ckpt.read_bytes()[:100_000])
    out = tmp_path / "o.mp4"
    proc = run_dub(clip, speech, out, model=bad)
    assert_clean_failure(proc, out, 1, "cut.pth")


def test_checkpoint_of_the_wrong_kind(tmp_path, clip, speech):
    from ckpt_utils import write_public_checkpoint

    expert = write_public_checkpoint(tmp_path / "lipsync_expert.pth", "syncnet")
    out = tmp_path / "o.mp4"
    proc = run_dub(clip, speech, out, model=expert)
    assert_clean_failure(proc, out, 1, "expert")


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = None


def test_pickle_with_code_is_refused_and_not_run(tmp_path, clip, speech):
    global MARKER
    MARKER = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"state_dict": _Payload()}))
    out = tmp_path / "o.mp4"
    proc = run_dub(clip, speech, out, model=evil)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert not MARKER.exists(), "loading a checkpoint executed code"
    assert not out.exists()


def test_no_network_and_no_cached_weights(tmp_path, clip, speech):
    out = tmp_path / "o.mp4"
    env = {"LIPSYNC_CACHE_DIR": str(tmp_path / "cache"), "LIPSYNC_WEIGHTS_DIR": str(tmp_path / "weights"),
           "HF_HUB_OFFLINE": "1", "LIPSYNC_ACCEPT_LICENCES": "1"}
    proc = run_dub(clip, speech, out, env=env)  # default model: wav2lip_gan
    assert_clean_failure(proc, out, 3, "wav2lip_gan")


@pytest.mark.parametrize("size", ["right", "wrong"])
def test_weights_file_whose_checksum_does_not_match(tmp_path, clip, speech, size):
    """A wav2lip_gan.pth of the right size but other bytes (sparse file: hashed, never loaded), or of the wrong
    size (refused before hashing): exit 3 naming the file; the file itself is left where it is."""
    from lipsync_cli import weights

    folder = tmp_path / "weights"
    folder.mkdir()
    bad = folder / "wav2lip_gan.pth"
    with open(bad, "wb") as f:
        f.truncate(weights.entry("wav2lip_gan").size if size == "right" else 1000)
    before = digest(bad)
    out = tmp_path / "o.mp4"
    env = {"LIPSYNC_CACHE_DIR": str(tmp_path / "cache"), "LIPSYNC_WEIGHTS_DIR": str(folder), "HF_HUB_OFFLINE": "1"}
    proc = run_dub(clip, speech, out, env=env)
    assert_clean_failure(proc, out, 3, "wav2lip_gan.pth failed verification", inputs=[(bad, before)])
    assert ("sha256" in proc.stderr.lower()) == (size == "right"), proc.stderr


# ---- unusual but valid inputs: each works --------------------------------------------------------

def _frames_rgb(path):
    from lipsync_cli import media

    return list(media.iter_frames(path, media.probe(path)))


def test_odd_frame_size(tmp_path, clip, speech, wav2lip_ckpt):
    odd = tmp_path / "odd.mp4"
    ffmpeg("-i", clip, "-vf", "scale=201:175", "-c:v", "libx264", "-pix_fmt", "yuv444p", odd)
    out = tmp_path / "o.mp4"
    proc = run_dub(odd, speech, out, model=wav2lip_ckpt)
    assert proc.returncode == 0, proc.stderr
    v = ffprobe_streams(out)["video"]
    assert v["pix_fmt"] == "yuv420p"
    assert abs(int(v["width"]) - 201) <= 1 and abs(int(v["height"]) - 175) <= 1


def test_ten_bit_input(tmp_path, clip, speech, wav2lip_ckpt):
    deep = tmp_path / "deep.mkv"
    ffmpeg("-i", clip, "-c:v", "libx264", "-pix_fmt", "yuv420p10le", deep)
    out = tmp_path / "o.mp4"
    proc = run_dub(deep, speech, out, model=wav2lip_ckpt)
    assert proc.returncode == 0, proc.stderr
    assert ffprobe_streams(out)["video"]["pix_fmt"] == "yuv420p"


def test_rotated_phone_clip_comes_out_upright(tmp_path, clip, speech, wav2lip_ckpt):
    # Store the frames sideways with a 90° display matrix, as phones do.
    import imageio_ffmpeg

    sideways = tmp_path / "sideways.mp4"
    ffmpeg("-i", clip, "-vf", "transpose=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", sideways)
    rotated = tmp_path / "phone.mp4"
    # -display_rotation (counter-clockwise degrees) exists from ffmpeg 6: the bundled binary has it
    ffmpeg("-display_rotation", "90", "-i", sideways, "-c", "copy", rotated, exe=imageio_ffmpeg.get_ffmpeg_exe())
    out = tmp_path / "o.mp4"
    proc = run_dub(rotated, speech, out, model=wav2lip_ckpt)
    assert proc.returncode == 0, proc.stderr
    upright_in = _frames_rgb(clip)[0].astype(np.float32)
    first_out = _frames_rgb(out)[0].astype(np.float32)
    assert first_out.shape == upright_in.shape
    top = slice(0, upright_in.shape[0] // 3)  # the eyes and forehead are never edited
    assert np.abs(first_out[top] - upright_in[top]).mean() < 12


def test_huge_still_image(tmp_path, speech, wav2lip_ckpt):
    import cv2
    from conftest import astronaut_face

    big = tmp_path / "big.jpg"
    face = cv2.resize(astronaut_face()[0:300, 100:400], (3200, 3200), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(big), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    out = tmp_path / "o.mp4"
    proc = run_dub(big, speech, out, model=wav2lip_ckpt)
    assert proc.returncode == 0, proc.stderr
    v = ffprobe_streams(out)["video"]
    assert (int(v["width"]), int(v["height"])) == (3200, 3200)


def test_truncated_video_uses_what_decodes(tmp_path, clip, speech, wav2lip_ckpt):
    """Documented choice: a truncated video is dubbed from the frames that decode (exit 0)."""
    whole = tmp_path / "whole.mp4"
    ffmpeg("-i", clip, "-c", "copy", "-movflags", "+faststart", whole)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "o.mp4"
    proc = run_dub(cut, speech, out, model=wav2lip_ckpt)
    assert proc.returncode == 0, proc.stderr  # +faststart: the header is whole, only frames are missing
    assert out.is_file() and "decode" in proc.stderr
