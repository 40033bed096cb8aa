"""Dub throughput per stage and end to end, and peak memory, for a clip / model / device / precision.

    python benchmarks/bench_dub.py VIDEO AUDIO [--model NAME_OR_PATH|random] [--detector auto]
                                   [--device cpu] [--precision auto] [--repeat-to SECONDS ...]

`--model random` writes a random-weight generator in the public Wav2Lip layout (same size and speed as
the real one). `--repeat-to 6 60` also dubs the clip looped to 6 s and 60 s (video and audio), each in a
fresh process, to show that peak RSS does not grow with video length. Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from random_weights import random_public_checkpoint



def one_run(video: str, audio: str, model: str, detector: str, device: str, precision: str, batch: int,
            box=None) -> dict:
    """Dub once in this process; return stage seconds, frames and peak RSS (this process + ffmpeg children)."""
    from lipsync_cli.config import DubConfig, FaceConfig
    from lipsync_cli.pipeline import dub

    faces = FaceConfig(detector=detector, box=tuple(box) if box else None)
    cfg = DubConfig(model=model, faces=faces, device=device, precision=precision,
                    batch_size=batch, quiet=True, force=True)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = dub(Path(video), Path(audio), Path(tmp) / "out.mp4", cfg)
        total = time.perf_counter() - start
    return {"frames": result.frames, "edited": result.frames_edited, "seconds": result.seconds, "total": total,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def in_subprocess(args: argparse.Namespace, video: str, audio: str, model: str) -> dict:
    cmd = [sys.executable, __file__, "--one", video, audio, "--model", model, "--detector", args.detector,
           "--device", args.device, "--precision", args.precision, "--batch-size", str(args.batch_size)]
    cmd += ["--box", *map(str, args.box)] if args.box else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def looped(path: str, seconds: float, out: Path) -> str:
    from lipsync_cli.media import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-stream_loop", "-1", "-i", path, "-t", str(seconds),
                    "-c:v", "libx264", "-crf", "18", "-c:a", "aac", str(out)], check=True)
    return str(out)


def print_row(label: str, r: dict) -> None:
    stages = "  ".join(f"{k} {r['frames'] / v:7.1f} f/s" for k, v in r["seconds"].items() if v > 0)
    end_to_end = r["frames"] / r["total"]
    # generator-only: the frames/s of the generate stage alone; end-to-end over it = the share the rest costs
    share = f" = {end_to_end * r['seconds']['generate'] / r['frames']:.2f} of generator-only" \
        if r["seconds"].get("generate") else ""
    print(f"{label:<14} frames {r['frames']:5d} (edited {r['edited']:5d})  end-to-end {end_to_end:6.1f} f/s{share}"
          f"  peak RSS {r['rss_mb']:7.0f} MB (ffmpeg {r['children_rss_mb']:5.0f} MB)\n{'':<14} {stages}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video")
    p.add_argument("audio")
    p.add_argument("--model", default="random")
    p.add_argument("--detector", default="auto")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeat-to", type=float, nargs="*", default=[])
    p.add_argument("--box", type=int, nargs=4, metavar=("X1", "Y1", "X2", "Y2"), help="fixed face box: no detection")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one_run(args.video, args.audio, args.model, args.detector, args.device, args.precision,
                                 args.batch_size, args.box)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = random_public_checkpoint(Path(tmp), "wav2lip") if args.model == "random" else args.model
        print(f"clip {args.video}  audio {args.audio}  model {args.model}  detector {args.detector}  "
              f"device {args.device}  precision {args.precision}")
        print_row("as given", in_subprocess(args, args.video, args.audio, model))
        for seconds in args.repeat_to:
            v = looped(args.video, seconds, Path(tmp) / f"v{seconds:g}.mp4")
            a = looped(args.audio, seconds, Path(tmp) / f"a{seconds:g}.m4a")
            print_row(f"looped {seconds:g}s", in_subprocess(args, v, a, model))


if __name__ == "__main__":
    main()
