"""Decoding through ffmpeg pipes: frames (streamed, CFR, upright RGB), a still image, audio at 16 kHz mono."""

from __future__ import annotations

import logging
import subprocess
import tempfile
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from lipsync_cli.audio import SAMPLE_RATE
from lipsync_cli.errors import InputError
from lipsync_cli.media.probe import MediaInfo, probe
from lipsync_cli.media.tools import command, media_arg, run, spawn, stderr_tail, stop

log = logging.getLogger(__name__)
END_PADDING_SECONDS = 0.15  # at most this much decoded audio beyond the container's duration is encoder padding
END_SLACK_FRAMES = 2  # a clean decode that stops this many frames short of the probed count is padded


def iter_frames(path, info: MediaInfo, fps: Optional[Fraction] = None) -> Iterator[np.ndarray]:
    """Yield the video's frames as (H, W, 3) uint8 RGB arrays, upright as players show them, one at a time.

    Frames are resampled to a constant `fps or info.fps` (ffmpeg's fps filter: frame k is the picture shown at
    time k/fps after the first frame), so variable-frame-rate input arrives as a regular sequence. Any pixel
    format (10-bit, yuv444, ...) is converted to 8-bit RGB. H and W are the display size (info.height,
    info.width). Closing the generator early (break, exception) kills ffmpeg at once.

    Damaged input: a truncated or partly corrupt file yields every frame ffmpeg can decode and then stops
    (logging a warning with ffmpeg's message), so a clip cut off mid-download still dubs what it has; the
    count may then be below info.n_frames. Only when not a single frame decodes is it an InputError.
    """
    if info.is_image:
        yield read_image(path)
        return
    rate = Fraction(fps or info.fps)
    expected = max(1, round(Fraction(info.duration) * rate))
    frames = _stream_frames(_raw_rgb(path, vf=f"fps={rate.numerator}/{rate.denominator}", frames=expected),
                            path, info.width, info.height, expected)
    # a --start window: the frames of the same resampled sequence from there on. Dropped here rather than by
    # an ffmpeg trim after the fps filter, which started one frame late (ffmpeg 6/7).
    yield from islice(frames, info.first_frame, None)


def _raw_rgb(path, frames: int, **options) -> list[str]:
    """ffmpeg decoding the first video stream that is not cover art ("V") to rgb24 frames on stdout."""
    import ffmpeg

    source = ffmpeg.input(media_arg(path))["V:0"]
    return command(source.output("pipe:1", format="rawvideo", pix_fmt="rgb24", **{"frames:v": frames}, **options))


def _stream_frames(cmd: list[str], path, width: int, height: int, expected: int) -> Iterator[np.ndarray]:
    """Frames from ffmpeg's rawvideo pipe; the count is made exactly `expected` for a clean decode."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: ffmpeg can never block on a full stderr pipe
        proc = spawn(cmd, stdout=subprocess.PIPE, stderr=errors)
        count, frame = 0, None
        try:
            while (buf := _read_exactly(proc.stdout, width * height * 3)) is not None:
                count += 1
                frame = np.frombuffer(buf, np.uint8).reshape(height, width, 3)  # writable: backed by a bytearray
                yield frame
            code = proc.wait()
        finally:
            stop(proc)  # no-op after a normal end; kills ffmpeg when the consumer stopped early
        errors.seek(0)
        stderr = errors.read()
    _check_decode(code, count, path, stderr)
    # ffmpeg versions differ by a frame in where the fps filter stops (last-frame duration handling):
    # hold the last picture so every clean decode has exactly info.n_frames frames at info.fps.
    if code == 0 and not stderr.strip() and 0 < expected - count <= END_SLACK_FRAMES:
        for _ in range(expected - count):
            yield frame.copy()


def _read_exactly(pipe, n: int) -> Optional[bytearray]:
    """n bytes from the pipe, or None at end of stream (a partial last frame is dropped)."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        chunk = pipe.readinto(view[got:])
        if not chunk:
            return None
        got += chunk
    return buf


def _check_decode(code: int, count: int, path, stderr: bytes) -> None:
    if count == 0:
        raise InputError(f"could not decode any video frame of {path} ({stderr_tail(stderr) or f'ffmpeg exit {code}'})")
    if code != 0 or stderr.strip():
        log.warning("%s is damaged; using the %d frames that decode (ffmpeg: %s)", path, count, stderr_tail(stderr))


def read_image(path) -> np.ndarray:
    """A still image (or a video's first frame) as (H, W, 3) uint8 RGB, upright."""
    info = probe(path)
    if not info.has_video:
        raise InputError(f"no picture in {path} (pass an image or a video)")
    res = run(_raw_rgb(path, frames=1))
    if len(res.stdout) != info.width * info.height * 3:  # never reshape bytes of another size into a wrong picture
        raise InputError(f"could not decode the picture in {path} ({stderr_tail(res.stderr) or 'unexpected size'})")
    return np.frombuffer(bytearray(res.stdout), np.uint8).reshape(info.height, info.width, 3)


def load_audio(path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The first audio stream of any file as (N,) float32 mono in [-1, 1] at `sr` Hz (channels averaged)."""
    info = probe(path)
    if not info.has_audio:
        raise InputError(f"no audio stream in {Path(path).name} (pass a file with sound, e.g. .wav/.mp3/.m4a)")
    # rematrix_maxval=1 makes the downmix a plain average (ffmpeg's default stereo->mono sums at -3 dB each,
    # which can exceed 1.0).
    import ffmpeg

    source = ffmpeg.input(media_arg(path))["a:0"]
    res = run(command(source.output("pipe:1", af=f"aresample={sr}:rematrix_maxval=1", ac=1, format="f32le")))
    if res.returncode != 0 and not res.stdout:
        raise InputError(f"could not decode the audio in {path} ({stderr_tail(res.stderr)})")
    samples = np.frombuffer(res.stdout[: len(res.stdout) // 4 * 4], dtype="<f4")
    # Decoders keep the encoder's end padding (AAC: up to a frame of silence) that the container trims for
    # players; cut it so the audio is as long as probe (and VideoWriter's -t) say.
    declared = round(info.audio_duration * sr)
    if 0 < declared < len(samples) <= declared + END_PADDING_SECONDS * sr:
        samples = samples[:declared]
    return np.clip(samples, -1.0, 1.0).astype(np.float32)
