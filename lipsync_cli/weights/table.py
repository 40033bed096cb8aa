"""`lipsync weights list`: one table row per weights.toml entry; nothing is hashed or downloaded."""

from __future__ import annotations

from lipsync_cli.weights.cache import cache_dir, find_local
from lipsync_cli.weights.manifest import specs


def _size_text(size: int) -> str:
    return f"{size / 1e6:.0f} MB" if size else "?"


def print_table() -> None:
    """name, architecture, licence, size, cached? (path) for every entry; nothing is hashed or downloaded."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"weights (cache: {cache_dir()})")
    for column in ("name", "architecture", "licence", "commercial", "size", "cached"):
        table.add_column(column, overflow="fold")
    for spec in specs():
        local = find_local(spec)
        table.add_row(spec.name, spec.architecture, spec.licence, spec.commercial, _size_text(spec.size),
                      f"yes ({local})" if local else "no")
    Console().print(table)
