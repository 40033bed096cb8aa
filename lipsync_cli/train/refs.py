"""Training task of the reference-attention generator (issue 5) for the shared Trainer.

Two stages over max_steps (stage 1 takes RefsConfig.stage1_fraction of them):
- stage 1: L1 inside the landmark mask (1), VGG perceptual (0.5), mask BCE (1); the expert sync loss is 0
  until validation masked L1 and perceptual loss are both below their thresholds, then 0.01 (a latch);
- stage 2: the same plus expert sync 0.1 and the multi-frame discriminator's adversarial loss 0.01.
Adam for generator and discriminator at TrainConfig.lr (2e-4 for refs: config.train_defaults), the LR falling
linearly to 0 over the last anneal_fraction of each stage. The schedule is pure functions of the step (and
of the latched flag the checkpoint keeps), so a resumed run follows the unbroken run's schedule.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from lipsync_cli.config import GeneratorConfig, RefsConfig, TrainConfig
from lipsync_cli.data.dataset import ClipStore
from lipsync_cli.errors import InputError
from lipsync_cli.generators.refs.network import RefsGenerator
from lipsync_cli.models import load_checkpoint
from lipsync_cli.models.blocks import lower_half
from lipsync_cli.models.checkpoint import unwrap
from lipsync_cli.models.refs_discriminator import RefsDiscriminator
from lipsync_cli.timing import EXPERT_FRAMES
from lipsync_cli.train import refs_losses as L
from lipsync_cli.train.refs_data import RefsDataset
from lipsync_cli.train.trainer import Task
from lipsync_cli.weights import resolve

# --- schedule (pure functions) ------------------------------------------------------------------------------


def stage_bounds(stage: int, max_steps: int, stage1_fraction: float) -> tuple[int, int]:
    """(first, last) step of stage 1 or 2; steps count from 1 (the Trainer's first update)."""
    split = max(1, round(max_steps * stage1_fraction))
    return (1, split) if stage == 1 else (split + 1, max_steps)


def stage_at(step: int, max_steps: int, stage1_fraction: float) -> int:
    return 1 if step <= stage_bounds(1, max_steps, stage1_fraction)[1] else 2


def lr_scale(step: int, max_steps: int, cfg: RefsConfig) -> float:
    """LR multiplier: 1 inside a stage, then linear towards 0 over its last anneal_fraction of steps (the
    last step of a stage still moves: 1/ramp)."""
    first, last = stage_bounds(stage_at(step, max_steps, cfg.stage1_fraction), max_steps, cfg.stage1_fraction)
    ramp = max(1, round((last - first + 1) * cfg.anneal_fraction))
    return min(1.0, (last - step + 1) / ramp)


def loss_weights(stage: int, expert_on: bool, cfg: RefsConfig, gan: bool = True) -> dict[str, float]:
    """The alphas of each loss in a stage; expert_on: stage 1 passed its validation thresholds; gan: stage 2
    trains against the discriminator (GeneratorConfig.use_gan)."""
    expert = cfg.stage2_expert_weight if stage == 2 else (cfg.stage1_expert_weight if expert_on else 0.0)
    return {"l1": cfg.l1_weight, "perceptual": cfg.perceptual_weight if cfg.perceptual != "off" else 0.0,
            "mask": cfg.mask_weight if cfg.mask_head else 0.0, "expert": expert,
            "adv": cfg.adv_weight if stage == 2 and gan else 0.0}


def passes_thresholds(val: dict[str, float], cfg: RefsConfig) -> bool:
    """Stage 1 switches the expert loss on once validation L1 and perceptual loss are both low enough."""
    perceptual_ok = cfg.perceptual == "off" or val["perceptual"] < cfg.perceptual_threshold
    return val["l1"] < cfg.l1_threshold and perceptual_ok


# --- the task -----------------------------------------------------------------------------------------------


class RefsTask(Task):
    """Nets: "generator" (saved as the checkpoint's model), "discriminator" (unless GeneratorConfig.use_gan is off) and
    the frozen "expert" (loaded from the --expert checkpoint). Batches come from train.refs_data.RefsDataset."""

    name = "refs generator"
    main = "generator"
    best_metric = "l1"  # validation masked L1 picks best.pt

    def __init__(self, gen_cfg: GeneratorConfig, expert: str | None):
        super().__init__()
        self.gen_cfg, self.cfg, self.expert_path = gen_cfg, gen_cfg.refs, expert
        self.config = gen_cfg
        self.expert_on = False  # stage 1's latch, saved with the checkpoint
        self.max_steps = 1
        self.perceptual = None

    def datasets(self, data: Path, seed: int) -> tuple:
        train, val = ClipStore(data, "train"), ClipStore(data, "val")
        self.size = train.size  # the crops decide the network's resolution
        if self.size % 32:
            raise InputError(f"the refs generator needs crops whose side is a multiple of 32, but {data} has "
                             f"{self.size}x{self.size}: re-run `lipsync preprocess --size 96` (or 128, 256)")
        return RefsDataset(train, self.cfg, seed, train=True), RefsDataset(val, self.cfg, seed, train=False)

    def build(self, device: torch.device, cfg: TrainConfig) -> None:
        c = self.cfg
        n_refs = 1 if c.reference_mode == "random" else c.n_refs
        self.max_steps = cfg.max_steps
        self.nets = {"generator": RefsGenerator(self.size, n_refs, c.base, c.attention, c.mask_head, c.residual)}
        if self.gen_cfg.use_gan:
            self.nets["discriminator"] = RefsDiscriminator(self.size, EXPERT_FRAMES, c.base)
        self.trainable = list(self.nets)
        self.optimizers = {"generator": torch.optim.Adam(self.nets["generator"].parameters(), cfg.lr, betas=cfg.betas)}
        if self.gen_cfg.use_gan:
            self.optimizers["discriminator"] = torch.optim.Adam(self.nets["discriminator"].parameters(), cfg.lr,
                                                                betas=self.gen_cfg.disc_betas)
        if self.expert_path:
            self.nets["expert"] = load_checkpoint(resolve(self.expert_path), device=str(device), expect="expert")
            self.nets["expert"].requires_grad_(False)
        if c.perceptual != "off":
            self.perceptual = L.Perceptual(c.perceptual)
        for net in (*self.nets.values(), self.perceptual):
            if net is not None:
                net.to(device)

    def train_step(self, batch: dict, step: int, run) -> dict[str, float]:
        """One generator update, then in stage 2 one discriminator update (in fp32: the R1 gradient)."""
        stage = stage_at(step, self.max_steps, self.cfg.stage1_fraction)
        weights = loss_weights(stage, self.expert_on, self.cfg, self.gen_cfg.use_gan)
        with run.autocast():
            rgb, mask = self.generate(batch)
            out = self.losses(batch, rgb, mask, weights)
        run.optimize(out["total"], self.optimizers["generator"])
        logs = {name: value.item() for name, value in out.items() if name != "blended"}
        if weights["adv"] > 0:
            real = lower_half(images(batch["target"]))
            d_loss = L.discriminator_loss(self.nets["discriminator"], real, lower_half(out["blended"].float()),
                                          self.cfg.r1_gamma)
            run.optimize(d_loss, self.optimizers["discriminator"])
            logs["disc"] = d_loss.item()
        return {**logs, "stage": float(stage), "expert_on": float(self.expert_on)}

    def generate(self, batch: dict) -> tuple[Tensor, Tensor | None]:
        """B windows of T frames → rgb (B, 3, T, S, S), mask (B, 1, T, S, S) or None; each window's K
        references are encoded once and shared by its T frames."""
        masked = images(batch["masked"])  # (B, 3, T, S, S) float in [0, 1]
        b, _, t = masked.shape[:3]
        rgb, mask = self.nets["generator"](batch["mel"].flatten(0, 1), frames_first(masked),
                                           refs=batch["refs"].float() / 255)
        return time_second(rgb, b), (time_second(mask, b) if mask is not None else None)

    def losses(self, batch: dict, rgb: Tensor, mask: Tensor | None, weights: dict) -> dict[str, Tensor]:
        """The terms with a non-zero weight, their weighted "total", and the "blended" X̂ (detached)."""
        target, target_mask = images(batch["target"]), batch["target_mask"].float()
        blended = blend_windows(rgb, target, mask if mask is not None else target_mask)
        terms = {"l1": lambda: L.masked_l1(rgb, target, target_mask),
                 "perceptual": lambda: self.perceptual(frames_first(blended), frames_first(target)),
                 "mask": lambda: L.mask_bce(mask, target_mask),
                 "expert": lambda: L.sync_loss(self.nets["expert"], batch["sync_mel"], blended),
                 # the bare module: this pass only feeds the generator's gradient (no DDP sync wanted)
                 "adv": lambda: L.generator_adv_loss(unwrap(self.nets["discriminator"])(lower_half(blended)))}
        usable = {n for n in terms if weights[n] > 0 and (n != "expert" or "expert" in self.nets)}
        out = {name: terms[name]() for name in terms if name in usable}
        out["total"] = sum(weights[name] * out[name] for name in usable)
        out["blended"] = blended.detach()
        return out

    def val_step(self, batch: dict, run) -> dict[str, float]:
        with run.autocast():
            rgb, mask = self.generate(batch)
        rgb = rgb.float()
        target, target_mask = images(batch["target"]), batch["target_mask"].float()
        blended = blend_windows(rgb, target, mask.float() if mask is not None else target_mask)
        metrics = {"l1": float(L.masked_l1(rgb, target, target_mask))}
        if self.perceptual is not None:
            metrics["perceptual"] = float(self.perceptual(frames_first(blended), frames_first(target)))
        if mask is not None:
            metrics["mask_iou"] = L.mask_iou(mask.float(), target_mask)
        if "expert" in self.nets:
            metrics["sync"] = float(L.sync_loss(self.nets["expert"], batch["sync_mel"], blended))
        return metrics

    def after_validation(self, metrics: dict[str, float], step: int) -> None:
        if stage_at(max(step, 1), self.max_steps, self.cfg.stage1_fraction) == 1:
            self.expert_on = self.expert_on or passes_thresholds(metrics, self.cfg)

    def lr_factor(self, step: int, max_steps: int) -> float:
        return lr_scale(step, max_steps, self.cfg)

    def state_dict(self) -> dict:
        return {"expert_on": self.expert_on}

    def load_state_dict(self, state: dict) -> None:
        self.expert_on = bool(state.get("expert_on", False))


def blend_windows(rgb: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """X̂ of (B, C, T, S, S) windows: the blend is a 2-D operation, done frame by frame."""
    b = rgb.shape[0]
    return time_second(L.blend(frames_first(rgb), frames_first(target), frames_first(mask)), b)


def images(x: Tensor) -> Tensor:
    """uint8 in [0, 255] → float32 in [0, 1] (datasets ship uint8: 4x less to move to the device)."""
    return x.float() / 255


def frames_first(x: Tensor) -> Tensor:
    """(B, C, T, H, W) → (B*T, C, H, W): every frame a sample of the 2-D networks."""
    return x.transpose(1, 2).flatten(0, 1)


def time_second(x: Tensor, b: int) -> Tensor:
    """(B*T, C, H, W) → (B, C, T, H, W), the inverse of frames_first."""
    return x.view(b, -1, *x.shape[1:]).transpose(1, 2)


