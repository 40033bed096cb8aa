"""Which family loads a `--model` value: family name → module, imported only when asked for.

A family module (a value of FAMILIES) provides:

    claims(name_or_path) -> bool            True for the names/folders it loads itself (MuseTalk: "musetalk"
                                            or a models/ folder); checkpoint families claim nothing
    load(name_or_path, device, precision, batch_size, options) -> Generator    for what it claims
    from_checkpoint(model, device, precision, batch_size) -> Generator         for a checkpoint of its
                                            architecture (the file names it: models.checkpoint)

Anything no family claims is a weights name or file: it is resolved, its checkpoint loaded, and the
family named by the checkpoint's architecture wraps the network. This module imports no family.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

from lipsync_cli import weights
from lipsync_cli.config import DubConfig
from lipsync_cli.device import pick_device
from lipsync_cli.errors import UsageError
from lipsync_cli.generators.base import Generator
from lipsync_cli.models import load_checkpoint

# family name (= the architecture its checkpoints name) → its module; claims() are asked in this order
FAMILIES = {
    "latentsync": "lipsync_cli.generators.latentsync.generator",  # before musetalk, which claims any folder
    "musetalk": "lipsync_cli.generators.musetalk.generator",
    "wav2lip": "lipsync_cli.generators.wav2lip.generator",
    "refs": "lipsync_cli.generators.refs.generator",
}


def family(name: str) -> ModuleType:
    """The module of a family by name (imported now, not before)."""
    if name not in FAMILIES:
        raise UsageError(f"no generator family {name!r} (known: {', '.join(FAMILIES)})")
    return importlib.import_module(FAMILIES[name])


def claiming_family(name_or_path: str) -> Optional[str]:
    """The family that loads this name or folder itself, None for a weights name or checkpoint file."""
    return next((name for name in FAMILIES if family(name).claims(str(name_or_path))), None)


def load_generator(name_or_path: str, device: str = "auto", precision: str = "auto", batch_size: int = 32,
                   **options) -> Generator:
    """Resolve a weights name, file or folder, load it as a generator, place it on the chosen device.

    options: per-family settings keyed by family name (musetalk=config.MuseTalkConfig(...)); a family
    gets only its own (None when not given) and falls back to its defaults."""
    dev = pick_device(device)
    claimed = claiming_family(name_or_path)
    if claimed is not None:
        return family(claimed).load(str(name_or_path), dev, precision, batch_size, options.get(claimed))
    model = load_checkpoint(weights.resolve(name_or_path), device=dev, expect="generator")
    return family(model.arch).from_checkpoint(model, dev, precision, batch_size)


def load_for(cfg: DubConfig) -> Generator:
    """The generator a DubConfig names, with each family's own settings where DubConfig has a field named
    after the family (DubConfig.musetalk): a new family's settings need no change here or in the callers."""
    options = {name: getattr(cfg, name) for name in FAMILIES if hasattr(cfg, name)}
    return load_generator(cfg.model, cfg.device, cfg.precision, cfg.batch_size, **options)
