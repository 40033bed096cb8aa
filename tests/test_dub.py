"""`lipsync dub` end to end on real faces and real speech, with a random-weight Wav2Lip-layout checkpoint.

The generator's weights are random, so the mouth it draws is noise; what these tests prove is the
plumbing a user depends on: faces found and tracked, the mouth region (and only it) replaced, timing,
sizes, codecs, audio and atomic output.
"""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from cli_utils import lipsync_in_process
from conftest import check_dub_output, ffprobe_streams, shared_path

from lipsync_cli.config import DubConfig, FaceConfig
from lipsync_cli.pipeline import dub


def dlib_cfg(ckpt, **kw):
    return DubConfig(model=str(ckpt), faces=FaceConfig(detector="dlib"), quiet=True, device="cpu", **kw)


def audio_seconds(path):
    from lipsync_cli.media import load_audio

    return len(load_audio(path)) / 16000


def check_output(out: Path, width: int, height: int, seconds: float, fps: Fraction):
    v = check_dub_output(out, width, height, seconds, fps)["video"]
    assert int(v["nb_frames"]) == pytest.approx(seconds * float(fps), abs=1.5)


def mean_abs_diff_outside_mouth(a: Path, b: Path, n: int = 10):
    """Decoded frames of two videos: mean |a-b| in the top half (never edited) and the bottom half."""
    from lipsync_cli import media

    fa, fb = media.iter_frames(a, media.probe(a)), media.iter_frames(b, media.probe(b))
    top, bottom = [], []
    for _, x, y in zip(range(n), fa, fb):
        d = np.abs(x.astype(np.int16) - y.astype(np.int16))
        top.append(d[: d.shape[0] // 3].mean())
        bottom.append(d[d.shape[0] // 2:].mean())
    return float(np.mean(top)), float(np.mean(bottom))


def test_dub_real_face_clip_with_speech(tmp_path, face_clip, speech_wav, wav2lip_ckpt):
    out = tmp_path / "out.mp4"
    result = dub(face_clip, speech_wav, out, dlib_cfg(wav2lip_ckpt))
    seconds = audio_seconds(speech_wav)
    check_output(out, 256, 256, seconds, Fraction(25))
    assert result.frames == round(seconds * 25)
    assert result.frames_edited >= 0.9 * result.frames, "the astronaut's face is in every frame"
    # The clip (3 s) is shorter than the speech: looped, and only the lower face changes.
    top, bottom = mean_abs_diff_outside_mouth(face_clip, out)
    assert bottom > 2 * top


def test_cli_default_output_name_and_no_overwrite(tmp_path, face_clip, short_speech, wav2lip_ckpt, capfd):
    video = tmp_path / "clip.mp4"
    video.write_bytes(face_clip.read_bytes())
    cmd = ["dub", video, short_speech, "--model", wav2lip_ckpt, "--detector", "dlib", "--device", "cpu", "-q"]
    first = lipsync_in_process(capfd, *cmd)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "clip_dubbed.mp4"
    assert out.is_file()
    mtime = out.stat().st_mtime_ns
    again = lipsync_in_process(capfd, *cmd)
    assert again.returncode == 2 and "--force" in again.stderr
    assert out.stat().st_mtime_ns == mtime


def test_dub_still_image(tmp_path, face_image, short_speech, wav2lip_ckpt):
    out = tmp_path / "still.mp4"
    result = dub(face_image, short_speech, out, dlib_cfg(wav2lip_ckpt, fps=25.0))
    check_output(out, 300, 300, audio_seconds(short_speech), Fraction(25))
    assert result.frames_edited == result.frames


def test_variable_frame_rate_clip_stays_in_sync(tmp_path, wav2lip_ckpt):
    video = shared_path("media", "04_square700_frontal.mp4")
    audio = shared_path("media", "04b_dub_audio_en_44k.wav")
    out = tmp_path / "vfr.mp4"
    result = dub(video, audio, out, dlib_cfg(wav2lip_ckpt))
    from lipsync_cli.media import probe

    fps = probe(video).fps
    check_output(out, 700, 700, audio_seconds(audio), fps)
    assert result.frames_edited > 0.8 * result.frames


def test_turned_head_with_glasses_looped_to_longer_audio(tmp_path, wav2lip_ckpt):
    video = shared_path("media", "05_turned_head_224_glasses.mp4")
    audio = shared_path("media", "04b_dub_audio_en_44k.wav")  # 5.0 s of speech for a 4.3 s clip
    out = tmp_path / "turned.mp4"
    result = dub(video, audio, out, dlib_cfg(wav2lip_ckpt))
    check_output(out, 224, 224, audio_seconds(audio), Fraction(25))
    assert result.frames > 4.3 * 25
    assert result.frames_edited > 0.5 * result.frames, "the turned head must still be found and dubbed"


def test_no_face_anywhere_reencodes_with_new_audio(tmp_path, short_speech, wav2lip_ckpt, capfd, monkeypatch):
    video = shared_path("media", "12_edge_video_no_audio_stream.avi")
    out = tmp_path / "noface.mp4"
    # No --detector: the default "auto" is MediaPipe on a CPU (its real file from ../shared), and the summary says so.
    weights_dir = shared_path("models", "mediapipe", "face_landmarker.task").parent
    monkeypatch.setenv("LIPSYNC_WEIGHTS_DIR", str(weights_dir))
    proc = lipsync_in_process(capfd, "dub", video, short_speech, "-o", out, "--model", wav2lip_ckpt, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "0 edited; faces: mediapipe" in proc.stderr and "no face" in proc.stderr
    # wav2lip_gan (a copy of the public file, by its name) is non-commercial; MediaPipe's model is cleared
    notice = [line for line in proc.stderr.splitlines() if line.startswith("licence:")]
    assert len(notice) == 1 and "wav2lip_gan (non-commercial)" in notice[0] and "face_landmarker" not in notice[0]
    s = ffprobe_streams(out)
    assert (int(s["video"]["width"]), int(s["video"]["height"])) == (1280, 720)
    assert float(s["format"]["duration"]) == pytest.approx(audio_seconds(short_speech), abs=0.1)


def test_failed_run_leaves_nothing_at_out(tmp_path, face_clip, short_speech, capfd):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "never.mp4"
    proc = lipsync_in_process(capfd, "dub", face_clip, short_speech, "-o", out, "--model", bad, "--detector", "dlib")
    assert proc.returncode == 1, proc.stderr  # a bad input file (exit 1), not an internal error (5)
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]
