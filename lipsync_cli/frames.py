"""Which source frame each output frame shows, and a frame source that serves them with bounded memory.

The output has one frame per 1/fps of the dub audio. A longer video is trimmed; a shorter one is looped
(ping-pong by default, so the loop point has no jump); a still image is repeated.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from lipsync_cli.errors import InputError
from lipsync_cli.media.atomic import lock_file

SPOOL_PREFIX = ".lipsync-spool-"  # hidden folders beside the output (or in --tmp-dir); a stale one is removed
SPOOL_LOCK = "lock"  # held (flock) by the run that owns the spool: the kernel drops it when that run dies, kill -9 too
SPOOL_MARGIN = 1.05  # free space wanted beyond the spool's exact size (file-system overhead, other writers)


def source_plan(n_out: int, n_src: int, loop: str = "pingpong") -> np.ndarray:
    """(n_out,) int64: the source frame index shown at each output frame.

    n_src == 1 (still image) repeats it; loop "forward" restarts at 0, "pingpong" runs back and forth
    (0 1 2 1 0 1 2 ...) so motion never jumps at the loop point.
    """
    k = np.arange(n_out, dtype=np.int64)
    if n_src <= 1:
        return np.zeros(n_out, dtype=np.int64)
    if loop == "forward":
        return k % n_src
    period = 2 * (n_src - 1)
    phase = k % period
    return np.where(phase < n_src, phase, period - phase)


def chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class FrameSource:
    """Serves source frames in plan order while holding at most one chunk of frames in memory.

    A monotonic plan (trimmed video, still image) streams straight from the decoder. A plan that goes
    backwards (looping) first spools the used frames to a raw file in a hidden folder of `spool_dir` (the
    output's folder, or --tmp-dir: not /tmp, which is often small or RAM) and reads them back by offset —
    plain file reads, not a memory map, so resident memory stays flat. check_spool_space() is meant to run
    before any work starts.
    """

    def __init__(self, frames: Iterator[np.ndarray], n_used: int, shape: tuple[int, int, int], monotonic: bool,
                 spool_dir: Optional[Path] = None):
        self._frames = frames
        self._shape = shape  # (H, W, 3) uint8 RGB
        self._current = -1
        self._frame = None
        self._tmpdir = None
        self._lock = None
        self._file = None
        if not monotonic:
            try:
                self._spool(n_used, spool_dir)
            except BaseException:  # Ctrl-C or a full disk mid-spool: nothing left behind
                self.close()
                raise

    def _spool(self, n_used: int, spool_dir: Optional[Path]) -> None:
        self._tmpdir, self._lock = open_spool(spool_dir)
        path = self._tmpdir / "frames.rgb"
        with open(path, "wb") as f:
            for i, frame in zip(range(n_used), self._frames):
                f.write(np.ascontiguousarray(frame).tobytes())
        self._file = open(path, "rb")

    def take(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Frames for these source indices (each a fresh writable (H, W, 3) uint8 RGB array)."""
        return [self._read(int(i)) for i in indices]

    def _read(self, index: int) -> np.ndarray:
        if self._file is not None:
            nbytes = int(np.prod(self._shape))
            self._file.seek(index * nbytes)
            return np.frombuffer(self._file.read(nbytes), dtype=np.uint8).reshape(self._shape).copy()
        while self._current < index:
            self._frame = next(self._frames)
            self._current += 1
        return self._frame.copy()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._lock.close()
            self._tmpdir = self._lock = None
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_monotonic(plan: np.ndarray) -> bool:
    return bool(np.all(np.diff(plan) >= 0))


def spool_bytes(n_used: int, shape: tuple[int, int, int]) -> int:
    """Bytes a loop spool of n_used frames of this (H, W, 3) shape takes."""
    return n_used * int(np.prod(shape))


def check_spool_space(spool_dir: Path, n_used: int, shape: tuple[int, int, int]) -> None:
    """Before any work: a spool that cannot fit is one clear error now, not a full disk an hour in. Stale spools
    of killed runs are removed first (their space counts as free)."""
    remove_stale_spools(spool_dir)
    need = int(spool_bytes(n_used, shape) * SPOOL_MARGIN)
    free = disk_free(spool_dir)
    if need > free:
        raise InputError(f"not enough free space in {spool_dir} to loop the video: its {n_used} frames need "
                         f"{need / 1e9:.1f} GB, {free / 1e9:.1f} GB free (free some space or pass --tmp-dir DIR)")


def disk_free(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def open_spool(spool_dir: Optional[Path]):
    """(a new hidden spool folder, its lock file held open and locked) in spool_dir (None: the system temp)."""
    folder = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=spool_dir))
    lock = open(folder / SPOOL_LOCK, "w")
    lock_file(lock)
    return folder, lock


def remove_stale_spools(spool_dir: Path) -> list[Path]:
    """Remove the spools in spool_dir whose run is gone (its lock is free: killed, kill -9 included); returns them.
    A spool without a lock file yet is being created, unless it is older than a minute."""
    import time

    removed = []
    for folder in Path(spool_dir).glob(f"{SPOOL_PREFIX}*"):
        lock_path = folder / SPOOL_LOCK
        try:
            if not lock_path.exists():
                if time.time() - folder.stat().st_mtime > 60:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
                continue
            with open(lock_path, "a") as lock:
                lock_file(lock, blocking=False)  # raises while its run is alive
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        except OSError:  # locked (alive), or removed by another run meanwhile
            continue
    return removed
