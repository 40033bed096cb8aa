"""One cv2 after a fresh install: opencv-python (ours, face-alignment's) and opencv-contrib-python (mediapipe's)
install the same `cv2` package, so the two must be one OpenCV 4.x release (pyproject asks for both in 4.x), and
that cv2 must have every name the project and face-alignment call. Run by .ci/run after `pip install`."""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import re
import sys
from pathlib import Path

import cv2

# The names each backend's code calls: ours (every cv2.<name> under lipsync_cli/) and face-alignment's package.
ROOTS = [Path(__file__).resolve().parents[1] / "lipsync_cli",
         Path(importlib.util.find_spec("face_alignment").origin).parent]


def used_names() -> set[str]:
    names = set()
    for root in ROOTS:
        for source in root.rglob("*.py"):
            names |= set(re.findall(r"\bcv2\.([A-Za-z_][A-Za-z_0-9]*)", source.read_text(encoding="utf-8")))
    return names


def main() -> int:
    versions = {}
    for dist in ("opencv-python", "opencv-contrib-python"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    problems = []
    if not cv2.__version__.startswith("4."):
        problems.append(f"cv2 {cv2.__version__} is not OpenCV 4")
    if len(set(versions.values())) != 1:
        problems.append(f"OpenCV distributions of different releases share one cv2 package: {versions}")
    missing = sorted(name for name in used_names() if not hasattr(cv2, name))
    if missing:
        problems.append(f"cv2 lacks {', '.join(missing)}")
    from mediapipe.tasks.python import vision  # the MediaPipe face backend's import

    if not hasattr(vision, "FaceLandmarker"):
        problems.append("mediapipe has no FaceLandmarker")
    print(f"cv2 {cv2.__version__} from {', '.join(f'{k} {v}' for k, v in versions.items())}; "
          f"{len(used_names())} cv2 names used, all present: {not missing}; mediapipe FaceLandmarker importable")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
