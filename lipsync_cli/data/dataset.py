"""Training samples read from the dataset layout (data/preprocess.py), for the expert and the generators.

Faces stay memory-mapped (np.load(mmap_mode="r")): a sample copies only its 5 frames, so a
dataset of many hours costs no RAM and no start-up time. Images leave the datasets as uint8
(4x less to move to the GPU); tasks turn them into float in [0, 1] on the device.

Every random choice of a sample (positive or negative, which negative, which references) comes
from a generator seeded by (seed, epoch, index): the same index gives the same sample in every
DataLoader worker, every DDP rank and after --resume, and validation samples never change.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lipsync_cli.errors import InputError
from lipsync_cli.models.blocks import lower_half, masked_target
from lipsync_cli.timing import EXPERT_FRAMES, MEL_WINDOW, mel_windows, window_starts

WINDOW = EXPERT_FRAMES  # consecutive frames per sample (the expert judges 5 at once; 0.2 s at 25 fps)


class ClipStore:
    """The clips of one split of a dataset folder; faces memory-mapped, opened lazily per process."""

    def __init__(self, root: Path, split: str):
        self.root = Path(root)
        manifest_path = self.root / "manifest.json"
        if not manifest_path.is_file():
            raise InputError(f"{manifest_path} not found: pass a folder written by `lipsync preprocess`")
        manifest = json.loads(manifest_path.read_text())
        self.size = int(manifest["size"])  # side S of the square crops
        self.fps = float(manifest["fps"])
        self.ids = [c["id"] for c in manifest["clips"] if c["split"] == split]
        self._faces: dict[int, np.ndarray] = {}
        self._mels: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def faces(self, clip: int) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB, memory-mapped."""
        if clip not in self._faces:
            self._faces[clip] = np.load(self.root / "clips" / self.ids[clip] / "faces.npy", mmap_mode="r")
        return self._faces[clip]

    def mel(self, clip: int) -> np.ndarray:
        """(80, T) float32 log-mel of the clip's audio."""
        if clip not in self._mels:
            self._mels[clip] = np.load(self.root / "clips" / self.ids[clip] / "mel.npy", mmap_mode="r")
        return self._mels[clip]

    def n_starts(self, clip: int) -> int:
        """How many WINDOW-frame windows start in this clip with every frame's mel window inside
        the audio (windows past the audio's end would see padding, never real sound)."""
        n_frames = self.faces(clip).shape[0]
        starts = window_starts(np.arange(n_frames) / self.fps)
        fits = int(np.sum(starts + MEL_WINDOW <= self.mel(clip).shape[1]))  # frames whose window fits
        return max(0, min(n_frames, fits) - WINDOW + 1)

    def __getstate__(self) -> dict:
        # memory maps are re-opened in each DataLoader worker instead of being pickled as copies
        return {**self.__dict__, "_faces": {}, "_mels": {}}


class _WindowDataset(Dataset):
    """Indexes every usable window start of every clip with at least min_starts of them."""

    def __init__(self, store: ClipStore, seed: int, min_starts: int):
        self.store, self.seed, self.epoch = store, seed, 0
        counts = [store.n_starts(c) for c in range(len(store))]
        self.clips = [c for c, n in enumerate(counts) if n >= min_starts]
        self.n_starts = {c: counts[c] for c in self.clips}
        # (len, 2) int64 rows of (clip, start frame)
        pairs = [(c, s) for c in self.clips for s in range(counts[c])]
        self.index = np.array(pairs, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        """New random choices each epoch (called by the Trainer before each pass)."""
        self.epoch = epoch

    def _rng(self, idx: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, idx))

    def _mels(self, clip: int, frames: np.ndarray) -> torch.Tensor:
        """(len(frames), 1, 80, 16) float32: the mel window of each frame, as dubbing pairs them."""
        return torch.from_numpy(mel_windows(self.store.mel(clip), frames / self.store.fps)).unsqueeze(1)

    def _frames(self, clip: int, frames) -> torch.Tensor:
        """(3, len(frames), S, S) uint8 RGB: channels first, time second, as the networks take them."""
        faces = np.asarray(self.store.faces(clip)[frames])  # (T, S, S, 3); copies only these frames
        return torch.from_numpy(np.ascontiguousarray(faces.transpose(3, 0, 1, 2)))


class ExpertDataset(_WindowDataset):
    """Samples for the lip-sync expert; half positives, half negatives.

    Item: {"faces": (3, 5, S/2, S) uint8 RGB lower halves of 5 consecutive crops,
           "mel": (1, 80, 16) float32 window of the first frame (positive) or of a start at
                   least min_offset frames away in the same clip (negative),
           "label": () float32, 1 = in sync}.
    """

    def __init__(self, store: ClipStore, seed: int = 0, min_offset: int = 5):
        # a clip needs starts on both sides of a min_offset band for every window to have a negative
        super().__init__(store, seed, min_starts=2 * min_offset)
        self.min_offset = min_offset

    def __getitem__(self, idx: int) -> dict:
        clip, start = (int(v) for v in self.index[idx])
        rng = self._rng(idx)
        positive = bool(rng.random() < 0.5)
        audio_start = start if positive else self._negative(start, self.n_starts[clip], rng)
        faces = lower_half(self._frames(clip, slice(start, start + WINDOW)))  # (3, 5, S/2, S)
        return {"faces": faces, "mel": self._mels(clip, np.array([audio_start]))[0],
                "label": torch.tensor(float(positive))}

    def _negative(self, start: int, n: int, rng: np.random.Generator) -> int:
        """A start uniformly among [0, start - off] and [start + off, n - 1]."""
        left = max(0, start - self.min_offset + 1)
        right = max(0, n - (start + self.min_offset))
        pick = int(rng.integers(left + right))
        return pick if pick < left else start + self.min_offset + (pick - left)


class GeneratorDataset(_WindowDataset):
    """Samples for the generators: a 5-frame window to re-draw and references to draw it from.

    Item: {"target": (3, 5, S, S) uint8 RGB frames start..start+4,
           "masked": the same with the lower half (rows S/2..S) zeroed, what the generator sees,
           "ref": (3, 5, S, S) uint8 RGB random frames of the clip at least ref_gap frames from
                  the window (so the answer cannot be copied),
           "mel": (5, 1, 80, 16) float32 the window of each target frame,
           "sync_mel": (1, 80, 16) float32 the expert's window (of the first frame)}.
    """

    def __init__(self, store: ClipStore, seed: int = 0, ref_gap: int = 5):
        # with 2 * ref_gap starts, every window has reference frames on at least one side
        super().__init__(store, seed, min_starts=2 * ref_gap)
        self.ref_gap = ref_gap

    def __getitem__(self, idx: int) -> dict:
        clip, start = (int(v) for v in self.index[idx])
        rng = self._rng(idx)
        frames = np.arange(start, start + WINDOW)
        refs = np.sort(rng.choice(self._far_frames(clip, start), size=WINDOW))
        target = self._frames(clip, frames)
        masked = masked_target(target)
        mels = self._mels(clip, frames)
        return {"target": target, "masked": masked, "ref": self._frames(clip, refs), "mel": mels,
                "sync_mel": mels[0]}

    def _far_frames(self, clip: int, start: int) -> np.ndarray:
        """Frames at least ref_gap frames from every frame of the window starting at `start`."""
        n = self.store.faces(clip).shape[0]
        frames = np.arange(n)
        return frames[(frames <= start - self.ref_gap) | (frames >= start + WINDOW - 1 + self.ref_gap)]


def stack_frames(faces: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B, 3T, H, W), frame-major (frame 0's RGB, then frame 1's...): the one
    definition of how the expert sees a window, used for real and for generated faces alike."""
    b, c, t, h, w = faces.shape
    return faces.transpose(1, 2).reshape(b, t * c, h, w)
