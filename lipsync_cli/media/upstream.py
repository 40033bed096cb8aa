"""The ffmpeg steps of syncnet_python's evaluate(), reproduced so LSE-D / LSE-C match published numbers.

Upstream reads its frames back from JPEG files that ffmpeg writes with its default (rate-controlled,
~q25) mjpeg settings, and its audio as int16 PCM: both change the scores, so they are copied here
exactly (../shared/reference/syncnet/README.md §2 steps 1-2). With the same ffmpeg build the JPEG bytes,
and so the frames, are bit-identical to upstream's.
"""

from __future__ import annotations

import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from lipsync_cli.errors import InputError, InternalError
from lipsync_cli.media.probe import probe
from lipsync_cli.media.tools import command, media_arg, run, spawn, stderr_tail

SAMPLE_RATE = 16000  # Hz, mono: what upstream extracts


def audio_int16(path) -> np.ndarray:
    """The first audio stream as (M,) int16 mono at 16 kHz: upstream's
    `ffmpeg -async 1 -ac 1 -vn -acodec pcm_s16le -ar 16000` (ffmpeg 5 turns -async 1 into aresample=async=1)."""
    info = probe(path)
    if not info.has_audio:
        raise InputError(f"no audio stream in {Path(path).name} (pass a file with sound, e.g. .wav/.mp3/.m4a)")
    import ffmpeg

    source = ffmpeg.input(media_arg(path))["a:0"]
    res = run(command(source.output("pipe:1", vn=None, af="aresample=async=1", ac=1, ar=SAMPLE_RATE,
                                    acodec="pcm_s16le", format="s16le")))
    if res.returncode != 0:  # even with some samples out: a score of part of the audio would pass for the whole
        raise InputError(f"could not decode the audio in {path} ({stderr_tail(res.stderr)})")
    # a read-only view of ffmpeg's output (no copy on little-endian machines): a minute of audio is 1.9 MB, and
    # slicing the bytes, then converting, held it three times over
    return np.frombuffer(res.stdout, dtype="<i2", count=len(res.stdout) // 2).astype(np.int16, copy=False)


@contextmanager
def open_jpeg_frames(video, fps: Optional[int] = None, size: Optional[int] = None) -> Iterator["JpegFrames"]:
    """Every frame of `video` written by `ffmpeg -i VIDEO -threads 1 -f image2 %06d.jpg` (default JPEG quality)
    and read back with cv2, exactly as upstream's evaluate() reads its input, as JpegFrames over a temp folder
    that lives as long as the block (the frames are read when asked for, not all at once). fps: resample to
    this constant rate first (upstream's input is already 25 fps). size: resize each frame to (size, size)
    with cv2's bilinear default, as Wav2Lip's and LatentSync's copies do."""
    import ffmpeg

    options = {"vf": f"fps={fps}"} if fps else {}
    with tempfile.TemporaryDirectory(prefix="lipsync-jpeg-") as folder:
        jpegs = ffmpeg.input(media_arg(video)).output(str(Path(folder) / "%06d.jpg"), threads=1, format="image2",
                                                      **options)
        res = run(command(jpegs.overwrite_output()))
        if res.returncode != 0:  # the frames written before it failed (a full disk, say) are not the video
            raise InputError(f"could not decode the frames of {video} ({stderr_tail(res.stderr)})")
        frames = JpegFrames(Path(folder), size)
        if not len(frames):
            raise InputError(f"could not decode any video frame of {video} ({stderr_tail(res.stderr) or 'no frames'})")
        yield frames


def jpeg_frames(video, fps: Optional[int] = None, size: Optional[int] = None) -> np.ndarray:
    """open_jpeg_frames' frames as one (N, H, W, 3) uint8 BGR array (for short clips)."""
    with open_jpeg_frames(video, fps, size) as frames:
        return frames[:]


@contextmanager
def open_jpeg_round_trip(frames: Iterable[np.ndarray], width: int, height: int, fps: int) -> Iterator["JpegFrames"]:
    """The same JPEG step for frames we made (face crops): (H, W, 3) uint8 BGR in (streamed to ffmpeg), JpegFrames
    out, through ffmpeg's default mjpeg encoder at `fps` (its rate control depends on the frame rate)."""
    import ffmpeg

    with tempfile.TemporaryDirectory(prefix="lipsync-jpeg-") as folder, tempfile.TemporaryFile() as errors:
        crops = ffmpeg.input("pipe:0", format="rawvideo", pix_fmt="bgr24", s=f"{width}x{height}", r=fps)
        jpegs = crops.output(str(Path(folder) / "%06d.jpg"), threads=1, format="image2").overwrite_output()
        proc = spawn(command(jpegs), stdin=subprocess.PIPE, stderr=errors)
        try:
            for frame in frames:
                proc.stdin.write(np.ascontiguousarray(frame, np.uint8).tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg died: its exit status and stderr below say why
        if proc.wait() != 0:
            errors.seek(0)
            raise InternalError(f"ffmpeg failed writing JPEG frames ({stderr_tail(errors.read())})")
        yield JpegFrames(Path(folder))


class JpegFrames:
    """A folder of %06d.jpg frames as a sequence of (H, W, 3) uint8 BGR frames: iterating reads one at a time, so
    a scorer holds one batch of frames, not the video (a 224² crop is 150 KB a frame); `frames[a:b]` reads those
    files only, as one (b - a, H, W, 3) array."""

    def __init__(self, folder: Path, size: Optional[int] = None):
        self.files = sorted(folder.glob("*.jpg"))  # %06d names: name order is frame order
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self._read(f) for f in self.files)

    def __getitem__(self, part: slice) -> np.ndarray:
        files = self.files[part]
        return np.stack([self._read(f) for f in files]) if files else np.zeros((0, 0, 0, 3), np.uint8)

    def _read(self, path: Path) -> np.ndarray:
        import cv2

        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)  # cv2: BGR
        # cv2.resize returns an identical copy when the frame already has that size
        return cv2.resize(frame, (self.size, self.size)) if self.size else frame
