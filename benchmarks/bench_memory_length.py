"""Peak and settled RSS against video length for each generator family, LSE and evaluate's expert: memory must be
flat in length.

    python benchmarks/bench_memory_length.py VIDEO AUDIO --box X1 Y1 X2 Y2 [--seconds 6 60] [--families ...]
                                             [--fps N] [--repeat N]

VIDEO and AUDIO are looped to each length (ffmpeg -stream_loop; `--fps` re-times the video, for a family too slow
on CPU to dub a minute at the clip's own rate) and each run is a fresh process importing this checkout, so its
peak RSS (VmHWM) is its own. Families: wav2lip (random weights in the public layout: the real network),
musetalk (the tests' tiny UNet/VAE with a random whisper encoder of whisper-tiny's size: the per-frame audio
contexts, which grew with length, have their real size; the UNet's fixed 3.4 GB is not what this measures), lse
and lse-nojpeg (upstream SyncNet with random weights scoring evaluate's default crop around `--box` at 25 fps,
with and without the JPEG round trip), expert (evaluate's sync score by our expert, random weights, the same crop
box). `--box` skips face detection (its track is ~560 bytes a frame).

Prints, per family: the peak MB at each length (min-max over `--repeat` runs) and the slope of the minima in MB
per minute of video; the settled RSS along the longest run (VmRSS read after each chunk of frames or batch of
windows, right after the heap is trimmed: from the end of the first third, the warm-up, to the end, and how many
readings) with its least-squares slope per minute; each run's wall seconds. Not a test: it prints a table.

Why two measures: a run's peak is the largest of its chunks' short-lived peaks (decoded frames, crops,
activations), and those vary by tens of MB from chunk to chunk with the heap's state (evaluate's expert, 60 s
sampled every 0.1 s: settled at 855 MB throughout, batch peaks anywhere from 956 to 1060 MB). A longer run has
more chunks, so its peak tends to land a few tens of MB higher without anything being kept: the peak slope is
not a growth rate. Memory that a run keeps shows in the settled RSS, which is flat or falls in every row below.
Python and numpy's own peak (tracemalloc) for a Wav2Lip dub: 306.0 MB at 6 s, 311.5 MB at 60 s: the audio
itself (float32 16 kHz and its mel, ~5 MB a minute).

Measured 2026-12-06 on ../shared/media/04_square700_frontal.mp4 (700x700; 30 fps once looped) + 04b_dub_audio_en_44k.wav,
--box 281 109 486 367 (mediapipe's box), 2 cores of an "Intel(R) Xeon(R) Processor" (AVX-512 BF16, AMX), tests
running beside it at times (wall seconds are not comparable; RSS is):

    family         6 s MB     60 s MB   MB/min          settled 60 s   MB/min  wall s
    wav2lip     1089-1157   1129-1215     44.4       957 -> 878 (29)   -32.63  17/19/17/146/146/144
    lse           961-964     968-970      7.7       716 -> 719 (75)     6.03  11/11/11/70/70/66
    lse-nojpeg    963-963     967-969      4.9       714 -> 716 (75)     5.91  9/9/9/68/65/60
    musetalk         1431        1464     37.0      1051 -> 968 (29)   -36.30  57/406
    expert            924         967     47.3       813 -> 798 (24)    -7.64  10/40

(wav2lip and the lse rows with --repeat 3; an earlier single musetalk run read 1477 at 6 s and 1444 at 60 s.)
LSE's settled slope is ~2 MB over the run's last 40 s: tracemalloc finds 0.25 MB of Python objects kept over
that span (the distance rows, 124 bytes a window), the rest is the C heap's.

What was not flat before (issue 23): MuseTalk's contexts of every frame up front (1.15 GB per 10 minutes at
25 fps); LSE holding every 224x224 crop (1148 MB at 60 s; 1379 MB without the JPEG step), then its MFCCs of the
whole audio and glibc fragmentation (985 -> 1125 MB, 6 -> 60 s); Wav2Lip's and the expert's whole-signal STFT
(~70 MB a minute of audio, at once); the expert's every lower half, 5-frame window and (N, 31, 512) pair array:
926 MB at 6 s, 1454 MB at 60 s (587 MB a minute) at commit 993b03f, measured with this row's code. LatentSync's
whisper states (23 MB a minute) are now made a 30 s segment at a time too; LatentSync is not in this table (its
tiny test nets run at 64 px; see bench_latentsync.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from random_weights import random_public_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ["wav2lip", "musetalk", "lse", "lse-nojpeg", "expert"]
ARCH = ROOT.parent / "shared" / "reference" / "musetalk" / "musetalk_arch.json"


def one_run(family: str, video: str, audio: str, model: str, box: list[int]) -> dict:
    """Dub (or score, for LSE) once in this process: its peak RSS in MB, and its settled RSS (MB) after each chunk
    of frames (dub) or batch of windows (LSE), read where the run hands its freed pages back."""
    from lipsync_cli import pipeline
    from lipsync_cli.config import DubConfig, FaceConfig
    from lipsync_cli.evaluation import lse, upstream_syncnet

    settled = []
    from lipsync_cli.evaluation import expert_sync

    module = {"lse": upstream_syncnet, "lse-nojpeg": upstream_syncnet, "expert": expert_sync}.get(family, pipeline)
    trim = module.release_freed_memory

    def trim_and_read() -> None:
        trim(0)  # every chunk or batch, so that each reading is settled (the run itself trims at most once a second)
        settled.append(rss_mb("VmRSS"))

    module.release_freed_memory = trim_and_read
    if family == "expert":
        import torch

        from lipsync_cli import media
        from lipsync_cli.evaluation import evaluate
        from lipsync_cli.models.lipsync_expert import SyncNet

        torch.manual_seed(0)
        net = SyncNet().eval()
        net.config = {"size": 96}  # what a loaded checkpoint carries
        evaluate.measure_expert(net, Path(video), box_track(video, box), media.load_audio(audio), "cpu")
    elif family.startswith("lse"):
        # evaluate's default crop: upstream's crop around the face track (here the fixed box at 25 fps)
        lse.measure(Path(video), None, upstream_syncnet.load(model), box_track(video, box),
                    jpeg=family == "lse")
    else:
        cfg = DubConfig(model=model, faces=FaceConfig(box=tuple(box)), device="cpu", precision="fp32", quiet=True,
                        batch_size=8)
        with tempfile.TemporaryDirectory() as tmp:
            pipeline.dub(Path(video), Path(audio), Path(tmp) / "out.mp4", cfg)
    return {"rss_mb": rss_mb("VmHWM"), "settled_mb": settled}


def settled_slope(settled: list[float], seconds: float) -> float:
    """MB per minute of video of the settled RSS along one run: least squares over its chunks (evenly spaced in the
    video) after the first third, the warm-up, when the run's lazy imports, caches and heap arenas still grow
    once; memory that grows with length grows all along."""
    import numpy as np

    first = len(settled) // 3
    rss = np.asarray(settled[first:], dtype=np.float64)
    if len(rss) < 2:
        return float("nan")
    return float(np.polyfit(np.arange(len(rss)) * seconds / 60 / len(settled), rss, 1)[0])


def rss_mb(field: str = "VmHWM") -> float:
    """This process's own RSS in MB: its peak (VmHWM, not ru_maxrss, which a child process inherits from its parent:
    the table's process holds ~1 GB, and every run below that read as the parent's size) or its present VmRSS."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def box_track(video: str, box: list[int]):
    """The raw face track evaluate hands to LSE, with `box` in every 25 fps frame instead of detections."""
    import numpy as np

    from lipsync_cli import media
    from lipsync_cli.evaluation import upstream_syncnet
    from lipsync_cli.faces.track import FaceTrack

    n = int(media.probe(video).duration * upstream_syncnet.FPS)
    return FaceTrack(boxes=np.tile(np.float32(box), (n, 1)), landmarks=np.full((n, 68, 2), np.nan, np.float32))


def models(folder: Path) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from musetalk_utils import write_models_folder
    from syncnet_utils import write_syncnet_v2

    syncnet = str(write_syncnet_v2(folder / "syncnet_v2.model"))
    return {"wav2lip": random_public_checkpoint(folder, "wav2lip"),
            "musetalk": str(write_models_folder(folder / "MuseTalk" / "models", json.loads(ARCH.read_text()))),
            "lse": syncnet, "lse-nojpeg": syncnet, "expert": "random"}


def looped(path: str, seconds: float, out: Path, fps: Optional[float] = None) -> str:
    from lipsync_cli.media import ffmpeg_exe

    rate = ["-r", f"{fps:g}"] if fps else []
    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-stream_loop", "-1", "-i", path, "-t", str(seconds), *rate,
                    "-c:v", "libx264", "-crf", "18", "-c:a", "aac", str(out)], check=True)
    return str(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", nargs="?")
    p.add_argument("audio", nargs="?")
    p.add_argument("--box", type=int, nargs=4, required=True, metavar=("X1", "Y1", "X2", "Y2"))
    p.add_argument("--seconds", type=float, nargs="+", default=[6.0, 60.0], help="two or more lengths")
    p.add_argument("--families", nargs="*", default=FAMILIES, choices=FAMILIES)
    p.add_argument("--fps", type=float, help="re-time the looped video to this rate (fewer frames for a family too "
                                             "slow on CPU to dub a minute at 25-30 fps); default: the video's own")
    p.add_argument("--repeat", type=int, default=1, help="runs per length (peak RSS varies by tens of MB from run "
                                                            "to run: the table gives min-max, the slope the minima's)")
    p.add_argument("--one", nargs=3, metavar=("FAMILY", "VIDEO", "AUDIO"), help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one_run(*args.one, args.model, args.box)))
        return
    if len(args.seconds) < 2:
        p.error("--seconds needs at least two lengths")
    # each run imports THIS checkout's lipsync_cli (not whichever copy is installed)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = models(folder)
        clips = {s: (looped(args.video, s, folder / f"v{s:g}.mp4", args.fps),
                     looped(args.audio, s, folder / f"a{s:g}.m4a")) for s in sorted(args.seconds)}
        short, long = min(args.seconds), max(args.seconds)
        print(f"{'':<11}" + "".join(f"{f'{s:g} s MB':>12}" for s in clips) + f"{'MB/min':>9}"
              f"{f'settled {long:g} s':>22}{'MB/min':>9}  wall s")
        for family in args.families:
            rss, wall, settled = {}, [], []
            for s, (v, a) in clips.items():
                rss[s] = []
                for _ in range(args.repeat):
                    began = time.perf_counter()
                    run = subprocess.run([sys.executable, __file__, "--one", family, v, a, "--model", paths[family],
                                          "--box", *map(str, args.box)], capture_output=True, text=True, cwd=ROOT,
                                         env=env)
                    if run.returncode != 0:
                        sys.exit(f"{family} at {s:g} s failed:\n{run.stderr[-3000:]}")
                    wall.append(f"{time.perf_counter() - began:.0f}")
                    got = json.loads(run.stdout.strip().splitlines()[-1])
                    rss[s].append(got["rss_mb"])
                    settled = got["settled_mb"]  # the longest length's last run's, kept last
            slope = (min(rss[long]) - min(rss[short])) / ((long - short) / 60)
            steady = f"{settled[len(settled) // 3]:.0f} -> {settled[-1]:.0f} ({len(settled)})" if settled else "-"
            print(f"{family:<11}" + "".join(f"{spread(rss[s]):>12}" for s in clips) + f"{slope:>9.1f}{steady:>22}"
                  f"{settled_slope(settled, long):>9.2f}  {'/'.join(wall)}", flush=True)


def spread(values: list[float]) -> str:
    """'1131' for one run, 'min-max' for repeats."""
    low, high = min(values), max(values)
    return f"{low:.0f}" if len(values) == 1 else f"{low:.0f}-{high:.0f}"


if __name__ == "__main__":
    main()
