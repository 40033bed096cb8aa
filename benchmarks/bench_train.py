"""Training throughput (samples/s) of the expert, the Wav2Lip generator and the refs generator.

    python benchmarks/bench_train.py [--data DATASET] [--steps 10] [--device cpu] [--models expert wav2lip refs]
                                     [--batch expert=64 wav2lip=16 refs=16] [--workers 2]

Each model trains 2 x STEPS steps through the real Trainer (the same code `lipsync train` runs); the first
STEPS are warm-up, the figure is the Trainer's own samples_per_s over the second STEPS (data loading, forward,
backward and optimizer step; validation and checkpoint writes excluded). Without --data a synthetic set
(tests/synthetic.py) at 96 px is written first. Generators train against a random-weight expert;
refs runs without the VGG perceptual loss (no download) unless --perceptual says otherwise. AMP is on for
CUDA, as in `lipsync train`. Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import csv
import resource
import tempfile
import time
from pathlib import Path

from random_weights import random_public_checkpoint

MODELS = ("expert", "wav2lip", "refs")


def train_once(model: str, data: Path, run: Path, expert: str, batch: int, steps: int, args) -> float:
    """Train 2*steps; return samples/s of the second half (the Trainer's samples_per_s)."""
    from lipsync_cli.config import ExpertConfig, GeneratorConfig, RefsConfig, TrainConfig
    from lipsync_cli.train import train_expert, train_generator

    cfg = TrainConfig(batch_size=batch, lr=1e-4, max_steps=2 * steps, val_every=10 * steps, val_batches=1,
                      ckpt_every=10 * steps, log_every=steps, num_workers=args.workers, device=args.device)
    if model == "expert":
        train_expert(data, run, cfg, ExpertConfig(), quiet=True)
    else:
        gen = GeneratorConfig(arch=model, refs=RefsConfig(perceptual=args.perceptual))
        train_generator(data, run, cfg, gen, expert, quiet=True)
    rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r["metric"] == "samples_per_s"]
    return float(rows[-1]["value"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="dataset folder from `lipsync preprocess` (default: synthetic)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--batch", nargs="*", default=[], help="per-model batch sizes, e.g. expert=32 refs=8")
    p.add_argument("--perceptual", default="off", choices=["off", "random", "imagenet"])
    args = p.parse_args()
    from lipsync_cli.config import train_defaults

    batches = {m: train_defaults(m).batch_size for m in MODELS}  # `lipsync train`'s own defaults
    batches.update({k: int(v) for k, v in (b.split("=") for b in args.batch)})
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            import sys

            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from synthetic import make_synthetic_dataset  # a test fixture: it needs the test extra (scikit-image)

            data = make_synthetic_dataset(tmp / "synthetic", n_clips=6, seconds=4.0, size=96, voice="synthetic")
        expert = random_public_checkpoint(tmp, "syncnet")
        for model in args.models:
            started = time.perf_counter()
            rate = train_once(model, data, tmp / f"run_{model}", expert, batches[model], args.steps, args)
            results.append((model, batches[model], rate, time.perf_counter() - started))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"data {args.data or 'synthetic 96px'}  device {args.device}  steps {args.steps} (+{args.steps} warm-up)  "
          f"workers {args.workers}")
    print(f"{'model':<10}{'batch':>6}{'samples/s':>12}{'steps/s':>10}{'wall s':>9}")
    for model, batch, rate, wall in results:
        print(f"{model:<10}{batch:>6}{rate:>12.1f}{rate / batch:>10.2f}{wall:>9.0f}")
    print(f"peak RSS of this process {rss:.0f} MB")


if __name__ == "__main__":
    main()
