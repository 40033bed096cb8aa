"""Training samples for the reference-attention generator: 5-frame windows with their K references.

One sample is WINDOW consecutive frames of a clip (so the frozen expert can judge the window), the mel
window of each frame, the expert's mel window, the landmark masks, and K reference crops of the same clip
chosen by KMeans outside the window (lipsync_cli/generators/refs/kmeans_references.py). Indexing, memory-mapping and the
(seed, epoch, index) seeding are data/dataset.py's, shared with the other generator.
"""

from __future__ import annotations

import numpy as np
import torch

from lipsync_cli.config import RefsConfig
from lipsync_cli.data.dataset import WINDOW, ClipStore, _WindowDataset
from lipsync_cli.models.blocks import masked_target
from lipsync_cli.generators.refs.kmeans_references import ClipReferences, augmented_copies, blur_references
from lipsync_cli.train.refs_losses import landmark_mask


class RefsDataset(_WindowDataset):
    """Item: {"target": (3, 5, S, S) uint8 RGB frames start..start+4,
              "masked": the same with rows [S/2, S) zeroed (a fixed mask: a landmark-shaped one would leak
                        the mouth shape),
              "target_mask": (1, 5, S, S) uint8 in {0, 1} the landmark mask of each frame,
              "refs": (K', 3, S, S) uint8 RGB references (K' = K, or 1 in the random-reference ablation),
              "mel": (5, 1, 80, 16) float32 each frame's window, "sync_mel": (1, 80, 16) the expert's}."""

    def __init__(self, store: ClipStore, cfg: RefsConfig, seed: int = 0, train: bool = True):
        super().__init__(store, seed, min_starts=2)  # ≥ 6 frames: a reference outside the window always exists
        self.cfg, self.train = cfg, train
        self._refs: dict[int, ClipReferences] = {}
        self._landmarks: dict[int, np.ndarray] = {}

    def __getitem__(self, idx: int) -> dict:
        clip, start = (int(v) for v in self.index[idx])
        rng = self._rng(idx)
        frames = np.arange(start, start + WINDOW)
        target = self._frames(clip, frames)
        masked = masked_target(target)
        masks = [landmark_mask(lm, self.store.size, self.cfg.mask_dilate) for lm in self.landmarks(clip)[frames]]
        mels = self._mels(clip, frames)
        refs = torch.from_numpy(np.ascontiguousarray(self.references(clip, start, rng).transpose(0, 3, 1, 2)))
        return {"target": target, "masked": masked, "target_mask": torch.from_numpy(np.stack(masks)[None]),
                "refs": refs, "mel": mels, "sync_mel": mels[0]}

    def landmarks(self, clip: int) -> np.ndarray:
        """(N, 68, 2) float32 in crop pixels, NaN where unknown."""
        if clip not in self._landmarks:
            self._landmarks[clip] = np.load(self.store.root / "clips" / self.store.ids[clip] / "landmarks.npy")
        return self._landmarks[clip]

    def references(self, clip: int, start: int, rng: np.random.Generator) -> np.ndarray:
        """(K or 1, S, S, 3) uint8 RGB: KMeans picks outside the window, filled to K with affine-augmented
        copies; blurred with a random sigma when training."""
        faces = self.store.faces(clip)
        if self.cfg.reference_mode == "random":  # the 1-random-reference ablation
            outside = np.setdiff1d(np.arange(len(faces)), np.arange(start, start + WINDOW))
            crops = np.asarray(faces[[int(rng.choice(outside))]])
        else:
            if clip not in self._refs:  # KMeans once per clip (per worker), on first use
                self._refs[clip] = ClipReferences(self.landmarks(clip), faces, self.cfg.n_refs, self.seed)
            idx, missing = self._refs[clip].pick(start, WINDOW, rng)
            crops = np.asarray(faces[idx])
            crops = np.concatenate([crops, augmented_copies(crops, missing, rng)])
        return blur_references(crops, rng, self.cfg.ref_blur_sigma) if self.train else crops

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_refs": {}, "_landmarks": {}}  # workers recompute what they need
