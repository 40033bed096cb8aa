"""Training: one Trainer (trainer.py) driving one Task per model (expert.py, wav2lip.py, refs.py).

Importing this package imports torch (the tasks are torch modules), so the CLI imports it inside
`lipsync train` only, keeping `lipsync --help` free of torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lipsync_cli.config import ExpertConfig, GeneratorConfig, TrainConfig, train_defaults
from lipsync_cli.errors import UsageError
from lipsync_cli.train.expert import ExpertTask
from lipsync_cli.train.refs import RefsTask
from lipsync_cli.train.trainer import Trainer
from lipsync_cli.train.wav2lip import GeneratorTask

GENERATOR_TASKS = {"wav2lip": GeneratorTask, "refs": RefsTask}  # GeneratorConfig.arch → the Task that trains it


def train_expert(data: Path, run_dir: Path, cfg: Optional[TrainConfig] = None,
                 expert_cfg: ExpertConfig = ExpertConfig(), quiet: bool = False) -> Path:
    """Train the Wav2Lip-compatible lip-sync expert on a dataset folder; returns the run folder.
    cfg None: the expert's defaults (config.train_defaults("expert"), what the CLI starts from too)."""
    return Trainer(ExpertTask(expert_cfg), data, run_dir, cfg or train_defaults("expert"), quiet).fit()


def train_generator(data: Path, run_dir: Path, cfg: Optional[TrainConfig] = None,
                    gen_cfg: GeneratorConfig = GeneratorConfig(), expert: str = "lipsync_expert",
                    quiet: bool = False) -> Path:
    """Train a generator (gen_cfg.arch) against a frozen expert checkpoint; returns the run folder.
    cfg None: that architecture's defaults (config.train_defaults(gen_cfg.arch), as the CLI)."""
    task = generator_task(gen_cfg, expert)
    return Trainer(task, data, run_dir, cfg or train_defaults(gen_cfg.arch), quiet).fit()


def generator_task(gen_cfg: GeneratorConfig, expert: str):
    """The Task that trains gen_cfg.arch."""
    if gen_cfg.arch not in GENERATOR_TASKS:
        raise UsageError(f"unknown generator architecture {gen_cfg.arch!r}: use {' or '.join(GENERATOR_TASKS)}")
    return GENERATOR_TASKS[gen_cfg.arch](gen_cfg, expert)
