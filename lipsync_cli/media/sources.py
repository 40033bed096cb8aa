"""Raw stream facts and packet timestamps, read by ffprobe or, when ffprobe is absent, by ffmpeg alone.

Both readers return the same `ContainerFacts`; probe.py turns them into a MediaInfo, so the two
paths differ only in how they parse, never in how they decide (rate, VFR, rotation, still image).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Optional

from lipsync_cli.errors import InputError
from lipsync_cli.media.tools import ffmpeg_exe, media_arg, run, stderr_tail


@dataclass
class StreamFacts:
    """One stream as the container describes it (coded size, before any rotation)."""

    index: int  # absolute stream index in the file (ffmpeg's -map 0:<index>)
    codec: str
    pix_fmt: str = ""
    width: int = 0
    height: int = 0
    rotation_ccw: float = 0.0  # display-matrix rotation as ffmpeg reports it: degrees counter-clockwise
    rate: Fraction = Fraction(0)  # the container's base frame rate guess (r_frame_rate / "tbr")
    time_base: Fraction = Fraction(0)
    pts: list[int] = field(default_factory=list)  # packet timestamps in time_base ticks (dts when no pts), file order
    durations: list[int] = field(default_factory=list)  # packet durations in ticks (0 when unknown)


@dataclass
class ContainerFacts:
    format_name: str  # ffmpeg demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "png_pipe", "image2"
    video: Optional[StreamFacts]  # first video stream that is not cover art
    audio: Optional[StreamFacts]  # first audio stream


def not_media(path: Path, stderr: bytes | str) -> InputError:
    reason = stderr_tail(stderr).split(" | ")[-1].replace(f"{media_arg(path)}: ", "") or "ffmpeg found no streams"
    return InputError(f"not a video or audio file: {path} ({reason})")


# --- ffprobe -----------------------------------------------------------------------------------

def read_with_ffprobe(path: Path, ffprobe: str) -> ContainerFacts:
    """One ffprobe call: streams, format and every packet's timestamps (demux only, no decoding)."""
    res = run([ffprobe, "-v", "error", "-show_streams", "-show_format",
               "-show_entries", "packet=stream_index,pts,dts,duration", "-of", "json", media_arg(path)])
    if res.returncode != 0:
        raise not_media(path, res.stderr)
    data = json.loads(res.stdout or b"{}")
    streams = data.get("streams", [])
    video = next((_ffprobe_stream(s) for s in streams if s.get("codec_type") == "video"
                  and not s.get("disposition", {}).get("attached_pic")), None)
    audio = next((_ffprobe_stream(s) for s in streams if s.get("codec_type") == "audio"), None)
    by_index = {s.index: s for s in (video, audio) if s is not None}
    for packet in data.get("packets", []):
        _add_packet(by_index.get(packet.get("stream_index")), packet.get("pts"), packet.get("dts"),
                    packet.get("duration"))
    return ContainerFacts(data.get("format", {}).get("format_name", ""), video, audio)


def _ffprobe_stream(s: dict) -> StreamFacts:
    rotation = 0.0
    for side in s.get("side_data_list", []):
        if "rotation" in side:
            rotation = float(side["rotation"])
    if not rotation and "rotate" in s.get("tags", {}):  # legacy tag: degrees clockwise
        rotation = -float(s["tags"]["rotate"])
    return StreamFacts(index=int(s["index"]), codec=s.get("codec_name", "unknown"), pix_fmt=s.get("pix_fmt", ""),
                       width=int(s.get("width", 0)), height=int(s.get("height", 0)), rotation_ccw=rotation,
                       rate=_fraction(s.get("r_frame_rate", "0/1")), time_base=_fraction(s.get("time_base", "0/1")))


# --- ffmpeg alone --------------------------------------------------------------------------------

NOPTS = -(2 ** 63)  # ffmpeg's AV_NOPTS_VALUE ("no timestamp"), as framecrc prints it
_INPUT = re.compile(r"^Input #0, (.+?), from ", re.M)
_STREAM = re.compile(r"^\s*Stream #0:(\d+)[^:]*: (Video|Audio|Subtitle|Data|Attachment): (.*)$")
_VIDEO = re.compile(r", (\w+)(?:\([^)]*\))?, (\d+)x(\d+)")
_TBR = re.compile(r"([\d.]+)(k?) tbr")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")
_ROTATE_TAG = re.compile(r"^\s*rotate\s*:\s*(-?\d+)", re.M)
_TIME_BASE = re.compile(r"^#tb (\d+): (\d+)/(\d+)", re.M)


def read_with_ffmpeg(path: Path) -> ContainerFacts:
    """Parse `ffmpeg -i` (stream list) and `-c copy -f framecrc` (every packet's timestamps)."""
    header = run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", media_arg(path)]).stderr.decode("utf-8", "replace")
    fmt = _INPUT.search(header)
    if fmt is None:
        raise not_media(path, header)
    video = audio = None
    for block in re.split(r"\n(?=\s*Stream #0:)", header)[1:]:
        kind = _STREAM.match(block.splitlines()[0])
        if kind is None:
            continue
        if kind.group(2) == "Video" and video is None and "(attached pic)" not in kind.group(3):
            video = _ffmpeg_video(int(kind.group(1)), kind.group(3), block)
        elif kind.group(2) == "Audio" and audio is None:
            audio = StreamFacts(index=int(kind.group(1)), codec=kind.group(3).split()[0].rstrip(","))
    facts = ContainerFacts(fmt.group(1), video, audio)
    _framecrc_packets(path, facts)
    return facts


def _ffmpeg_video(index: int, desc: str, block: str) -> StreamFacts:
    size = _VIDEO.search(desc)
    tbr = _TBR.search(desc)
    rotation = _ROTATION.search(block)
    tag = _ROTATE_TAG.search(block)
    ccw = float(rotation.group(1)) if rotation else (-float(tag.group(1)) if tag else 0.0)
    rate = _rate_from_text(float(tbr.group(1)) * (1000 if tbr.group(2) else 1)) if tbr else Fraction(0)
    return StreamFacts(index=index, codec=desc.split()[0].rstrip(","), pix_fmt=size.group(1) if size else "",
                       width=int(size.group(2)) if size else 0, height=int(size.group(3)) if size else 0,
                       rotation_ccw=ccw, rate=rate)


def _framecrc_packets(path: Path, facts: ContainerFacts) -> None:
    """Packet timestamps via ffmpeg's framecrc muxer with stream copy: demux only, exact integer ticks."""
    streams = [s for s in (facts.video, facts.audio) if s is not None]
    if not streams:
        return
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", media_arg(path)]
    for s in streams:
        cmd += ["-map", f"0:{s.index}"]
    res = run(cmd + ["-c", "copy", "-f", "framecrc", "pipe:1"])
    text = res.stdout.decode("utf-8", "replace")
    if res.returncode != 0 and not text:
        raise not_media(path, res.stderr)
    for out_index, num, den in _TIME_BASE.findall(text):
        streams[int(out_index)].time_base = Fraction(int(num), int(den))
    for line in text.splitlines():
        if line and not line.startswith("#"):
            # framecrc columns: stream_index, dts, pts, duration, size, crc
            cols = [c.strip() for c in line.split(",")]
            _add_packet(streams[int(cols[0])], _int(cols[2]), _int(cols[1]), _int(cols[3]))


def picture_rotation(path: Path) -> float:
    """Counter-clockwise display rotation carried by the decoded picture itself (JPEG EXIF orientation), which
    ffmpeg applies on decode but does not list with the stream: read it from showinfo before autorotation."""
    res = run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-noautorotate", "-i", media_arg(path), "-map", "0:V:0",
               "-frames:v", "1", "-vf", "showinfo", "-f", "null", "-"])
    found = _ROTATION.search(res.stderr.decode("utf-8", "replace"))
    return float(found.group(1)) if found else 0.0


# --- helpers -------------------------------------------------------------------------------------

def _add_packet(stream: Optional[StreamFacts], pts: Optional[int], dts: Optional[int], duration: Optional[int]):
    stamp = pts if pts is not None else dts
    if stream is not None and stamp is not None:
        stream.pts.append(stamp)
        stream.durations.append(duration or 0)


def _int(text: Optional[str]) -> Optional[int]:
    try:
        value = int(text)
    except (TypeError, ValueError):  # "N/A" or missing
        return None
    return None if value == NOPTS else value


def _fraction(text: str) -> Fraction:
    num, _, den = text.partition("/")
    try:
        return Fraction(int(num), int(den or 1)) if int(den or 1) else Fraction(0)
    except ValueError:
        return Fraction(0)


def _rate_from_text(rate: float) -> Fraction:
    """ffmpeg prints rates rounded ("29.97 tbr"): recover NTSC rates (N*1000/1001) and simple fractions."""
    ntsc = round(rate * 1.001)
    if ntsc and abs(rate - Fraction(ntsc * 1000, 1001)) < 0.006 and abs(rate - ntsc) > 0.006:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(rate).limit_denominator(100)
