"""Face detection frames/s per backend and detect_max_side, and the share of frames with a face found.

    python benchmarks/bench_detect.py VIDEO [VIDEO ...] [--frames 50] [--max-side 640 480 320]
                                      [--backends mediapipe dlib face_alignment] [--device cpu]
                                      [--frames-face-alignment 10]

face_alignment runs its real S3FD + FAN networks; without its weights in the cache (offline), they are random
(tests/ckpt_utils.py), so its speed is real but its "found" column means nothing (say so when reporting).
Frames are decoded once per clip and timed through the pipeline's own calls: a detector session for the clip
at its frame rate (MediaPipe's VIDEO mode tracks from frame to frame there), detect() on batches. The last
rows sum each backend over all clips. MediaPipe's file: put ../shared/models/mediapipe in $LIPSYNC_WEIGHTS_DIR
offline. Not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def frames_of(video: str, n: int) -> tuple:
    """The first n frames, (H, W, 3) uint8 RGB, and the clip's frame rate."""
    from lipsync_cli import media

    info = media.probe(Path(video))
    out = []
    for frame in media.iter_frames(Path(video), info):
        out.append(frame)
        if len(out) == n:
            break
    return out, float(info.fps)


def time_clip(detector, frames: list, fps: float, side: int, batch: int) -> tuple:
    """(seconds, frames with a face) of one pass over the clip, as the pipeline runs it."""
    detector.detect(frames[:1], max_side=side)  # warm-up (first-call allocations)
    start, found = time.perf_counter(), 0
    with detector.session(fps) as session:
        for i in range(0, len(frames), batch):
            found += sum(1 for faces in session.detect(frames[i:i + batch], max_side=side) if faces)
    return time.perf_counter() - start, found


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
    p.add_argument("--frames-face-alignment", type=int, default=10,
                   help="fewer frames for face_alignment (seconds per frame on a CPU)")
    p.add_argument("--max-side", type=int, nargs="+", default=[640])
    p.add_argument("--backends", nargs="+", default=["mediapipe", "dlib", "face_alignment"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=16, help="frames per detect() call (faces/track.py's DETECT_BATCH)")
    args = p.parse_args()
    from lipsync_cli.faces import get_detector

    with tempfile.TemporaryDirectory() as tmp:
        detectors = {}
        for name in args.backends:
            detectors[name] = face_alignment_detector(args.device, Path(tmp)) if name == "face_alignment" \
                else (get_detector(name, args.device), "")
        totals = {}
        print(f"{'clip':<34}{'backend':<32}{'max side':>9}{'frames':>7}{'frames/s':>10}{'found':>8}")
        for video in args.videos:
            frames, fps = frames_of(video, args.frames)
            for name, (detector, note) in detectors.items():
                clip = frames[:args.frames_face_alignment] if name == "face_alignment" else frames
                for side in args.max_side:
                    seconds, found = time_clip(detector, clip, fps, side, args.batch)
                    label = f"{name} ({note})" if note else name
                    total = totals.setdefault((label, side), [0, 0.0, 0])
                    total[0], total[1], total[2] = total[0] + len(clip), total[1] + seconds, total[2] + found
                    print(f"{Path(video).name[:33]:<34}{label:<32}{side:>9}{len(clip):>7}{len(clip) / seconds:>10.2f}"
                          f"{found / len(clip):>8.0%}")
        for (label, side), (n, seconds, found) in totals.items():
            print(f"{'all clips':<34}{label:<32}{side:>9}{n:>7}{n / seconds:>10.2f}{found / n:>8.0%}")


if __name__ == "__main__":
    main()
