"""LSE-D / LSE-C (the original SyncNet): conformance with syncnet_python's own outputs in
../shared/reference/syncnet/ (its README is the specification and gives the tolerances), the loader's
strictness, the crop rule, and `lipsync evaluate` end to end with a random-weight file in the public layout."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from cli_utils import lipsync_in_process
from conftest import make_face_clip, shared_path
from syncnet_utils import deterministic_state, write_syncnet_v2

# the README's suggested tolerances (maximum absolute difference)
TOL_MFCC = 1e-6
TOL_FEAT = 2e-3
TOL_DIST = 5e-3
TOL_SCORE = 2e-3
EXAMPLE = ("media", "09_syncnet_reference_example.avi")


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.fixture(scope="module")
def ref():
    return np.load(shared_path("reference", "syncnet", "syncnet_vectors.npz"))


@pytest.fixture(scope="module")
def arch():
    return json.loads(shared_path("reference", "syncnet", "syncnet_arch.json").read_text())


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """The README's deterministic weights (seed 1234), saved as the public file is: a bare state dict."""
    return write_syncnet_v2(tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model")


@pytest.fixture(scope="module")
def model(model_file):
    from lipsync_cli.evaluation import upstream_syncnet

    return upstream_syncnet.load(model_file)


def _full_frames(ref) -> np.ndarray:
    """Case C's 317 frames: the JPEG files upstream's evaluate() read, decoded with cv2 (BGR)."""
    import cv2

    data, off = ref["full_jpeg_data"], ref["full_jpeg_offsets"]
    return np.stack([cv2.imdecode(data[off[i]:off[i + 1]], cv2.IMREAD_COLOR) for i in range(len(off) - 1)])


@pytest.fixture(scope="module")
def case_c(ref, model):
    from lipsync_cli.evaluation import upstream_syncnet

    return upstream_syncnet.score(_full_frames(ref), ref["full_audio"], model, features=True)


class _LipTowerFromCaseC:
    """`model`, except that forward_lip answers from case C's run. README §3: cases A and B use case C's first
    100 frames, and a lip window's embedding depends on its own 5 frames only, so window v's embedding is case
    C's window v: the lip tower (nearly all of the CPU time) runs once, on case C. Every batch score() hands
    over is checked to be exactly case C's batch for those windows; the audio tower really runs."""

    def __init__(self, model, full_frames, full_im_feat):
        self.model, self.full_frames, self.full_im_feat, self.start = model, full_frames, full_im_feat, 0

    def parameters(self):
        return self.model.parameters()

    def forward_aud(self, mfcc):
        return self.model.forward_aud(mfcc)

    def forward_lip(self, batch):
        import torch

        from lipsync_cli.evaluation import upstream_syncnet

        stop = self.start + len(batch)
        assert torch.equal(batch, upstream_syncnet._lip_batch(self.full_frames, self.start, stop))
        self.start, start = stop, self.start
        return torch.from_numpy(self.full_im_feat[start:stop])


def _score_on_case_c_frames(ref, audio, model, case_c):
    from lipsync_cli.evaluation import upstream_syncnet

    full = _full_frames(ref)
    assert np.array_equal(ref["frames"], full[:100])  # README §3: "The first 100 decoded frames equal frames"
    return upstream_syncnet.score(ref["frames"], audio, _LipTowerFromCaseC(model, full, case_c["im_feat"]),
                                  features=True)


@pytest.fixture(scope="module")
def case_a(ref, model, case_c):
    return _score_on_case_c_frames(ref, ref["audio"], model, case_c)


@pytest.fixture(scope="module")
def case_b(ref, model, case_c):
    return _score_on_case_c_frames(ref, ref["shift_audio"], model, case_c)


# ---- the network and its file ----------------------------------------------------------------------


def test_state_dict_layout_is_upstreams(arch):
    from lipsync_cli.evaluation.upstream_syncnet_network import SyncNetV2

    net = SyncNetV2()
    own = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in net.state_dict().items()]
    assert own == arch["S"]["keys"]  # names, shapes, dtypes and order
    assert sum(p.numel() for p in net.parameters()) == arch["S"]["n_params"] == 13_631_616


def test_loader_reads_the_public_layout_bit_exactly(arch, model):
    """Every entry of the loaded network has the sha256 of the reference's deterministic weights."""
    state = model.state_dict()
    expected = {e["name"]: e["sha256_le_bytes"] for e in arch["deterministic_weights"]["per_key"]}
    got = {k: hashlib.sha256(v.numpy().astype(v.numpy().dtype.newbyteorder("<")).tobytes()).hexdigest()
           for k, v in state.items() if k in expected}
    assert got == expected
    assert not model.training  # BatchNorm must use the running statistics


@pytest.mark.parametrize("legacy, counters", [(True, True), (False, False), (True, False)])
def test_loader_accepts_legacy_serialisation_and_files_without_counters(tmp_path, legacy, counters):
    import torch

    from lipsync_cli.evaluation import upstream_syncnet

    path = write_syncnet_v2(tmp_path / "old.model", legacy=legacy, counters=counters)
    with open(path, "rb") as f:
        assert (f.read(2) == b"PK") is not legacy  # zip container only for the new format
    net = upstream_syncnet.load(path)
    ref = deterministic_state()
    assert all(torch.equal(net.state_dict()[k], ref[k]) for k in ref if not k.endswith("num_batches_tracked"))


def _bad_files(tmp_path) -> dict:
    import torch

    from lipsync_cli.evaluation.upstream_syncnet_network import SyncNetV2

    state = deterministic_state()
    files = {}
    missing = dict(state)
    del missing["netcnnlip.0.weight"]  # upstream would silently keep a random init here
    files["missing"] = missing
    files["unknown"] = {**state, "netcnnlip.99.weight": torch.zeros(3)}
    files["prefixed"] = {f"module.{k}": v for k, v in state.items()}
    files["misshaped"] = {**state, "netfcaud.3.weight": torch.zeros(512, 512)}
    out = {}
    for name, obj in files.items():
        out[name] = tmp_path / f"{name}.model"
        torch.save(obj, out[name])
    out["module"] = tmp_path / "module.model"
    torch.save(SyncNetV2(), out["module"])  # a pickled module: weights_only refuses it
    out["text"] = tmp_path / "text.model"
    out["text"].write_text("not a checkpoint\n")
    return out


@pytest.mark.parametrize("kind, needle", [
    ("missing", "1 missing"), ("unknown", "1 unknown"), ("prefixed", "102 unknown"),
    ("misshaped", "netfcaud.3.weight is [512, 512], expected [1024, 512]"),
    ("module", "other than weights"), ("text", "not a readable checkpoint"),
])
def test_loader_refuses_other_files_with_an_input_error(tmp_path, kind, needle):
    from lipsync_cli.evaluation import upstream_syncnet
    from lipsync_cli.errors import InputError

    with pytest.raises(InputError, match=re.escape(needle)):
        upstream_syncnet.load(_bad_files(tmp_path)[kind])


# ---- the metric, step by step (README §2-3) ----------------------------------------------------------


@pytest.mark.parametrize("audio, mfcc", [("audio", "mfcc"), ("shift_audio", "shift_mfcc"), ("full_audio", "full_mfcc")])
def test_mfcc_of_raw_int16(ref, audio, mfcc):
    from lipsync_cli.evaluation import upstream_syncnet

    ours = upstream_syncnet.MfccColumns(ref[audio])[:]
    assert ours.shape == ref[mfcc].shape and ours.dtype == np.float64
    assert _max_diff(ours, ref[mfcc]) <= TOL_MFCC
    # the int16 values go in unscaled: dividing by 32768 gives quite another MFCC
    assert _max_diff(upstream_syncnet.MfccColumns(ref[audio] / 32768.0)[:], ref[mfcc]) > 1.0


def test_trunk_outputs_of_window_0(ref, model):
    import torch

    from lipsync_cli.evaluation import upstream_syncnet

    with torch.inference_mode():
        lip = model.netcnnlip(upstream_syncnet._lip_batch(ref["frames"], 0, 1)).flatten(1)[0].numpy()
        aud = model.netcnnaud(torch.from_numpy(ref["mfcc"][:, :20].astype(np.float32))[None, None]).flatten(1)[0]
    assert _max_diff(lip, ref["lipfeat0"]) <= TOL_FEAT
    assert _max_diff(aud.numpy(), ref["audfeat0"]) <= TOL_FEAT


def _check_case(ours: dict, ref, prefix: str, im_feat: str) -> None:
    assert ours["im_feat"].shape == ref[im_feat].shape
    assert _max_diff(ours["im_feat"], ref[im_feat]) <= TOL_FEAT
    assert _max_diff(ours["cc_feat"], ref[prefix + "cc_feat"]) <= TOL_FEAT
    for key in ("dists", "fdist", "fconf", "fconfm"):
        assert _max_diff(ours[key], ref[prefix + key]) <= TOL_DIST, key
    assert _max_diff(ours["mdist"], ref[prefix + "mdist"]) <= TOL_SCORE
    assert abs(ours["lse_d"] - float(ref[prefix + "minval"])) <= TOL_SCORE
    assert abs(ours["median"] - float(ref[prefix + "median"])) <= TOL_SCORE
    assert abs(ours["lse_c"] - float(ref[prefix + "conf"])) <= TOL_SCORE
    assert ours["offset"] == int(ref[prefix + "offset"]) and ours["minidx"] == int(ref[prefix + "minidx"])


def test_case_a_first_100_frames(case_a, ref):
    assert case_a["windows"] == 95  # min_length - 5, not - 4
    _check_case(case_a, ref, "", "im_feat")


def test_case_b_audio_delayed_3_frames(case_b, ref):
    _check_case(case_b, ref, "shift_", "im_feat")


def test_case_b_shift_relations_hold_on_our_output(case_a, case_b):
    """Independent of the weights: delaying the audio by 3 frames moves audio windows and distances by 3."""
    assert _max_diff(case_b["cc_feat"][3:], case_a["cc_feat"][:-3]) <= 1e-4
    i, k = np.meshgrid(np.arange(95), np.arange(31), indexing="ij")
    real = (i + k - 15 >= 3) & (i + k - 15 < 95) & (k >= 3)
    shifted = np.zeros_like(case_a["dists"])
    shifted[:, 3:] = case_a["dists"][:, :-3]
    assert _max_diff(case_b["dists"][real], shifted[real]) <= 1e-3


def test_a_stream_of_crops_is_scored_as_it_comes(ref, model, case_c, case_a):
    """LSE never holds the video's crops: score() reads a stream front to back and embeds each batch of windows
    as soon as its frames are in (a full batch of 20 needs frames 0..24), with case A's exact result."""
    from lipsync_cli.evaluation import upstream_syncnet

    drawn = []

    def stream():
        for frame in ref["frames"]:
            drawn.append(frame)
            yield frame

    class Tower(_LipTowerFromCaseC):  # checks every batch's frames; records how much of the stream was read
        def forward_lip(self, batch):
            read_at.append(len(drawn))
            return super().forward_lip(batch)

    read_at = []
    got = upstream_syncnet.score(stream(), ref["audio"], Tower(model, _full_frames(ref), case_c["im_feat"]))
    assert read_at == [25, 45, 65, 85, 100]  # windows 0-19 at frame 24 ... the last 15 once the stream ended
    assert got["frames"] == 100 and got["windows"] == case_a["windows"] == 95
    assert np.array_equal(got["dists"], case_a["dists"]) and got["lse_d"] == case_a["lse_d"]


def test_mfcc_in_parts_equals_one_call_on_the_whole_signal():
    """Long audio is framed 10 s at a time (memory flat in length); the boundaries change nothing."""
    import python_speech_features

    from lipsync_cli.evaluation import upstream_syncnet

    audio = (np.random.default_rng(0).standard_normal(16000 * 25 + 1234) * 3000).astype(np.int16)
    whole = python_speech_features.mfcc(audio, 16000).T
    assert whole.shape == (13, 2507)  # two parts: 1000 + 1507 columns
    np.testing.assert_allclose(upstream_syncnet.MfccColumns(audio)[:], whole, rtol=0, atol=1e-9)


def test_mfcc_columns_made_a_slice_at_a_time_are_the_whole_signals_and_only_the_reached_parts_are_kept():
    """What embed_batches reads per batch of windows: any slice, across a part boundary too, is the one-call MFCC's,
    and a slice keeps only the 10 s parts it reaches (LSE's memory flat in the audio's length)."""
    import python_speech_features

    from lipsync_cli.evaluation import upstream_syncnet

    audio = (np.random.default_rng(1).standard_normal(16000 * 35 + 777) * 3000).astype(np.int16)
    whole = python_speech_features.mfcc(audio, 16000).T
    columns = upstream_syncnet.MfccColumns(audio)
    assert columns.n_cols == whole.shape[1] == 3504 and columns.bounds == [0, 1000, 2000, 3504]
    for first, stop in [(0, 20), (980, 1020), (1996, 2016), (2000, 3504), (3484, 3504), (40, 60)]:
        got = columns[first:stop]
        np.testing.assert_allclose(got, whole[:, first:stop], rtol=0, atol=1e-9, err_msg=f"{first}:{stop}")
        reached = {k for k, (a, b) in enumerate(zip(columns.bounds, columns.bounds[1:])) if a < stop and b > first}
        assert set(columns.parts.kept) == reached


def test_case_c_whole_demo_clip(case_c, ref):
    assert case_c["windows"] == 312
    _check_case(case_c, ref, "full_", "full_im_feat")


@pytest.mark.parametrize("prefix", ["", "shift_", "full_"])
def test_scores_from_stored_distances_are_exact(ref, prefix):
    """The reduction alone (zero-padded shifts in the mean, lower median, first argmin, zero-padded medfilt)."""
    from lipsync_cli.evaluation import upstream_syncnet

    got = upstream_syncnet.summarise(ref[prefix + "dists"])
    assert np.array_equal(got["mdist"], ref[prefix + "mdist"])
    assert got["lse_d"] == float(ref[prefix + "minval"]) and got["lse_c"] == float(ref[prefix + "conf"])
    assert got["offset"] == int(ref[prefix + "offset"])
    assert _max_diff(got["fconfm"], ref[prefix + "fconfm"]) <= 1e-6


@pytest.mark.parametrize("windows, batches", [(312, [20] * 15 + [12]), (7, [3, 4]), (1, [1]), (40, [40])])
def test_distances_row_by_row_as_embeddings_arrive_equal_distances(ref, windows, batches):
    """DistanceRows (what score() uses, so LSE holds no whole-video embeddings) gives distances()'s result, bit for
    bit, whatever batches the embeddings arrive in, for videos shorter and longer than the ±15 shifts (distances()
    itself is checked against upstream's stored distances below)."""
    import torch

    from lipsync_cli.evaluation import upstream_syncnet

    im, cc = ref["full_im_feat"][:windows], ref["full_cc_feat"][:windows]
    rows, start = upstream_syncnet.DistanceRows(), 0
    for size in batches:
        rows.add(torch.from_numpy(im[start:start + size]), torch.from_numpy(cc[start:start + size]))
        start += size
    assert start == windows
    assert np.array_equal(rows.finish(), upstream_syncnet.distances(im, cc))


def test_distances_from_stored_embeddings(ref):
    from lipsync_cli.evaluation import upstream_syncnet

    got = upstream_syncnet.distances(ref["full_im_feat"], ref["full_cc_feat"])
    assert got.shape == (312, 31) and _max_diff(got, ref["full_dists"]) <= TOL_DIST
    # the padded shifts really use zero vectors (+ eps): d = ||im_feat + 1e-6||
    assert got[0, 0] == pytest.approx(np.linalg.norm(ref["full_im_feat"][0].astype(np.float64) + 1e-6), rel=1e-5)


def test_too_short_input_is_an_input_error(model):
    from lipsync_cli.evaluation import upstream_syncnet
    from lipsync_cli.errors import InputError

    with pytest.raises(InputError, match="at least 6 frames"):
        upstream_syncnet.score(np.zeros((5, 224, 224, 3), np.uint8), np.zeros(16000, np.int16), model)
    with pytest.raises(InputError, match="uint8 BGR"):
        upstream_syncnet.score(np.zeros((10, 96, 96, 3), np.uint8), np.zeros(16000, np.int16), model)


# ---- the crop step (README §4) ------------------------------------------------------------------


def test_crop_rule_matches_run_pipeline():
    from lipsync_cli.evaluation import lse_crop

    crop = np.load(shared_path("reference", "syncnet", "lse_crop.npz"))
    s, x, y = lse_crop.smoothed_boxes(crop["crop_track_bbox"])
    assert np.array_equal(s, crop["crop_s"]) and np.array_equal(x, crop["crop_x"]) and np.array_equal(y, crop["crop_y"])
    for j, i in enumerate(crop["crop_src_index"]):
        bsi, window = lse_crop.crop_window(s[i], x[i], y[i], float(crop["crop_scale"]))
        assert bsi == crop["crop_bsi"][j] and window == tuple(crop["crop_slices"][j])
        out = lse_crop.crop_face(crop["crop_src"][j], s[i], x[i], y[i])
        assert out.shape == (224, 224, 3) and _max_diff(out, crop["crop_out"][j]) <= 1
    # frame 29 runs past the right and bottom edges: the grey padding is in the crop
    assert (lse_crop.crop_face(crop["crop_src"][2], s[29], x[29], y[29])[-5:, -5:] == 110).all()


def test_cut_padded_equals_numpy_pad():
    from lipsync_cli.evaluation import lse_crop

    frame = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    for window in [(0, 30, 0, 20), (5, 95, 3, 130), (50, 80, 70, 90), (0, 200, 0, 200)]:
        padded = np.pad(frame, ((30, 30), (30, 30), (0, 0)), constant_values=110)
        expected = padded[window[0]:window[1], window[2]:window[3]]
        assert np.array_equal(lse_crop._cut_padded(frame, 30, *window), expected)


# ---- upstream's ffmpeg steps -----------------------------------------------------------------------


def _ffmpeg_like_reference() -> bool:
    """The stored JPEG bytes came from ffmpeg 5.1.x; other versions may encode differently."""
    from lipsync_cli.media import ffmpeg_exe

    out = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout
    return out.startswith("ffmpeg version 5.1.")


def test_int16_audio_and_jpeg_frames_as_upstream(ref):
    from lipsync_cli.media import upstream

    video = shared_path(*EXAMPLE)
    audio = upstream.audio_int16(video)
    assert audio.dtype == np.int16 and np.array_equal(audio, ref["full_audio"])
    frames = upstream.jpeg_frames(video)
    assert frames.shape == (317, 224, 224, 3)
    if not _ffmpeg_like_reference():
        pytest.skip("this ffmpeg is not 5.1.x: its JPEG bytes may differ from the reference's")
    assert [hashlib.sha256(f.tobytes()).hexdigest() for f in frames] == list(ref["full_frames_sha256"])


# ---- `lipsync evaluate` end to end -----------------------------------------------------------------


@pytest.fixture(scope="module")
def expert_file(tmp_path_factory):
    from ckpt_utils import write_public_checkpoint

    return write_public_checkpoint(tmp_path_factory.mktemp("expert") / "lipsync_expert.pth", "syncnet")


def _evaluate(*args, env=None, capfd=None):
    """`lipsync evaluate ARGS`: a process of its own, or with capfd in this process (tests/cli_utils.py)."""
    args = ["evaluate", *map(str, args), "--detector", "dlib", "--device", "cpu"]
    if capfd is not None:
        return lipsync_in_process(capfd, *args)
    cmd = [sys.executable, "-m", "lipsync_cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_cli_on_the_demo_clip_reports_the_library_result(model_file, model, ref, case_c, capfd, monkeypatch):
    """`lipsync evaluate` in this process on the whole demo clip. Where this ffmpeg decodes the clip to case C's
    exact frames (5.1.x, see above), its SyncNet lip tower answers from case C's run, each batch checked to be
    exactly case C's (as for cases A and B): the CLI's frames, windows, audio tower and report are its own."""
    from lipsync_cli.evaluation import lse, upstream_syncnet

    video = shared_path(*EXAMPLE)
    same_frames = _ffmpeg_like_reference()
    if same_frames:
        tower = _LipTowerFromCaseC(model, _full_frames(ref), case_c["im_feat"])
        monkeypatch.setattr(upstream_syncnet, "load", lambda path, device="cpu": tower)
    proc = _evaluate(video, "--expert", "none", "--syncnet", model_file, "--face-crop", "none", "--json",
                     capfd=capfd)  # our expert beside LSE in one report: test_30fps_clip_is_scored_at_25fps_...
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    if same_frames:
        assert tower.start == len(case_c["im_feat"])  # every window's lips were asked for, in order
        lib = {"lse_d": case_c["lse_d"], "lse_c": case_c["lse_c"], "av_offset_frames": case_c["offset"],
               "av_offset_ms": 40 * case_c["offset"], "mdist": [float(v) for v in case_c["mdist"]]}
    else:
        lib = lse.measure(video, None, model, None, jpeg=True)
    for key in ("lse_d", "lse_c", "av_offset_frames", "av_offset_ms"):
        assert report["sync"][key] == report["syncnet"][key] == lib[key], key
    assert report["syncnet"]["mdist"] == lib["mdist"] and len(lib["mdist"]) == 31
    assert report["syncnet"]["jpeg"] is True and report["syncnet"]["face_crop"] == "none"
    assert report["syncnet"]["windows"] == 312 and sum(r["windows"] for r in report["syncnet"]["per_second"]) == 312
    assert report["sync"]["av_offset_ms"] == 40 * report["sync"]["av_offset_frames"]
    assert report["expert"] is None and report["sync"].get("expert_sync_distance") is None  # --expert none
    # upstream's own numbers for this clip and these weights
    assert abs(report["sync"]["lse_d"] - float(ref["full_minval"])) <= TOL_SCORE
    assert abs(report["sync"]["lse_c"] - float(ref["full_conf"])) <= TOL_SCORE
    assert report["sync"]["av_offset_frames"] == int(ref["full_offset"])


def test_30fps_clip_is_scored_at_25fps_on_a_detected_face(tmp_path, speech_wav, model_file, expert_file, capsys):
    """Library call with the rich report: a 30 fps clip, our dlib track, upstream's crop, no JPEG step."""
    from lipsync_cli.config import SyncNetConfig
    from lipsync_cli.evaluation.evaluate import evaluate

    video = make_face_clip(tmp_path / "face30.mp4", seconds=2.0, fps=30, audio=speech_wav)
    report = evaluate(video, expert=str(expert_file), detector="dlib", device="cpu",
                      syncnet=SyncNetConfig(weights=str(model_file), jpeg=False))
    lse = report["syncnet"]
    assert lse["face_crop"] == "auto" and lse["jpeg"] is False
    assert lse["frames"] == 50 and lse["windows"] == 45  # 2 s at 25 fps, min_length - 5 windows
    assert -15 <= lse["av_offset_frames"] <= 15 and np.isfinite(lse["lse_d"]) and lse["lse_c"] >= 0
    assert report["silence"]["metric"].startswith("ours") and report["silence"]["mouth_opening_speaking"] > 0
    out = capsys.readouterr().out
    assert "LSE-D" in out and "LSE-C" in out and "JPEG round trip off" in out and "face crop auto" in out
    assert "LSE per second" in out and "expert sync" in out


def test_clip_without_a_face(tmp_path, speech_wav, model_file, expert_file, capfd):
    from fractions import Fraction

    from lipsync_cli.evaluation import lse
    from lipsync_cli.errors import InputError
    from lipsync_cli.faces.track import FaceTrack
    from lipsync_cli.media import VideoWriter

    video = tmp_path / "wall.mp4"
    with VideoWriter(video, 160, 120, Fraction(25), audio=speech_wav) as writer:
        for _ in range(25):
            writer.write(np.full((120, 160, 3), 90, np.uint8))
    proc = _evaluate(video, "--expert", expert_file, "--syncnet", model_file, capfd=capfd)
    assert proc.returncode == 1 and "no face found" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    empty = FaceTrack(np.full((25, 4), np.nan, np.float32), np.full((25, 68, 2), np.nan, np.float32))
    with pytest.raises(InputError, match="LSE-D/LSE-C need a visible face"):
        lse.measure(video, None, None, empty)


@pytest.mark.parametrize("kind, needle", [("expert", "not syncnet_python's syncnet_v2.model"),
                                          ("text", "not a readable checkpoint")])
def test_wrong_file_as_syncnet_weights_is_one_line_exit_1(tmp_path, expert_file, kind, needle, capfd):
    weights = expert_file if kind == "expert" else _bad_files(tmp_path)["text"]
    proc = _evaluate(shared_path(*EXAMPLE), "--expert", expert_file, "--syncnet", weights, capfd=capfd)
    assert proc.returncode == 1, proc.stderr
    assert needle in proc.stderr and proc.stderr.startswith("error:")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_bad_face_crop_value_is_a_usage_error(capfd):
    proc = _evaluate("a.mp4", "--face-crop", "square", capfd=capfd)
    assert proc.returncode == 2 and "--face-crop" in proc.stderr


def test_track_span_interpolates_short_gaps_and_keeps_the_longest_run():
    from lipsync_cli.evaluation import lse
    from lipsync_cli.faces.track import FaceTrack

    boxes = np.tile(np.array([10, 20, 110, 120], np.float32), (100, 1))
    boxes[:, 0] += np.arange(100)
    boxes[0:3] = np.nan  # not scored: before the face appears
    boxes[10:20] = np.nan  # a 10-frame miss: interpolated
    boxes[60:90] = np.nan  # a 30-frame miss (> 25): splits the track
    first, stop, span = lse.track_span(FaceTrack(boxes, np.zeros((100, 68, 2), np.float32)), "v.mp4")
    assert (first, stop) == (3, 60) and len(span) == 57
    assert np.allclose(span[:, 0], 10 + np.arange(3, 60))  # the straight line through the gap


# ---- with the real weights (only where a real syncnet_v2.model is present) --------------------------


def _real_weights():
    from lipsync_cli import weights

    path = os.environ.get("LIPSYNC_SYNCNET_V2")
    if path and os.path.isfile(path):
        return path
    local = weights.find_local(weights.entry("syncnet_v2"))
    if local is None:
        pytest.skip("no real syncnet_v2.model here (set LIPSYNC_SYNCNET_V2 or run `lipsync weights download syncnet_v2`)")
    return str(local)


def test_real_weights_reproduce_the_published_demo_result(expert_file):
    """syncnet_python's README: AV offset 3, min dist 5.353, confidence 10.021 on example.avi. Our JPEG bytes
    are those of this ffmpeg, not of the authors' 2018 one, hence the tolerance."""
    proc = _evaluate(shared_path(*EXAMPLE), "--expert", expert_file, "--syncnet", _real_weights(),
                     "--face-crop", "none", "--json")
    assert proc.returncode == 0, proc.stderr
    sync = json.loads(proc.stdout)["sync"]
    print(sync)
    assert sync["av_offset_frames"] == 3
    assert sync["lse_d"] == pytest.approx(5.353, abs=0.05)
    assert sync["lse_c"] == pytest.approx(10.021, abs=0.1)


def test_real_weights_follow_an_audio_delay():
    """README §3: delaying example.avi's audio by 1920 samples (3 frames) should give offset 0; also prints
    how much the JPEG step moves the scores with the real weights (for the documentation)."""
    from lipsync_cli.evaluation import lse, upstream_syncnet
    from lipsync_cli.media import upstream

    video = shared_path(*EXAMPLE)
    model = upstream_syncnet.load(_real_weights())
    audio = upstream.audio_int16(video)
    delayed = np.concatenate([np.zeros(1920, np.int16), audio[:-1920]])
    frames = upstream.jpeg_frames(video)
    assert upstream_syncnet.score(frames, delayed, model)["offset"] == 0
    raw = lse.measure(video, None, model, None, jpeg=False)
    print(f"without the JPEG step: LSE-D {raw['lse_d']:.3f}, LSE-C {raw['lse_c']:.3f}, offset {raw['av_offset_frames']}")
