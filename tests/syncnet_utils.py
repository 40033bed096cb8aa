"""Random-weight syncnet_v2.model files in the PUBLIC layout, so SyncNet tests need no download.

The public file is a plain {name: tensor} state dict of syncnet_python's network S (no "module."
prefix, no wrapper dict: upstream's loadParameters iterates over it directly). Weights follow
../shared/reference/syncnet/README.md's deterministic recipe: seed 1234 gives its conformance weights.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch


def deterministic_state(seed: int = 1234) -> dict:
    """{name: tensor} for every entry of SyncNetV2, drawn entry by entry from one generator in state-dict order."""
    from lipsync_cli.evaluation.upstream_syncnet_network import SyncNetV2

    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, ref in SyncNetV2().state_dict().items():
        shape = list(ref.shape)
        if ref.dtype != torch.float32:  # num_batches_tracked: zeros, no draw
            state[name] = torch.zeros(shape, dtype=ref.dtype)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) > 1:
            state[name] = torch.randn(shape, generator=g) * math.sqrt(2 / math.prod(shape[1:])) * 0.7
        elif name.endswith("weight"):  # 1-D weight: a BatchNorm scale
            state[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[name] = torch.randn(shape, generator=g) * 0.1
    return state


def write_syncnet_v2(path, seed: int = 1234, legacy: bool = False, counters: bool = True) -> Path:
    """torch.save the state dict as the public file is laid out. legacy: pre-1.6 (non-zip) serialisation;
    counters=False: without the 14 num_batches_tracked entries (a file older than torch 0.4.1)."""
    state = deterministic_state(seed)
    if not counters:
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = Path(path)
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path
