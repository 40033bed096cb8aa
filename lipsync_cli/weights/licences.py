"""The terms of weights files: the yes asked before a non-commercial download, and the one licence line of a
run that names its models not cleared for commercial use."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Optional

from lipsync_cli.errors import WeightsError
from lipsync_cli.weights.env import env_flag
from lipsync_cli.weights.manifest import WeightSpec, entry, expand, family, looks_like_path, names, names_where


def require_licence(spec: WeightSpec, accepted: bool) -> None:
    """Non-commercial files: show the terms and get a yes before the first download."""
    if not spec.noncommercial:
        return
    notice = f"{spec.name} ({spec.filename}): {spec.licence}. {spec.licence_note} ({spec.licence_url})"
    print(notice, file=sys.stderr)
    if accepted or env_flag("LIPSYNC_ACCEPT_LICENCES"):
        return
    if not sys.stdin.isatty():
        raise WeightsError(f"the licence of {spec.name!r} ({spec.licence}) must be accepted before downloading: "
                           f"run `lipsync weights download {spec.name} --yes` or set LIPSYNC_ACCEPT_LICENCES=1")
    answer = input("Accept these terms and download? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise WeightsError(f"licence of {spec.name!r} not accepted; nothing was downloaded")


def model_entries(name_or_path: str | os.PathLike) -> list[str]:
    """The weights.toml entries a --model value stands for: an entry name; a family name (musetalk: its parts);
    a MuseTalk models/ folder (its parts); a file named like a known entry's file (a copy of it). A checkpoint
    of another name is the user's own file: no entry, its terms are theirs."""
    text = str(name_or_path)
    if text in names():
        return [text]
    path = Path(text).expanduser()
    if path.is_dir():
        return family("musetalk")
    if path.is_file() or looks_like_path(text):
        return names_where(lambda spec: Path(spec.filename).name == path.name)
    return expand(family(text))


def licence_notice(entries: Iterable[str]) -> Optional[str]:
    """One line naming every model of a run whose weights are not cleared for commercial use, or None."""
    flagged = {}
    for name in entries:
        spec = entry(name)
        if spec.commercial != "yes":
            flagged[name] = f"{name} ({'non-commercial' if spec.commercial == 'no' else 'terms unknown'})"
    if not flagged:
        return None
    return ("licence: not cleared for commercial use: " + ", ".join(flagged.values())
            + " (`lipsync weights list` shows each licence)")
