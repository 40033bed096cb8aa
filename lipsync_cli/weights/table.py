"""`lipsync weights list`: one row per weights.toml entry; nothing is hashed or downloaded.

On a terminal a rich table; piped or logged, tab-separated lines (whole words, one row a line, `cut`/`awk`
friendly); with --json a list of objects."""

from __future__ import annotations

import json
import sys
from typing import Optional

from lipsync_cli.weights.cache import cache_dir, find_local
from lipsync_cli.weights.manifest import WeightSpec, specs

COLUMNS = ("name", "architecture", "licence", "commercial", "size", "cached")


def size_text(spec: WeightSpec, local_bytes: Optional[int]) -> str:
    """The pinned size, else the local copy's, else the manifest's approximate one, else 'unknown'."""
    known = spec.size or local_bytes
    if known:
        if known < 100e3:  # LatentSync's 1.9 kB mask read as "0.0 MB"
            return f"{known / 1e3:.1f} kB"
        return f"{known / 1e6:.1f} MB" if known < 10e6 else f"{known / 1e6:.0f} MB"
    return spec.approx_size or "unknown"


def rows() -> list[dict]:
    out = []
    for spec in specs():
        local = find_local(spec)
        out.append(dict(name=spec.name, architecture=spec.architecture, licence=spec.licence,
                        commercial=spec.commercial, size=size_text(spec, local.stat().st_size if local else None),
                        size_bytes=spec.size or (local.stat().st_size if local else None),
                        cached=str(local) if local else None))
    return out


def print_table(as_json: bool = False) -> None:
    """Every entry as a rich table (terminal), tab-separated lines (not a terminal) or JSON."""
    found = rows()
    if as_json:
        print(json.dumps({"cache": str(cache_dir()), "weights": found}, indent=2))
        return
    cells = [[r[c] if c != "cached" else (f"yes ({r[c]})" if r[c] else "no") for c in COLUMNS] for r in found]
    if not sys.stdout.isatty():  # a pipe or a log: rich would fold words at 80 columns
        print("\t".join(COLUMNS))
        for row in cells:
            print("\t".join(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"weights (cache: {cache_dir()})")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in cells:
        table.add_row(*row)
    Console().print(table)
