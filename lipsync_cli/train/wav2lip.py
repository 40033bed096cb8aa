"""The Wav2Lip generator task: re-draw the lower half of 5 frames from a reference and the audio.

Losses (Wav2Lip's): L1 reconstruction; the frozen expert's sync loss on the generated lower
halves, weighted 0 until the validation sync loss falls below gen_cfg.sync_threshold and then
gen_cfg.sync_weight (schedules.sync_loss_enabled); with --gan the visual-quality discriminator's
"looks real" loss (gen_cfg.disc_weight), the discriminator itself trained by its own Adam
(gen_cfg.disc_lr, gen_cfg.disc_betas) on real targets vs detached generated frames.
The checkpoint's model is the generator, so RUN_DIR/best.pt is what `lipsync dub --model` takes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lipsync_cli.config import GeneratorConfig, TrainConfig
from lipsync_cli.data.dataset import ClipStore, GeneratorDataset, stack_frames
from lipsync_cli.errors import InputError
from lipsync_cli.generators.wav2lip.network import Wav2Lip
from lipsync_cli.models import load_checkpoint
from lipsync_cli.models.blocks import WAV2LIP_SIZE, lower_half
from lipsync_cli.models.discriminator import QualityDiscriminator
from lipsync_cli.train.losses import bce, sync_bce
from lipsync_cli.train.schedules import generator_weights, sync_loss_enabled
from lipsync_cli.train.trainer import Task
from lipsync_cli.weights import resolve

NETWORK_SIZE = WAV2LIP_SIZE


class GeneratorTask(Task):
    name = "wav2lip generator"
    main = "generator"
    best_metric = "l1"  # reconstruction L1: comparable before and after the sync loss switches on

    def __init__(self, cfg: GeneratorConfig, expert: str):
        super().__init__()
        self.cfg, self.expert = cfg, expert
        self.config = cfg
        self.sync_on = False

    def datasets(self, data: Path, seed: int) -> tuple:
        stores = [ClipStore(data, split) for split in ("train", "val")]
        require_size(stores[0], NETWORK_SIZE, "the Wav2Lip generator")
        return tuple(GeneratorDataset(store, seed) for store in stores)

    def build(self, device: torch.device, cfg: TrainConfig) -> None:
        expert = load_checkpoint(resolve(self.expert), device=str(device), expect="expert")
        expert.requires_grad_(False)  # frozen: only a judge of the generator's output
        generator = Wav2Lip().to(device)
        self.nets = {"generator": generator, "expert": expert}
        self.trainable = ["generator"]
        self.optimizers = {"generator": torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=cfg.betas)}
        if self.cfg.use_gan:
            disc = QualityDiscriminator().to(device)
            self.nets["disc"] = disc
            self.trainable.append("disc")
            self.optimizers["disc"] = torch.optim.Adam(disc.parameters(), lr=self.cfg.disc_lr,
                                                       betas=self.cfg.disc_betas)

    def train_step(self, batch: dict, step: int, run) -> dict[str, float]:
        target, out = self._generate(batch, run)
        weights = generator_weights(self.sync_on, self.cfg.sync_weight, self.cfg.use_gan, self.cfg.disc_weight)
        l1 = (out.float() - target).abs().mean()
        loss = weights["l1"] * l1
        metrics = {"l1": l1.item(), "sync_weight": weights["sync"]}
        if self.sync_on:  # the expert's forward/backward is skipped while its weight is 0
            sync = self._sync_loss(out, batch["sync_mel"], run)
            loss = loss + weights["sync"] * sync
            metrics["sync"] = sync.item()
        if self.cfg.use_gan:
            adv = bce(self._disc(out, run), torch.ones(1, device=out.device))
            loss = loss + weights["adv"] * adv
            metrics["adv"] = adv.item()
        run.optimize(loss, self.optimizers["generator"])
        if self.cfg.use_gan:
            metrics["disc"] = self._disc_step(target, out.detach(), run)
        return metrics

    def val_step(self, batch: dict, run) -> dict[str, float]:
        target, out = self._generate(batch, run)
        error = (out.float() - target).abs()  # (B, 3, T, S, S)
        half = target.shape[-2] // 2
        return {"l1": error.mean().item(),
                "l1_masked": error[..., half:, :].mean().item(),  # only the half the generator must invent
                "sync": self._sync_loss(out, batch["sync_mel"], run).item()}

    def after_validation(self, metrics: dict[str, float], step: int) -> None:
        self.sync_on = sync_loss_enabled(self.sync_on, metrics["sync"], self.cfg.sync_threshold)

    def state_dict(self) -> dict:
        return {"sync_on": self.sync_on}

    def load_state_dict(self, state: dict) -> None:
        self.sync_on = bool(state.get("sync_on", False))

    def _generate(self, batch: dict, run) -> tuple[torch.Tensor, torch.Tensor]:
        """-> target, generated: (B, 3, 5, S, S) float in [0, 1], RGB."""
        target = batch["target"].float() / 255
        faces = torch.cat([batch["masked"], batch["ref"]], dim=1).float() / 255  # (B, 6, 5, S, S)
        with run.autocast():
            out = self.nets["generator"](batch["mel"], faces)  # mel (B, 5, 1, 80, 16) -> (B, 3, 5, S, S)
        return target, out

    def _sync_loss(self, out: torch.Tensor, sync_mel: torch.Tensor, run) -> torch.Tensor:
        """The expert's BCE of "in sync" for the generated window (gradients reach the generator)."""
        faces = stack_frames(lower_half(out))  # (B, 15, S/2, S), as ExpertDataset stacks
        with run.autocast():
            audio_emb, face_emb = self.nets["expert"](sync_mel, faces)
        return sync_bce(audio_emb, face_emb, torch.ones(len(faces), device=faces.device))[0]

    def _disc(self, faces: torch.Tensor, run) -> torch.Tensor:
        with run.autocast():
            return self.nets["disc"](faces).flatten()  # (T*B,) time-major P(real)

    def _disc_step(self, real: torch.Tensor, fake: torch.Tensor, run) -> float:
        """One discriminator update on real and generated windows in a single forward (one DDP pass)."""
        b, frames = real.shape[0], real.shape[2]
        scores = self._disc(torch.cat([real, fake.float()]), run)  # rows t*2B + i: i < B real
        labels = torch.cat([torch.ones(b), torch.zeros(b)]).repeat(frames).to(scores.device)
        loss = bce(scores, labels)
        run.optimize(loss, self.optimizers["disc"])
        return loss.item()


def require_size(store: ClipStore, size: int, what: str) -> None:
    if store.size != size:
        raise InputError(f"{what} takes {size}x{size} face crops but {store.root} has {store.size}x{store.size}: "
                         f"re-run `lipsync preprocess --size {size}`")
