"""The CUDA paths: fp16 inference, the out-of-memory back-off, AMP training, NCCL DDP, batched S3FD, a dub.

Marked `cuda`; on a machine without a GPU every test here is skipped with that reason (CI has none). On a
GPU machine: `python -m pytest -m cuda tests/test_cuda.py` (benchmarks/gpu_check.sh runs it with the GPU
benchmarks). The back-off test also runs on the CPU, since the back-off itself is device-independent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ckpt_utils import recipe_state_dict, write_public_checkpoint, write_public_layout
from conftest import REFERENCE, astronaut_face, make_face_clip

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
pytestmark = pytest.mark.cuda

ROOT = Path(__file__).resolve().parents[1]
FP16_MAX_LEVELS, FP16_MEAN_LEVELS = 4, 1.0  # bf16's bound on CPUs (wav2lip BF16_*): fp16 is finer


def _wav2lip_file(tmp: Path) -> Path:
    """The conformance weights when ../shared is here (far from an init), else seed-0 random weights."""
    arch = REFERENCE / "wav2lip_arch.json"
    if arch.is_file():
        keys = json.loads(arch.read_text())["wav2lip"]["keys"]
        return write_public_layout(tmp / "wav2lip.pth", recipe_state_dict(keys))
    return write_public_checkpoint(tmp / "wav2lip.pth", "wav2lip", seed=0)


def voiced_wav(path: Path, seconds: float = 2.0) -> Path:
    """A voice-like 16 kHz wav (a 140 Hz buzz, syllable-rate amplitude): the GPU image has no espeak-ng."""
    import wave

    t = np.arange(int(16000 * seconds)) / 16000
    buzz = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes((buzz / np.abs(buzz).max() * 0.5 * 32767).astype(np.int16).tobytes())
    return path


def _inputs(n: int = 16):
    import cv2

    face = cv2.resize(astronaut_face()[20:220, 150:330], (96, 96), interpolation=cv2.INTER_AREA)
    crops = np.stack([np.roll(face, k, axis=1) for k in range(n)])  # (n, 96, 96, 3) uint8 RGB
    mels = np.random.default_rng(0).standard_normal((n, 80, 16)).astype(np.float32)
    return mels, crops


@needs_cuda
def test_fp16_wav2lip_matches_fp32_on_cuda(tmp_path):
    from lipsync_cli.generators.registry import load_generator

    path = _wav2lip_file(tmp_path)
    mels, crops = _inputs()
    outs = {p: load_generator(str(path), device="cuda", precision=p, batch_size=16)(mels, crops)[0].astype(np.int16)
            for p in ("fp32", "fp16")}
    diff = np.abs(outs["fp32"] - outs["fp16"])
    print(f"wav2lip fp16 vs fp32 on CUDA: max {diff.max()} mean {diff.mean():.3f} levels")
    assert outs["fp32"].std() > 5
    assert diff.max() <= FP16_MAX_LEVELS and diff.mean() <= FP16_MEAN_LEVELS


@needs_cuda
def test_fp16_refs_matches_fp32_on_cuda(tmp_path):
    from lipsync_cli.generators.registry import load_generator
    from lipsync_cli.models import save_checkpoint
    from lipsync_cli.generators.refs.network import RefsGenerator

    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "refs.pt", RefsGenerator(96, 4, 16))
    mels, crops = _inputs(8)
    outs = {}
    for p in ("fp32", "fp16"):
        gen = load_generator(str(path), device="cuda", precision=p, batch_size=8)
        gen.set_references(crops[:4])
        outs[p] = gen(mels, crops)[0].astype(np.int16)
    diff = np.abs(outs["fp32"] - outs["fp16"])
    print(f"refs fp16 vs fp32 on CUDA: max {diff.max()} mean {diff.mean():.3f} levels")
    assert diff.max() <= FP16_MAX_LEVELS and diff.mean() <= FP16_MEAN_LEVELS


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_out_of_memory_halves_the_batch_and_gives_the_same_result(tmp_path, device):
    """A batch that does not fit is split (32 → 16 → 8 here), the same crops come out, the lower size is kept."""
    from lipsync_cli.generators.registry import load_generator

    path = write_public_checkpoint(tmp_path / "w.pth", "wav2lip", seed=0)
    mels, crops = _inputs(12)
    whole = load_generator(str(path), device=device, precision="fp32", batch_size=32)(mels, crops)[0]
    gen = load_generator(str(path), device=device, precision="fp32", batch_size=32)
    forward = gen.model.forward

    def small_memory(mel, faces):
        if len(mel) > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(mel, faces)

    gen.model.forward = small_memory
    split = gen(mels, crops)[0]
    assert gen.batch_size == 8
    assert np.abs(split.astype(np.int16) - whole.astype(np.int16)).max() <= 1


@needs_cuda
def test_amp_training_on_cuda_keeps_its_scaler(synthetic_data, tmp_path):
    from lipsync_cli.config import ExpertConfig, TrainConfig
    from lipsync_cli.train import train_expert

    cfg = TrainConfig(batch_size=16, max_steps=4, val_every=4, val_batches=1, ckpt_every=4, num_workers=0,
                      device="cuda", amp=True)
    run = train_expert(synthetic_data, tmp_path / "run", cfg, ExpertConfig(), quiet=True)
    state = torch.load(run / "last.pt", weights_only=True)["train"]
    assert state["step"] == 4 and state["scaler"], "AMP on CUDA must save its GradScaler state"
    assert all(torch.isfinite(t).all() for t in torch.load(run / "last.pt", weights_only=True)["state_dict"].values())


@needs_cuda
def test_nccl_ddp_under_torchrun(synthetic_data, tmp_path):
    """torchrun with one process per GPU (as many as there are): the NCCL process group trains and saves."""
    n = torch.cuda.device_count()
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n), "-m",
           "lipsync_cli", "train", "expert", str(synthetic_data), "-o", str(run), "--batch-size", "8",
           "--max-steps", "3", "--val-every", "3", "--ckpt-every", "3", "--workers", "0", "--device", "cuda", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(run / "last.pt", weights_only=True)["train"]
    assert state["step"] == 3 and state["world_size"] == n


@needs_cuda
def test_batched_s3fd_on_cuda(random_face_alignment, monkeypatch):
    from lipsync_cli.faces import face_alignment_backend
    from lipsync_cli.faces import get_detector

    monkeypatch.setattr(face_alignment_backend, "prepare_files", lambda detector, **kw: random_face_alignment)
    fa = get_detector("auto", "cuda")
    assert fa.name == "face_alignment:sfd"  # auto picks face-alignment on CUDA
    frame = np.ascontiguousarray(astronaut_face()[0:300, 100:400])
    found = fa.detect([frame] * 8, max_side=160)
    assert len(found) == 8 and all(len(f) == len(found[0]) for f in found)  # the same frame, the same faces


@needs_cuda
def test_dub_on_cuda_fp16(tmp_path):
    from lipsync_cli.config import DubConfig, FaceConfig
    from lipsync_cli.pipeline import dub

    speech = voiced_wav(tmp_path / "s.wav")
    clip = make_face_clip(tmp_path / "clip.mp4", seconds=2.0, size=256)
    model = write_public_checkpoint(tmp_path / "w.pth", "wav2lip", seed=0)
    cfg = DubConfig(model=str(model), faces=FaceConfig(box=(40, 20, 220, 230)), device="cuda", quiet=True)
    result = dub(clip, speech, tmp_path / "out.mp4", cfg)
    assert result.frames_edited == result.frames > 0 and (tmp_path / "out.mp4").stat().st_size > 0
