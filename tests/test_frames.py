"""Which source frame each output frame shows, and the bounded-memory frame source."""

import numpy as np

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
