"""Finding the clips of a source folder, naming them, sharding them and splitting them train/val.

A source folder is flat (clip.mp4, ...) or LRS2-style nested (speaker_or_show/clip.mp4). A clip's id
is its path relative to the folder without the extension ("spk/clip"), which is also where its
arrays go under OUT/clips/. Its group, the unit of the train/val split, is the top folder when
nested (so one speaker never lands in both splits) and the clip itself when flat.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mpg", ".mpeg", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass(frozen=True)
class ClipSource:
    id: str  # "spk/clip" or "clip": POSIX path relative to SRC without the extension
    path: Path  # the video file (as found under SRC, symlinks not resolved)
    group: str  # split unit: the top folder when nested, else the id


def find_clips(src: Path) -> list[ClipSource]:
    """Every video under SRC (any depth, hidden folders ignored), sorted by id so shards agree."""
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(src).parts))
    clips, taken = [], set()
    for path in files:
        rel = path.relative_to(src)
        clip_id = rel.with_suffix("").as_posix()
        if clip_id in taken:  # clip.mp4 next to clip.avi: keep both, the later one named by its extension too
            clip_id = f"{clip_id}_{path.suffix.lower().lstrip('.')}"
        taken.add(clip_id)
        group = rel.parts[0] if len(rel.parts) > 1 else clip_id
        clips.append(ClipSource(clip_id, path, group))
    return sorted(clips, key=lambda c: c.id)


def shard(clips: list[ClipSource], index: int, count: int) -> list[ClipSource]:
    """Clips whose position in the sorted list is index modulo count: shards partition the list."""
    return [clip for k, clip in enumerate(sorted(clips, key=lambda c: c.id)) if k % count == index]


def split_groups(groups: list[str], val_fraction: float, seed: int) -> set[str]:
    """The groups held out for validation: deterministic for a seed, whatever order they come in.

    Groups are ranked by a seeded hash (stable across runs and machines, unlike Python's hash()),
    and the first round(val_fraction * n) go to validation, at least one and at most n - 1 when
    there are two or more groups and val_fraction > 0. Adding groups later moves few others.
    """
    unique = sorted(set(groups))
    if val_fraction <= 0 or len(unique) < 2:
        return set()
    n_val = min(max(1, round(val_fraction * len(unique))), len(unique) - 1)
    ranked = sorted(unique, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    return set(ranked[:n_val])


def assign_splits(clip_groups: dict[str, str], val_fraction: float, seed: int) -> dict[str, str]:
    """clip id -> "train" | "val". Splits by group; falls back to single clips when there is one group,
    so a nested folder with one speaker still gets a validation clip."""
    groups = clip_groups if len(set(clip_groups.values())) >= 2 else {c: c for c in clip_groups}
    val = split_groups(list(groups.values()), val_fraction, seed)
    return {clip: "val" if groups[clip] in val else "train" for clip in clip_groups}
