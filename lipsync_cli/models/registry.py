"""Architecture name -> model class. Classes are imported on first lookup so `import lipsync_cli.models`
(and listing the names) stays cheap: no torch until a network is built."""

from __future__ import annotations

import importlib

from lipsync_cli.errors import UsageError

# name -> (module, class): every network a checkpoint file may be "of".
ARCHITECTURES = {
    "wav2lip": ("lipsync_cli.generators.wav2lip.network", "Wav2Lip"),
    "syncnet": ("lipsync_cli.models.lipsync_expert", "SyncNet"),
    "disc_qual": ("lipsync_cli.models.discriminator", "QualityDiscriminator"),
    "refs": ("lipsync_cli.generators.refs.network", "RefsGenerator"),
    "disc_refs": ("lipsync_cli.models.refs_discriminator", "RefsDiscriminator"),
}

# How each kind is named in messages to users
KIND_NAMES = {"generator": "lip-sync generator", "expert": "lip-sync expert",
              "discriminator": "visual-quality discriminator"}


def get_architecture(name: str):
    """The model class for an architecture name; UsageError naming the known ones otherwise."""
    if name not in ARCHITECTURES:
        raise UsageError(f"unknown architecture {name!r} (known: {', '.join(ARCHITECTURES)})")
    module, cls = ARCHITECTURES[name]
    return getattr(importlib.import_module(module), cls)


def build_model(name: str, **config):
    """A freshly initialised network of the named architecture (config = its constructor kwargs)."""
    return get_architecture(name)(**config)
