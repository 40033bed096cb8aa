"""Face detection backends behind one interface, chosen by name from an explicit registry.

    "auto"                        the default: face_alignment on CUDA, dlib on a CPU when installed
    "face_alignment"              face-alignment with S3FD (batched, GPU when available)
    "face_alignment:<detector>"   face-alignment with another of its detectors (blazeface, retinaface, ...)
    "dlib"                        dlib HOG + 68-point predictor (CPU, offline)

Each backend module imports its library (face-alignment and torch, dlib) only when a detector is built, so
importing this package loads neither torch nor dlib.
"""

from __future__ import annotations

from typing import Callable, Dict, List

from lipsync_cli.errors import UsageError
from lipsync_cli.faces.base import Face, FaceDetector
from lipsync_cli.faces.dlib_backend import DlibDetector
from lipsync_cli.faces.face_alignment_backend import DEFAULT_DETECTOR, FaceAlignmentDetector

__all__ = ["Face", "FaceDetector", "REGISTRY", "get_detector", "detector_names"]


def _dlib(device: str, option: str) -> FaceDetector:
    return DlibDetector(device)


def _face_alignment(device: str, option: str) -> FaceDetector:
    return FaceAlignmentDetector(device, option or DEFAULT_DETECTOR)


# backend name → factory(device, option after the ':' or "")
REGISTRY: Dict[str, Callable[[str, str], FaceDetector]] = {
    "face_alignment": _face_alignment,
    "dlib": _dlib,
}
# The part after "face_alignment:"; kept here (not read from the backend) so listing names imports nothing heavy.
FACE_ALIGNMENT_DETECTORS = ("sfd", "blazeface", "blazeface_back", "retinaface", "scrfd", "yunet")


def detector_names() -> List[str]:
    """Every accepted --detector value."""
    return ["auto", "face_alignment", *(f"face_alignment:{d}" for d in FACE_ALIGNMENT_DETECTORS), "dlib"]


def resolve_name(name: str, device: str) -> str:
    """"auto" → the fast backend for this device: face_alignment's batched S3FD on CUDA; on a CPU dlib when it
    is installed (S3FD + FAN cost seconds per frame on a CPU, dlib's HOG a fraction of one), else
    face_alignment. Any other name is returned as given."""
    if name != "auto":
        return name
    if device.startswith("cuda"):
        return "face_alignment"
    import importlib.util

    return "dlib" if importlib.util.find_spec("dlib") is not None else "face_alignment"


def get_detector(name: str, device: str = "cpu") -> FaceDetector:
    """A ready detector ("auto" resolved by resolve_name; its .name says which backend it is).
    UsageError for an unknown name; WeightsError when its model files are missing."""
    name = resolve_name(name, device)
    backend, _, option = name.partition(":")
    known = backend in REGISTRY and (not option or (backend == "face_alignment" and option in FACE_ALIGNMENT_DETECTORS))
    if not known:
        raise UsageError(f"unknown face detector {name!r}; choose one of: {', '.join(detector_names())}")
    return REGISTRY[backend](device, option)
