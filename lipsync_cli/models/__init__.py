"""What training shares: our lip-sync expert (lipsync_expert.py), the discriminators, the building blocks,
and checkpoint load/save with the architecture registry (registry.py: name → class, imported lazily, so a
checkpoint file alone rebuilds its network). The generator families' networks live in their packages
(generators/wav2lip/network.py, generators/refs/network.py). Importing this package does not import torch."""

from lipsync_cli.models.checkpoint import checkpoint_kind, load_checkpoint, read_checkpoint, save_checkpoint
from lipsync_cli.models.registry import ARCHITECTURES, KIND_NAMES, build_model, get_architecture

__all__ = ["ARCHITECTURES", "KIND_NAMES", "build_model", "checkpoint_kind", "get_architecture",
           "load_checkpoint", "read_checkpoint", "save_checkpoint"]
