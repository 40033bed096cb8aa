"""Training: synthetic data, datasets, schedules and the Trainer (checkpoints, resume after kill -9, SIGTERM, DDP
on CPU), all in tiny runs on CPU. Whether the networks really learn: tests/test_learnability.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_utils import lipsync_in_process

from lipsync_cli.config import ExpertConfig, GeneratorConfig, TrainConfig
from lipsync_cli.data.dataset import ClipStore, ExpertDataset, GeneratorDataset, stack_frames
from synthetic import make_synthetic_dataset, mouth_openness
from lipsync_cli.timing import mel_windows
from lipsync_cli.train import schedules
from lipsync_cli.train.log import read_metrics

ROOT = Path(__file__).resolve().parents[1]
# tiny runs for the machinery tests: 2 samples per step, 1 validation batch, nothing on the console
TINY = TrainConfig(batch_size=2, lr=1e-4, max_steps=4, val_every=2, val_batches=1, ckpt_every=2, keep_last=2,
                   log_every=1, num_workers=0, device="cpu")


@pytest.fixture(scope="module")
def expert_ckpt(tmp_path_factory) -> Path:
    """A random-weight expert in our checkpoint format (the generator only needs one to load)."""
    from lipsync_cli.models import save_checkpoint
    from lipsync_cli.models.lipsync_expert import SyncNet

    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("expert") / "expert.pt", SyncNet())


def _cli(*args: str, **kw) -> subprocess.Popen:
    # as many threads as this process uses: the kill -9 test compares its runs with one in this process, bit for bit
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.Popen([sys.executable, "-m", "lipsync_cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _train_args(data: Path, run: Path, steps: int, ckpt_every: int) -> list[str]:
    return ["train", "expert", str(data), "-o", str(run), "--batch-size", "2", "--max-steps", str(steps),
            "--val-every", "1000", "--ckpt-every", str(ckpt_every), "--workers", "0", "--device", "cpu", "-q"]


# ---------------------------------------------------------------- synthetic data and datasets

def test_synthetic_layout_and_mouth_follows_audio(synthetic_data, tmp_path):
    manifest = json.loads((synthetic_data / "manifest.json").read_text())
    assert manifest["size"] == 96 and manifest["fps"] == 25
    assert [c["split"] for c in manifest["clips"]].count("val") == 4
    clip = synthetic_data / "clips" / manifest["clips"][0]["id"]
    faces, mel = np.load(clip / "faces.npy", mmap_mode="r"), np.load(clip / "mel.npy")
    assert faces.shape == (75, 96, 96, 3) and faces.dtype == np.uint8
    assert mel.shape == (80, 241) and mel.dtype == np.float32
    assert np.load(clip / "boxes.npy").shape == (75, 4) and np.load(clip / "landmarks.npy").shape == (75, 68, 2)
    # the mouth's darkness tracks the loudness in the frame's own mel window, and only there
    dark = -faces[:, 58:74, 36:60].astype(np.float32).mean(axis=(1, 2, 3))
    loud = mel_windows(mel, np.arange(75) / 25)[:, :, :4].mean(axis=(1, 2))
    assert np.corrcoef(dark, loud)[0, 1] > 0.8
    assert abs(np.corrcoef(dark[:-15], loud[15:])[0, 1]) < 0.6  # 0.6 s later: unrelated speech
    # two clips say different things; misaligned data moves the audio by that many frames
    other = np.load(synthetic_data / "clips" / manifest["clips"][1]["id"] / "mel.npy")
    assert not np.allclose(mel, other)
    shifted = make_synthetic_dataset(tmp_path / "mis", n_clips=1, seconds=4.0, seed=0, misaligned_frames=15)
    faces_m = np.load(shifted / "clips" / "synth" / "clip000" / "faces.npy")
    mel_m = np.load(shifted / "clips" / "synth" / "clip000" / "mel.npy")
    dark_m = -faces_m[:, 58:74, 36:60].astype(np.float32).mean(axis=(1, 2, 3))
    loud_m = mel_windows(mel_m, np.arange(100) / 25)[:, :, :4].mean(axis=(1, 2))
    assert np.corrcoef(dark_m[:-15], loud_m[15:])[0, 1] > 0.6 > np.corrcoef(dark_m, loud_m)[0, 1]


def test_synthetic_speech_without_espeak(tmp_path):
    out = make_synthetic_dataset(tmp_path, n_clips=2, seconds=2.0, seed=1, voice="synthetic")
    faces = np.load(out / "clips" / "synth" / "clip000" / "faces.npy")
    dark = faces[:, 58:74, 36:60].mean(axis=(1, 2, 3))
    assert dark.std() > 5  # the mouth opens and closes
    assert mouth_openness(np.zeros(16000, np.float32), 25).max() == 0  # silence keeps it shut


def test_expert_dataset_positives_negatives(synthetic_data):
    store = ClipStore(synthetic_data, "train")
    data = ExpertDataset(store, seed=0, min_offset=5)
    labels = []
    for idx in range(0, len(data), 7):
        item = data[idx]
        clip, start = data.index[idx]
        assert item["faces"].shape == (3, 5, 48, 96) and item["faces"].dtype == torch.uint8
        lower = store.faces(clip)[start:start + 5, 48:].transpose(3, 0, 1, 2)
        assert np.array_equal(item["faces"].numpy(), lower)
        windows = mel_windows(store.mel(clip), np.arange(store.n_starts(clip)) / store.fps)
        match = [j for j in range(len(windows)) if np.array_equal(windows[j], item["mel"][0].numpy())]
        if item["label"] == 1:
            assert start in match
        else:
            assert any(abs(j - start) >= 5 for j in match)  # (silent windows can repeat elsewhere)
        labels.append(float(item["label"]))
        assert torch.equal(data[idx]["mel"], item["mel"])  # same index, same sample
    assert 0.35 < np.mean(labels) < 0.65


def test_generator_dataset_masks_and_references(synthetic_data):
    store = ClipStore(synthetic_data, "train")
    data = GeneratorDataset(store, seed=0)
    item = data[40]
    clip, start = data.index[40]
    assert item["target"].shape == item["ref"].shape == item["masked"].shape == (3, 5, 96, 96)
    assert item["mel"].shape == (5, 1, 80, 16) and item["sync_mel"].shape == (1, 80, 16)
    assert np.array_equal(item["target"].numpy(), store.faces(clip)[start:start + 5].transpose(3, 0, 1, 2))
    assert item["masked"][:, :, 48:].max() == 0 and torch.equal(item["masked"][:, :, :48], item["target"][:, :, :48])
    faces = store.faces(clip)
    for r in range(5):
        ref = item["ref"][:, r].permute(1, 2, 0).numpy()
        frame = next(k for k in range(len(faces)) if np.array_equal(faces[k], ref))
        assert frame <= start - 5 or frame >= start + 9
    expected = mel_windows(store.mel(clip), np.arange(start, start + 5) / 25)
    assert np.array_equal(item["mel"][:, 0].numpy(), expected)
    assert torch.equal(stack_frames(item["target"][None])[0, 3:6], item["target"][:, 1])


def test_schedules_are_pure():
    assert schedules.sync_loss_enabled(False, 0.8, 0.75) is False
    assert schedules.sync_loss_enabled(False, 0.7, 0.75) is True
    assert schedules.sync_loss_enabled(True, 0.9, 0.75) is True  # latched
    assert schedules.generator_weights(False, 0.03, False, 0.07) == {"l1": 1.0, "sync": 0.0, "adv": 0.0}
    w = schedules.generator_weights(True, 0.03, True, 0.07)
    assert w["sync"] == 0.03 and w["adv"] == 0.07 and abs(w["l1"] - 0.9) < 1e-9
    assert schedules.linear_anneal(5, 10, 20) == 1.0 and schedules.linear_anneal(15, 10, 20) == 0.5
    assert schedules.due(10, 5) and not schedules.due(11, 5)


# ---------------------------------------------------------------- the Trainer's machinery

def test_generator_run_with_gan_and_sync_loads_for_dubbing(synthetic_data, expert_ckpt, tmp_path):
    from lipsync_cli.models import checkpoint_kind, load_checkpoint
    from lipsync_cli.train import train_generator

    run = tmp_path / "gen"
    # threshold 10: the random expert's sync loss (~0.7) switches the sync loss on at the first validation
    gen_cfg = GeneratorConfig(gan=True, sync_threshold=10.0)
    train_generator(synthetic_data, run, replace(TINY, max_steps=1, val_every=1), gen_cfg, str(expert_ckpt), quiet=True)
    train_names = {name for _, name in _rows(run, "train")}
    assert {"l1", "sync", "adv", "disc"} <= train_names
    assert read_metrics(run, "train", "sync_weight")[-1][1] == pytest.approx(0.03)
    assert checkpoint_kind(run / "best.pt") == "generator"
    model = load_checkpoint(run / "best.pt")
    assert model.arch == "wav2lip"
    state = torch.load(run / "last.pt", weights_only=True)["train"]
    assert set(state["optimizers"]) == {"generator", "disc"} and state["task"] == {"sync_on": True}
    disc_opt = state["optimizers"]["disc"]["param_groups"][0]
    assert tuple(disc_opt["betas"]) == (0.5, 0.999)


def _rows(run: Path, phase: str) -> list[tuple[int, str]]:
    import csv

    with open(run / "metrics.csv", newline="") as f:
        return [(int(r["step"]), r["metric"]) for r in csv.DictReader(f) if r["phase"] == phase]


def test_refs_arch_dispatch():
    """--arch refs builds the refs Task of the one Trainer; an unknown architecture is a usage error."""
    from lipsync_cli.errors import UsageError
    from lipsync_cli.train import generator_task
    from lipsync_cli.train.refs import RefsTask
    from lipsync_cli.train.trainer import Task

    task = generator_task(GeneratorConfig(arch="refs"), "x.pt")
    assert isinstance(task, RefsTask) and isinstance(task, Task)
    with pytest.raises(UsageError, match="unknown generator architecture"):
        generator_task(GeneratorConfig(arch="sd"), "x.pt")


@pytest.mark.slow
def test_kill9_then_resume_continues_exactly(synthetic_data, tmp_path, capfd):
    run = tmp_path / "run"
    proc = _cli(*_train_args(synthetic_data, run, steps=10_000, ckpt_every=2))
    deadline = time.time() + 240
    # step files are written before last.pt: once step 6's exists, last.pt holds step 4 or later
    while not list(run.glob("step_00000006.pt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(run / "last.pt", weights_only=True)
    step = saved["train"]["step"]
    assert step >= 4 and step % 2 == 0
    resumed = _cli(*_train_args(synthetic_data, run, steps=step + 2, ckpt_every=2), "--resume")
    out = resumed.communicate(timeout=240)[0]
    assert resumed.returncode == 0, out
    final = torch.load(run / "last.pt", weights_only=True)
    assert final["train"]["step"] == step + 2
    # Adam's per-parameter step counter continued from the checkpoint instead of restarting at 0
    adam = next(iter(final["train"]["optimizers"]["expert"]["state"].values()))
    assert int(adam["step"]) == step + 2
    # and the result equals an unbroken run of the same length (same data order, RNG, moments), here in process
    whole = tmp_path / "whole"
    straight = lipsync_in_process(capfd, *_train_args(synthetic_data, whole, steps=step + 2, ckpt_every=1000))
    assert straight.returncode == 0, straight.stderr
    reference = torch.load(whole / "last.pt", weights_only=True)["state_dict"]
    for name, value in final["state_dict"].items():
        torch.testing.assert_close(value, reference[name], msg=name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, data: str, run: str, out: str) -> None:
    """One DDP rank, started the way torchrun starts it: by environment variables."""
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from lipsync_cli.train.expert import ExpertTask
    from lipsync_cli.train.trainer import Trainer

    task = ExpertTask(ExpertConfig())
    trainer = Trainer(task, Path(data), Path(run), replace(TINY, max_steps=3, val_every=3, ckpt_every=3), quiet=True)
    trainer.fit()
    net = task.nets["expert"].module  # DDP-wrapped
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, Path(out) / f"rank{rank}.pt")


@pytest.mark.slow
def test_ddp_two_processes_on_cpu_agree(synthetic_data, tmp_path):
    import torch.multiprocessing as mp

    run, out = tmp_path / "run", tmp_path / "params"
    out.mkdir()
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(synthetic_data), str(run), str(out)), nprocs=2, join=True)
    a, b = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    start = torch.load(run / "last.pt", weights_only=True)
    assert start["train"]["world_size"] == 2 and start["train"]["step"] == 3
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)
    torch.testing.assert_close(a["face_encoder.0.conv_block.0.weight"], start["state_dict"]["face_encoder.0.conv_block.0.weight"])
    assert [s for s, m in _rows(run, "train") if m == "loss"] == [1, 2, 3]  # rank 0 alone logs


def test_resume_refuses_other_settings_but_may_run_longer(synthetic_data, tmp_path, capfd):
    """--resume with another --batch-size (epoch arithmetic) or --lr is a one-line input error naming the option;
    more --max-steps continues the same run. `lipsync train` in this process (tests/cli_utils.py): the kill -9
    test above runs it as a process of its own."""
    run = tmp_path / "run"
    first = lipsync_in_process(capfd, *_train_args(synthetic_data, run, steps=2, ckpt_every=2))
    assert first.returncode == 0, first.stdout + first.stderr
    for extra, option in ((["--batch-size", "4"], "--batch-size"), (["--lr", "0.001"], "--lr")):
        args = _train_args(synthetic_data, run, steps=4, ckpt_every=2) + ["--resume"]
        args[args.index("--batch-size"):args.index("--batch-size") + 2] = ["--batch-size", "2"]
        bad = lipsync_in_process(capfd, *args, *extra)
        out = bad.stdout + bad.stderr
        assert bad.returncode == 1, out
        assert option in out and "--resume" in out and len(out.strip().splitlines()) == 1, out
    longer = lipsync_in_process(capfd, *_train_args(synthetic_data, run, steps=4, ckpt_every=2), "--resume")
    assert longer.returncode == 0, longer.stdout + longer.stderr
    assert torch.load(run / "last.pt", weights_only=True)["train"]["step"] == 4


def test_resume_compares_the_task_config(tmp_path):
    """A generator setting (here the refs K, which changes the network's shapes) is compared too."""
    from lipsync_cli.config import GeneratorConfig, RefsConfig, TrainConfig
    from lipsync_cli.errors import InputError
    from lipsync_cli.train.trainer import check_same_run

    cfg = TrainConfig()
    saved = {"train_config": __import__("dataclasses").asdict(cfg),
             "task_config": __import__("dataclasses").asdict(GeneratorConfig(arch="refs", refs=RefsConfig(n_refs=4)))}
    check_same_run(saved, cfg, GeneratorConfig(arch="refs", refs=RefsConfig(n_refs=4)), tmp_path / "last.pt")
    with pytest.raises(InputError, match="n_refs=4 but this run asks for 8; pass the same --refs"):
        check_same_run(saved, cfg, GeneratorConfig(arch="refs", refs=RefsConfig(n_refs=8)), tmp_path / "last.pt")
