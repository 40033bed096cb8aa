"""Media I/O: the only package that knows ffmpeg (probe, streaming decode/encode, audio load, atomic outputs)."""

from lipsync_cli.media.atomic import atomic_output
from lipsync_cli.media.decode import iter_frames, load_audio, read_image
from lipsync_cli.media.encode import VideoWriter, cut_piece
from lipsync_cli.media.probe import MediaInfo, probe, starting_at
from lipsync_cli.media.tools import ffmpeg_exe

__all__ = ["MediaInfo", "VideoWriter", "atomic_output", "cut_piece", "ffmpeg_exe", "iter_frames", "load_audio", "probe", "starting_at",
           "read_image"]
