"""probe(path) -> MediaInfo: which streams exist, display size, exact frame rate, VFR, still image."""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from lipsync_cli.errors import InputError
from lipsync_cli.media.streams import ContainerFacts, StreamFacts, read_container

# Demuxers that only ever hold one picture: decided by content (libavformat probes the bytes), not the extension.
IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe")
STILL_CODECS = ("png", "mjpeg", "webp", "bmp", "tiff", "gif", "jpeg2000", "jpegls")
# Two frame steps count as the same when they differ by at most this fraction of the typical step (plus one tick
# of timestamp rounding, e.g. 33/34 ms steps of a 30 fps mkv with a 1 ms time base).
STEP_TOLERANCE = 0.01


@dataclass
class MediaInfo:
    path: Path
    has_video: bool
    has_audio: bool
    is_image: bool  # a single still picture (png/jpg/webp...), decided by content
    width: int  # DISPLAY size, i.e. after rotation; 0 without video
    height: int
    rotation: int  # degrees clockwise a player turns the coded picture (0/90/180/270)
    fps: Fraction  # the constant rate we decode/output at: r_frame_rate (CFR) or the exact average (VFR); 0 if none
    n_frames: int  # frames at `fps` (1 for a still image, 0 without video)
    duration: float  # seconds of video (of audio when there is no video; 0 for a still image)
    is_vfr: bool  # frame steps vary: frames are resampled to `fps` on decode
    audio_duration: float  # seconds of the first audio stream, 0 without audio
    pix_fmt: str  # coded pixel format, e.g. "yuv420p", "yuv420p10le"
    first_frame: int = 0  # frames at `fps` skipped at the start (a --start window); n_frames counts those after it


def starting_at(info: MediaInfo, seconds: float) -> MediaInfo:
    """The video from `seconds` on, cut at a frame boundary (frame round(seconds * fps)); a still image is
    timeless and returned as is. InputError when that is past the last frame."""
    if info.is_image or seconds <= 0:
        return info
    first = round(Fraction(seconds) * info.fps)
    if first >= info.n_frames:
        raise InputError(f"--start {seconds:g} is past the end of {info.path.name} ({info.duration:.2f} s of video)")
    return replace(info, first_frame=info.first_frame + first, n_frames=info.n_frames - first)


def probe(path) -> MediaInfo:
    """Describe a media file; InputError for missing, empty or non-media files."""
    path = Path(path)
    _check_readable(path)
    facts = read_container(path)
    if facts.video is None and facts.audio is None:
        raise InputError(f"not a video or audio file: {path} (no video or audio stream)")
    return _media_info(path, facts)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder; pass a video, image or audio file")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes); pass a video, image or audio file")


def _media_info(path: Path, facts: ContainerFacts) -> MediaInfo:
    video, audio = facts.video, facts.audio
    audio_duration = _audio_seconds(audio) if audio else 0.0
    if video is None:
        return MediaInfo(path, has_video=False, has_audio=True, is_image=False, width=0, height=0, rotation=0,
                         fps=Fraction(0), n_frames=0, duration=audio_duration, is_vfr=False,
                         audio_duration=audio_duration, pix_fmt="")
    is_image = _is_still(facts.format_name, video)
    rotation = round(-video.rotation_ccw / 90) * 90 % 360
    width, height = (video.height, video.width) if rotation in (90, 270) else (video.width, video.height)
    if is_image:
        fps, n_frames, duration, is_vfr = Fraction(0), 1, 0.0, False
    else:
        fps, n_frames, duration, is_vfr = _video_timing(video)
    return MediaInfo(path, has_video=True, has_audio=audio is not None, is_image=is_image, width=width, height=height,
                     rotation=rotation, fps=fps, n_frames=n_frames, duration=duration, is_vfr=is_vfr,
                     audio_duration=audio_duration, pix_fmt=video.pix_fmt)


def _is_still(format_name: str, video: StreamFacts) -> bool:
    if format_name in IMAGE_FORMATS:
        return True
    return video.codec in STILL_CODECS and len(video.pts) <= 1


def _video_timing(video: StreamFacts) -> tuple[Fraction, int, float, bool]:
    """(fps, n_frames, seconds, is_vfr) from the packet timestamps (presentation order)."""
    stamps = np.sort(np.asarray(video.pts, dtype=np.int64))
    if len(stamps) < 2 or video.time_base == 0:  # no usable timestamps: trust the declared rate
        fps = video.rate or Fraction(25)
        return fps, len(video.pts), float(len(video.pts) / fps), False
    steps = np.diff(stamps)
    step = int(np.median(steps))
    slack = 1 + STEP_TOLERANCE * step
    is_vfr = bool(np.any(np.abs(steps - step) > slack))
    # The last frame lasts one typical step: mp4 often stores a bogus last duration (5 ticks in the 04 clip).
    seconds = Fraction(int(stamps[-1] - stamps[0]) + step) * video.time_base
    declared_ok = video.rate > 0 and abs(1 / video.rate - step * video.time_base) <= slack * video.time_base
    fps = video.rate if (declared_ok and not is_vfr) else Fraction(len(stamps)) / seconds
    return fps, round(seconds * fps), float(seconds), is_vfr


def _audio_seconds(audio: StreamFacts) -> float:
    """From the first packet's start (clamped at 0: AAC priming packets start before 0) to the last one's end."""
    if not audio.pts or audio.time_base == 0:
        return 0.0
    start = max(min(audio.pts), 0)
    end = max(p + d for p, d in zip(audio.pts, audio.durations))
    return float(max(end - start, 0) * audio.time_base)
