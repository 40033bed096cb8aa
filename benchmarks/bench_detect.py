"""Face detection frames/s per backend and detect_max_side, and the share of frames with a face found.

    python benchmarks/bench_detect.py VIDEO [VIDEO ...] [--frames 50] [--max-side 640 480 320]
                                      [--backends dlib face_alignment] [--device cpu]

face_alignment runs its real S3FD + FAN networks; without its weights in the cache (offline), they are random
(tests/ckpt_utils.py), so its speed is real but its "found" column means nothing (say so when reporting).
Frames are decoded once per clip and timed through the backend's detect() (the pipeline's own call). Not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def frames_of(video: str, n: int) -> list:
    from lipsync_cli import media

    info = media.probe(Path(video))
    out = []
    for frame in media.iter_frames(Path(video), info):
        out.append(frame)
        if len(out) == n:
            break
    return out


def face_alignment_detector(device: str, tmp: Path):
    """The real backend; random S3FD/FAN weights when the real ones are not cached (offline)."""
    from lipsync_cli.faces import face_alignment_backend, get_detector

    try:
        face_alignment_backend.prepare_files("sfd", download=False)
        return get_detector("face_alignment", device), "real weights"
    except Exception:
        import torch

        sys.path.insert(0, str(ROOT / "tests"))
        from ckpt_utils import write_random_face_alignment

        torch.hub.set_dir(str(tmp))
        detector_file = write_random_face_alignment(tmp / "checkpoints")
        face_alignment_backend.prepare_files = lambda detector, **kw: {"s3fd": detector_file}
        return get_detector("face_alignment", device), "random weights"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", nargs="+")
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--max-side", type=int, nargs="+", default=[640, 480, 320])
    p.add_argument("--backends", nargs="+", default=["dlib", "face_alignment"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8, help="frames per detect() call (the pipeline batches too)")
    args = p.parse_args()
    from lipsync_cli.faces import get_detector

    with tempfile.TemporaryDirectory() as tmp:
        detectors = {}
        for name in args.backends:
            detectors[name] = face_alignment_detector(args.device, Path(tmp)) if name == "face_alignment" \
                else (get_detector(name, args.device), "")
        print(f"{'clip':<34}{'backend':<30}{'max side':>9}{'frames/s':>10}{'found':>8}")
        for video in args.videos:
            frames = frames_of(video, args.frames)
            for name, (detector, note) in detectors.items():
                for side in args.max_side:
                    detector.detect(frames[:1], max_side=side)  # warm-up
                    start, found = time.perf_counter(), 0
                    for i in range(0, len(frames), args.batch):
                        found += sum(1 for faces in detector.detect(frames[i:i + args.batch], max_side=side) if faces)
                    rate = len(frames) / (time.perf_counter() - start)
                    label = f"{name} ({note})" if note else name
                    print(f"{Path(video).name[:33]:<34}{label:<30}{side:>9}{rate:>10.2f}{found / len(frames):>8.0%}")


if __name__ == "__main__":
    main()
