"""Training: one Trainer (trainer.py) driving one Task per model (expert.py, generator.py, refs.py).

Importing this package imports no torch; the entry points below do, when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lipsync_cli.config import ExpertConfig, GeneratorConfig, TrainConfig, train_defaults
from lipsync_cli.errors import UsageError


def train_expert(data: Path, run_dir: Path, cfg: Optional[TrainConfig] = None,
                 expert_cfg: ExpertConfig = ExpertConfig(), quiet: bool = False) -> Path:
    """Train the Wav2Lip-compatible lip-sync expert on a dataset folder; returns the run folder.
    cfg None: the expert's defaults (config.train_defaults("expert"), what the CLI starts from too)."""
    from lipsync_cli.train.expert import ExpertTask
    from lipsync_cli.train.trainer import Trainer

    return Trainer(ExpertTask(expert_cfg), data, run_dir, cfg or train_defaults("expert"), quiet).fit()


def train_generator(data: Path, run_dir: Path, cfg: Optional[TrainConfig] = None,
                    gen_cfg: GeneratorConfig = GeneratorConfig(), expert: str = "lipsync_expert",
                    quiet: bool = False) -> Path:
    """Train a generator (gen_cfg.arch) against a frozen expert checkpoint; returns the run folder.
    cfg None: that architecture's defaults (config.train_defaults(gen_cfg.arch), as the CLI)."""
    from lipsync_cli.train.trainer import Trainer

    task = generator_task(gen_cfg, expert)
    return Trainer(task, data, run_dir, cfg or train_defaults(gen_cfg.arch), quiet).fit()


def generator_task(gen_cfg: GeneratorConfig, expert: str):
    """The Task that trains gen_cfg.arch."""
    if gen_cfg.arch == "wav2lip":
        from lipsync_cli.train.generator import GeneratorTask

        return GeneratorTask(gen_cfg, expert)
    if gen_cfg.arch == "refs":
        from lipsync_cli.train.refs import RefsTask

        return RefsTask(gen_cfg, expert)
    raise UsageError(f"unknown generator architecture {gen_cfg.arch!r}: use wav2lip or refs")
