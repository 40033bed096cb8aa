"""Batched generator inference: device and precision choice, OOM back-off, one interface for both families.

The pipeline hands over face crops and mel windows as numpy arrays and gets generated crops back; what
each generator family needs as input (Wav2Lip: masked target + the frame itself as reference; refs: masked
target + K reference crops encoded once per clip) stays in this module.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

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


# bf16 autocast may replace fp32 only while the generated crops stay this close to fp32's (uint8 levels of 255).
# Measured on the Wav2Lip generator with the conformance weights, a real face and real speech (2-core AMD EPYC,
# 2026-12-01): max 2, mean 0.36 levels; tests/test_inference_precision.py holds every build to these bounds.
BF16_MAX_LEVELS, BF16_MEAN_LEVELS = 4, 1.0


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


# Architectures run in channels_last memory format: the Wav2Lip generator's convolutions run 1.27-1.34x faster
# in it on a 2-core CPU (fp32, batch 32: 3.3 -> 4.2 frames/s measured 2026-12-02 under load; 8.6 -> 11.5 in
# issue 13) with outputs equal to 6e-8; the refs generator measured no faster, so it stays contiguous.
CHANNELS_LAST_ARCHS = {"wav2lip"}


def memory_format(arch: str):
    import torch

    return torch.channels_last if arch in CHANNELS_LAST_ARCHS else torch.contiguous_format


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


@dataclass
class Generator:
    """A loaded generator plus how to run it. Inputs/outputs are numpy, RGB uint8 crops."""

    model: object  # torch.nn.Module in eval mode on `device`
    device: str
    precision: str
    batch_size: int
    ref_cache: Optional[object] = field(default=None)  # refs family: encoded references of the current clip

    @property
    def arch(self) -> str:
        return self.model.arch

    @property
    def size(self) -> int:
        return int(self.model.config.get("size", 96))

    @property
    def n_refs(self) -> int:
        return int(self.model.config.get("n_refs", 1))

    @property
    def predicts_mask(self) -> bool:
        return self.arch == "refs" and self.model.config.get("mask_head", True)

    def reference_plan(self, track) -> Optional[tuple[np.ndarray, Optional[np.ndarray]]]:
        """(picks, assign): the source frames whose crops become this clip's references, and which reference
        each source frame uses (None: all of them). None when the family takes no references (Wav2Lip)."""
        if self.arch != "refs":
            return None
        from lipsync_cli import references

        return references.select_references(track.landmarks, track.boxes, k=self.n_refs), None

    def set_references(self, crops: np.ndarray, assign: Optional[np.ndarray] = None) -> None:
        """Refs family: encode the clip's K reference crops once; every later batch reuses them (all K attend
        for every frame, so `assign` is unused).

        crops: (K, S, S, 3) uint8 RGB.
        """
        if self.arch != "refs":
            return
        import torch

        refs = _to_tensor(crops, self.device).unsqueeze(0)  # (1, K, 3, S, S) float32 in [0, 1]
        with torch.inference_mode(), autocast(self.device, self.precision):
            self.ref_cache = self.model.encode_references(refs)

    def audio_windows(self, speech: np.ndarray, timestamps: np.ndarray):
        """(n,) float32 16 kHz speech → the (N, 80, 16) float32 mel windows, each at its frame's own timestamp,
        made a chunk at a time (`windows[part]`)."""
        from lipsync_cli import audio, timing

        mel = audio.log_mel(speech)  # (80, 80 a second) float32: 1.5 MB per minute of speech
        return timing.FrameWindows(lambda times: timing.mel_windows(mel, times), timestamps)

    def face_track(self, track, frame_shape: tuple):
        """The boxes this family crops at: the tracked (padded, smoothed) boxes as they are."""
        return track

    def crop(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame → (S, S, 3) uint8 RGB model crop."""
        from lipsync_cli.faces.crop import crop

        return crop(frame, box, self.size)

    def __call__(self, mels: np.ndarray, crops: np.ndarray,
                 sources: Optional[np.ndarray] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """mels (N, 80, 16) float32 (MuseTalk: (N, 50, 384) whisper contexts), crops (N, S, S, 3) uint8 RGB,
        sources (N,) source-frame indices (MuseTalk's per-frame references) → (generated (N, S, S, 3) uint8
        RGB, masks (N, S, S) float32 in [0, 1] or None). Halves the batch on out-of-memory instead of failing."""
        outs, masks, start = [], [], 0
        while start < len(crops):
            end = min(start + self.batch_size, len(crops))
            try:
                part = {} if sources is None else {"sources": sources[start:end]}
                rgb, mask = self._run(mels[start:end], crops[start:end], **part)
            except (RuntimeError, MemoryError) as err:
                if not is_oom(err) or self.batch_size == 1:
                    raise
                self.batch_size = max(1, self.batch_size // 2)
                log.warning("out of memory: generator batch size lowered to %d", self.batch_size)
                _empty_cache(self.device)
                continue
            outs.append(rgb)
            masks.append(mask)
            start = end
        return np.concatenate(outs), (np.concatenate(masks) if self.predicts_mask else None)

    def _run(self, mels: np.ndarray, crops: np.ndarray, sources: Optional[np.ndarray] = None):
        import torch

        from lipsync_cli.models.blocks import masked_target

        faces = _to_tensor(crops, self.device)  # (B, 3, S, S) float32 in [0, 1], RGB
        mel = torch.from_numpy(np.ascontiguousarray(mels)).to(self.device).unsqueeze(1)  # (B, 1, 80, 16)
        masked = masked_target(faces)
        mask = None

        def forward(precision: str):
            nonlocal mask
            with torch.inference_mode(), autocast(self.device, precision):
                if self.arch == "refs":
                    rgb, mask = self.model(mel, masked, ref_cache=self.ref_cache)
                    return rgb
                pair = torch.cat([masked, faces], dim=1).contiguous(memory_format=memory_format(self.arch))
                return self.model(mel, pair)

        rgb = finite_or_fp32(forward, self.device, self.precision, f"the {self.arch} generator")
        rgb = (rgb.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        if mask is not None:
            from lipsync_cli.models.refs import gaussian_blur

            with torch.inference_mode():  # blurred as in training's blend, so dubbing pastes what the losses saw
                mask = gaussian_blur(mask.float().clamp(0, 1))[:, 0].cpu().numpy()
        return rgb, mask


def _to_tensor(crops: np.ndarray, device: str):
    """(..., S, S, 3) uint8 RGB → (..., 3, S, S) float32 in [0, 1] on device."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(crops)).to(device)
    return t.movedim(-1, -3).float().div_(255)


def _empty_cache(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def load_generator(name_or_path: str, device: str = "auto", precision: str = "auto", batch_size: int = 32,
                   musetalk=None) -> Generator:
    """Resolve a weights name or path, load it as a generator, place it on the chosen device.

    `musetalk` (a config.MuseTalkConfig) applies when the name is "musetalk" or the path a folder."""
    from lipsync_cli import weights
    from lipsync_cli.models import load_checkpoint
    from lipsync_cli.musetalk.files import is_musetalk

    dev = pick_device(device)
    if is_musetalk(name_or_path):
        from lipsync_cli.config import MuseTalkConfig
        from lipsync_cli.musetalk.generator import load_musetalk

        return load_musetalk(str(name_or_path), dev, precision, batch_size, musetalk or MuseTalkConfig())
    path = weights.resolve(name_or_path)
    model = load_checkpoint(path, device=dev, expect="generator")
    model = model.to(memory_format=memory_format(model.arch))
    return Generator(model=model, device=dev, precision=pick_precision(precision, dev), batch_size=batch_size)
