"""Face backends (contract tests on real faces), the registry, tracking/smoothing and crops."""

from __future__ import annotations

import urllib.error
from dataclasses import replace

import numpy as np
import pytest
from conftest import SHARED, astronaut_face, shared_path

from lipsync_cli.config import FaceConfig
from lipsync_cli.errors import UsageError, WeightsError
from lipsync_cli.faces import Face, FaceDetector, detector_names, get_detector
from lipsync_cli.faces import track as tracking
from lipsync_cli.faces.crop import crop, pixel_box, uncrop

# ---- backends -----------------------------------------------------------------------------------


MEDIAPIPE_WEIGHTS = SHARED / "models" / "mediapipe"  # the real face_landmarker.task (absent on users' machines)


def _available_backends() -> list:
    names = ["mediapipe"] if (MEDIAPIPE_WEIGHTS / "face_landmarker.task").is_file() else []
    try:
        import dlib  # noqa: F401

        names.append("dlib")
    except ImportError:
        pass
    try:  # face_alignment only where its weights are already on disk (they can't be downloaded in CI)
        from lipsync_cli.faces import face_alignment_backend

        face_alignment_backend.prepare_files("sfd", download=False)
        names.append("face_alignment")
    except Exception:
        pass
    return names


BACKENDS = _available_backends()
_detectors: dict = {}


def detector(name: str) -> FaceDetector:
    if name not in _detectors:
        with pytest.MonkeyPatch.context() as patch:  # the path is resolved (and verified) once, when loading
            patch.setenv("LIPSYNC_WEIGHTS_DIR", str(MEDIAPIPE_WEIGHTS))
            _detectors[name] = get_detector(name)
    return _detectors[name]


def video_frames(name: str, count: int, step: int = 10) -> list:
    """Every `step`-th of the first count*step frames of a shared clip, (H, W, 3) uint8 RGB."""
    import cv2

    cap = cv2.VideoCapture(str(shared_path("media", name)))
    frames = []
    for i in range(count * step):
        ok, frame = cap.read()
        if not ok:
            break
        if i % step == 0:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    assert len(frames) == count
    return frames


def assert_inside(face: Face, shape) -> None:
    x1, y1, x2, y2 = face.box
    assert 0 <= x1 < x2 <= shape[1] and 0 <= y1 < y2 <= shape[0]
    assert face.box.dtype == np.float32 and face.box.shape == (4,)


def test_some_backend_can_run_here():
    assert "dlib" in BACKENDS, "dlib (test extra dlib-bin + face-recognition-models) must be installed for the tests"


@pytest.mark.parametrize("name", BACKENDS)
def test_finds_the_face_on_a_face_photo(name):
    image = astronaut_face()
    faces = detector(name).detect([image])[0]
    assert len(faces) == 1
    face = faces[0]
    assert_inside(face, image.shape)
    # The astronaut's nose tip is near (225, 130) and her chin near (222, 178) in the 512x512 photo.
    x1, y1, x2, y2 = face.box
    assert x1 < 225 < x2 and y1 < 130 < y2 and y2 >= 170
    assert 70 < x2 - x1 < 160
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
    assert np.linalg.norm(face.landmarks[30] - (225, 128)) < 15  # nose tip point of the 68 layout


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("clip", ["05_turned_head_224_glasses.mp4", "04_square700_frontal.mp4"])
def test_finds_the_face_in_real_video_frames(name, clip):
    frames = video_frames(clip, 4)
    for faces, frame in zip(detector(name).detect(frames, max_side=640), frames):
        assert len(faces) >= 1
        face = faces[0]
        assert_inside(face, frame.shape)
        assert face.box[2] - face.box[0] > 0.2 * frame.shape[1]  # a talking head fills a good part of the frame
        mouth = face.landmarks[48:68].mean(axis=0)
        assert face.box[0] < mouth[0] < face.box[2] and (face.box[1] + face.box[3]) / 2 < mouth[1] < face.box[3]


def test_dlib_finds_the_turned_head_in_every_frame():
    """Clip 05 turns the head to 3/4 profile: dlib's default HOG threshold loses it for 10 frames;
    the backend's weak-detection rescue must keep every frame."""
    frames = video_frames("05_turned_head_224_glasses.mp4", 106, step=1)
    track = tracking.detect_track(iter(frames), detector("dlib"), FaceConfig(detector="dlib"))
    assert track.found.all()
    assert (track.boxes[:, 2] - track.boxes[:, 0] > 60).all()


@pytest.mark.parametrize("name", BACKENDS)
def test_finds_no_face_where_there_is_none(name):
    from skimage import data

    solid = np.full((360, 480, 3), (30, 60, 200), dtype=np.uint8)
    assert detector(name).detect([data.coffee(), solid]) == [[], []]


@pytest.mark.parametrize("name", BACKENDS)
def test_batch_equals_frame_by_frame(name):
    frames = video_frames("05_turned_head_224_glasses.mp4", 3) + [np.zeros((224, 224, 3), np.uint8)]
    batch = detector(name).detect(frames)
    single = [detector(name).detect([frame])[0] for frame in frames]
    assert [len(f) for f in batch] == [len(f) for f in single] == [1, 1, 1, 0]
    for a, b in zip(batch, single):
        for fa, fb in zip(a, b):
            np.testing.assert_allclose(fa.box, fb.box, atol=1e-3)
            np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=1e-3)


@pytest.mark.parametrize("name", BACKENDS)
def test_downscaled_detection_maps_back_to_full_resolution(name):
    import cv2

    image = cv2.resize(astronaut_face(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    full = detector(name).detect([astronaut_face()])[0][0]
    small = detector(name).detect([image], max_side=512)[0][0]  # detected at 512, reported at 1024
    # dlib's points are whole pixels at 512, i.e. steps of 2 at 1024, and the two resizes differ a little
    np.testing.assert_allclose(small.box, full.box * 2, atol=6)
    np.testing.assert_allclose(small.landmarks, full.landmarks * 2, atol=6)


# ---- registry and the face_alignment backend offline ---------------------------------------------


def test_unknown_detector_is_a_usage_error_listing_the_names():
    for bad in ("mtcnn", "face_alignment:nope", "dlib:sfd"):
        with pytest.raises(UsageError, match="mediapipe, face_alignment, face_alignment:sfd.*dlib"):
            get_detector(bad)
    assert {"dlib", "face_alignment", "face_alignment:blazeface"} <= set(detector_names())


def test_face_alignment_without_its_files_is_a_weights_error(monkeypatch):
    from lipsync_cli.faces import face_alignment_backend

    def offline(detector, **kwargs):
        raise WeightsError(f"weights for {detector} not found locally and offline")

    monkeypatch.setattr(face_alignment_backend, "prepare_files", offline)
    with pytest.raises(WeightsError, match="sfd") as err:
        get_detector("face_alignment")
    assert err.value.exit_code == 3


def test_face_alignment_download_failure_inside_the_library_is_a_weights_error(monkeypatch):
    """Detectors whose files weights.toml does not pin are fetched by face-alignment itself: offline
    that fails deep inside it, and the user must still get one line and exit code 3."""
    from face_alignment.detection.blazeface import blazeface_detector

    from lipsync_cli.faces import face_alignment_backend

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution\nsecond line")

    monkeypatch.setattr(face_alignment_backend, "prepare_files", lambda detector, **kw: {})
    monkeypatch.setattr(blazeface_detector, "load_state_dict_from_url", no_network)
    with pytest.raises(WeightsError) as err:
        get_detector("face_alignment:blazeface")
    message = str(err.value)
    assert "\n" not in message and "blazeface" in message and "--detector dlib" in message


class _FakeFaceAlignment:
    """Stands in for face_alignment.FaceAlignment: one face whose box and landmarks are fixed
    fractions of the frame it is given (so scaling back from the downscaled frame is observable)."""

    class face_detector:  # noqa: N801 (mirrors the attribute name of the real object)
        @staticmethod
        def detect_from_batch(batch):
            _, _, height, width = batch.shape
            faces = [[0.25 * width, 0.2 * height, 0.75 * width, 0.9 * height, 0.99],
                     [0.0, 0.0, 0.1 * width, 0.1 * height, 0.6]]
            return [np.array(faces, dtype=np.float32) for _ in range(batch.shape[0])]

    @staticmethod
    def get_landmarks_from_image(frame, detected_faces):
        height, width = frame.shape[:2]
        grid = np.stack(np.meshgrid(np.linspace(0.3, 0.7, 17), np.linspace(0.3, 0.8, 4)), -1).reshape(-1, 2)[:68]
        return [grid * (width, height) for _ in detected_faces]


@pytest.mark.parametrize("variant", ["sfd", "blazeface"])
def test_face_alignment_backend_converts_its_results(monkeypatch, variant):
    from lipsync_cli.faces import face_alignment_backend as backend

    monkeypatch.setattr(backend, "_load", lambda device, detector: _FakeFaceAlignment())
    fa = get_detector("face_alignment" if variant == "sfd" else "face_alignment:blazeface")
    faces = fa.detect([np.zeros((400, 800, 3), np.uint8)] * 2, max_side=200)
    assert len(faces) == 2 and [f.score for f in faces[0]] == pytest.approx([0.99, 0.6])
    face = faces[0][0]
    np.testing.assert_allclose(face.landmarks[0], (0.3 * 800, 0.3 * 400), atol=1)
    if variant == "sfd":  # S3FD's own box, scaled back to 800x400
        np.testing.assert_allclose(face.box, (200, 80, 600, 360), atol=1)
    else:  # other detectors: the box comes from the landmarks (forehead added above them)
        assert face.box[0] == pytest.approx(0.3 * 800, abs=1) and face.box[3] == pytest.approx(0.8 * 400, abs=1)
        assert face.box[1] < 0.3 * 400


def test_dlib_without_its_predictor_package_says_how_to_install(monkeypatch):
    import importlib.util

    from lipsync_cli.faces import dlib_backend

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    with pytest.raises(WeightsError, match=r'pip install "lipsync-cli\[dlib\]"'):
        dlib_backend.DlibDetector()


# ---- tracking -----------------------------------------------------------------------------------


class ScriptedDetector(FaceDetector):
    """Returns scripted faces per frame index (frames carry their index in pixel [0, 0, 0]) and records
    how many frames each call received."""

    name = "scripted"

    def __init__(self, script):
        self.script = script
        self.calls = []

    def _detect(self, frames):
        self.calls.append(len(frames))
        return [[Face(np.array(b, np.float32), 1.0, None) for b in self.script(int(f[0, 0, 0]))] for f in frames]


def numbered_frames(n, produced=None, size=(100, 200)):
    for i in range(n):
        if produced is not None:
            produced.append(i)
        frame = np.zeros((*size, 3), np.uint8)
        frame[0, 0, 0] = i
        yield frame


CFG = FaceConfig(pads=(0, 0, 0, 0), smooth_window=1, detect_max_side=0)


def choosing(face: str) -> FaceConfig:
    return replace(CFG, face=face)


def run_track(script, n, cfg=CFG, **kwargs):
    return tracking.detect_track(numbered_frames(n), ScriptedDetector(script), cfg, **kwargs)


LEFT, RIGHT = [10, 10, 50, 50], [120, 20, 180, 80]  # RIGHT is the larger face


def test_face_choice_largest_center_and_index():
    assert run_track(lambda i: [LEFT, RIGHT], 3).boxes[0].tolist() == RIGHT
    centre = [80, 30, 110, 60]
    assert run_track(lambda i: [LEFT, centre, RIGHT], 3, choosing("center")).boxes[0].tolist() == centre
    assert run_track(lambda i: [RIGHT, LEFT], 3, choosing("0")).boxes[0].tolist() == LEFT
    assert run_track(lambda i: [RIGHT, LEFT], 3, choosing("1")).boxes[0].tolist() == RIGHT


def test_chosen_face_is_followed_not_re_chosen():
    """From frame 3 the left face grows larger than the right one: 'largest' must keep the right one."""
    def script(i):
        grow = 0 if i < 3 else 70
        return [[10, 10, 50 + grow, 50 + grow // 2], [120 + i, 20, 180 + i, 80]]

    track = run_track(script, 8)
    assert track.found.all()
    np.testing.assert_array_equal(track.boxes[:, 0], 120 + np.arange(8))


def test_missing_frames_are_nan_and_index_choice_waits_for_its_face():
    track = run_track(lambda i: [] if i in (0, 4) else [LEFT, RIGHT][: 1 if i < 2 else 2], 7, choosing("1"))
    assert track.found.tolist() == [False, False, True, True, False, True, True]
    assert np.isnan(track.landmarks[0]).all() and track.boxes[2].tolist() == RIGHT


def test_index_never_available_is_a_usage_error():
    with pytest.raises(UsageError, match="--face 3"):
        run_track(lambda i: [LEFT, RIGHT], 3, FaceConfig(face="3"))


def test_lost_face_reacquired_only_when_alone():
    jump = [100, 40, 150, 90]  # no overlap with LEFT: a camera cut
    alone = run_track(lambda i: [LEFT] if i < 3 else [jump], 6)
    assert alone.found.all() and alone.boxes[5].tolist() == jump
    crowd = run_track(lambda i: [LEFT, [160, 60, 190, 95]] if i < 3 else [jump], 6, choosing("0"))
    assert crowd.found.tolist() == [True] * 3 + [False] * 3


def test_smoothing_removes_jitter_but_not_across_a_scene_cut():
    rng = np.random.default_rng(0)
    jitter = rng.normal(0, 3, size=(40, 4))

    def script(i):
        base = np.array([40, 20, 100, 80] if i < 20 else [130, 10, 190, 70], np.float64)  # cut at 20
        return [(base + jitter[i]).tolist()]

    cfg = FaceConfig(pads=(0, 0, 0, 0), smooth_window=5, scene_cut_threshold=0.3, detect_max_side=0)
    raw = run_track(script, 40, FaceConfig(pads=(0, 0, 0, 0), smooth_window=1, detect_max_side=0)).boxes
    smooth = run_track(script, 40, cfg).boxes
    assert np.diff(smooth[2:18], axis=0).std() < 0.6 * np.diff(raw[2:18], axis=0).std()
    # frames next to the cut average only their own scene: no box dragged halfway between the two places
    assert smooth[19][0] < 50 and smooth[20][0] > 120
    assert tracking.scene_segments(raw, 0.3) == [(0, 20), (20, 40)]


def test_gap_resets_smoothing_and_pads_are_applied_and_clipped():
    def script(i):
        return [] if i == 5 else [[0 + i, 10, 60 + i, 70]]

    cfg = FaceConfig(pads=(5, 20, 3, 4), smooth_window=3, detect_max_side=0)
    track = run_track(script, 10, cfg, frame_size=(100, 200))
    assert tracking.scene_segments(run_track(script, 10).boxes, 0.3) == [(0, 5), (6, 10)]
    assert np.isnan(track.boxes[5]).all()
    # frame 4 averages frames 3-4 only (not the gap): x1 = 3.5 - 3 pads
    assert track.boxes[4][0] == pytest.approx(3.5 - 3)
    assert track.boxes[0].tolist() == [0, 5, 0.5 + 60 + 4, 90]  # x1 clipped at 0, y1 = 10 - 5, y2 = 70 + 20
    frames = list(numbered_frames(1, size=(80, 200)))
    tall = tracking.detect_track(frames, ScriptedDetector(lambda i: [[0, 10, 60, 70]]), cfg)
    assert tall.boxes[0][3] == 80  # bottom pad clipped to the frame height


def test_detect_track_streams_in_chunks_with_progress():
    produced, seen = [], []
    det = ScriptedDetector(lambda i: [LEFT])
    original = det._detect

    def detect_and_check(frames):
        assert len(produced) - len(seen) <= 16  # the stream is not read ahead beyond one chunk
        seen.extend(frames)
        return original(frames)

    det._detect = detect_and_check
    progress = []
    track = tracking.detect_track(numbered_frames(40, produced), det, CFG, progress=progress.append, batch_size=16)
    assert det.calls == [16, 16, 8] and progress == [16, 16, 8] and len(track) == 40
    empty = tracking.detect_track(iter([]), det, CFG, frame_size=(100, 200))
    assert empty.boxes.shape == (0, 4) and empty.landmarks.shape == (0, 68, 2)


def test_detect_track_on_a_real_clip_follows_the_drifting_face(face_clip):
    import cv2

    cap = cv2.VideoCapture(str(face_clip))
    frames = []
    while len(frames) < 20:
        ok, frame = cap.read()
        assert ok
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    raw = tracking.detect_track(iter(frames), detector("dlib"), replace(CFG, detector="dlib", detect_max_side=640))
    track = tracking.detect_track(iter(frames), detector("dlib"), FaceConfig(detector="dlib"))
    assert track.found.all() and np.isfinite(track.landmarks).all()
    assert (track.boxes[:, 3] - raw.boxes[:, 3]).mean() > 5  # the default bottom pad (10 px, clipped at 256)
    # the clip drifts by a few pixels per frame; the nose follows (within the smoothing lag)
    drift = raw.landmarks[:, 30] - raw.landmarks[0, 30]
    assert np.abs(drift).max() > 2
    np.testing.assert_allclose(track.landmarks[:, 30] - track.landmarks[0, 30], drift, atol=3)


def test_box_track_and_its_validation():
    track = tracking.box_track((10, 20, 110, 140), 5, (100, 200))
    assert track.boxes.shape == (5, 4) and track.boxes[0].tolist() == [10, 20, 110, 100]  # clipped to height
    assert np.isnan(track.landmarks).all() and track.found.all()
    with pytest.raises(UsageError, match="--box"):
        tracking.box_track((300, 20, 400, 60), 5, (100, 200))


def test_edit_weights_fade_in_and_out_around_faceless_frames():
    boxes = np.tile(np.array([0, 0, 10, 10], np.float32), (14, 1))
    boxes[6:8] = np.nan
    track = tracking.FaceTrack(boxes, np.full((14, 68, 2), np.nan, np.float32))
    weights = tracking.edit_weights(track, 3)
    np.testing.assert_allclose(weights, [1, 1, 1, 0.25 * 3, 0.5, 0.25, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1])
    assert tracking.edit_weights(track, 0).tolist() == [1] * 6 + [0, 0] + [1] * 6
    all_found = tracking.FaceTrack(boxes[:5], track.landmarks[:5])
    assert tracking.edit_weights(all_found, 3).tolist() == [1] * 5  # video start/end are not faceless stretches


# ---- crops --------------------------------------------------------------------------------------


def test_crop_and_uncrop_round_trip():
    image = astronaut_face()
    box = np.array([180.4, 68.8, 272.2, 188.0], np.float32)
    assert pixel_box(box, image.shape) == (180, 68, 273, 188)
    face = crop(image, box, 96)
    assert face.shape == (96, 96, 3) and face.dtype == np.uint8
    back = uncrop(face, box, image.shape)
    x1, y1, x2, y2 = pixel_box(box, image.shape)
    assert back.shape == (y2 - y1, x2 - x1, 3)
    error = np.abs(back.astype(int) - image[y1:y2, x1:x2].astype(int)).mean()
    assert error < 8  # the same region, only blurred by the 96-pixel round trip
    assert crop(image, np.array([-20, -5, 900, 40], np.float32), 32).shape == (32, 32, 3)  # off-frame box clipped


def test_auto_detector_is_face_alignment_on_cuda_and_mediapipe_on_a_cpu():
    """The rule itself (tests/test_mediapipe.py runs the backend it picks on a CPU)."""
    from lipsync_cli.faces import resolve_name

    assert resolve_name("auto", "cuda") == "face_alignment" and resolve_name("auto", "cuda:1") == "face_alignment"
    assert resolve_name("auto", "cpu") == "mediapipe"
    assert resolve_name("dlib", "cuda") == "dlib"  # an explicit choice is kept


@pytest.mark.slow
def test_face_alignment_real_networks_contract(random_face_alignment, monkeypatch):
    """Our backend drives face-alignment's real S3FD (batched, RGB float input) and FAN: per-frame lists of
    faces, boxes inside the frame, (68, 2) landmarks near the given box. Random weights: shapes, not accuracy."""
    from lipsync_cli.faces import face_alignment_backend

    monkeypatch.setattr(face_alignment_backend, "prepare_files", lambda detector, **kw: random_face_alignment)
    fa = get_detector("face_alignment", "cpu")
    assert fa.name == "face_alignment:sfd"
    frame = np.ascontiguousarray(astronaut_face()[0:300, 100:400])  # (300, 300, 3) uint8 RGB
    found = fa.detect([frame, frame[:, ::-1].copy()], max_side=160)
    assert len(found) == 2 and all(1 <= len(faces) <= 8 for faces in found), [len(f) for f in found]
    for faces in found:
        for face in faces:
            assert 0 <= face.box[0] <= face.box[2] <= 300 and 0 <= face.box[1] <= face.box[3] <= 300
            assert face.landmarks.shape == (68, 2)
    # FAN on a known box: landmarks come back for that face, as (68, 2), near it.
    [face] = fa._faces(frame, [[90.0, 60.0, 230.0, 220.0, 0.99]])
    assert face.landmarks.shape == (68, 2) and np.isfinite(face.landmarks).all()
    np.testing.assert_allclose(face.box, [90, 60, 230, 220])  # S3FD's own box is kept (Wav2Lip's crops)
    # In frame pixels around the box (FAN's crop is about twice the box), not on FAN's 64-pixel heatmap grid.
    x, y = face.landmarks[:, 0], face.landmarks[:, 1]
    assert (x >= 90 - 140).all() and (x <= 230 + 140).all() and (y >= 60 - 160).all() and (y <= 220 + 160).all()
    assert np.ptp(face.landmarks, axis=0).max() > 64
