"""First vs second dub in fresh processes, as on a fresh install, container or Ray worker (issue 24, item 4).

numba keeps compiled kernels in its cache (__pycache__ next to the package, or $NUMBA_CACHE_DIR); a fresh
install, container or worker starts with it empty. Each run here is a new `python -m lipsync_cli dub` process
with NUMBA_CACHE_DIR pointing at a folder that is empty before the first run and kept for the second; the table
says how long each took and how many numba cache files it wrote (0: nothing was compiled).

    python benchmarks/bench_first_run.py VIDEO AUDIO [--code DIR]

A random-weight Wav2Lip checkpoint (same size and speed as the real one) stands in for the download. `--code DIR`
times another checkout's lipsync_cli (e.g. main before this change).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from random_weights import ROOT, random_public_checkpoint


def timed_dub(code: Path, video: str, audio: str, out: Path, ckpt: str, numba_cache: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one dub in a new process; CPU time is what a busy machine cannot inflate."""
    env = {**os.environ, "PYTHONPATH": str(code), "NUMBA_CACHE_DIR": str(numba_cache)}
    cmd = [sys.executable, "-m", "lipsync_cli", "dub", video, audio, "-o", str(out), "--model", ckpt,
           "--detector", "dlib", "-f", "-q"]
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"dub failed: {done.stderr.strip()}")
    return time.perf_counter() - start, _children_cpu() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("audio")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose lipsync_cli runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = random_public_checkpoint(tmp, "wav2lip")
        cache = tmp / "numba-cache"
        print(f"{'run':8} {'wall s':>8} {'CPU s':>8} {'numba files written':>20}")
        for run in ("first", "second"):
            before = sum(1 for _ in cache.rglob("*") if _.is_file()) if cache.exists() else 0
            wall, cpu = timed_dub(args.code.resolve(), args.video, args.audio, tmp / "out.mp4", ckpt, cache)
            after = sum(1 for _ in cache.rglob("*") if _.is_file()) if cache.exists() else 0
            print(f"{run:8} {wall:8.1f} {cpu:8.1f} {after - before:20d}")


if __name__ == "__main__":
    main()
