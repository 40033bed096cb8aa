"""Architecture name -> model class, imported on first use so `import lipsync_cli.models`
stays cheap (no torch) and an architecture whose module is absent simply is not listed."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator, Mapping

from lipsync_cli.errors import UsageError

# name -> (module, class). The "refs" module may be missing from a checkout; it is listed only
# when present.
_SOURCES = {
    "wav2lip": ("lipsync_cli.models.wav2lip", "Wav2Lip"),
    "syncnet": ("lipsync_cli.models.syncnet", "SyncNet"),
    "disc_qual": ("lipsync_cli.models.discriminator", "QualityDiscriminator"),
    "refs": ("lipsync_cli.models.refs", "RefsGenerator"),
}

# How each kind is named in messages to users
KIND_NAMES = {"generator": "lip-sync generator", "expert": "lip-sync expert",
              "discriminator": "visual-quality discriminator"}


class _LazyRegistry(Mapping):
    """A read-only dict of the available architectures whose classes are imported on lookup."""

    def _available(self) -> list[str]:
        return [name for name, (module, _) in _SOURCES.items() if importlib.util.find_spec(module) is not None]

    def __getitem__(self, name: str):
        if name not in _SOURCES or importlib.util.find_spec(_SOURCES[name][0]) is None:
            raise KeyError(name)
        module, cls = _SOURCES[name]
        return getattr(importlib.import_module(module), cls)

    def __iter__(self) -> Iterator[str]:
        return iter(self._available())

    def __len__(self) -> int:
        return len(self._available())

    def __contains__(self, name) -> bool:
        return name in self._available()


ARCHITECTURES: Mapping = _LazyRegistry()


def get_architecture(name: str):
    """The model class for an architecture name; UsageError naming the known ones otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UsageError(f"unknown architecture {name!r} (known: {', '.join(ARCHITECTURES)})") from None


def build_model(name: str, **config):
    """A freshly initialised network of the named architecture (config = its constructor kwargs)."""
    return get_architecture(name)(**config)
