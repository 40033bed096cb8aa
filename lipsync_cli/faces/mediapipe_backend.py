"""MediaPipe backend: Google's Face Landmarker (BlazeFace short-range detector + the 478-point face mesh).

Its one model file (face_landmarker.task, 3.7 MB) is Apache-2.0, so unlike dlib's 68-point model (iBUG 300-W,
non-commercial) and face-alignment's S3FD/FAN (no stated licence) a commercial run may use it. It runs on the
CPU at tens of frames per second (benchmarks/bench_detect.py). For a video it runs in MediaPipe's VIDEO mode:
MediaPipe follows the faces from frame to frame and smooths the points over time, and a face it loses is
looked for again around its last box (RESCUE_CROP); stills use IMAGE mode, each frame on its own.

The rest of the pipeline (crops, masks, MuseTalk's box rule, tracking) reads the 68-point iBUG layout, so the
mesh is reduced to it with MESH_TO_68 below; the box is derived from those 68 points as for dlib.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator, List, Optional, Sequence

import numpy as np

from lipsync_cli import weights
from lipsync_cli.errors import WeightsError
from lipsync_cli.faces.base import N_LANDMARKS, Face, FaceDetector, box_area, box_from_landmarks, clip_box, iou

WEIGHTS = ("face_landmarker",)  # the weights.toml entry of the .task bundle
NUM_FACES = 4  # faces tracked per frame: enough for a two-person shot and a bystander or two
INSTALL_HINT = "pip install mediapipe"
# MediaPipe's short-range detector misses faces that fill little of the frame (it sees the frame at 128x128), and
# in VIDEO mode a face it stops tracking is gone until the detector finds it again: in two speakers side by side
# (tests/test_mediapipe.py) one was lost for 10 of 50 frames, 4 with this rescue, the 4 where it is not found even alone. Such a face is looked for again in a crop around its
# last box, where it fills the detector's view: RESCUE_CROP box sides wide, kept if its box overlaps the last one
# by RESCUE_MIN_IOU (the same face moved a little, not a neighbour). It costs nothing while no face is lost.
RESCUE_CROP = 1.5
RESCUE_MIN_IOU = 0.3

# The 68 iBUG 300-W points, each as one vertex of MediaPipe's canonical 478-point face mesh (vertex numbers as in
# mediapipe's face_landmarker FaceLandmarksConnections). Derivation, stated once: every iBUG point was
# matched within its own anatomical region of the mesh (the connection lists FACE_OVAL, RIGHT/LEFT_EYEBROW, NOSE,
# RIGHT/LEFT_EYE, LIPS; MediaPipe's "right" is the subject's right = the image's left, as iBUG's points 0, 17-21,
# 36-41 and 48), taking the region's vertex nearest dlib's point on average over 70 frontal frames (media/04 and
# six GRID clips, every 8th frame, both models in image mode; distances in units of the inter-ocular distance).
# Three choices were then made for consistency over the last fraction of a pixel: the brows use the brow's upper
# contour only (the per-point nearest mixed upper and lower and picked one vertex twice); the inner eye corner
# is the corner vertex 133 (mirror of 362) rather than its lower-lid neighbour 155; the jaw is mirror-symmetric
# (172/397 rather than 172/288). Mean distance to dlib's point at an inter-ocular distance of 60 px: eyes, nose
# and mouth 1-3 px, brows 3-7 px, jaw 2-9 px (the silhouette is drawn differently by the two models).
MESH_TO_68 = np.array([
    # 0-16 jaw (FACE_OVAL), image left (subject's right, at eye height) down to the chin (8, vertex 152) and up
    127, 234, 93, 132, 172, 136, 149, 176, 152, 400, 378, 365, 397, 361, 323, 454, 356,
    # 17-21 right brow, outer to inner (RIGHT_EYEBROW, upper contour)
    70, 63, 105, 66, 107,
    # 22-26 left brow, inner to outer (LEFT_EYEBROW, upper contour)
    336, 296, 334, 293, 300,
    # 27-30 nose bridge, nasion to tip; 31-35 nose base, right alar to left alar through subnasale 2 (NOSE)
    168, 6, 195, 4,
    98, 97, 2, 326, 327,
    # 36-41 right eye: outer corner, upper lid x2, inner corner, lower lid x2 (RIGHT_EYE)
    33, 160, 158, 133, 153, 144,
    # 42-47 left eye: inner corner, upper lid x2, outer corner, lower lid x2 (LEFT_EYE)
    362, 385, 387, 263, 373, 380,
    # 48-59 outer lips: right corner, upper lip to the left corner (54), lower lip back (LIPS, outer ring)
    61, 40, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    # 60-67 inner lips: right inner corner, upper inner lip, left inner corner (64), lower inner lip (LIPS, inner ring)
    78, 82, 13, 312, 308, 317, 14, 87,
], dtype=np.int64)
assert MESH_TO_68.shape == (N_LANDMARKS,)


def model_path():
    """The verified face_landmarker.task (WeightsError when it is missing and cannot be downloaded)."""
    return weights.resolve(WEIGHTS[0])


class MediaPipeDetector(FaceDetector):
    """Up to NUM_FACES faces per frame. MediaPipe gives no per-face confidence, so every score is 1.0 and faces
    are ordered largest box first.

    MediaPipe's landmarker runs its C library through a thread pool that Python shuts down before the objects
    still alive at exit are collected (each then prints a traceback), so none outlives its use: a session holds
    one for a video or a set of stills, and a bare detect() call opens its own."""

    name = "mediapipe"
    weights = WEIGHTS

    def __init__(self, device: str = "cpu"):
        # `device` is accepted for a uniform interface; the Python Tasks API runs this model on the CPU here.
        self._path = str(model_path())
        _landmarker(self._path, video=False).close()  # a file MediaPipe cannot load fails here, not mid-run

    def _detect(self, frames: Sequence[np.ndarray]) -> List[List[Face]]:
        with self.session(None) as session:
            return session._detect(frames)

    @contextmanager
    def session(self, fps: Optional[float] = None) -> Iterator[FaceDetector]:
        """VIDEO mode for one video's frames in order at `fps` (fresh per video: no state carries over to the
        next), IMAGE mode for unrelated stills (fps None)."""
        session = _Session(_landmarker(self._path, video=bool(fps)), fps, self._path)
        try:
            yield session
        finally:
            session.close()


class _Session(FaceDetector):
    """One open landmarker. In VIDEO mode frame i is given the timestamp i / fps (MediaPipe's smoothing uses it),
    and a face of the previous frame that MediaPipe loses is looked for again in a crop around its last box."""

    name = MediaPipeDetector.name
    weights = WEIGHTS

    def __init__(self, landmarker, fps: Optional[float], path: str):
        self._landmarker = landmarker
        self._ms_per_frame = 1000.0 / fps if fps else None
        self._index = 0
        self._last_ms = -1
        self._path = path
        self._previous: List[np.ndarray] = []  # the boxes of the last frame (VIDEO mode)
        self._near = None  # an IMAGE-mode landmarker for the crops, opened on the first lost face

    def _detect(self, frames: Sequence[np.ndarray]) -> List[List[Face]]:
        if self._ms_per_frame is None:
            return [_faces(self._landmarker.detect(_image(frame)), frame.shape) for frame in frames]
        return [self._next_frame(frame) for frame in frames]

    def _next_frame(self, frame: np.ndarray) -> List[Face]:
        # strictly increasing whole milliseconds, as VIDEO mode requires (even above 1000 frames/s)
        stamp = max(self._last_ms + 1, round(self._index * self._ms_per_frame))
        self._index, self._last_ms = self._index + 1, stamp
        faces = _faces(self._landmarker.detect_for_video(_image(frame), stamp), frame.shape)
        lost = [box for box in self._previous if not any(iou(box, face.box) >= RESCUE_MIN_IOU for face in faces)]
        faces += [face for face in (self._find_near(frame, box) for box in lost) if face is not None]
        self._previous = [face.box for face in faces]
        return _largest_first(faces)

    def _find_near(self, frame: np.ndarray, box: np.ndarray) -> Optional[Face]:
        """The face in a square RESCUE_CROP box sides wide around `box`, if it still overlaps that box."""
        height, width = frame.shape[:2]
        centre, side = (box[:2] + box[2:]) / 2, RESCUE_CROP * float(max(box[2] - box[0], box[3] - box[1]))
        x1, y1 = (int(max(0, v)) for v in centre - side / 2)
        x2, y2 = int(min(width, centre[0] + side / 2)), int(min(height, centre[1] + side / 2))
        if x2 - x1 < 2 or y2 - y1 < 2:
            return None
        if self._near is None:
            self._near = _landmarker(self._path, video=False)
        crop = frame[y1:y2, x1:x2]
        found = [face.shifted(x1, y1, width, height) for face in _faces(self._near.detect(_image(crop)), crop.shape)]
        best = max(found, key=lambda face: float(iou(box, face.box)), default=None)
        return best if best is not None and iou(box, best.box) >= RESCUE_MIN_IOU else None

    def close(self) -> None:
        self._landmarker.close()
        if self._near is not None:
            self._near.close()


def _landmarker(path: str, video: bool):
    try:
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError:
        raise WeightsError(f"the mediapipe face backend needs the mediapipe package: {INSTALL_HINT}") from None
    mode = vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE
    options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=path), running_mode=mode,
                                           num_faces=NUM_FACES)
    try:
        with _quiet_stderr():
            return vision.FaceLandmarker.create_from_options(options)
    except (RuntimeError, ValueError) as err:  # a .task file that is not one (verified bytes make this rare)
        raise WeightsError(f"MediaPipe could not load {path}: {str(err).strip().splitlines()[0]}") from None


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to the null device: building a landmarker, MediaPipe's C++ code logs four lines of
    notes (XNNPACK delegate, blendshape graph, feedback tensors) straight to it, which no environment variable of
    this release silences; a failure still reaches the user as the Python exception it raises."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _image(frame: np.ndarray):
    """(H, W, 3) uint8 RGB → mediapipe.Image (it needs C-contiguous pixels)."""
    import mediapipe as mp

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))


def _faces(result, shape) -> List[Face]:
    """A FaceLandmarkerResult → Faces in pixels, largest box first."""
    height, width = shape[:2]
    faces = []
    for mesh in result.face_landmarks:
        # the mesh's x, y are fractions of the image width and height; (478, 2) → (68, 2) float32 pixels
        points = np.array([(p.x * width, p.y * height) for p in mesh], dtype=np.float32)
        landmarks = points[MESH_TO_68]
        faces.append(Face(clip_box(box_from_landmarks(landmarks), width, height), 1.0, landmarks))
    return _largest_first(faces)


def _largest_first(faces: List[Face]) -> List[Face]:
    return sorted(faces, key=lambda face: -float(box_area(face.box)))
