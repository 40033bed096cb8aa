"""refs inference: the clip's K references encoded once, then masked target + audio → crop and blend mask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from lipsync_cli.device import autocast, finite_or_fp32, pick_precision
from lipsync_cli.generators.base import Generator, to_tensor, to_uint8
from lipsync_cli.generators.refs.kmeans_references import select_references
from lipsync_cli.generators.refs.network import gaussian_blur
from lipsync_cli.models.blocks import masked_target

ARCH = "refs"  # the architecture name its checkpoints carry


@dataclass
class ReferenceAttentionGenerator(Generator):
    ref_cache: Optional[object] = None  # the encoded references of the current clip (network.RefCache)

    @property
    def predicts_mask(self) -> bool:
        return bool(self.model.config.get("mask_head", True))

    def reference_plan(self, track) -> tuple[np.ndarray, None]:
        """The K KMeans reference frames of the clip; all K attend for every frame (no assignment)."""
        return select_references(track.landmarks, track.boxes, k=self.n_refs), None

    def set_references(self, crops: np.ndarray, assign: Optional[np.ndarray] = None) -> None:
        """Encode the clip's K reference crops (K, S, S, 3) uint8 RGB once; every later batch reuses them."""
        refs = to_tensor(crops, self.device).unsqueeze(0)  # (1, K, 3, S, S) float32 in [0, 1]
        with torch.inference_mode(), autocast(self.device, self.precision):
            self.ref_cache = self.model.encode_references(refs)

    def _run(self, mels: np.ndarray, crops: np.ndarray, sources: Optional[np.ndarray] = None):
        """mels (B, 80, 16) float32, crops (B, 96, 96, 3) uint8 RGB → ((B, 96, 96, 3) uint8 RGB,
        (B, 96, 96) float32 mask in [0, 1] or None without a mask head)."""
        faces = to_tensor(crops, self.device)  # (B, 3, S, S) float32 in [0, 1], RGB
        mel = torch.from_numpy(np.ascontiguousarray(mels)).to(self.device).unsqueeze(1)  # (B, 1, 80, 16)
        mask = None

        def forward(precision: str):
            nonlocal mask
            with torch.inference_mode(), autocast(self.device, precision):
                rgb, mask = self.model(mel, masked_target(faces), ref_cache=self.ref_cache)
            return rgb

        rgb = finite_or_fp32(forward, self.device, self.precision, "the refs generator")
        if mask is not None:
            with torch.inference_mode():  # blurred as in training's blend, so dubbing pastes what the losses saw
                mask = gaussian_blur(mask.float().clamp(0, 1))[:, 0].cpu().numpy()
        return to_uint8(rgb), mask


def claims(name_or_path: str) -> bool:
    return False  # refs comes as a checkpoint file, which names its architecture


def from_checkpoint(model, device: str, precision: str, batch_size: int) -> ReferenceAttentionGenerator:
    return ReferenceAttentionGenerator(model=model, device=device, precision=pick_precision(precision, device),
                                       batch_size=batch_size)
