"""`lipsync evaluate`: the metric functions on arrays, then the sync measure and the reconstruction
report on real encoded clips with a real (trained) expert."""

from __future__ import annotations

import math

import numpy as np
import pytest
from cli_utils import lipsync_in_process
from synthetic import WHOLE_FRAME, synthetic_clip, write_wav

from lipsync_cli.evaluation import metrics


def _textured(seed: int = 0, size: int = 64) -> np.ndarray:
    """A smooth-but-detailed RGB uint8 image (random blobs), so SSIM and the Laplacian have structure."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
    return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)


# ---- metrics on arrays ---------------------------------------------------------------------------


def test_psnr_identical_is_inf_and_known_value():
    a = _textured()
    assert metrics.psnr(a, a) == math.inf
    b = a.astype(np.int16) + 5  # every pixel off by 5 → MSE 25
    b = np.clip(b, 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / mse))


def test_psnr_only_counts_masked_pixels():
    a = _textured()
    b = a.copy()
    b[:, :32] = 0  # damage only the left half
    right = np.zeros(a.shape[:2], bool)
    right[:, 32:] = True
    assert metrics.psnr(a, b, right) == math.inf
    assert metrics.psnr(a, b, ~right) < 20


def test_ssim_matches_scikit_image_and_is_one_for_identical():
    from skimage.metrics import structural_similarity

    a, b = _textured(0), _textured(1)
    noisy = np.clip(a + np.random.default_rng(2).normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    for other in (b, noisy):
        expected = structural_similarity(a, other, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=255)
        assert metrics.ssim(a, other) == pytest.approx(expected, abs=1e-6)
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    assert metrics.ssim(a, a, np.ones(a.shape[:2], bool)) == pytest.approx(1.0)


def test_sharpness_drops_when_blurred_and_respects_mask():
    import cv2

    a = _textured(size=96)
    blurred = cv2.GaussianBlur(a, (0, 0), 2.0)
    assert metrics.sharpness(blurred) < 0.5 * metrics.sharpness(a)
    flat_left = a.copy()
    flat_left[:, :48] = 128
    left = np.zeros(a.shape[:2], bool)
    left[:, 4:44] = True
    assert metrics.sharpness(flat_left, left) == 0.0
    assert metrics.sharpness(flat_left, ~left) > 0.0


def test_landmark_distances_after_normalisation():
    rng = np.random.default_rng(0)
    lm = rng.uniform(100, 200, (68, 2))
    box = np.array([100, 100, 200, 200], np.float32)  # 100-pixel face box
    ref = metrics.normalise_landmarks(lm, box)
    assert metrics.landmark_distance(ref, ref, metrics.MOUTH) == 0.0
    moved = lm.copy()
    moved[48:68, 1] += 10  # mouth 10 px lower = 0.1 face box
    gen = metrics.normalise_landmarks(moved, box)
    assert metrics.landmark_distance(ref, gen, metrics.MOUTH) == pytest.approx(0.1)
    assert metrics.landmark_distance(ref, gen, metrics.FACE) == pytest.approx(0.1 * 20 / 68)
    # frames without a face (NaN) are skipped rather than poisoning the mean
    seq_a, seq_b = np.stack([ref, np.full_like(ref, np.nan)]), np.stack([gen, gen])
    assert metrics.landmark_distance(seq_a, seq_b, metrics.MOUTH) == pytest.approx(0.1)


def test_masks_from_boxes_and_mouth_landmarks():
    mask = metrics.box_mask(np.array([-5, 2, 10, 300]), (20, 30))
    assert mask.shape == (20, 30) and mask[2:, :10].all() and mask.sum() == 18 * 10
    lm = np.zeros((68, 2), np.float32)
    lm[48:68] = [[40, 60], [60, 60], [50, 70], [50, 50]] * 5
    assert metrics.mouth_box(lm, margin=0.5).tolist() == [30, 40, 70, 80]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_offset_search_finds_a_known_shift():
    rng = np.random.default_rng(0)
    audio = _unit(rng.normal(size=(60, 16)))
    video = audio[3:53] + 0.05 * rng.normal(size=(50, 16))  # window i looks like audio i+3
    video[10] = np.nan  # a frame without a face
    dist = metrics.offset_distances(video, audio, max_offset=15)
    assert dist.shape == (50, 31)
    assert np.isnan(dist[0, 0]) and np.isnan(dist[10]).all()  # audio index -15 does not exist
    report = metrics.sync_summary(dist, 15)
    assert report["offset_frames"] == 3
    assert report["windows"] == 49
    assert report["distance"] < 0.3 and report["confidence"] > 1.0
    # unrelated audio: no offset stands out
    other = metrics.sync_summary(metrics.offset_distances(video, _unit(rng.normal(size=(60, 16))), 15), 15)
    assert other["confidence"] < 0.3 * report["confidence"]


def test_offset_distances_in_blocks_are_each_pairs_distance():
    """offset_distances works OFFSET_ROWS windows at a time (memory bounded in the video's length); every entry,
    across the block boundaries, is still |v_i - a_(i+k)|, NaN where i + k is outside the audio."""
    rng = np.random.default_rng(3)
    n, m = 2 * metrics.OFFSET_ROWS + 37, 2 * metrics.OFFSET_ROWS + 20
    video, audio = _unit(rng.normal(size=(n, 8))), _unit(rng.normal(size=(m, 8)))
    dist = metrics.offset_distances(video, audio, max_offset=15)
    want = np.array([[np.linalg.norm(video[i] - audio[i + k]) if 0 <= i + k < m else np.nan for k in range(-15, 16)]
                     for i in range(n)])
    np.testing.assert_allclose(dist, want, rtol=1e-12, atol=0)
    assert np.isfinite(dist[m - 1, :16]).all() and np.isnan(dist[m - 1, 16:]).all() and np.isnan(dist[-1]).all()


class _MeanExpert:
    """A stand-in for the expert: each window's embedding is its 15 channels' means, each mel window's its 80
    bands' means; it records how many lower halves had been read at each forward pass."""

    def __init__(self, read: list):
        self.read, self.read_at = read, []

    def __call__(self, mel, faces):
        self.read_at.append(self.read[0])
        return mel.mean(dim=(1, 3)), faces.mean(dim=(2, 3))


def test_expert_embeds_a_stream_of_lower_halves_a_batch_at_a_time():
    """evaluate's expert reads the lower halves as they are cropped: a batch of windows is embedded once its frames
    are in (BATCH + 4 held, never the whole video), and window i is frames i..i+4 on channels, in order."""
    from lipsync_cli.evaluation import expert_sync

    rng = np.random.default_rng(4)
    n = 2 * expert_sync.BATCH + 22
    halves = rng.integers(0, 256, size=(n, 48, 96, 3), dtype=np.uint8)
    read = [0]

    def stream():
        for half in halves:
            read[0] += 1
            yield half

    net = _MeanExpert(read)
    wav = rng.normal(scale=0.1, size=16000 * (n // 25 + 2)).astype(np.float32)
    video_emb, audio_emb = expert_sync.embed(net, stream(), np.ones(n, bool), wav, "cpu")
    assert net.read_at == [expert_sync.BATCH + 4, 2 * expert_sync.BATCH + 4, n]
    assert video_emb.shape == (n - 4, 15) and len(audio_emb) == n - 4 + expert_sync.MAX_OFFSET
    channels = halves.astype(np.float64).mean(axis=(1, 2)) / 255  # (n, 3) RGB means of each half
    want = np.stack([channels[i:i + 5].reshape(-1) for i in range(n - 4)])  # frame-major, then RGB
    np.testing.assert_allclose(video_emb, want, rtol=1e-5)


def test_expert_loss_low_in_sync_high_off_sync():
    rng = np.random.default_rng(0)
    a = _unit(np.abs(rng.normal(size=(20, 8))))
    assert metrics.expert_loss(a, a) == pytest.approx(0.0, abs=1e-6)
    assert metrics.expert_loss(a, np.roll(a, 5, axis=0)) > 0.1


# ---- on encoded clips ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_expert(tmp_path_factory):
    from ckpt_utils import write_public_checkpoint

    return write_public_checkpoint(tmp_path_factory.mktemp("expert") / "lipsync_expert.pth", "syncnet")


@pytest.fixture(scope="module")
def talking_face(tmp_path_factory, speech_wav):
    """3 s of a real face (the astronaut) with speech: dlib finds it and its 68 landmarks."""
    from conftest import make_face_clip

    return make_face_clip(tmp_path_factory.mktemp("talking") / "face.mp4", audio=speech_wav)


def test_cli_reconstruction_of_identical_videos(talking_face, random_expert, capsys):
    """`lipsync evaluate --reference` of a video against itself: PSNR inf, SSIM 1, LMD 0; JSON is strict."""
    import json

    from lipsync_cli.cli import main

    with pytest.raises(SystemExit) as done:
        main(["evaluate", str(talking_face), "--reference", str(talking_face), "--expert", str(random_expert),
              "--detector", "dlib", "--device", "cpu", "--json"])
    assert done.value.code == 0
    report = json.loads(capsys.readouterr().out)
    rec = report["reconstruction"]
    assert rec["psnr_mouth"] == "inf" and rec["psnr_face"] == "inf"
    assert rec["ssim_mouth"] == pytest.approx(1.0) and rec["ssim_face"] == pytest.approx(1.0)
    assert rec["m_lmd"] == 0.0 and rec["f_lmd"] == 0.0
    assert rec["frames"] == report["frames"] == 75
    assert rec["sharpness_mouth"] == rec["sharpness_mouth_reference"] > 0
    assert report["expert"] == str(random_expert)
    # named so nobody mistakes them for the papers' SyncNet LSE-D / LSE-C
    assert {"expert_sync_distance", "expert_sync_confidence", "offset_frames", "offset_ms"} <= set(report["sync"])
    assert len(report["per_second"]) == 3 and sum(r["windows"] for r in report["per_second"]) == 75 - 4


def test_blurred_copy_loses_sharpness(talking_face, random_expert, tmp_path):
    import cv2

    from lipsync_cli import media
    from lipsync_cli.evaluation.evaluate import evaluate

    info = media.probe(talking_face)
    blurred = tmp_path / "blurred.mp4"
    audio = write_wav(tmp_path / "speech.wav", media.load_audio(talking_face))
    with media.VideoWriter(blurred, info.width, info.height, info.fps, audio=audio) as writer:
        for frame in media.iter_frames(talking_face, info):
            writer.write(cv2.GaussianBlur(frame, (0, 0), 2.5))
    rec = evaluate(blurred, reference=talking_face, expert=str(random_expert), detector="dlib",
                   device="cpu")["reconstruction"]
    assert rec["sharpness_mouth"] < 0.5 * rec["sharpness_mouth_reference"]
    assert 20 < rec["psnr_face"] < math.inf and rec["ssim_mouth"] < 0.99
    assert rec["m_lmd"] < 0.05  # a blurred face still has its landmarks where they were


def test_rich_report_names_the_expert_and_offsets(tmp_path, random_expert, capsys):
    from lipsync_cli.evaluation.evaluate import evaluate

    video, _ = synthetic_clip(tmp_path, seed=1, seconds=2.0)
    report = evaluate(video, expert=str(random_expert), box=WHOLE_FRAME, device="cpu")
    out = capsys.readouterr().out
    assert str(random_expert) in out and "not the paper LSE-D/LSE-C" in out
    assert "expert sync" in out and "per second" in out
    assert report["frames"] == 50 and len(report["per_second"]) == 2
    assert -15 <= report["sync"]["offset_frames"] <= 15
    assert report["sync"]["offset_ms"] == 40 * report["sync"]["offset_frames"]


def test_no_face_is_a_clear_input_error(tmp_path, random_expert, speech_wav):
    from fractions import Fraction

    from lipsync_cli.errors import InputError
    from lipsync_cli.evaluation.evaluate import evaluate
    from lipsync_cli.media import VideoWriter

    video = tmp_path / "wall.mp4"
    with VideoWriter(video, 160, 120, Fraction(25), audio=speech_wav) as writer:
        for _ in range(25):
            writer.write(np.full((120, 160, 3), 90, np.uint8))
    with pytest.raises(InputError, match="no face found"):
        evaluate(video, expert=str(random_expert), detector="dlib", device="cpu")


# ---- LSE-D / LSE-C (original SyncNet) beside the expert ---------------------------------------------


def test_missing_default_syncnet_weights_still_report_the_expert(tmp_path, random_expert, monkeypatch, caplog):
    """Offline without syncnet_v2.model: the expert's figures are reported, the LSE figures are null and a
    warning says why (the default --syncnet is optional; a named one is not, see the next test)."""
    from lipsync_cli.evaluation.evaluate import evaluate, to_json

    monkeypatch.setenv("LIPSYNC_OFFLINE", "1")
    monkeypatch.setenv("LIPSYNC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LIPSYNC_WEIGHTS_DIR", raising=False)
    video, _ = synthetic_clip(tmp_path, seed=3, seconds=1.0)
    report = evaluate(video, expert=str(random_expert), box=WHOLE_FRAME, device="cpu", as_json=True)
    assert report["syncnet"]["weights"] is None and "offline" in report["syncnet"]["skipped"]
    assert {k: report["sync"][k] for k in ("lse_d", "lse_c", "av_offset_frames", "av_offset_ms")} == dict.fromkeys(
        ("lse_d", "lse_c", "av_offset_frames", "av_offset_ms"))
    assert np.isfinite(report["sync"]["expert_sync_distance"])
    assert "LSE-D/LSE-C not measured" in caplog.text
    assert '"lse_d": null' in to_json(report)


def test_named_syncnet_weights_missing_offline_is_exit_3(tmp_path, random_expert, monkeypatch, capfd):
    video, _ = synthetic_clip(tmp_path, seed=4, seconds=1.0)
    monkeypatch.setenv("LIPSYNC_OFFLINE", "1")
    monkeypatch.setenv("LIPSYNC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LIPSYNC_WEIGHTS_DIR", raising=False)
    proc = lipsync_in_process(capfd, "evaluate", video, "--expert", random_expert, "--syncnet", "syncnet_v2",
                              "--device", "cpu")
    assert proc.returncode == 3, proc.stderr
    assert "syncnet_v2" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_list_of_videos_reports_each_and_the_mean_over_videos(tmp_path, random_expert):
    """Dataset mode: one row per video, the mean counts each video once, a bad entry is listed, not fatal."""
    from lipsync_cli.config import SyncNetConfig
    from lipsync_cli.evaluation.evaluate import evaluate
    from syncnet_utils import write_syncnet_v2

    one, _ = synthetic_clip(tmp_path, seed=5, seconds=1.0)
    two, _ = synthetic_clip(tmp_path, seed=6, seconds=2.0)  # twice as long: still one vote
    (tmp_path / "broken.mp4").write_text("not a video")
    listing = tmp_path / "set.txt"
    listing.write_text(f"# test set\n{one.name}\n{two.name},{two.name}\nbroken.mp4\n")
    lse = SyncNetConfig(weights=str(write_syncnet_v2(tmp_path / "syncnet_v2.model")), face_crop="none")
    result = evaluate(listing, expert=str(random_expert), box=WHOLE_FRAME, device="cpu", syncnet=lse, as_json=True)
    assert [r["video"] for r in result["videos"]] == [str(one), str(two)]
    assert [f["video"] for f in result["failed"]] == [str(tmp_path / "broken.mp4")]
    for key in ("lse_d", "lse_c", "expert_sync_distance"):
        values = [r["sync"][key] for r in result["videos"]]
        assert result["mean"][key] == pytest.approx(sum(values) / 2), key
    assert result["mean"]["videos"] == 2 and "psnr_face" not in result["mean"]  # only one video has a reference
    assert result["videos"][1]["reconstruction"]["psnr_face"] == math.inf


# ---- our silence measure ---------------------------------------------------------------------------


def _landmarks_with_opening(openings: np.ndarray) -> np.ndarray:
    """(N, 68, 2) landmarks of a 100-px-wide jaw whose inner lips are `openings` x 100 px apart."""
    lm = np.zeros((len(openings), 68, 2), np.float32)
    lm[:, 16, 0] = 100.0  # jaw width 100
    lm[:, 62, 1] = 50.0
    lm[:, 66, 1] = 50.0 + 100.0 * openings
    return lm


def test_silence_measure_finds_the_pause_and_the_mouth_moving_in_it():
    from lipsync_cli.evaluation import silence

    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    wav = np.concatenate([tone, np.zeros(16000, np.float32), tone])  # speech, 1 s pause, speech
    silent = silence.silent_frames(wav, 75, 25)
    assert silent[27:48].all() and not silent[:23].any() and not silent[52:].any()
    short = np.concatenate([tone, np.zeros(1600, np.float32), tone])  # a 0.1 s gap between words: not silence
    assert not silence.silent_frames(short, 50, 25).any()
    closed_in_pause = np.where(silent, 0.0, 0.2)
    good = silence.silence_report(wav, _landmarks_with_opening(closed_in_pause), 25)
    assert good["mouth_opening_silent"] == pytest.approx(0.0) and good["mouth_opening_speaking"] == pytest.approx(0.2)
    assert good["silent_seconds"] == pytest.approx(silent.sum() / 25) and good["silent_to_speaking_ratio"] == 0
    mumbling = silence.silence_report(wav, _landmarks_with_opening(np.full(75, 0.2)), 25)
    assert mumbling["silent_to_speaking_ratio"] == pytest.approx(1.0)
    assert silence.silence_report(wav, np.full((75, 68, 2), np.nan), 25)["mouth_opening_silent"] is None
