"""The lip-sync expert task (Wav2Lip's SyncNet): is this mel window in sync with these 5 mouths?

Binary cross-entropy on the cosine similarity of the audio and face embeddings; positives are a
window's own mel window, negatives the window of a start >= min_negative_offset frames away in
the same clip (same speaker, same recording: only the timing differs). Accuracy thresholds the
similarity at 0.5.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lipsync_cli.config import ExpertConfig, TrainConfig
from lipsync_cli.data.dataset import ClipStore, ExpertDataset, stack_frames
from lipsync_cli.models.lipsync_expert import SyncNet
from lipsync_cli.train.losses import sync_bce
from lipsync_cli.train.trainer import Task
from lipsync_cli.train.wav2lip import NETWORK_SIZE, require_size


class ExpertTask(Task):
    name = "expert"
    main = "expert"
    best_metric = "loss"

    def __init__(self, cfg: ExpertConfig):
        super().__init__()
        self.cfg = self.config = cfg

    def datasets(self, data: Path, seed: int) -> tuple:
        stores = [ClipStore(data, split) for split in ("train", "val")]
        require_size(stores[0], NETWORK_SIZE, "the Wav2Lip-compatible expert")
        return tuple(ExpertDataset(store, seed, self.cfg.min_negative_offset) for store in stores)

    def build(self, device: torch.device, cfg: TrainConfig) -> None:
        net = SyncNet().to(device)
        self.nets = {"expert": net}
        self.trainable = ["expert"]
        self.optimizers = {"expert": torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=cfg.betas)}

    def _forward(self, batch: dict, run) -> tuple[torch.Tensor, dict[str, float]]:
        faces = stack_frames(batch["faces"].float() / 255)  # (B, 15, S/2, S) float32 in [0, 1], RGB
        with run.autocast():
            audio_emb, face_emb = self.nets["expert"](batch["mel"], faces)  # (B, 512) each, unit norm
        loss, prob = sync_bce(audio_emb, face_emb, batch["label"])
        accuracy = ((prob > 0.5).float() == batch["label"]).float().mean()
        return loss, {"loss": loss.item(), "acc": accuracy.item()}

    def train_step(self, batch: dict, step: int, run) -> dict[str, float]:
        loss, metrics = self._forward(batch, run)
        run.optimize(loss, self.optimizers["expert"])
        return metrics

    def val_step(self, batch: dict, run) -> dict[str, float]:
        return self._forward(batch, run)[1]
