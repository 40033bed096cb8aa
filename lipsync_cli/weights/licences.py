"""The terms of weights files: the yes asked before a non-commercial download, and the one licence line of a
run: its models not cleared for commercial use, or that all of them are."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Optional

from lipsync_cli.errors import WeightsError
from lipsync_cli.weights.env import env_flag
from lipsync_cli.weights.manifest import WeightSpec, entry, expand, family, looks_like_path, names, names_where, specs


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
    a family's folder as its upstream lays it out (folder_family: a LatentSync checkpoints/ or MuseTalk models/
    folder stands for its family's parts); a file named like a known entry's file (a copy of it). A checkpoint
    of another name is the user's own file: no entry, its terms are theirs."""
    text = str(name_or_path)
    if text in names():
        return [text]
    path = Path(text).expanduser()
    if path.is_dir():
        return expand([folder_family(path)])
    if path.is_file() or looks_like_path(text):
        return names_where(lambda spec: Path(spec.filename).name == path.name)
    return expand(family(text))


# The family of a folder that holds none of the families' files: MuseTalk's loader takes any folder (also a MuseTalk
# checkout, whose files lie under models/), so a run that loaded such a folder ran MuseTalk.
ANY_FOLDER_FAMILY = "musetalk"


def folder_family(folder: Path) -> str:
    """The family whose weights.toml files `folder` holds most of, each file looked for at its path under the
    family's own folder (latentsync/whisper/tiny.pt → folder/whisper/tiny.pt: the weights dir mirrors upstream's
    checkpoints/ and models/ layouts). Ties go to the first family in weights.toml order."""
    def held(arch: str) -> int:
        inside = [Path(*Path(entry(n).filename).parts[1:]) for n in family(arch)]
        return sum((folder / rel).is_file() for rel in inside if rel.parts)

    counts = {arch: held(arch) for arch in dict.fromkeys(spec.architecture for spec in specs())}
    best = max(counts, key=counts.get)
    return best if counts[best] else ANY_FOLDER_FAMILY


def uncleared(entries: Iterable[str]) -> list[str]:
    """'name (non-commercial)' / 'name (terms unknown)' for each entry not cleared for commercial use, in order."""
    flagged = {}
    for name in entries:
        spec = entry(name)
        if spec.commercial != "yes":
            flagged[name] = f"{name} ({'non-commercial' if spec.commercial == 'no' else 'terms unknown'})"
    return list(flagged.values())


def licence_notice(entries: Iterable[str], own_files: Iterable[str] = ()) -> Optional[str]:
    """The run's licence line: the models whose weights are not cleared for commercial use, or, when every one
    is, that it is (the user's own checkpoints, `own_files`, are named as theirs: we know nothing of their terms).
    None for a run with no known model at all."""
    entries, own = list(dict.fromkeys(entries)), list(own_files)
    flagged = uncleared(entries)
    if flagged:
        return ("licence: not cleared for commercial use: " + ", ".join(flagged)
                + " (`lipsync weights list` shows each licence)")
    if not entries:
        return None
    theirs = f"; {', '.join(own)}: your own file, its terms are yours" if own else ""
    return (f"licence: every model of this run is cleared for commercial use ({', '.join(entries)}){theirs} "
            "(`lipsync weights list` shows each licence)")
