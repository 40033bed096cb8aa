"""Which source frame each output frame shows, and a frame source that serves them with bounded memory.

The output has one frame per 1/fps of the dub audio. A longer video is trimmed; a shorter one is looped
(ping-pong by default, so the loop point has no jump); a still image is repeated.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np


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
    backwards (looping) first spools the used frames to a raw file in a private temp dir and reads them
    back by offset — plain file reads, not a memory map, so resident memory stays flat.
    """

    def __init__(self, frames: Iterator[np.ndarray], n_used: int, shape: tuple[int, int, int], monotonic: bool):
        self._frames = frames
        self._shape = shape  # (H, W, 3) uint8 RGB
        self._current = -1
        self._frame = None
        self._tmpdir = None
        self._file = None
        if not monotonic:
            self._spool(n_used)

    def _spool(self, n_used: int) -> None:
        self._tmpdir = tempfile.TemporaryDirectory(prefix="lipsync-frames-")
        path = Path(self._tmpdir.name) / "frames.rgb"
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
            self._tmpdir.cleanup()
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_monotonic(plan: np.ndarray) -> bool:
    return bool(np.all(np.diff(plan) >= 0))
