"""Random-weight checkpoints in the PUBLIC Wav2Lip file layout, for tests that need a loadable
network without downloading anything.

Weights follow ../shared/reference/README.md's deterministic recipe (seed 1234 reproduces its
conformance weights), so small random networks still produce well-scaled activations.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

PUBLIC_ARCHS = ("wav2lip", "syncnet", "disc_qual")


def recipe_state_dict(keys, seed: int = 1234) -> dict:
    """[(name, shape, dtype)] in state-dict order -> {name: tensor}, drawn entry by entry from one
    generator exactly as the reference README describes."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape, dtype in keys:
        shape = list(shape)
        if dtype != "float32":  # num_batches_tracked
            state[name] = torch.zeros(shape, dtype=getattr(torch, dtype))
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) > 1:
            state[name] = torch.randn(shape, generator=g) * math.sqrt(2 / math.prod(shape[1:])) * 0.7
        elif name.endswith("conv_block.1.weight"):  # BatchNorm scale
            state[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[name] = torch.randn(shape, generator=g) * 0.1
    return state


def write_public_layout(path: Path, state: dict) -> Path:
    """Save a state dict the way Wav2Lip's training scripts did (DataParallel "module." prefix,
    optimizer/step bookkeeping beside it)."""
    path = Path(path)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "optimizer": {},
                "global_step": 0, "global_epoch": 0}, path)
    return path


def write_public_checkpoint(path, arch: str, seed: int = 0) -> Path:
    """A random-weight checkpoint of arch ("wav2lip", "syncnet", "disc_qual") in the public layout."""
    from lipsync_cli.models import get_architecture

    if arch not in PUBLIC_ARCHS:
        raise ValueError(f"arch must be one of {PUBLIC_ARCHS}, got {arch!r}")
    own = get_architecture(arch)().state_dict()
    keys = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in own.items()]
    return write_public_layout(path, recipe_state_dict(keys, seed))


def write_random_face_alignment(folder: Path, seed: int = 0) -> Path:
    """face-alignment's S3FD and 2D-FAN-4 with random weights: FAN under the file name face-alignment loads from
    torch.hub's checkpoints folder (pass that folder), S3FD as s3fd-random.pth (its path is returned, for
    path_to_detector). Random scores would put a "face" on hundreds of anchors (and FAN on each): only the
    coarsest level (stride 128: a few anchors per frame) scores faces, every other level background."""
    import os

    from face_alignment.api import models_urls
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    state = s3fd().state_dict()
    for key in [k for k in state if "mbox_conf" in k]:
        state[key].zero_()
        if key.endswith(".bias"):
            state[key][-1] = 20.0 if key.startswith("conv7_2") else -20.0
    detector_file = folder / "s3fd-random.pth"
    torch.save(state, detector_file)
    torch.save(FAN(4).state_dict(), folder / os.path.basename(models_urls["2DFAN-4"]))
    return detector_file
