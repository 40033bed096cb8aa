"""The CLI surface: help without torch, version, usage errors as one line with exit codes."""

import subprocess
import sys

import pytest

from cli_utils import lipsync_in_process

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
def test_subcommand_groups(sub, capfd):
    proc = lipsync_in_process(capfd, *sub)
    assert proc.returncode == 0
    names = ("expert", "generator") if sub[0] == "train" else ("list", "download", "verify", "path")
    for name in names:
        assert name in proc.stdout


def test_version(capfd):
    proc = lipsync_in_process(capfd, "--version")
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
def test_usage_errors_are_one_line_with_exit_code_2(args, needle, capfd):
    proc = lipsync_in_process(capfd, *args)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, needle", [
    (["dub", "a.mp4", "b.wav", "--no-such-option"], "No such option"),
    (["dub", "a.mp4", "b.wav", "extra.wav"], "unexpected extra argument"),
    (["train", "expert"], "Missing argument"),
    (["dub", "a.mp4", "b.wav", "--box", "1", "2", "3"], "--box"),
    (["dub", "a.mp4", "b.wav", "--detector", "opencv"], "--detector"),
    (["train", "generator", "d", "--expert", "e.pt", "-o", "r", "--arch", "sd"], "--arch"),
])
def test_parser_errors_are_the_parsers_one_line_with_exit_code_2(args, needle, capfd):
    """Typer's own copy of click raises its own exception classes: they must still end as exit 2, one line."""
    proc = lipsync_in_process(capfd, *args)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, code, needle", [
    (["dub", "a.mp4", "b.wav", "--loop", "sideways"], 2, "--loop"),  # our usage error
    (["dub", "a.mp4", "b.wav", "--no-such-option"], 2, "No such option"),  # the parser's own
    (["train"], 2, ""),  # a bare group: help, no error line
])
def test_exit_codes_reach_the_shell(args, code, needle, capfd):
    """The checks above call main() in process; here the real console process, for the same lines, exits with
    the same code and the same stderr."""
    proc = lipsync(*args)
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr == lipsync_in_process(capfd, *args).stderr


def test_documented_multi_value_options_parse(tmp_path):
    """`--box X1 Y1 X2 Y2` and `--pads T B L R`, as README and --help write them, reach the config; -v works
    after the command. The run then fails on the missing input (exit 1), not on the parser."""
    proc = lipsync("dub", str(tmp_path / "v.mp4"), str(tmp_path / "a.wav"), "--box", "291", "142", "513", "365",
                   "--pads", "0", "20", "0", "0", "-v")
    assert proc.returncode == 1, proc.stderr
    assert "file not found" in proc.stderr and "Traceback" in proc.stderr  # -v: the traceback is shown
    from lipsync_cli.cli import app
    import typer.main

    ctx = _leaf_context(typer.main.get_command(app), ["dub", "v.mp4", "a.wav", "--box", "291", "142", "513", "365",
                                                      "--pads", "0", "20", "0", "0"])
    assert ctx.params["box"] == (291, 142, 513, 365) and ctx.params["pads"] == (0, 20, 0, 0)


def _leaf_context(cmd, tokens):
    """Parse `lipsync TOKENS` down to its leaf command without running it: the parser's exceptions propagate."""
    tokens, name, parent = list(tokens), "lipsync", None
    while hasattr(cmd, "list_commands"):  # a group: skip its flags (-v), descend into the named command
        parent = cmd.context_class(cmd, info_name=name, parent=parent)
        while tokens and tokens[0].startswith("-"):
            tokens.pop(0)
        if not tokens:  # `lipsync train` named in prose: a group on its own
            return parent
        name = tokens.pop(0)
        sub = cmd.get_command(parent, name)
        assert sub is not None, f"no command {name!r}"
        cmd = sub
    return cmd.make_context(name, tokens, parent=parent)


def readme_command_lines() -> list:
    """Every `lipsync …` command line of the README (also `torchrun … -m lipsync_cli …`): in code blocks and in
    inline code, continuation lines joined, comments dropped, optional [parts] included, and of the documented
    alternatives (`auto|none`, `--jpeg/--no-jpeg`) the first."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    lines += re.findall(r"`(lipsync [^`]+)`", text)
    found = []
    for line in lines:
        line = line.split(" #")[0].strip()
        if "-m lipsync_cli " in line:
            line = "lipsync " + line.split("-m lipsync_cli ", 1)[1]
        if not line.startswith("lipsync ") or "--help" in line:
            continue
        tokens = shlex.split(line.replace("[", " ").replace("]", " "))[1:]
        tokens = [t.split("|")[0] for t in tokens]
        found.append([t.split("/")[0] if re.fullmatch(r"--[\w-]+/--[\w-]+", t) else t for t in tokens])
    return found


def test_readme_has_command_lines_to_check():
    lines = readme_command_lines()
    assert len(lines) >= 10, lines
    assert ["dub", "video.mp4", "speech.wav"] in lines


@pytest.mark.parametrize("tokens", readme_command_lines(), ids=lambda t: " ".join(t)[:60])
def test_every_readme_command_line_parses(tokens):
    import typer.main

    from lipsync_cli.cli import app

    _leaf_context(typer.main.get_command(app), tokens)  # raises the parser's error on a bad line


def test_bare_group_shows_help_without_an_error_line(capfd):
    proc = lipsync_in_process(capfd, "train")
    assert proc.returncode == 2 and "expert" in proc.stdout
    assert "error" not in proc.stderr


def _captured(monkeypatch, target: str, argv: list) -> tuple:
    """Run `lipsync ARGV` in-process with the library function `target` replaced by a recorder; its arguments."""
    import importlib

    from lipsync_cli.cli import main

    module, name = target.rsplit(".", 1)
    seen = {}
    monkeypatch.setattr(importlib.import_module(module), name, lambda *a, **kw: seen.update(args=a, kwargs=kw))
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    return seen["args"]


def test_cli_defaults_are_the_dataclass_defaults(monkeypatch):
    """What each command hands the library when no option is given equals the config dataclasses' defaults
    (and the per-architecture Trainer defaults the library's entry points use themselves)."""
    from lipsync_cli.config import DubConfig, ExpertConfig, GeneratorConfig, PreprocessConfig, train_defaults

    assert _captured(monkeypatch, "lipsync_cli.pipeline.dub", ["dub", "v.mp4", "a.wav"])[3] == DubConfig()
    assert _captured(monkeypatch, "lipsync_cli.data.preprocess.preprocess", ["preprocess", "src", "out"])[2] \
        == PreprocessConfig()
    args = _captured(monkeypatch, "lipsync_cli.train.train_expert", ["train", "expert", "data", "-o", "run"])
    assert args[2:4] == (train_defaults("expert"), ExpertConfig())
    for arch in ("wav2lip", "refs"):
        args = _captured(monkeypatch, "lipsync_cli.train.train_generator",
                         ["train", "generator", "data", "--expert", "e.pt", "-o", "run", "--arch", arch])
        assert args[2:4] == (train_defaults(arch), GeneratorConfig(arch=arch))


def test_per_architecture_trainer_defaults_follow_the_papers():
    from lipsync_cli.config import GeneratorConfig, train_defaults

    assert (train_defaults("expert").batch_size, train_defaults("expert").lr) == (64, 1e-4)
    assert (train_defaults("wav2lip").batch_size, train_defaults("wav2lip").lr) == (16, 1e-4)
    assert (train_defaults("refs").batch_size, train_defaults("refs").lr) == (16, 2e-4)
    assert train_defaults("refs", lr=None, batch_size=4).batch_size == 4  # None keeps the default
    assert GeneratorConfig(arch="refs").use_gan and not GeneratorConfig().use_gan
    assert not GeneratorConfig(arch="refs", gan=False).use_gan
