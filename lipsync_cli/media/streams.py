"""Raw stream facts and packet timestamps, read with PyAV (libavformat itself, bundled in its wheels).

PyAV gives exact values where a text parser can only guess: time bases and rates as fractions
(30000/1001, not "29.97 tbr"), every packet's integer timestamps, and the display matrix. probe.py
turns these facts into a MediaInfo; only this module knows PyAV.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Optional

from lipsync_cli.errors import InputError

log = logging.getLogger(__name__)
# Packets decoded at most to get the first picture's display rotation (decoders with frame threads or
# B-frame reordering hold a few packets back before the first picture comes out).
ROTATION_PACKETS = 64


@dataclass
class StreamFacts:
    """One stream as the container describes it (coded size, before any rotation)."""

    index: int  # absolute stream index in the file (ffmpeg's -map 0:<index>)
    codec: str
    pix_fmt: str = ""
    width: int = 0
    height: int = 0
    rotation_ccw: float = 0.0  # display rotation of the first decoded picture: degrees counter-clockwise
    rate: Fraction = Fraction(0)  # the container's base frame rate (r_frame_rate)
    time_base: Fraction = Fraction(0)
    pts: list[int] = field(default_factory=list)  # packet timestamps in time_base ticks (dts when no pts), file order
    durations: list[int] = field(default_factory=list)  # packet durations in ticks (0 when unknown)


@dataclass
class ContainerFacts:
    format_name: str  # libavformat demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "png_pipe", "image2"
    video: Optional[StreamFacts]  # first video stream that is not cover art
    audio: Optional[StreamFacts]  # first audio stream


def read_container(path: Path) -> ContainerFacts:
    """Streams, demuxer name and every packet's timestamps (demux only; one picture is decoded for its rotation).

    A file cut off mid-way keeps the packets read before the damage, so probe describes what is there."""
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(f"not a video or audio file: {path} ({_reason(exc)})") from None
    with container:
        video_stream = next((s for s in container.streams.video
                             if not s.disposition & av.stream.Disposition.attached_pic), None)
        audio_stream = next(iter(container.streams.audio), None)
        video, audio = (_stream_facts(s) if s is not None else None for s in (video_stream, audio_stream))
        chosen = [s for s in (video_stream, audio_stream) if s is not None]
        if chosen:
            _read_packets(container, chosen, {s.index: s for s in (video, audio) if s is not None}, path)
        return ContainerFacts(container.format.name, video, audio)


def _stream_facts(stream) -> StreamFacts:
    codec = stream.codec_context
    facts = StreamFacts(index=stream.index, codec=codec.name, time_base=Fraction(stream.time_base or 0))
    if stream.type == "video":
        facts.pix_fmt = codec.format.name if codec.format else ""
        facts.width, facts.height = codec.width, codec.height
        facts.rate = Fraction(stream.base_rate or 0)
    return facts


def _read_packets(container, streams: list, facts: dict[int, StreamFacts], path: Path) -> None:
    """Every packet's pts (dts when it has none) and duration; the video's first picture for its rotation."""
    import av

    video = facts.get(streams[0].index) if streams[0].type == "video" else None
    decoding = video is not None
    packets = 0
    try:
        for packet in container.demux(streams):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is not None:  # the demuxer's final flush packet has neither
                facts[packet.stream.index].pts.append(stamp)
                facts[packet.stream.index].durations.append(packet.duration or 0)
            if decoding and packet.stream.index == video.index:
                packets += 1
                decoding = not _take_rotation(packet, video) and packets < ROTATION_PACKETS
    except av.FFmpegError as exc:  # damaged or truncated: keep what was read
        log.debug("demuxing %s stopped early: %s", path, _reason(exc))


def _take_rotation(packet, video: StreamFacts) -> bool:
    """Decode one video packet; True once a picture came out (its display matrix is the stream's rotation,
    and for a JPEG its EXIF orientation, which libavcodec attaches to the picture)."""
    import av

    try:
        frames = packet.decode()
    except av.FFmpegError:  # a damaged first packet: the next one may decode
        return False
    if frames:
        video.rotation_ccw = float(frames[0].rotation)
    return bool(frames)


def _reason(exc: Exception) -> str:
    """libav's own words without the errno and file name PyAV adds: 'Invalid data found when processing input'."""
    return getattr(exc, "strerror", None) or str(exc).split(": ")[0] or type(exc).__name__
