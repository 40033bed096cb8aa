"""Peak RSS against video length for each generator family and for LSE: memory must be flat in length.

    python benchmarks/bench_memory_length.py VIDEO AUDIO --box X1 Y1 X2 Y2 [--seconds 6 60]

VIDEO and AUDIO are looped to each length (ffmpeg -stream_loop) and each run is a fresh process, so its peak
RSS (ru_maxrss) is its own. Families: Wav2Lip (random weights in the public layout: the real network), MuseTalk
(the tests' tiny UNet/VAE with the real whisper-tiny encoder: the per-frame audio contexts, which grew with
length, have their real size; the UNet's fixed 3.4 GB is not what this measures) and LSE (upstream SyncNet with
random weights). `--box` skips face detection (its track is ~560 bytes a frame). Prints MB at each length and
the slope in MB per minute of video. Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from random_weights import random_public_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ARCH = ROOT.parent / "shared" / "reference" / "musetalk" / "musetalk_arch.json"


def one_run(family: str, video: str, audio: str, model: str, box: list[int]) -> dict:
    """Dub (or score, for LSE) once in this process; its peak RSS in MB."""
    from lipsync_cli.config import DubConfig, FaceConfig

    if family == "lse":
        from lipsync_cli.evaluation import lse

        lse.measure(Path(video), None, model)
    else:
        from lipsync_cli.pipeline import dub

        cfg = DubConfig(model=model, faces=FaceConfig(box=tuple(box)), device="cpu", precision="fp32", quiet=True,
                        batch_size=8)
        with tempfile.TemporaryDirectory() as tmp:
            dub(Path(video), Path(audio), Path(tmp) / "out.mp4", cfg)
    return {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def models(folder: Path) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from musetalk_utils import write_models_folder
    from syncnet_utils import write_syncnet_v2

    return {"wav2lip": random_public_checkpoint(folder, "wav2lip"),
            "musetalk": str(write_models_folder(folder / "MuseTalk" / "models", json.loads(ARCH.read_text()))),
            "lse": str(write_syncnet_v2(folder / "syncnet_v2.model"))}


def looped(path: str, seconds: float, out: Path) -> str:
    from lipsync_cli.media import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-stream_loop", "-1", "-i", path, "-t", str(seconds),
                    "-c:v", "libx264", "-crf", "18", "-c:a", "aac", str(out)], check=True)
    return str(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", nargs="?")
    p.add_argument("audio", nargs="?")
    p.add_argument("--box", type=int, nargs=4, required=True, metavar=("X1", "Y1", "X2", "Y2"))
    p.add_argument("--seconds", type=float, nargs=2, default=[6.0, 60.0])
    p.add_argument("--families", nargs="*", default=["wav2lip", "musetalk", "lse"])
    p.add_argument("--one", nargs=3, metavar=("FAMILY", "VIDEO", "AUDIO"), help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one_run(*args.one, args.model, args.box)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = models(folder)
        clips = {s: (looped(args.video, s, folder / f"v{s:g}.mp4"), looped(args.audio, s, folder / f"a{s:g}.m4a"))
                 for s in args.seconds}
        short, long = args.seconds
        print(f"{'':<10}{f'{short:g} s MB':>10}{f'{long:g} s MB':>10}{'MB/min':>9}")
        for family in args.families:
            rss = {}
            for s, (v, a) in clips.items():
                out = subprocess.run([sys.executable, __file__, "--one", family, v, a, "--model", paths[family],
                                      "--box", *map(str, args.box)], check=True, capture_output=True, text=True,
                                     cwd=ROOT).stdout
                rss[s] = json.loads(out.strip().splitlines()[-1])["rss_mb"]
            slope = (rss[long] - rss[short]) / ((long - short) / 60)
            print(f"{family:<10}{rss[short]:>10.0f}{rss[long]:>10.0f}{slope:>9.1f}")


if __name__ == "__main__":
    main()
