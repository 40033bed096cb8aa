"""One video into three languages: the batch's time with the shared (cached) face track and without it.

    python benchmarks/bench_batch_languages.py VIDEO AUDIO [--model NAME_OR_PATH|random] [--detector dlib]
                                               [--device cpu]

The three "languages" are AUDIO looped or cut to 110 %, 100 % and 90 % of the video's length (translations of
one video's speech: different lengths, each close to the video's). Without the shared track each row detects the face again (what the batch did before the
face-track cache); with it, the batch detects once (an empty cache folder) and the other rows reuse the track.
Both runs use the same loaded models. Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from random_weights import random_public_checkpoint

SHARES = {"en": 1.1, "fr": 1.0, "de": 0.9}


def languages(video: Path, audio: Path, folder: Path) -> list[Path]:
    from lipsync_cli import media

    seconds = media.probe(video).duration
    out = []
    for lang, share in SHARES.items():
        path = folder / f"{lang}.wav"
        subprocess.run([media.ffmpeg_exe(), "-y", "-v", "error", "-stream_loop", "-1", "-i", str(audio), "-t",
                        f"{seconds * share:.3f}", "-ar", "16000", "-ac", "1", str(path)], check=True)
        out.append(path)
    return out


def without_cache(video: Path, speech: list[Path], cfg, models, folder: Path) -> tuple[float, list[float]]:
    """Each row dubbed with no face-track cache: one detection per row."""
    from lipsync_cli.pipeline import dub

    start, detect = time.perf_counter(), []
    for path in speech:
        result = dub(video, path, folder / f"{path.stem}_nocache.mp4", cfg, generator=models.generator(),
                     detector=models.detector())
        detect.append(result.seconds.get("detect", 0.0))
    return time.perf_counter() - start, detect


def with_cache(video: Path, speech: list[Path], cfg, models, folder: Path) -> tuple[float, list[float]]:
    """The batch itself, with an empty cache folder: the first row detects, the others reuse its track."""
    import lipsync_cli.batch as batch

    jobs = folder / "jobs.csv"
    jobs.write_text("video,audio,output\n" + "".join(f"{video},{p},{folder / (p.stem + '_cache.mp4')}\n"
                                                    for p in speech))
    report = folder / "report.csv"
    cfg = replace(cfg, face_cache=str(folder / "face-tracks"))
    original = batch.Models
    batch.Models = lambda _cfg: models  # the same loaded models as the run without the cache
    try:
        start = time.perf_counter()
        batch.run_batch(jobs, cfg, report=report)
        took = time.perf_counter() - start
    finally:
        batch.Models = original
    rows = list(csv.DictReader(report.open()))
    assert [r["status"] for r in rows] == ["done"] * len(speech), rows
    return took, [float(r["detect_seconds"]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path)
    parser.add_argument("audio", type=Path)
    parser.add_argument("--model", default="random")
    parser.add_argument("--detector", default="dlib")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from lipsync_cli.batch import Models
    from lipsync_cli.config import DubConfig, FaceConfig

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = random_public_checkpoint(folder, "wav2lip") if args.model == "random" else args.model
        cfg = DubConfig(model=model, faces=FaceConfig(detector=args.detector), device=args.device, quiet=True)
        models = Models(cfg)
        models.generator(), models.detector()
        speech = languages(args.video, args.audio, folder)
        plain, plain_detect = without_cache(args.video.resolve(), speech, cfg, models, folder)
        cached, cached_detect = with_cache(args.video.resolve(), speech, cfg, models, folder)
    print(f"{args.video.name}, 3 languages ({', '.join(SHARES)}), {args.detector} on {args.device}")
    print(f"{'run':<22}{'batch s':>10}  detection s per row")
    print(f"{'one track per row':<22}{plain:>10.1f}  {', '.join(f'{s:.1f}' for s in plain_detect)}")
    print(f"{'shared track (cache)':<22}{cached:>10.1f}  {', '.join(f'{s:.1f}' for s in cached_detect)}")
    print(f"detection in total: {sum(plain_detect):.1f} s vs {sum(cached_detect):.1f} s (the cached track covers "
          "every frame of the video)")


if __name__ == "__main__":
    sys.exit(main())
