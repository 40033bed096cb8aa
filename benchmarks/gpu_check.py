"""The GPU check behind gpu_check.sh: CUDA tests, each family's fp16 vs fp32 output, dub frames/s per stage at
1080p, MuseTalk's and LatentSync's networks at their real sizes, training samples/s; then one table with a pass/fail per check. Each step has its own time limit so the
whole stays within about 8 minutes on one GPU. Not a test (the tests are tests/test_cuda.py)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


BUDGET_S = 560  # gpu_check.sh stops everything at 600 s: what is left of this is each step's ceiling, so the table prints
STARTED = time.perf_counter()


def step(name: str, cmd: list, limit: int, out: Path, rows: list) -> str:
    """Run one check in its own process; record (name, ok, seconds, the line that matters); return its output.
    A step gets at most `limit` seconds and never more than what is left of BUDGET_S."""
    started = time.perf_counter()
    limit = min(limit, int(BUDGET_S - (started - STARTED)))
    if limit < 10:
        rows.append((name, False, 0.0, "skipped: the check's time budget is spent"))
        return ""
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
        text, ok = proc.stdout + proc.stderr, proc.returncode == 0
    except subprocess.TimeoutExpired as err:
        text, ok = f"{err.stdout or ''}{err.stderr or ''}\ntimed out after {limit} s", False
    (out / f"{name}.log").write_text(text)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    rows.append((name, ok, time.perf_counter() - started, lines[-1] if lines else ""))
    return text


def make_1080p_clip(folder: Path) -> tuple[str, str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_face_clip
    from test_cuda import voiced_wav

    speech = voiced_wav(folder / "speech.wav", seconds=4.0)
    return str(make_face_clip(folder / "clip1080.mp4", seconds=4.0, size=1080, audio=None)), str(speech)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("/tmp/gpu_check"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list = []
    py = sys.executable
    tests = step("cuda_tests", [py, "-m", "pytest", "-q", "-m", "cuda", "-s", "-rs", "tests/test_cuda.py"],
                 180, args.out, rows)
    diffs = re.findall(r"^(\w+) fp16 vs fp32 on CUDA: (.*)$", tests, flags=re.M)
    with tempfile.TemporaryDirectory() as tmp:
        video, audio = make_1080p_clip(Path(tmp))
        for precision in ("fp16", "fp32"):
            step(f"dub_1080p_{precision}", [py, "benchmarks/bench_dub.py", video, audio, "--detector", "face_alignment",
                                            "--device", "cuda", "--precision", precision, "--box", "300", "200", "800",
                                            "780"], 60, args.out, rows)
        # the latent-diffusion families with their real network sizes and random weights (no download)
        step("musetalk_fp16", [py, "benchmarks/bench_musetalk.py", video, audio, "--seconds", "2", "--detector",
                               "face_alignment", "--device", "cuda", "--precision", "fp16"], 90, args.out, rows)
    # one 16-frame window, one guided step, at 256 (1.5) and 512 (1.6); the three precisions on networks built once
    step("latentsync", [py, "benchmarks/bench_latentsync.py", "steps", "--device", "cuda", "--precision", "fp16",
                        "bf16", "fp32"], 120, args.out, rows)
    step("train", [py, "benchmarks/bench_train.py", "--device", "cuda", "--steps", "20", "--workers", "4"],
         90, args.out, rows)
    print(f"\n{'check':<18}{'ok':<6}{'s':>6}  result")
    for name, ok, seconds, last in rows:
        print(f"{name:<18}{'pass' if ok else 'FAIL':<6}{seconds:>6.0f}  {last[:100]}")
    for family, diff in diffs:
        print(f"{family + ' fp16-fp32':<18}{'':<6}{'':>6}  {diff}")
    print(f"\nper-step logs in {args.out}")


if __name__ == "__main__":
    main()
