"""What an editor sees (issue 24): which face, a short piece, -v, the summary, help and output checks.

In process through the real CLI entry point (cli.main), on the shared real clips with dlib (offline) and a
random-weight Wav2Lip-layout checkpoint: the mouth it draws is noise, the plumbing is what is checked.
"""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
from conftest import shared_path

from lipsync_cli.cli import main


def run(args, capsys) -> tuple[int, str, str]:
    previous = signal.getsignal(signal.SIGTERM)  # main() installs a SIGTERM handler: keep pytest's
    try:
        with pytest.raises(SystemExit) as done:
            main([str(a) for a in args])
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def frames_of(path, n=None):
    from lipsync_cli import media

    info = media.probe(path)
    return np.stack([f for _, f in zip(range(n or info.n_frames), media.iter_frames(path, info))]), info


def test_faces_lists_the_face_with_its_index_and_draws_it(tmp_path, capsys):
    video = shared_path("media", "04_square700_frontal.mp4")
    image = tmp_path / "faces.png"
    code, out, err = run(["faces", video, "--detector", "dlib", "--duration", "1", "--image", image, "--json"], capsys)
    assert code == 0, err
    listed = json.loads(out)
    (face,) = listed["faces"]
    assert face["index"] == 0 and face["default"] and face["frames"] == listed["frames"] > 0
    x1, y1, x2, y2 = face["mean_box"]
    assert 0 < x1 < x2 < 700 and 0 < y1 < y2 < 700
    picture, _ = frames_of(image)
    original, _ = frames_of(video, 1)
    assert picture.shape == original.shape and np.abs(picture[0].astype(int) - original[0]).max() > 100  # boxes drawn


def test_two_faces_are_numbered_left_to_right_and_the_dub_names_the_one_it_dubbed(tmp_path, capsys, wav2lip_ckpt):
    """A still made of two real frames side by side: `faces` lists 0 (left) and 1 (right); `dub --face 1`
    says it dubbed face 1 and where."""
    import cv2

    left, _ = frames_of(shared_path("media", "04_square700_frontal.mp4"), 1)
    right, _ = frames_of(shared_path("media", "05_turned_head_224_glasses.mp4"), 1)
    right = cv2.resize(right[0], (left.shape[2] * right.shape[2] // right.shape[1], left.shape[1]))
    still = tmp_path / "two.png"
    cv2.imwrite(str(still), cv2.cvtColor(np.concatenate([left[0], right], axis=1), cv2.COLOR_RGB2BGR))
    code, out, err = run(["faces", still, "--detector", "dlib", "--json", "-q"], capsys)
    assert code == 0, err
    faces = json.loads(out)["faces"]
    assert [f["index"] for f in faces] == [0, 1]
    assert faces[0]["mean_box"][2] < 700 < faces[1]["mean_box"][0]  # 0 on the left image, 1 on the right
    speech = shared_path("media", "04b_dub_audio_en_44k.wav")
    code, out, err = run(["dub", still, speech, "-o", tmp_path / "o.mp4", "--model", wav2lip_ckpt, "--detector",
                          "dlib", "--face", "1", "--duration", "0.5", "--device", "cpu"], capsys)
    assert code == 0, err
    box = " ".join(f"{v:.0f}" for v in faces[1]["mean_box"])
    assert "face 1, mean box" in err and err.count("\n") >= 1
    summary_box = [float(v) for v in err.split("face 1, mean box ")[1].split(";")[0].split(")")[0].split()[:4]]
    assert np.allclose(summary_box, faces[1]["mean_box"], atol=40), (box, summary_box)  # dub pads the box a little


def test_a_piece_of_video_and_audio_in_sync_with_v_showing_our_lines_only(tmp_path, capsys, wav2lip_ckpt):
    """--start 1 --duration 1.5: the output is that piece of both inputs (picture above the mouth = the source
    frame at that time, sound = the source sound there); -v prints the device and model lines and nothing of
    numba; the summary says the video was trimmed."""
    from lipsync_cli import media

    video, speech = shared_path("media", "04_square700_frontal.mp4"), shared_path("media", "04b_dub_audio_en_44k.wav")
    out = tmp_path / "piece.mp4"
    code, stdout, err = run(["dub", video, speech, "-o", out, "--model", wav2lip_ckpt, "--detector", "dlib",
                             "--start", "1", "--duration", "1.5", "--device", "cpu", "-v"], capsys)
    assert code == 0, err
    assert "device cpu" in err and "family wav2lip" in err and "frames/s detected" in err and "stage seconds" in err
    assert "numba" not in err.lower()
    assert "trimmed to the audio" in err and "face 0 (--face largest)" in err
    got, info = frames_of(out)
    source, source_info = frames_of(video)
    first = round(1 * float(source_info.fps))
    assert abs(len(got) - round(1.5 * float(source_info.fps))) <= 1
    top = slice(0, 100)  # above the face box: never edited
    errors = [np.abs(got[0, top].astype(int) - frame[top]).mean() for frame in source]
    assert int(np.argmin(errors)) == first
    heard = media.load_audio(out)
    original = media.load_audio(speech)[round(first / float(source_info.fps) * 16000):][: len(heard)]
    assert abs(len(heard) / 16000 - 1.5) < 0.05
    lag = np.argmax(np.correlate(heard[4000:12000], original[3600:12400], mode="valid")) - 400
    assert abs(lag) <= 16  # within 1 ms (AAC round trip), not the half-frame a separate cut could leave


def test_output_container_and_help(tmp_path, capsys):
    """-o x.avi is refused before any work (the inputs need not even exist); help has no `<bool>`."""
    code, out, err = run(["dub", tmp_path / "missing.mp4", tmp_path / "missing.wav", "-o", tmp_path / "x.avi"], capsys)
    assert code == 2 and "x.avi" in err and ".mp4" in err and "not found" not in err
    for command in (["dub", "--help"], ["train", "generator", "--help"], ["faces", "--help"]):
        code, out, err = run(command, capsys)
        assert code == 0 and "--" in out and "<bool>" not in out, command
    assert "--gan / --no-gan" in run(["train", "generator", "--help"], capsys)[1]


def test_training_says_where_it_runs_and_shows_progress(synthetic_data, tmp_path, capsys):
    """A start line (device, precision, samples, run folder) before the first step, the progress bar with the
    latest losses, and --log-every lines, in a two-step expert run."""
    run_dir = tmp_path / "run"
    code, out, err = run(["train", "expert", synthetic_data, "-o", run_dir, "--batch-size", "2", "--max-steps", "2",
                          "--val-every", "2", "--log-every", "1", "--device", "cpu", "--workers", "0"], capsys)
    assert code == 0, err
    start = next(line for line in err.splitlines() if line.startswith("training "))
    assert "on cpu" in start and "fp32" in start and " train / " in start and str(run_dir) in start
    assert "log every 1" in start
    assert err.index(start) < err.index("step       1")  # said before the first step's line
    assert "step       2" in err  # --log-every 1: a line each step
    assert "2/2" in err and "loss" in err.split("2/2")[-1]  # the bar, finished, with the latest loss


# ---- evaluate: each part on its own -----------------------------------------------------------------


@pytest.fixture
def offline_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("LIPSYNC_OFFLINE", "1")
    monkeypatch.setenv("LIPSYNC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LIPSYNC_WEIGHTS_DIR", raising=False)


def test_evaluate_lse_without_the_expert_on_a_piece_and_says_it_resampled(tmp_path, capsys, caplog, speech_wav,
                                                                          offline_without_weights):
    """A commercial user without the (non-commercial) expert: `--syncnet X` still gives LSE JSON, with one
    warning about the expert; the 30 fps clip is said to be resampled; --start/--duration measure a piece."""
    from conftest import make_face_clip
    from syncnet_utils import write_syncnet_v2

    video = make_face_clip(tmp_path / "face30.mp4", seconds=2.0, fps=30, audio=speech_wav)
    syncnet = write_syncnet_v2(tmp_path / "syncnet_v2.model")
    code, out, err = run(["evaluate", video, "--syncnet", syncnet, "--detector", "dlib", "--device", "cpu",
                          "--start", "0.5", "--duration", "1", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["expert"] is None and report["sync"]["expert_sync_distance"] is None
    assert report["syncnet"]["weights"] == str(syncnet) and report["sync"]["lse_d"] is not None
    assert report["resampled"] == "30 fps → 25 fps"
    assert report["frames"] == 25  # 1 s of the piece at 25 fps
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "expert" in warnings[0], warnings


def test_evaluate_parts_skipped_on_purpose_and_nothing_to_measure(tmp_path, capsys, caplog, speech_wav,
                                                                  offline_without_weights):
    from conftest import make_face_clip

    video = make_face_clip(tmp_path / "face.mp4", seconds=1.0, audio=speech_wav)
    code, out, err = run(["evaluate", video, "--expert", "none", "--syncnet", "none", "--reference", video,
                          "--detector", "dlib", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "reconstruction against" in out and "expert:" not in out and "LSE" not in out
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    code, out, err = run(["evaluate", video, "--detector", "dlib", "--device", "cpu"], capsys)
    assert code == 3 and "nothing to measure" in err


def test_expert_offsets_use_upstreams_sign():
    """Audio 3 frames late (video i matches audio i + 3): -3, as syncnet_python's `vshift - argmin` says it."""
    from lipsync_cli.evaluation.expert_sync import sync_report

    rng = np.random.default_rng(0)
    audio = rng.standard_normal((60, 8)).astype(np.float32)
    video = audio[3:53] + 0.01 * rng.standard_normal((50, 8)).astype(np.float32)
    sync = sync_report(video, audio)
    assert sync["offset_frames"] == -3 and sync["offset_ms"] == -120
