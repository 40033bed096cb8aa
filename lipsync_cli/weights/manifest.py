"""weights.toml → WeightSpec: the known weights files by name, and the names a --model value stands for."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

from lipsync_cli.errors import UsageError


@dataclass(frozen=True)
class WeightSpec:
    """One weights.toml entry (see the field notes at the top of that file)."""

    name: str
    filename: str
    architecture: str
    licence: str
    licence_url: str = ""
    licence_note: str = ""
    description: str = ""
    repo_id: str = ""
    repo_file: str = ""
    revision: str = "main"
    url: str = ""
    sha256: str = ""
    size: int = 0
    noncommercial: bool = False
    commercial: str = "unknown"  # "yes" | "no" | "unknown": may a commercial user use it
    bundled_in: str = ""  # a Python package whose folder holds `filename` (pip installs it; never downloaded)
    uses: tuple = ()  # other entries the model needs alongside this file (fetched and licensed with it)

    @property
    def source(self) -> str:
        """A URL a person can open in a browser to fetch the file by hand."""
        if self.repo_id:
            return f"https://huggingface.co/{self.repo_id}/resolve/{self.revision}/{self.repo_file}"
        return self.url


@lru_cache(maxsize=1)
def _manifest() -> dict[str, WeightSpec]:
    # importlib.resources reads the copy inside the installed package, so a non-editable install works too
    from importlib.resources import files

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    table = tomllib.loads(files("lipsync_cli").joinpath("weights.toml").read_text(encoding="utf-8"))
    return {name: WeightSpec(name=name, **fields) for name, fields in table.items()}


def names() -> list[str]:
    return list(_manifest())


def entry(name: str) -> WeightSpec:
    try:
        return _manifest()[name]
    except KeyError:
        raise UsageError(f"unknown weights name {name!r} (known: {', '.join(names())}; or pass a file path)") from None


def specs() -> list[WeightSpec]:
    """Every entry, in weights.toml order."""
    return list(_manifest().values())


def names_where(keep: Callable[[WeightSpec], bool]) -> list[str]:
    """The names of the entries `keep` says yes to, in weights.toml order."""
    return [n for n, spec in _manifest().items() if keep(spec)]


def family(architecture: str) -> list[str]:
    """The entry names of one architecture (e.g. the parts of "musetalk")."""
    return names_where(lambda spec: spec.architecture == architecture)


def expand(selected: Iterable[str]) -> list[str]:
    """Entry names, where a family name given as `--model` (e.g. "musetalk") stands for all its parts, and each
    entry brings the entries it `uses` (LatentSync's UNet: its whisper file, mask and the shared VAE)."""
    out = []
    for name in selected:
        parts = family(name) if name not in _manifest() else []
        for part in parts or [name]:
            out.extend([part, *(_manifest()[part].uses if part in _manifest() else ())])
    return list(dict.fromkeys(out))


def looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or Path(text).suffix in (".pth", ".pt", ".tar", ".ckpt", ".model")
