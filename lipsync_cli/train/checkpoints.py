"""The run folder's checkpoint files.

RUN_DIR/step_00001000.pt  every ckpt_every steps, the newest keep_last kept
RUN_DIR/last.pt           the newest of them (a hard link, or a copy where links are refused)
RUN_DIR/best.pt           the model with the best validation metric so far

Every file is our checkpoint format {"arch", "config", "state_dict", ...} (models.save_checkpoint),
so `lipsync dub --model RUN_DIR/best.pt` and models.load_checkpoint read any of them directly.
step_*.pt and last.pt also carry the whole training state under "train" in the SAME file, so a
crash can never leave weights and optimizer state from different steps:
  {"step", "best", "optimizers": {name: state}, "nets": {name: state_dict of the other trained
   nets, e.g. the discriminator}, "scaler", "rng": {python, numpy, torch, cuda}, "task": {...}}
best.pt omits it (it is the file users deploy, a third of the size). All of it loads with
torch.load(weights_only=True). Files are written to a temp name and renamed, so a kill -9 at
any moment leaves the previous last.pt intact.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from lipsync_cli.media.atomic import atomic_output
from lipsync_cli.models import save_checkpoint

STEP_FILE = re.compile(r"step_(\d+)\.pt$")


def step_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / f"step_{step:08d}.pt"


def write_step_checkpoint(run_dir: Path, model, step: int, keep_last: int, **extra) -> Path:
    """step_N.pt, then last.pt pointing at the same bytes, then prune old step files."""
    path = save_checkpoint(step_path(run_dir, step), model, **extra)
    _replace_with_link(path, Path(run_dir) / "last.pt")
    for old in step_checkpoints(run_dir)[:-keep_last or None]:
        old.unlink(missing_ok=True)
    return path


def write_best(run_dir: Path, model, **extra) -> Path:
    return save_checkpoint(Path(run_dir) / "best.pt", model, **extra)


def step_checkpoints(run_dir: Path) -> list[Path]:
    """step_*.pt files, oldest first."""
    found = [p for p in Path(run_dir).glob("step_*.pt") if STEP_FILE.search(p.name)]
    return sorted(found, key=lambda p: int(STEP_FILE.search(p.name).group(1)))


def _replace_with_link(src: Path, dst: Path) -> None:
    """Atomically make dst the same file as src: a hard link (no second copy on disk) renamed over dst."""
    with atomic_output(dst) as tmp:
        tmp.unlink(missing_ok=True)  # left by a killed run
        try:
            os.link(src, tmp)
        except OSError:  # file systems without hard links
            shutil.copyfile(src, tmp)


def rng_state() -> dict:
    """Every RNG a training step may draw from, as weights_only-loadable data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
