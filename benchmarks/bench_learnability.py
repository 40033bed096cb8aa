"""The expert's learnability and its negative control, both trained from scratch (minutes each on 2 CPU cores).

    python benchmarks/bench_learnability.py [--steps 200] [--out DIR]

Trains the real 96x96 expert with the tests' learnability settings (tests/synthetic.py:
expert_learnability_config) twice: on the synthetic set, and on a copy whose audio is shifted by 15 frames.
A correct pipeline learns the first (held-out accuracy >= 0.80) and cannot learn the second (< 0.80): the data
leaks no cue but sync. The suite trains the first once and checks the trained expert is at chance on shifted
audio (tests/test_training.py); this is the full control. Prints each run's validation accuracy curve and time.
Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic import expert_learnability_config, make_synthetic_dataset  # noqa: E402 (a test fixture: needs the test extra)


def main() -> None:
    from lipsync_cli.config import ExpertConfig
    from lipsync_cli.train import train_expert
    from lipsync_cli.train.log import read_metrics

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=expert_learnability_config().max_steps)
    p.add_argument("--out", type=Path, help="keep the datasets and runs here (default: a temporary folder)")
    args = p.parse_args()
    cfg = replace(expert_learnability_config(), max_steps=args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        for name, shift in (("aligned", 0), ("shifted 15 frames", 15)):
            data = make_synthetic_dataset(root / f"data{shift}", n_clips=16, seconds=3.0, seed=0,
                                          misaligned_frames=shift)
            started = time.perf_counter()
            run = train_expert(data, root / f"run{shift}", cfg, ExpertConfig(), quiet=True)
            curve = read_metrics(run, "val", "acc")
            best = max(a for _, a in curve)
            verdict = ("learned" if best >= 0.80 else "NOT learned") + (" (expected)" if (best >= 0.80) == (shift == 0)
                                                                         else " (UNEXPECTED)")
            print(f"{name:18s} {time.perf_counter() - started:7.1f} s  best acc {best:.3f}  {verdict}  curve "
                  + " ".join(f"{s}:{a:.2f}" for s, a in curve))


if __name__ == "__main__":
    main()
