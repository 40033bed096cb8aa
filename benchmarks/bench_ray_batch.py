"""The same job file dubbed by the single-process batch and by `--ray`: wall time, rows/min, peak RSS per process.

    python benchmarks/bench_ray_batch.py VIDEO AUDIO [--rows 8] [--workers 2] [--cpus-per-worker 1]
                                         [--seconds 3] [--model NAME_OR_PATH|random] [--detector dlib] [--device cpu]

Every row dubs VIDEO with AUDIO (both cut to `--seconds` first, 0 keeps them whole). Each mode runs the real CLI in
a fresh process, model loading included; `--ray` starts its own local cluster, as a user's first run would, so
cluster start-up is counted too. Peak RSS is each process's VmHWM, sampled from /proc while it runs (Linux): the
driver, and each Ray worker (`ray::DubWorker` processes). Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from random_weights import random_public_checkpoint

SAMPLE_S = 0.25  # /proc sampling period: VmHWM is a high-water mark, so sampling only has to see the process alive


def cut(src: str, seconds: float, out: Path) -> str:
    from lipsync_cli.media import ffmpeg_exe

    if seconds <= 0:
        return str(Path(src).resolve())
    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-i", src, "-t", str(seconds), str(out)], check=True)
    return str(out)


def peak_rss_mb(pid: int):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def ray_workers() -> list[int]:
    """Pids of the Ray worker processes; a worker's child caught between fork and exec (ffmpeg being started)
    still carries the worker's name, and is left out by its parent."""
    named = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().startswith(b"ray::DubWorker"):
                    stat = (proc / "stat").read_text()
                    named[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])  # pid -> parent pid
            except OSError:
                pass
    return [pid for pid, parent in named.items() if parent not in named]


def timed_run(cmd: list[str], env: dict) -> dict:
    """Run the CLI; wall seconds, exit code and the peak RSS of the driver and of every Ray worker seen."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks: dict[str, float] = {}
    while proc.poll() is None:
        for label, pid in [("driver", proc.pid)] + [(f"worker {p}", p) for p in ray_workers()]:
            rss = peak_rss_mb(pid)
            if rss is not None:
                peaks[label] = max(rss, peaks.get(label, 0.0))
        time.sleep(SAMPLE_S)
    err = proc.stderr.read()
    return {"seconds": time.perf_counter() - start, "code": proc.returncode, "peaks": peaks, "stderr": err}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video")
    p.add_argument("audio")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cpus-per-worker", type=int, default=1)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--model", default="random")
    p.add_argument("--detector", default="dlib")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    env = dict(os.environ, RAY_DISABLE_USAGE_STATS="1")
    env.pop("RAY_ADDRESS", None)  # a local cluster for the run, as `lipsync dub --jobs --ray` starts by default
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = random_public_checkpoint(tmp, "wav2lip") if args.model == "random" else args.model
        video = cut(args.video, args.seconds, tmp / f"clip{Path(args.video).suffix}")
        audio = cut(args.audio, args.seconds, tmp / "speech.wav")
        results = {}
        for mode, extra in (("single", []), ("ray", ["--ray", "--workers", str(args.workers),
                                                     "--cpus-per-worker", str(args.cpus_per_worker)])):
            (tmp / mode).mkdir()
            jobs = tmp / f"{mode}.csv"
            jobs.write_text("video,audio,output\n" + "".join(f"{video},{audio},{mode}/o{k}.mp4\n"
                                                            for k in range(args.rows)))
            cmd = [sys.executable, "-m", "lipsync_cli", "dub", "--jobs", str(jobs), "--model", model, "--detector",
                   args.detector, "--device", args.device, "-q", "--report", str(tmp / f"{mode}.json"), *extra]
            run = timed_run(cmd, env)
            if run["code"] != 0:
                sys.exit(f"{mode} batch failed (exit {run['code']}):\n{run['stderr']}")
            rows = json.loads((tmp / f"{mode}.json").read_text())
            run["frames"] = sum(r["frames"] for r in rows)
            run["loads"] = sorted({(r["worker"], r["generator_loads"]) for r in rows})
            results[mode] = run
    print(f"{args.rows} rows of {Path(args.video).name} + {Path(args.audio).name} cut to {args.seconds:g} s, "
          f"model {args.model}, detector {args.detector}, device {args.device}, {os.cpu_count()} CPUs")
    for mode, r in results.items():
        peaks = ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(r["peaks"].items()))
        print(f"{mode:<7} {r['seconds']:7.1f} s  {args.rows / r['seconds'] * 60:6.1f} rows/min  "
              f"{r['frames'] / r['seconds']:6.1f} frames/s  peak RSS: {peaks}  "
              f"(worker, generator loads): {r['loads']}")


if __name__ == "__main__":
    main()
