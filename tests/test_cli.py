"""The CLI surface: help without torch, version, usage errors as one line with exit codes."""

import subprocess
import sys

import pytest

from lipsync_cli import __version__


def lipsync(*args, **kw):
    return subprocess.run([sys.executable, "-m", "lipsync_cli", *args], capture_output=True, text=True, **kw)


def test_help_lists_every_command_and_does_not_import_torch():
    code = ("import sys\nfrom lipsync_cli.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert 'torch' not in sys.modules, 'lipsync --help imported torch'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for cmd in ("dub", "preprocess", "train", "evaluate", "weights"):
        assert cmd in proc.stdout


@pytest.mark.parametrize("sub", [["train", "--help"], ["weights", "--help"]])
def test_subcommand_groups(sub):
    proc = lipsync(*sub)
    assert proc.returncode == 0
    names = ("expert", "generator") if sub[0] == "train" else ("list", "download", "verify", "path")
    for name in names:
        assert name in proc.stdout


def test_version():
    proc = lipsync("--version")
    assert proc.returncode == 0 and __version__ in proc.stdout


@pytest.mark.parametrize("args, needle", [
    (["dub"], "needs VIDEO and AUDIO"),
    (["dub", "a.mp4", "b.wav", "--loop", "sideways"], "--loop"),
    (["dub", "a.mp4", "b.wav", "--face", "biggest"], "--face"),
    (["dub", "--jobs", "x.csv", "--shard", "3/2"], "--shard"),
    (["dub", "a.mp4", "b.wav", "--precision", "half"], "--precision"),
    (["train", "generator", "d", "--expert", "e.pt", "-o", "r", "--arch", "refs", "--reference-mode", "all"],
     "--reference-mode"),
])
def test_usage_errors_are_one_line_with_exit_code_2(args, needle):
    proc = lipsync(*args)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
