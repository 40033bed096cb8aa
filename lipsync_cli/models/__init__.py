"""Networks (Wav2Lip generator, lip-sync expert, quality discriminator, reference-attention
generator) and checkpoint load/save. Importing this package does not import torch."""

from lipsync_cli.models.checkpoint import checkpoint_kind, load_checkpoint, read_checkpoint, save_checkpoint
from lipsync_cli.models.registry import ARCHITECTURES, KIND_NAMES, build_model, get_architecture

__all__ = ["ARCHITECTURES", "KIND_NAMES", "build_model", "checkpoint_kind", "get_architecture",
           "load_checkpoint", "read_checkpoint", "save_checkpoint"]
