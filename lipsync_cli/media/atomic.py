"""Outputs appear whole or not at all: write a hidden temp file beside the target, rename on success."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from lipsync_cli.errors import InputError


def partial_path(path: Path) -> Path:
    """`.<stem>.partial<suffix>` in the same folder: same filesystem, so the final rename is atomic; the suffix
    is kept because ffmpeg picks the container from it."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def check_output_folder(path: Path) -> None:
    """We never create output folders: a missing one is usually a typo in the path."""
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist (create it first or fix the path)")


@contextmanager
def atomic_output(path) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces `path`, on any exception (Ctrl-C included) it is
    removed and `path` is left as it was."""
    path = Path(path)
    check_output_folder(path)
    tmp = partial_path(path)
    # A partial file left by a killed run (SIGKILL, OOM killer: no cleanup ran) is unlinked, not overwritten: its
    # writer's ffmpeg may still be finishing it, and a fresh inode keeps those late writes out of the new output.
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def lock_file(file, blocking: bool = True) -> None:
    """Lock an open file exclusively (flock), held until it is closed or its process dies (kill -9 included).
    Not blocking: OSError while another process holds it. Without fcntl (Windows) a blocking lock is a no-op, and
    a non-blocking one raises (nobody can tell whether the holder is alive)."""
    try:
        import fcntl
    except ImportError:
        if not blocking:
            raise OSError("no fcntl: cannot tell whether the lock's holder is alive") from None
        return
    fcntl.flock(file, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
