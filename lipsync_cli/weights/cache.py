"""Where weights files live on this machine: $LIPSYNC_WEIGHTS_DIR, the cache, or a package that bundles them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from lipsync_cli.weights.manifest import WeightSpec


def cache_dir() -> Path:
    """$LIPSYNC_CACHE_DIR, else the platform cache folder (XDG on Linux/macOS, %LOCALAPPDATA% on Windows)."""
    if os.environ.get("LIPSYNC_CACHE_DIR"):
        return Path(os.environ["LIPSYNC_CACHE_DIR"]).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "lipsync-cli" / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "lipsync-cli"


def local_candidates(spec: WeightSpec) -> list[Path]:
    """Where a file may already be, in resolution order (explicit paths are handled by resolve)."""
    if spec.bundled_in:
        import importlib.util

        package = importlib.util.find_spec(spec.bundled_in)  # located, not imported (imports may be slow)
        locations = package.submodule_search_locations if package else None
        return [Path(locations[0]) / spec.filename] if locations else []
    found = []
    if os.environ.get("LIPSYNC_WEIGHTS_DIR"):
        found.append(Path(os.environ["LIPSYNC_WEIGHTS_DIR"]).expanduser() / spec.filename)
    found.append(cache_dir() / spec.filename)
    return found


def find_local(spec: WeightSpec) -> Optional[Path]:
    """The first existing local copy, unverified (listing must not hash hundreds of MB)."""
    return next((p for p in local_candidates(spec) if p.is_file()), None)
