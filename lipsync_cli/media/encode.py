"""VideoWriter: stream RGB frames into ffmpeg (H.264 yuv420p + AAC in mp4), atomically."""

from __future__ import annotations

import signal
import subprocess
import tempfile
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np

from lipsync_cli.errors import InputError, InternalError
from lipsync_cli.media.atomic import atomic_output, check_output_folder
from lipsync_cli.media.probe import probe
from lipsync_cli.media.tools import command, media_arg, run, spawn, stderr_tail, stop

AUDIO_BITRATE = "192k"  # AAC-LC; transparent enough for speech and music beds
# Tag and convert with BT.709 so players (which assume 709 for HD) show the colours we decoded.
COLOUR_TAGS = dict(colorspace="bt709", color_primaries="bt709", color_trc="bt709", color_range="tv")


class VideoWriter:
    """`with VideoWriter(out, w, h, fps, audio) as w: w.write(frame)` with frames (h, w, 3) uint8 RGB.

    Output: H.264 yuv420p at exactly `fps` (a Fraction, e.g. 30000/1001), AAC audio from `audio` (None: no
    audio track), cut to the audio's duration, moov atom at the front (+faststart) so it streams.
    yuv420p needs even sizes: an odd width/height gets one extra column/row that repeats the edge pixels
    (so no black line appears); even sizes are kept exactly.
    Written to `.<stem>.partial.mp4` beside `out` and renamed onto `out` only when ffmpeg succeeds; any
    exception or Ctrl-C in the with-block kills ffmpeg and removes the partial file. ffmpeg failures (disk
    full...) raise InternalError with ffmpeg's last stderr lines.
    """

    def __init__(self, out_path, width: int, height: int, fps: Fraction, audio: Optional[Path] = None,
                 crf: int = 18, preset: str = "medium", audio_start: float = 0.0,
                 audio_seconds: Optional[float] = None):
        """audio_start / audio_seconds: take that piece of `audio` (a --start/--duration window), else all."""
        self.out = Path(out_path)
        check_output_folder(self.out)
        self.size = (int(height), int(width))
        self.fps = Fraction(fps)
        self.audio = Path(audio) if audio is not None else None
        self.audio_start = float(audio_start)
        available = self._audio_seconds(self.audio) - self.audio_start
        self.audio_seconds = available if audio_seconds is None else min(available, audio_seconds)
        self.crf, self.preset = crf, preset
        self.frames = 0

    @staticmethod
    def _audio_seconds(audio: Optional[Path]) -> float:
        if audio is None:
            return 0.0
        info = probe(audio)
        if not info.has_audio:
            raise InputError(f"no audio stream in {audio.name} (pass a file with sound, e.g. .wav/.mp3/.m4a)")
        return info.audio_duration

    def __enter__(self) -> "VideoWriter":
        self._stack = ExitStack()
        try:
            self.tmp = self._stack.enter_context(atomic_output(self.out))
            self._errors = self._stack.enter_context(tempfile.TemporaryFile())
            self._proc = spawn(self._command(), stdin=subprocess.PIPE, stderr=self._errors)
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def _command(self) -> list[str]:
        import ffmpeg

        h, w = self.size
        rate = f"{self.fps.numerator}/{self.fps.denominator}"
        streams = [ffmpeg.input("pipe:0", format="rawvideo", pix_fmt="rgb24", s=f"{w + w % 2}x{h + h % 2}",
                                framerate=rate)["v:0"]]
        options = dict(vf="scale=out_color_matrix=bt709:out_range=tv", vcodec="libx264", preset=self.preset,
                       crf=self.crf, pix_fmt="yuv420p", r=rate, movflags="+faststart", **COLOUR_TAGS)
        if self.audio is not None:
            seek = {"ss": f"{self.audio_start:.6f}"} if self.audio_start else {}  # input seek: sample-exact
            streams.append(ffmpeg.input(media_arg(self.audio), **seek)["a:0"])
            options.update(acodec="aac", audio_bitrate=AUDIO_BITRATE, t=f"{self.audio_seconds:.6f}")
        return command(ffmpeg.output(*streams, media_arg(self.tmp), **options).overwrite_output())

    def write(self, frame: np.ndarray) -> None:
        """Append one frame, (height, width, 3) uint8 RGB."""
        if frame.shape != (*self.size, 3) or frame.dtype != np.uint8:
            raise InternalError(f"VideoWriter expects {(*self.size, 3)} uint8 frames, got {frame.shape} {frame.dtype}")
        h, w = self.size
        if h % 2 or w % 2:  # repeat the last row/column: yuv420p cannot hold odd sizes
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except (BrokenPipeError, OSError):  # ffmpeg died (disk full, bad option...): report its reason
            raise self._failure() from None
        self.frames += 1

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self._finish()
            except BaseException as failure:
                self._stack.__exit__(type(failure), failure, failure.__traceback__)
                raise
            self._stack.__exit__(None, None, None)  # renames the partial file onto out
        else:
            stop(self._proc)  # before the partial file is removed, so ffmpeg cannot write it again
            self._stack.__exit__(exc_type, exc, tb)
        return False

    def _finish(self) -> None:
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        if self._proc.wait() != 0:
            raise self._failure()
        if self.frames == 0:
            raise InternalError(f"no frames were written to {self.out}")

    def _failure(self) -> InternalError:
        stop(self._proc)
        self._errors.seek(0)
        code = self._proc.returncode
        killed = f"ffmpeg killed by {signal.Signals(-code).name}" if code < 0 else f"ffmpeg exit code {code}"
        reason = stderr_tail(self._errors.read()) or killed
        return InternalError(f"encoding {self.out.name} failed (disk full or ffmpeg error): {reason}")


def cut_piece(path: Path, out: Path, start: float, duration: Optional[float]) -> Path:
    """Seconds [start, start + duration) of every video and audio stream of `path`, as `out` (.mkv): picture
    lossless H.264 (qp 0), sound PCM, so measuring the piece measures the original's pixels and samples.
    Input seeking decodes up to `start` and cuts there, frame-accurately, picture and sound together."""
    import ffmpeg

    source = ffmpeg.input(media_arg(path), ss=f"{start:.6f}", **({"t": f"{duration:.6f}"} if duration else {}))
    res = run(command(source.output(media_arg(out), vcodec="libx264", qp=0, preset="ultrafast", acodec="pcm_s16le",
                                    map_metadata=-1).overwrite_output()))
    if res.returncode != 0:
        raise InputError(f"could not cut {path.name} at {start:g} s ({stderr_tail(res.stderr)})")
    return out
