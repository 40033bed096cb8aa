"""The Generator interface every family implements, and the batching every family shares.

The pipeline hands over face crops and audio features as numpy arrays and gets generated crops back.
What a family needs beyond that (its audio features, its face box and crop, its reference frames) is
one of the hooks below; the defaults are the Wav2Lip-style ones (80-band mel windows, the tracked box,
a square crop, no references), so a family overrides only what differs. This module imports no family.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np

from lipsync_cli import audio, blend, timing
from lipsync_cli.device import empty_cache, is_oom
from lipsync_cli.faces import crop as square_crop

log = logging.getLogger(__name__)


@dataclass
class Generator:
    """A loaded generator plus how to run it. Inputs/outputs are numpy, RGB uint8 crops.

    A family subclasses this and implements `_run` (one batch); the hooks have working defaults."""

    model: object  # the family's networks (torch.nn.Module in eval mode on `device`, or a holder of several)
    device: str
    precision: str
    batch_size: int

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
        """True when `_run` returns a blend mask with each crop (else the pipeline's fixed mask is used)."""
        return False

    # ------------------------------------------------------------ per-clip hooks (the pipeline calls these)

    def audio_windows(self, speech: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
        """(n,) float32 16 kHz speech → (N, 80, 16) float32 mel windows, each at its frame's own timestamp."""
        return timing.mel_windows(audio.log_mel(speech), timestamps)

    def face_track(self, track, frame_shape: tuple):
        """The boxes this family crops at: the tracked (padded, smoothed) boxes as they are."""
        return track

    def crop(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame → (S, S, 3) uint8 RGB model crop."""
        return square_crop.crop(frame, box, self.size)

    def crop_at(self, frame: np.ndarray, track, row: int) -> np.ndarray:
        """The model crop of source frame `row` of the clip's face track (families that crop by a box: `crop`)."""
        return self.crop(frame, track.boxes[row])

    def paste_back(self, frame: np.ndarray, generated: np.ndarray, mask: Optional[np.ndarray], track, row: int,
                   weight: float) -> np.ndarray:
        """frame (H, W, 3) uint8 RGB with the generated crop of source frame `row` blended in (weight 0..1)
        inside a feathered lower-face mask (or the crop's predicted `mask`, (S, S) float32)."""
        box, marks = track.boxes[row], track.landmarks[row]
        lower = blend.lower_face_mask(box, marks, frame.shape, predicted=mask)
        return blend.paste_back(frame, generated, box, lower * weight)

    def reference_plan(self, track) -> Optional[tuple[np.ndarray, Optional[np.ndarray]]]:
        """(picks, assign): the source frames whose crops become this clip's references, and which reference
        each source frame uses (None: all of them). None when the family takes no references."""
        return None

    def set_references(self, crops: np.ndarray, assign: Optional[np.ndarray] = None) -> None:
        """The clip's reference crops (R, S, S, 3) uint8 RGB, from `reference_plan`'s picks."""

    # ------------------------------------------------------------ batches

    def __call__(self, mels: np.ndarray, crops: np.ndarray,
                 sources: Optional[np.ndarray] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """mels: the `audio_windows` of these frames, crops (N, S, S, 3) uint8 RGB, sources (N,) source-frame
        indices (per-frame references) → (generated (N, S, S, 3) uint8 RGB, masks (N, S, S) float32 in [0, 1]
        or None). Halves the batch on out-of-memory instead of failing."""
        outs, masks, start = [], [], 0
        while start < len(crops):
            end = min(start + self.batch_size, len(crops))
            try:
                part = {} if sources is None else {"sources": sources[start:end]}
                rgb, mask = self._run(mels[start:end], crops[start:end], **part)
            except RuntimeError as err:
                if not is_oom(err) or self.batch_size == 1:
                    raise
                self.batch_size = max(1, self.batch_size // 2)
                log.warning("out of memory: generator batch size lowered to %d", self.batch_size)
                empty_cache(self.device)
                continue
            outs.append(rgb)
            masks.append(mask)
            start = end
        return np.concatenate(outs), (np.concatenate(masks) if self.predicts_mask else None)

    def _run(self, mels: np.ndarray, crops: np.ndarray, sources: Optional[np.ndarray] = None):
        """One batch → ((B, S, S, 3) uint8 RGB, (B, S, S) float32 masks or None)."""
        raise NotImplementedError


def to_tensor(crops: np.ndarray, device: str):
    """(..., S, S, 3) uint8 RGB → (..., 3, S, S) float32 in [0, 1] on device."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(crops)).to(device)
    return t.movedim(-1, -3).float().div_(255)


def to_uint8(rgb) -> np.ndarray:
    """(B, 3, S, S) float tensor in [0, 1] → (B, S, S, 3) uint8 numpy."""
    import torch

    return (rgb.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
