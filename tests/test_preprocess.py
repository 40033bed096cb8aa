"""`lipsync preprocess`: a nested folder of real-face clips -> the SPEC dataset layout, with skips,
re-runs, shards, workers and the CLI; plus the pure parts (discovery, split, gap policy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_utils import lipsync_in_process
from conftest import ffmpeg_bin, make_face_clip, make_speech, shared_path

from lipsync_cli.config import PreprocessConfig
from lipsync_cli.data.clip import fill_gaps, longest_run, to_crop_coords
from lipsync_cli.data.preprocess import preprocess, write_manifest
from lipsync_cli.data.sources import assign_splits, find_clips, shard, split_groups
from lipsync_cli.faces.base import FaceDetector

CFG = PreprocessConfig(detector="dlib", device="cpu", val_fraction=0.3)
GOOD = {"anna/take1", "anna/take2", "bob/take1"}
BAD = {"bob/noface.mp4": "no face", "cara/silent.mp4": "no audio", "cara/broken.mp4": "undecodable",
       "cara/blip.mp4": "too short"}


def _lavfi_clip(path: Path, video: str, audio: str | None, seconds: float) -> Path:
    cmd = [ffmpeg_bin(), "-y", "-v", "error", "-f", "lavfi", "-i", f"{video}=size=160x120:rate=25"]
    if audio:
        cmd += ["-f", "lavfi", "-i", audio]
    cmd += ["-t", str(seconds), "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """speaker/clip tree: three real-face clips with speech and four that must be skipped."""
    root = tmp_path_factory.mktemp("src")
    for speaker in ("anna", "bob", "cara"):
        (root / speaker).mkdir()
    speech = make_speech(root / "speech.wav")  # no video stream: .wav is not a video suffix, so not a clip
    # 400 px frames: dlib's HOG upsamples smaller frames, which costs more than the bigger decode
    make_face_clip(root / "anna" / "take1.mp4", seconds=2.0, size=400, audio=speech)
    make_face_clip(root / "anna" / "take2.mp4", seconds=1.2, size=400, audio=speech)
    make_face_clip(root / "bob" / "take1.mp4", seconds=1.2, size=400, audio=speech)
    _lavfi_clip(root / "bob" / "noface.mp4", "testsrc", "sine=frequency=440", 1.2)
    make_face_clip(root / "cara" / "silent.mp4", seconds=1.2)
    make_face_clip(root / "cara" / "blip.mp4", seconds=0.4, audio=speech)
    (root / "cara" / "broken.mp4").write_bytes(b"this is not a video" * 50)
    return root


@pytest.fixture(scope="module")
def dataset(src, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    return out, preprocess(src, out, CFG, quiet=True)


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_layout_matches_spec(dataset):
    out, report = dataset
    manifest = _manifest(out)
    assert (manifest["version"], manifest["size"], manifest["fps"]) == (1, 96, 25)
    assert {c["id"] for c in manifest["clips"]} == GOOD
    for clip in manifest["clips"]:
        folder = out / "clips" / clip["id"]
        faces = np.load(folder / "faces.npy", mmap_mode="r")
        mel = np.load(folder / "mel.npy")
        landmarks = np.load(folder / "landmarks.npy")
        boxes = np.load(folder / "boxes.npy")
        meta = json.loads((folder / "meta.json").read_text())
        n = clip["frames"]
        assert isinstance(faces, np.memmap) and faces.dtype == np.uint8 and faces.shape == (n, 96, 96, 3)
        assert mel.dtype == np.float32 and mel.shape[0] == 80
        assert abs(mel.shape[1] - 80 * clip["seconds"]) <= 2
        assert landmarks.dtype == np.float32 and landmarks.shape == (n, 68, 2)
        assert boxes.dtype == np.float32 and boxes.shape == (n, 4) and np.isfinite(boxes).all()
        assert (meta["fps"], meta["frames"]) == (25, n) and meta["src"].endswith(clip["id"] + ".mp4")
        assert clip["seconds"] == pytest.approx(n / 25)
    lengths = {c["id"]: c["frames"] for c in manifest["clips"]}
    assert 45 <= lengths["anna/take1"] <= 50 and 27 <= lengths["bob/take1"] <= 30
    assert report.clips == 3 and report.seconds == pytest.approx(sum(c["seconds"] for c in manifest["clips"]))


def test_crops_hold_the_face_and_landmarks_fit_them(dataset):
    out, _ = dataset
    faces = np.load(out / "clips" / "anna/take1" / "faces.npy", mmap_mode="r")
    landmarks = np.load(out / "clips" / "anna/take1" / "landmarks.npy")
    known = np.isfinite(landmarks).all(axis=(1, 2))
    assert known.mean() > 0.9  # dlib gives 68 points on nearly every frame of this clip
    points = landmarks[known]
    assert (points > -10).all() and (points < 106).all()  # inside the 96-pixel crop, give or take the padding
    mouth_y, eyes_y = points[:, 48:68, 1].mean(), points[:, 36:48, 1].mean()
    assert 48 < mouth_y < 96 and 10 < eyes_y < 48  # upright: eyes in the upper half, mouth in the lower
    assert faces.std() > 20 and float(np.abs(np.diff(faces.astype(np.float32), axis=0)).mean()) > 0.5


def test_unusable_clips_are_skipped_with_reasons(dataset, src):
    out, report = dataset
    skipped = {Path(s["src"]).relative_to(src).as_posix(): s["reason"] for s in _manifest(out)["skipped"]}
    assert skipped == BAD
    assert all(s["detail"] for s in _manifest(out)["skipped"])
    assert not (out / "clips" / "bob" / "noface").exists()
    assert report.skipped == {"no face": 1, "no audio": 1, "undecodable": 1, "too short": 1}


def test_split_keeps_speakers_together(dataset):
    out, _ = dataset
    splits = {c["id"]: c["split"] for c in _manifest(out)["clips"]}
    assert splits["anna/take1"] == splits["anna/take2"]
    assert set(splits.values()) == {"train", "val"}
    assert write_manifest(out, CFG)["clips"] == _manifest(out)["clips"]  # rebuilding changes nothing


def test_rerun_skips_finished_clips(dataset, src):
    out, _ = dataset
    files = [p for p in (out / "clips").rglob("*") if p.is_file()] + list((out / "skipped").rglob("*.json"))
    before = {p: p.stat().st_mtime_ns for p in files}
    manifest = _manifest(out)
    report = preprocess(src, out, CFG, quiet=True)
    assert report.processed == 0 and report.already_done == len(GOOD) + len(BAD)
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert _manifest(out) == manifest


def test_cli_shards_with_workers_cover_every_clip_once(dataset, src, tmp_path, capfd):
    """Two shards (the first in this process, the second a process of its own with a process pool) into one OUT:
    the same dataset as one run."""
    out, _ = dataset
    shared_out = tmp_path / "ds"
    args = ["preprocess", str(src), str(shared_out), "--detector", "dlib", "--val-fraction", "0.3"]
    first = lipsync_in_process(capfd, *args, "--shard", "0/2", "-q")
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    part = _manifest(shared_out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    second = subprocess.run([sys.executable, "-m", "lipsync_cli", *args, "--shard", "1/2", "--workers", "2"],
                            capture_output=True, text=True, env=env)
    assert second.returncode == 0, second.stderr
    assert "clips done" in second.stderr and "skipped: no face" in second.stderr
    whole = _manifest(shared_out)
    ids = [c["id"] for c in whole["clips"]]
    assert sorted(ids) == sorted(GOOD) and len(ids) == len(set(ids))
    assert len(whole["skipped"]) == len(BAD)
    assert 0 < len(part["clips"]) + len(part["skipped"]) < len(GOOD) + len(BAD)
    assert whole["clips"] == _manifest(out)["clips"]  # same frames, seconds and split as the single run


def test_shards_partition_the_sorted_clips(src):
    clips = find_clips(src)
    parts = [shard(clips, i, 3) for i in range(3)]
    ids = [c.id for part in parts for c in part]
    assert sorted(ids) == sorted(c.id for c in clips) and len(ids) == len(set(ids))
    assert [c.id for c in parts[0]] == [c.id for c in clips][0::3]


def test_find_clips_groups_nested_by_folder_and_flat_by_clip(tmp_path):
    for name in ("x/a.mp4", "x/b.MOV", "y/z/c.mkv", "d.avi", "d.mpg", ".hidden/e.mp4", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    clips = {c.id: c.group for c in find_clips(tmp_path)}
    assert clips == {"x/a": "x", "x/b": "x", "y/z/c": "y", "d": "d", "d_mpg": "d_mpg"}


def test_split_is_deterministic_and_always_has_val():
    groups = [f"spk{k}" for k in range(20)]
    val = split_groups(groups, 0.1, seed=0)
    assert len(val) == 2 and val == split_groups(list(reversed(groups)), 0.1, seed=0)
    assert split_groups(groups, 0.1, seed=1) != val
    assert len(split_groups(["a", "b"], 0.01, 0)) == 1 and split_groups(["a"], 0.5, 0) == set()
    assert split_groups(["a", "b"], 0.9, 0) != {"a", "b"}  # never everything in val
    one_speaker = assign_splits({"s/1": "s", "s/2": "s", "s/3": "s"}, 0.1, 0)
    assert sorted(one_speaker.values()) == ["train", "train", "val"]


def test_short_face_gaps_are_interpolated_long_ones_cut():
    nan = [np.nan] * 4
    boxes = np.array([[0, 0, 10, 10], nan, nan, [4, 4, 14, 14], nan, nan, nan, [0, 0, 10, 10]], dtype=np.float32)
    filled = fill_gaps(boxes, max_gap=2)
    np.testing.assert_allclose(filled[1:3], [[4 / 3] * 2 + [10 + 4 / 3] * 2, [8 / 3] * 2 + [10 + 8 / 3] * 2])
    assert np.isnan(filled[4:7]).all()  # three frames > max_gap: left missing
    assert longest_run(~np.isnan(filled).any(axis=1)) == (0, 4)
    assert np.isnan(fill_gaps(np.array([nan, [0, 0, 1, 1]], dtype=np.float32), 5)[0]).all()  # edges never filled
    assert longest_run(np.array([False, True, True, False, True, True, True])) == (4, 7)
    assert longest_run(np.zeros(3, bool)) == (0, 0)


@pytest.mark.parametrize("region", [(30, 20, 70, 60), (10, 5, 210, 185)])  # enlarged and shrunk 4:3-ish boxes
def test_landmarks_land_where_the_crop_shows_them(region):
    """A bright dot at a frame pixel is found in the crop at to_crop_coords of that pixel."""
    from lipsync_cli.faces.crop import crop

    frame = np.zeros((200, 240, 3), np.uint8)
    frame[47:50, 52:55] = 255  # 3x3 dot centred on pixel (x=53, y=48)
    crop_img = crop(frame, np.array(region, np.float32), 96)[..., 0].astype(np.float64)
    ys, xs = np.mgrid[:96, :96]
    weights = np.clip(crop_img - 40, 0, None)  # drop the ringing of cubic upscaling
    seen = np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()
    mapped = to_crop_coords(np.array([[[53, 48]]], np.float32), np.array([region], np.float32), 96)[0, 0]
    np.testing.assert_allclose(mapped, seen, atol=0.35)


@pytest.mark.slow
def test_grid_clips_in_place(tmp_path):
    """Two real GRID clips (read in place through symlinks): both become clips of ~3 s."""
    grid = shared_path("datasets", "grid")
    src = tmp_path / "src" / "grid_speaker"
    src.mkdir(parents=True)
    for name in ("bbaf2n.mpg", "lbax4n.mpg"):
        (src / name).symlink_to(grid / name)
    report = preprocess(tmp_path / "src", tmp_path / "ds", CFG, quiet=True)
    manifest = _manifest(tmp_path / "ds")
    assert report.clips == 2, manifest["skipped"]
    for clip in manifest["clips"]:
        assert 70 <= clip["frames"] <= 76
        assert np.load(tmp_path / "ds" / "clips" / clip["id"] / "mel.npy").shape[1] == pytest.approx(
            80 * clip["seconds"], abs=2)


class _GappyDetector(FaceDetector):
    """A fake backend: one fixed face with landmarks, except in the frames listed as missing."""

    name = "fake"

    def __init__(self, missing: set[int]):
        self.missing, self.seen = missing, 0

    def detect(self, frames, max_side=None):
        from lipsync_cli.faces.base import Face

        grid = np.stack(np.meshgrid(np.linspace(150, 250, 17), np.linspace(150, 250, 4)), -1).reshape(-1, 2)[:68]
        out = []
        for _ in frames:
            face = Face(np.array([100, 100, 300, 300], np.float32), 1.0, grid.astype(np.float32))
            out.append([] if self.seen in self.missing else [face])
            self.seen += 1
        return out


def test_long_face_gap_keeps_the_longest_stretch_with_its_own_audio(src, tmp_path):
    """Frames 0-49: no face in 15..24 (cut), none in 35..36 (filled): frames 25..49 are kept,
    and their mel is the mel of exactly their audio."""
    from lipsync_cli.audio import log_mel
    from lipsync_cli.data.clip import process_clip
    from lipsync_cli.data.sources import ClipSource
    from lipsync_cli.media import load_audio

    path = src / "anna" / "take1.mp4"
    meta = process_clip(ClipSource("anna/take1", path, "anna"), tmp_path / "c", CFG,
                        _GappyDetector(set(range(15, 25)) | {35, 36}))
    assert (meta["start_frame"], meta["frames"], meta["interpolated_frames"]) == (25, meta["source_frames"] - 25, 2)
    np.testing.assert_array_equal(np.load(tmp_path / "c" / "mel.npy"),
                                  log_mel(load_audio(path)[25 * 640:(25 + meta["frames"]) * 640]))
    landmarks = np.load(tmp_path / "c" / "landmarks.npy")
    assert np.isnan(landmarks[10:12]).all() and np.isfinite(np.delete(landmarks, [10, 11], axis=0)).all()
    assert np.load(tmp_path / "c" / "faces.npy").shape[0] == meta["frames"]


def test_unexpected_clip_errors_are_recorded_and_retried(src, tmp_path, monkeypatch):
    import lipsync_cli.data.preprocess as pre

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(pre, "process_clip", broken)
    first = preprocess(src, tmp_path, CFG, quiet=True)
    assert first.skipped == {"error": len(GOOD) + len(BAD)} and first.clips == 0
    assert all("RuntimeError: boom" in s["detail"] for s in _manifest(tmp_path)["skipped"])
    assert preprocess(src, tmp_path, CFG, quiet=True).processed == len(GOOD) + len(BAD)  # not final: tried again


def test_bad_detector_or_changed_size_stop_the_run(src, dataset, tmp_path):
    from lipsync_cli.errors import UsageError

    with pytest.raises(UsageError, match="unknown face detector"):
        preprocess(src, tmp_path, PreprocessConfig(detector="nope", device="cpu"), quiet=True)
    with pytest.raises(UsageError, match="--size 96"):
        preprocess(src, dataset[0], PreprocessConfig(detector="dlib", size=64), quiet=True)
