"""Device and precision choice shared by dubbing, evaluation, preprocessing and training.

torch is imported inside each function: the CLI and the torch-free modules import this one at top.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import time
from typing import Callable, Optional

from lipsync_cli.errors import InternalError, UsageError

log = logging.getLogger(__name__)


def pick_device(name: str) -> str:
    """'auto' → 'cuda' when a GPU is usable, else 'cpu'; an explicit CUDA request without a GPU is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA GPU is available here (use --device cpu)")
    if name != "cpu" and not name.startswith("cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    return name


def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 matmul (AVX512-BF16 or AMX); elsewhere bf16 autocast is slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_precision(precision: str, device: str) -> str:
    """'auto' → fp16 on CUDA, bf16 on CPUs with native bf16, else fp32."""
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def autocast(device: str, precision: str):
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


# How an allocation failure reads: CUDA's "out of memory", and the CPU allocator's "DefaultCPUAllocator: can't
# allocate memory: ... Error code 12 (Cannot allocate memory)" (a plain RuntimeError, measured under RLIMIT_AS).
OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_oom(err: BaseException) -> bool:
    import torch

    if isinstance(err, (MemoryError, torch.cuda.OutOfMemoryError)):  # MemoryError: numpy and Python allocations
        return True
    text = str(err).lower()
    return any(message in text for message in OOM_MESSAGES)


def finite_or_fp32(run: Callable, device: str, precision: str, what: str):
    """run(precision) → a tensor. A non-finite result (NaN/Inf: fp16 overflow) is computed again in fp32 for this
    batch rather than pasted as garbage pixels; still non-finite in fp32 is an error."""
    import torch

    out = run(precision)
    if bool(torch.isfinite(out).all()):
        return out
    if precision != "fp32":
        log.warning("%s gave non-finite values in %s: this batch is computed again in fp32", what, precision)
        out = run("fp32")
        if bool(torch.isfinite(out).all()):
            return out
    raise InternalError(f"{what} gave non-finite values (NaN/Inf) even in fp32: the weights are probably damaged "
                        "(check them with `lipsync weights verify`)")


def empty_cache(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()


@functools.cache
def _malloc_trim() -> Optional[Callable]:
    """glibc's malloc_trim from the running process, or None (musl, macOS, Windows)."""
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


TRIM_INTERVAL = 1.0  # seconds: release_freed_memory trims at most this often (one trim took 5-85 ms on 2 cores)
_last_trim = [float("-inf")]  # time.monotonic() of the last trim in this process


def release_freed_memory(min_interval: float = TRIM_INTERVAL) -> None:
    """Hand the C heap's free pages back to the OS (glibc's malloc_trim; nothing elsewhere), unless it was done
    less than `min_interval` seconds ago (a GPU chunk can take less time than the trim). A long loop of big
    short-lived tensors between small buffers that live longer fragments glibc's heap, and RSS then creeps up
    batch after batch: scoring LSE from its JPEG files grew ~150 MB per minute of video without this."""
    trim = _malloc_trim()
    if trim is None or time.monotonic() - _last_trim[0] < min_interval:
        return
    trim(0)
    _last_trim[0] = time.monotonic()
