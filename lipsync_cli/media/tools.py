"""Locating ffmpeg and running it: argument lists built by ffmpeg-python, stderr kept for error messages.

ffmpeg-python only builds the argument list (`compile`); the processes are started here, in their own
session and with stderr in a file, which its own `run`/`run_async` do not offer.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from lipsync_cli.errors import InternalError

# Before every command: no banner, never read the terminal, only errors on stderr (they become our messages).
QUIET = ("-hide_banner", "-nostdin", "-v", "error")
STDERR_TAIL_CHARS = 600  # enough for ffmpeg's last error lines, short enough for a one-line message


def ffmpeg_exe() -> str:
    """`ffmpeg` on PATH, else the static binary bundled with imageio-ffmpeg (so `pip install` is enough)."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        raise InternalError("ffmpeg not found: install ffmpeg or `pip install imageio-ffmpeg`") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def command(graph) -> list[str]:
    """The argument list of an ffmpeg-python graph (`ffmpeg.input(...).output(...)`), quiet, for our ffmpeg."""
    return graph.global_args(*QUIET).compile(cmd=ffmpeg_exe())


def media_arg(path: Path) -> str:
    """An absolute path, so ffmpeg never reads a name like `-x.mp4` or `http:x` as an option or protocol."""
    return str(Path(path).resolve())


def stderr_tail(stderr: bytes | str) -> str:
    """The last lines of a tool's stderr, joined into one line for an error message."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines)[-STDERR_TAIL_CHARS:]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run a tool to completion, capturing stdout and stderr as bytes (never raises on exit status)."""
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)


def spawn(cmd: list[str], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None) -> subprocess.Popen:
    """Start a streaming tool in its own session: Ctrl-C reaches only Python, which then stops the tool
    and cleans up, instead of ffmpeg dying first and turning the interrupt into a broken-pipe error."""
    return subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """Kill a streaming tool (if still running) and reap it, closing our ends of its pipes."""
    if proc.poll() is None:
        proc.kill()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:  # a broken pipe on flush: the process is gone anyway
                pass
    proc.wait()
