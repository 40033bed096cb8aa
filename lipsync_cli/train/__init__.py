"""Training: one Trainer (trainer.py) driving one Task per model (expert.py, generator.py, refs.py).

Importing this package imports no torch; the entry points below do, when called.
"""

from __future__ import annotations

from pathlib import Path

from lipsync_cli.config import ExpertConfig, GeneratorConfig, TrainConfig
from lipsync_cli.errors import NotImplementedYet, UsageError


def train_expert(data: Path, run_dir: Path, cfg: TrainConfig, expert_cfg: ExpertConfig, quiet: bool = False) -> Path:
    """Train the Wav2Lip-compatible lip-sync expert on a dataset folder; returns the run folder."""
    from lipsync_cli.train.expert import ExpertTask
    from lipsync_cli.train.trainer import Trainer

    return Trainer(ExpertTask(expert_cfg), data, run_dir, cfg, quiet).fit()


def train_generator(data: Path, run_dir: Path, cfg: TrainConfig, gen_cfg: GeneratorConfig, expert: str,
                    quiet: bool = False) -> Path:
    """Train a generator (gen_cfg.arch) against a frozen expert checkpoint; returns the run folder."""
    from lipsync_cli.train.trainer import Trainer

    return Trainer(generator_task(gen_cfg, expert), data, run_dir, cfg, quiet).fit()


def generator_task(gen_cfg: GeneratorConfig, expert: str):
    """The Task of gen_cfg.arch: "wav2lip" here, "refs" from lipsync_cli.train.refs once it exists."""
    if gen_cfg.arch == "wav2lip":
        from lipsync_cli.train.generator import GeneratorTask

        return GeneratorTask(gen_cfg, expert)
    if gen_cfg.arch == "refs":
        try:
            from lipsync_cli.train import refs
        except ModuleNotFoundError as e:
            if e.name != "lipsync_cli.train.refs":
                raise
            raise NotImplementedYet("training the reference-attention generator (--arch refs) is not built yet: "
                                    "use --arch wav2lip") from None
        return refs.RefsTask(gen_cfg, expert)
    raise UsageError(f"unknown generator architecture {gen_cfg.arch!r}: use wav2lip or refs")
