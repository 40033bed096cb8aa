"""SIGTERM / Ctrl-C during `lipsync dub` leave nothing behind (no output, no partial file, no temp
dirs); SIGTERM during `lipsync train expert` writes a final checkpoint that `--resume` continues from."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_utils import lipsync_in_process
from conftest import wait_for

from lipsync_cli.frames import SPOOL_PREFIX


def start(args: list[str], tmpdir: Path) -> subprocess.Popen:
    """The real CLI, with its own TMPDIR so we can see every temp file it leaves."""
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "lipsync_cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen) -> str:
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("process did not stop after the signal")
    return err


# The long sentence (~6 s) on the 3 s clip: pass 2 loops the clip (spooled beside the output) and generates
# ~150 frames, long enough to be interrupted half-way.
@pytest.mark.parametrize("sig, code, moment", [
    (signal.SIGTERM, 143, "encoding"),  # the output's partial file exists and frames are going in
    (signal.SIGINT, 130, "spooling"),  # the looped clip is being spooled beside the output
])
def test_interrupted_dub_leaves_nothing(tmp_path, face_clip, speech_wav, wav2lip_ckpt, sig, code, moment):
    outdir, tmpdir = tmp_path / "out", tmp_path / "tmp"
    outdir.mkdir()
    out = outdir / "dubbed.mp4"
    proc = start(["dub", str(face_clip), str(speech_wav), "-o", str(out), "--model", str(wav2lip_ckpt),
                  "--detector", "dlib", "--device", "cpu", "-q", "--batch-size", "8"], tmpdir)
    if moment == "encoding":
        wait_for(lambda: list(outdir.glob("*partial*")), proc)
        time.sleep(1.0)  # into generation/encoding, not just the encoder's start
    else:
        wait_for(lambda: list(outdir.glob(SPOOL_PREFIX + "*")), proc)
    assert proc.poll() is None, "finished before the signal: use a longer speech"
    proc.send_signal(sig)
    err = finish(proc)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1].startswith("error: ") and "partial output was removed" in err, err
    assert "Traceback" not in err
    assert list(outdir.iterdir()) == []  # no output, no .partial file, no loop spool
    assert list(tmpdir.iterdir()) == []  # no ffmpeg stderr file


def checkpoint_step(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["train"]["step"])


def test_sigterm_during_training_saves_checkpoint_and_resume_continues(tmp_path, capfd):
    from synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", n_clips=4, seconds=1.5, seed=0)
    run = tmp_path / "run"
    common = ["train", "expert", str(data), "-o", str(run), "--batch-size", "4", "--device", "cpu",
              "--workers", "0", "--val-every", "100000", "--ckpt-every", "100000"]
    proc = start(common + ["--max-steps", "100000"], tmp_path / "tmp")
    metrics = run / "metrics.csv"
    # the step-0 validation row: the training loop (and its signal handlers) is running
    wait_for(lambda: metrics.is_file() and ",val," in metrics.read_text(), proc)
    proc.send_signal(signal.SIGTERM)
    err = finish(proc)
    assert proc.returncode == 143, err
    assert "--resume" in err.strip().splitlines()[-1] and "SIGTERM" in err, err
    step = checkpoint_step(run / "last.pt")
    assert 1 <= step < 100000
    assert (run / f"step_{step:08d}.pt").exists()  # the final checkpoint is also kept as that step's file

    resumed = lipsync_in_process(capfd, *common, "--max-steps", str(step + 2), "--resume", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint_step(run / "last.pt") == step + 2  # continued from the saved step, not from 0
    steps = [int(line.split(",")[1]) for line in metrics.read_text().splitlines()[1:] if ",train," in line]
    assert step + 2 in steps  # the resumed run logged its last step
