"""face-alignment backend: a neural face detector (S3FD by default) + the 2D-FAN 68-point network.

Detection runs batched on the GPU (or CPU); landmarks come from FAN on each detected face. The model
files are fetched by lipsync_cli.weights (pinned, checksummed) before face-alignment looks for them,
so face-alignment never downloads anything itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from lipsync_cli import weights
from lipsync_cli.errors import WeightsError
from lipsync_cli.faces.base import Face, FaceDetector, box_from_landmarks, clip_box
from lipsync_cli.media.atomic import atomic_output

# Our detector suffix → (face_alignment.detection module, its constructor kwargs).
DETECTORS: Dict[str, Tuple[str, dict]] = {
    "sfd": ("sfd", {}),
    "blazeface": ("blazeface", {}),
    "blazeface_back": ("blazeface", {"back_model": True}),
    "retinaface": ("retinaface", {}),
    "scrfd": ("scrfd", {}),
    "yunet": ("yunet", {}),
}
DEFAULT_DETECTOR = "sfd"
FAN_BATCH = 8  # faces per FAN forward pass


class FaceAlignmentDetector(FaceDetector):
    """`detector` picks face-alignment's face detector (see DETECTORS).

    Boxes: S3FD's own boxes are kept (Wav2Lip was trained on S3FD crops); the other detectors' boxes
    have other proportions (BlazeFace's are tight), so for them the box is derived from the landmarks.
    """

    def __init__(self, device: str = "cpu", detector: str = DEFAULT_DETECTOR):
        import torch

        self.name = f"face_alignment:{detector}"
        # S3FD + FAN are ours to fetch; the other detectors fetch their own files (terms unknown: FAN flags the run)
        self.weights = FILES.get(detector, ("2dfan4",))
        self.device = device
        self._keep_detector_box = detector == "sfd"
        self._fa = _load(device, detector)
        self._torch = torch

    def _detect(self, frames: Sequence[np.ndarray]) -> List[List[Face]]:
        torch = self._torch
        # (B, 3, H, W) float32 in [0, 255], RGB: what face-alignment's batch detectors expect
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(frames))).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            detections = self._fa.face_detector.detect_from_batch(batch.to(self.device))
        return [self._faces(frame, found) for frame, found in zip(frames, detections)]

    def _faces(self, frame: np.ndarray, found) -> List[Face]:
        rows = [np.asarray(row, dtype=np.float32)[:5] for row in found]
        rows.sort(key=lambda row: -row[4])
        if not rows:
            return []
        # Python floats: face-alignment 1.5 assigns the box centre and scale into torch tensors, which refuses
        # numpy float32 scalars (TypeError on every detected face; found by the random-weight contract test).
        boxes = [[float(v) for v in row[:4]] for row in rows]
        points = self._fa.get_landmarks_from_image(frame, detected_faces=boxes)
        height, width = frame.shape[:2]
        faces = []
        for row, landmarks in zip(rows, points):
            landmarks = np.asarray(landmarks, dtype=np.float32)[:, :2]  # (68, 2) x, y
            box = row[:4] if self._keep_detector_box else box_from_landmarks(landmarks)
            faces.append(Face(clip_box(box, width, height), float(row[4]), landmarks))
        return faces


def _load(device: str, detector: str):
    """face_alignment.FaceAlignment with its files in place; any failure to get them → WeightsError."""
    module, kwargs = DETECTORS[detector]
    paths = prepare_files(detector)  # raises WeightsError when a file can't be had
    if "s3fd" in paths:  # our verified copy, whatever torch.hub's folder holds
        kwargs = {**kwargs, "path_to_detector": str(paths["s3fd"])}
    try:
        import face_alignment

        # flip_input doubles FAN's cost for a precision the blend mask does not need; compile=False
        # because torch.compile's one-time warm-up costs more than a typical clip's detection.
        return face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device,
                                             face_detector=module, face_detector_kwargs=kwargs,
                                             flip_input=False, compile=False, max_batch_size=FAN_BATCH)
    except ImportError:
        raise WeightsError('the face_alignment backend needs the face-alignment package: '
                           'pip install face-alignment') from None
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError; torch.load → RuntimeError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsError(f"face-alignment model files for '{detector}' are missing or unreadable ({first}); "
                           f"run `lipsync weights download` online, or use --detector dlib") from None


# ---- the model files, placed where face-alignment looks for them (it never downloads itself)

FILES = {"sfd": ("s3fd", "2dfan4")}  # detector backend → the entries face-alignment loads


def prepare_files(detector: str = "sfd", download: bool = True, accept_licence: bool = False) -> dict[str, Path]:
    """Resolve face-alignment's model files here (verified) and place them where it looks, so it never downloads.

    face_alignment 1.5 loads them with torch.hub helpers from torch.hub.get_dir()/checkpoints/<url basename>
    and only downloads when that file is missing; we put a verified copy (symlink, or copy) there first.
    Returns {entry name: our verified path}; pass face_detector_kwargs={"path_to_detector": str(paths["s3fd"])}
    too, to be independent of the hub folder for the detector.
    """
    import torch.hub

    wanted = FILES.get(detector, ("2dfan4",))  # other detectors fetch their own files (FAN is always ours)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    paths = {}
    for name in wanted:
        spec = weights.entry(name)
        paths[name] = weights.resolve(name, download=download, accept_licence=accept_licence)
        _place(paths[name], hub / spec.filename, spec)
    return paths


def _place(source: Path, target: Path, spec) -> None:
    """Make `target` hold the verified bytes of `source` (a stale or corrupt hub copy is replaced)."""
    import shutil

    if target.is_file() and (target.resolve() == source.resolve() or weights.check(spec, target) is None):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as tmp:
        tmp.unlink(missing_ok=True)  # left by a killed run
        try:
            tmp.symlink_to(source.resolve())
        except OSError:  # no symlinks (Windows without privilege, some filesystems)
            shutil.copyfile(source, tmp)
