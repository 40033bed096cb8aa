"""The generator's safety nets: a real CPU out-of-memory error (an allocation refused under a memory limit) halves
the batch instead of failing the row; a non-finite (NaN/Inf) output is computed again in fp32, and an output that
stays non-finite is an error, never pasted as garbage pixels."""

import subprocess
import sys

import numpy as np
import pytest

from lipsync_cli.errors import InternalError
from lipsync_cli.device import is_oom
from lipsync_cli.generators.wav2lip.generator import Wav2LipGenerator

# Runs in a child process: RLIMIT_AS caps only that process. The model asks for 256 MB per frame of the batch: with
# 1.2 GB of address space to spare a batch of 8 (2 GB) is refused by the allocator, one of 2 (512 MB) fits.
OOM_CHILD = r"""
import resource
import numpy as np
import torch
from lipsync_cli.generators.wav2lip.generator import Wav2LipGenerator as Generator

class Hungry(torch.nn.Module):
    arch, config = "wav2lip", {"size": 8}

    def forward(self, mel, pair):
        block = torch.ones(len(pair) << 28, dtype=torch.uint8)  # 256 MB a frame, really allocated and written
        return pair[:, 3:] * (block[-1] / 2)

vm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:")) << 10
resource.setrlimit(resource.RLIMIT_AS, (vm + (1200 << 20), resource.RLIM_INFINITY))
gen = Generator(model=Hungry(), device="cpu", precision="fp32", batch_size=8)
crops = np.full((8, 8, 8, 3), 200, dtype=np.uint8)
rgb, _ = gen(np.zeros((8, 80, 16), dtype=np.float32), crops)
print(gen.batch_size, rgb.shape, int(rgb.min()), int(rgb.max()))
"""


def test_a_real_cpu_out_of_memory_error_halves_the_batch():
    proc = subprocess.run([sys.executable, "-c", OOM_CHILD], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    batch, shape = proc.stdout.split(" (")[0], proc.stdout.split(" (")[1].split(")")[0]
    assert int(batch) in (1, 2, 4) and shape == "8, 8, 8, 3", proc.stdout  # lowered, and every frame generated
    assert "out of memory: generator batch size lowered to 4" in proc.stderr, proc.stderr
    assert proc.stdout.split()[-2:] == ["100", "100"], proc.stdout  # 200 / 2: the real output, not a fallback


def test_is_oom_knows_the_cpu_allocators_words():
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 4294967296 bytes. Error code 12 (Cannot allocate memory)")
    assert is_oom(cpu) and is_oom(MemoryError()) and not is_oom(RuntimeError("shape mismatch"))


class NanWhenHalf:
    """A stand-in network: the mean of the crop, or NaN when it runs under bf16 autocast (as fp16 overflow does);
    `always` gives NaN in fp32 too (damaged weights)."""

    arch, config = "wav2lip", {"size": 8}

    def __init__(self, always: bool = False):
        self.always, self.calls = always, []

    def __call__(self, mel, pair):
        import torch

        half = torch.is_autocast_enabled("cpu")
        self.calls.append("bf16" if half else "fp32")
        out = pair[:, 3:].clone()
        return out * float("nan") if half or self.always else out


def test_non_finite_output_is_computed_again_in_fp32_or_is_an_error():
    crops = np.full((2, 8, 8, 3), 120, dtype=np.uint8)
    mels = np.zeros((2, 80, 16), dtype=np.float32)
    model = NanWhenHalf()
    rgb, _ = Wav2LipGenerator(model=model, device="cpu", precision="bf16", batch_size=2)(mels, crops)
    assert model.calls == ["bf16", "fp32"] and (rgb == 120).all()
    broken = NanWhenHalf(always=True)
    with pytest.raises(InternalError, match="non-finite values .* even in fp32"):
        Wav2LipGenerator(model=broken, device="cpu", precision="bf16", batch_size=2)(mels, crops)


def test_freed_memory_is_handed_back_at_most_once_a_second(monkeypatch):
    """dub trims the C heap after each chunk and LSE after each batch, but a trim costs up to ~85 ms: a second call
    within TRIM_INTERVAL does nothing, min_interval=0 always trims."""
    from lipsync_cli import device

    calls = []
    monkeypatch.setattr(device, "_malloc_trim", lambda: calls.append)
    monkeypatch.setattr(device, "_last_trim", [float("-inf")])
    device.release_freed_memory()
    device.release_freed_memory()
    assert calls == [0]
    device.release_freed_memory(min_interval=0)
    assert calls == [0, 0]
    monkeypatch.setattr(device, "_last_trim", [device._last_trim[0] - device.TRIM_INTERVAL])
    device.release_freed_memory()
    assert calls == [0, 0, 0]
