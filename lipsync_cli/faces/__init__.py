"""Face detection backends behind one interface, chosen by name from an explicit registry.

    "auto"                        the default, see resolve_name: mediapipe on a CPU, face_alignment on CUDA
    "mediapipe"                   MediaPipe Face Landmarker (CPU, Apache-2.0 weights: cleared for commercial use)
    "face_alignment"              face-alignment with S3FD (batched, GPU when available)
    "face_alignment:<detector>"   face-alignment with another of its detectors (blazeface, retinaface, ...)
    "dlib"                        dlib HOG + 68-point predictor (CPU, offline)

Each backend module imports its library (face-alignment and torch, dlib, mediapipe) only when a detector is
built, so importing this package loads none of them.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Tuple

from lipsync_cli.errors import UsageError
from lipsync_cli.faces.base import Face, FaceDetector
from lipsync_cli.faces.dlib_backend import DlibDetector
from lipsync_cli.faces.face_alignment_backend import DEFAULT_DETECTOR, FaceAlignmentDetector, weights_of
from lipsync_cli.faces.mediapipe_backend import WEIGHTS as MEDIAPIPE_WEIGHTS
from lipsync_cli.faces.mediapipe_backend import MediaPipeDetector

__all__ = ["Face", "FaceDetector", "REGISTRY", "get_detector", "detector_names", "detector_weights", "resolve_name"]


def _dlib(device: str, option: str) -> FaceDetector:
    return DlibDetector(device)


def _face_alignment(device: str, option: str) -> FaceDetector:
    return FaceAlignmentDetector(device, option or DEFAULT_DETECTOR)


def _mediapipe(device: str, option: str) -> FaceDetector:
    return MediaPipeDetector(device)


# backend name → factory(device, option after the ':' or "")
REGISTRY: Dict[str, Callable[[str, str], FaceDetector]] = {
    "mediapipe": _mediapipe,
    "face_alignment": _face_alignment,
    "dlib": _dlib,
}
# The part after "face_alignment:"; kept here (not read from the backend) so listing names imports nothing heavy.
FACE_ALIGNMENT_DETECTORS = ("sfd", "blazeface", "blazeface_back", "retinaface", "scrfd", "yunet")


def detector_names() -> List[str]:
    """Every accepted --detector value."""
    return ["auto", "mediapipe", "face_alignment", *(f"face_alignment:{d}" for d in FACE_ALIGNMENT_DETECTORS), "dlib"]


def resolve_name(name: str, device: str, commercial: bool = False) -> str:
    """"auto" → the backend that measured best for this device (README, "Face backends"; the table is
    benchmarks/bench_detect.py's): MediaPipe on a CPU (3.8x dlib's HOG in frames/s on the shared clips, a face in
    every frame of them but 7 in full profile where dlib finds none either, and its weights are cleared for
    commercial use); on CUDA face-alignment's batched S3FD, whose full-size input finds the small faces of wide
    shots that MediaPipe's short-range detector misses, except for a commercial run (`commercial`), where
    MediaPipe is the one cleared backend. Any other name is returned as given."""
    if name != "auto":
        return name
    if device.startswith("cuda") and not commercial:
        return "face_alignment"
    return "mediapipe"


def _parse(name: str) -> Tuple[str, str]:
    """(backend, option) of a resolved name; UsageError when it is not one."""
    backend, _, option = name.partition(":")
    known = backend in REGISTRY and (not option or (backend == "face_alignment" and option in FACE_ALIGNMENT_DETECTORS))
    if not known:
        raise UsageError(f"unknown face detector {name!r}; choose one of: {', '.join(detector_names())}")
    return backend, option


def detector_weights(name: str, device: str = "cpu", commercial: bool = False) -> Tuple[str, ...]:
    """The weights.toml entries the detector `name` would run (its licences are the run's), without loading it."""
    backend, option = _parse(resolve_name(name, device, commercial))
    if backend == "face_alignment":
        return weights_of(option or DEFAULT_DETECTOR)
    return DlibDetector.weights if backend == "dlib" else MEDIAPIPE_WEIGHTS


def get_detector(name: str, device: str = "cpu", commercial: bool = False) -> FaceDetector:
    """A ready detector ("auto" resolved by resolve_name; its .name says which backend it is).
    UsageError for an unknown name; WeightsError when its model files are missing."""
    backend, option = _parse(resolve_name(name, device, commercial))
    return REGISTRY[backend](device, option)
