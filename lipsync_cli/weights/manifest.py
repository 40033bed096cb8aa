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
    approx_size: str = ""  # "~3.4 GB": shown by `weights list` where the exact size is not known here (never checked)
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


def families() -> list[str]:
    """Names that stand for several entries (a family's parts, e.g. "musetalk"): architectures of two or more
    entries that are not themselves an entry name."""
    archs = [s.architecture for s in _manifest().values()]
    return [a for a in dict.fromkeys(archs) if archs.count(a) > 1 and a not in _manifest()]


def expand(selected: Iterable[str]) -> list[str]:
    """Entry names, where a family or variant name given as `--model` ("musetalk", "latentsync-1.5") stands for
    all its parts, and each entry brings the entries it `uses` (LatentSync's UNet: its whisper file, mask and the
    shared VAE). Unknown names raise UsageError naming the known ones."""
    out = []
    for name in selected:
        parts = [name] if name in _manifest() else family(name) or [entry(name).name]
        for part in parts:
            out.extend([part, *_manifest()[part].uses])
    return list(dict.fromkeys(out))


def generator_names(generators: Iterable[str]) -> list[str]:
    """What `--model NAME` accepts: the entries, families and variants whose architecture belongs to one of
    `generators` (the generator registry's family names; passed in, since that registry resolves weights through
    this package). A family's parts load only together, under the family name ("musetalk"); a variant architecture
    ("latentsync-1.5" of the "latentsync" family) is accepted by its own name."""
    generators, parts_of_a_family = set(generators), set(families())
    out = []
    for name, spec in _manifest().items():
        arch = spec.architecture
        base = arch.split("-")[0]
        if base in generators:
            out.append(arch if arch in parts_of_a_family or arch != base else name)
    return list(dict.fromkeys(out))


def looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or Path(text).suffix in (".pth", ".pt", ".tar", ".ckpt", ".model")
