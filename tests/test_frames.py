"""Which source frame each output frame shows, and the bounded-memory frame source."""

import numpy as np
import pytest

from lipsync_cli.frames import FrameSource, chunks, is_monotonic, source_plan


def test_trim_when_video_longer_than_audio():
    assert source_plan(5, 100).tolist() == [0, 1, 2, 3, 4]


def test_pingpong_loops_back_and_forth_without_a_jump():
    plan = source_plan(12, 4, "pingpong")
    assert plan.tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1]
    assert np.abs(np.diff(plan)).max() == 1


def test_forward_loop_restarts():
    assert source_plan(7, 3, "forward").tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_still_image_repeats_its_only_frame():
    assert source_plan(4, 1).tolist() == [0, 0, 0, 0]


def test_chunks_cover_everything_once():
    parts = list(chunks(10, 4))
    assert [(p.start, p.stop) for p in parts] == [(0, 4), (4, 8), (8, 10)]


def _frames(n, shape=(6, 8, 3)):
    for i in range(n):
        yield np.full(shape, i, dtype=np.uint8)


def test_monotonic_plan_streams_and_repeats():
    plan = np.array([0, 0, 1, 3, 3])
    assert is_monotonic(plan)
    with FrameSource(_frames(4), 4, (6, 8, 3), monotonic=True) as src:
        got = [int(f[0, 0, 0]) for f in src.take(plan)]
    assert got == [0, 0, 1, 3, 3]


def test_looping_plan_spools_to_disk_and_reads_back_by_index(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    plan = source_plan(9, 3)
    assert not is_monotonic(plan)
    src = FrameSource(_frames(3), 3, (6, 8, 3), monotonic=False)
    frames = src.take(plan)
    assert [int(f[0, 0, 0]) for f in frames] == plan.tolist()
    frames[0][:] = 99  # callers may edit frames in place: the source must not change
    assert int(src.take([0])[0][0, 0, 0]) == 0
    assert any(tmp_path.iterdir())
    src.close()
    assert not any(tmp_path.iterdir()), "the spool file must be removed on close"


def test_spool_lives_in_the_given_folder_and_is_removed(tmp_path):
    with FrameSource(_frames(3), 3, (6, 8, 3), monotonic=False, spool_dir=tmp_path) as src:
        spools = list(tmp_path.glob(".lipsync-spool-*"))
        assert len(spools) == 1 and (spools[0] / "frames.rgb").stat().st_size == 3 * 6 * 8 * 3
        assert [int(f[0, 0, 0]) for f in src.take([2, 0, 1])] == [2, 0, 1]
    assert list(tmp_path.iterdir()) == []


def test_a_spool_left_by_a_killed_run_is_removed_and_a_live_one_kept(tmp_path):
    """A real SIGKILL (no cleanup runs in the victim); the check made before a dub removes its spool only."""
    import signal
    import subprocess
    import sys

    from lipsync_cli.frames import check_spool_space, open_spool

    code = ("import os, signal, sys\nfrom lipsync_cli.frames import open_spool\nfolder, lock = open_spool(sys.argv[1])\n"
            "(folder / 'frames.rgb').write_bytes(b'x' * 1000)\nos.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (stale,) = tmp_path.glob(".lipsync-spool-*")
    live, lock = open_spool(tmp_path)  # another run's spool, in use right now
    try:
        check_spool_space(tmp_path, 3, (6, 8, 3))
        assert not stale.exists() and live.is_dir()
    finally:
        lock.close()


def test_dub_refuses_a_loop_spool_that_cannot_fit_before_any_work(tmp_path, monkeypatch):
    """A 1 s video under ~4 s of speech must loop; with (patched) 1 MB free the dub stops at once: one clear error,
    nothing written, no model loaded."""
    from conftest import make_face_clip, make_speech

    import lipsync_cli.frames
    import lipsync_cli.pipeline
    from lipsync_cli.config import DubConfig, FaceConfig
    from lipsync_cli.errors import InputError
    from lipsync_cli.pipeline import dub

    video = make_face_clip(tmp_path / "one.mp4", seconds=1.0)
    speech = make_speech(tmp_path / "s.wav", "Four seconds of speech or so, for the loop.")
    spool = tmp_path / "spool"
    spool.mkdir()
    loads = []
    monkeypatch.setattr(lipsync_cli.pipeline, "load_for", lambda *a: loads.append(a))
    monkeypatch.setattr(lipsync_cli.frames, "disk_free", lambda folder: 1 << 20)
    cfg = DubConfig(faces=FaceConfig(box=(0, 0, 100, 100)), device="cpu", quiet=True, tmp_dir=str(spool))
    with pytest.raises(InputError, match=r"not enough free space in .*spool to loop the video: .* --tmp-dir"):
        dub(video, speech, tmp_path / "out.mp4", cfg)
    assert loads == [] and sorted(p.name for p in tmp_path.iterdir()) == ["one.mp4", "s.wav", "spool"]
    assert list(spool.iterdir()) == []
