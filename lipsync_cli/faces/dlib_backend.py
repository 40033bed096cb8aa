"""dlib backend: HOG face detector + the 68-point shape predictor. CPU-only, milliseconds per frame,
no downloads (the predictor ships in the face-recognition-models package), so tests use it offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np

from lipsync_cli import weights
from lipsync_cli.errors import WeightsError
from lipsync_cli.faces.base import Face, FaceDetector, box_from_landmarks, clip_box

INSTALL_HINT = 'pip install "lipsync-cli[dlib]"'
# HOG scans an 80x80 px window, so faces under ~80 px are missed. Frames whose longer side is below
# this are upsampled once (faces down to ~40 px); they are small, so the 4x cost stays a few ms.
UPSAMPLE_BELOW_SIDE = 400
# HOG scores: dlib's default threshold (0) misses turned heads, 10 of the 106 frames of the
# 3/4-profile clip 05 in ../shared/media; down to WEAK_THRESHOLD it misses none and still finds nothing
# on 16 face-free scikit-image photos, but it does add a false face on the astronaut photo's suit next
# to her real one. So a weak detection is used only in a frame without a confident one (its best).
WEAK_THRESHOLD = -0.2


def predictor_path() -> Path:
    """The 68-point predictor inside face-recognition-models: the weights.toml entry dlib_68 (bundled_in that
    package, which is located without importing it: its import needs pkg_resources)."""
    return weights.resolve("dlib_68")


class DlibDetector(FaceDetector):
    """Boxes are derived from the 68 landmarks (S3FD-like: jaw to jaw, forehead to chin) because the
    HOG rectangle is tight (brows to lip, cheek to cheek) and would crop the chin off."""

    name = "dlib"
    weights = ("dlib_68",)  # weights.toml entries this backend runs (for the run's licence notice)

    def __init__(self, device: str = "cpu"):
        try:
            import dlib
        except ImportError:
            raise WeightsError(f"the dlib face backend needs dlib: {INSTALL_HINT}") from None
        # `device` is accepted for a uniform interface; dlib's HOG runs on the CPU only.
        self._hog = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor_path()))

    def _detect(self, frames: Sequence[np.ndarray]) -> List[List[Face]]:
        return [self._detect_one(frame) for frame in frames]

    def _detect_one(self, frame: np.ndarray) -> List[Face]:
        import cv2

        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)  # same boxes as RGB here, and faster
        upsample = 1 if max(gray.shape) < UPSAMPLE_BELOW_SIDE else 0
        rects, scores, _ = self._hog.run(gray, upsample, WEAK_THRESHOLD)
        found = sorted(zip(rects, scores), key=lambda pair: -pair[1])
        confident = [pair for pair in found if pair[1] >= 0]
        faces = []
        for rect, score in confident or found[:1]:
            shape = self._predictor(gray, rect)
            # (68, 2) float32 x, y in this frame's pixels
            landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
            box = clip_box(box_from_landmarks(landmarks), frame.shape[1], frame.shape[0])
            faces.append(Face(box, float(score), landmarks))
        return faces

