"""Wav2Lip inference: masked target ‖ the frame itself as reference → generated crop, in channels_last."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from lipsync_cli.device import autocast, finite_or_fp32, pick_precision
from lipsync_cli.generators.base import Generator, to_tensor, to_uint8
from lipsync_cli.models.blocks import masked_target

ARCH = "wav2lip"  # the architecture name its checkpoints carry
# bf16 autocast may replace fp32 only while the generated crops stay this close to fp32's (uint8 levels of 255).
# Measured on the Wav2Lip generator with the conformance weights, a real face and real speech (2-core AMD EPYC,
# 2026-12-01): max 2, mean 0.36 levels; tests/test_inference_precision.py holds every build to these bounds.
BF16_MAX_LEVELS, BF16_MEAN_LEVELS = 4, 1.0
# The Wav2Lip generator's convolutions run 1.27-1.34x faster in channels_last on a 2-core CPU (fp32, batch 32:
# 3.3 -> 4.2 frames/s measured 2026-12-02 under load; 8.6 -> 11.5 in issue 13) with outputs equal to 6e-8.
CHANNELS_LAST = True


def memory_format():
    return torch.channels_last if CHANNELS_LAST else torch.contiguous_format


class Wav2LipGenerator(Generator):
    def _run(self, mels: np.ndarray, crops: np.ndarray, sources: Optional[np.ndarray] = None):
        """mels (B, 80, 16) float32, crops (B, 96, 96, 3) uint8 RGB → ((B, 96, 96, 3) uint8 RGB, None)."""
        faces = to_tensor(crops, self.device)  # (B, 3, S, S) float32 in [0, 1], RGB
        mel = torch.from_numpy(np.ascontiguousarray(mels)).to(self.device).unsqueeze(1)  # (B, 1, 80, 16)
        pair = torch.cat([masked_target(faces), faces], dim=1).contiguous(memory_format=memory_format())
        def forward(precision: str):
            with torch.inference_mode(), autocast(self.device, precision):
                return self.model(mel, pair)

        return to_uint8(finite_or_fp32(forward, self.device, self.precision, "the Wav2Lip generator")), None


def claims(name_or_path: str) -> bool:
    return False  # Wav2Lip comes as a checkpoint file, which names its architecture


def from_checkpoint(model, device: str, precision: str, batch_size: int) -> Wav2LipGenerator:
    model = model.to(memory_format=memory_format())
    return Wav2LipGenerator(model=model, device=device, precision=pick_precision(precision, device),
                            batch_size=batch_size)
