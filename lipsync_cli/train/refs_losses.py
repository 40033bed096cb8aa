"""Losses of the reference-attention generator (issue 5), as small functions on tensors.

Images are (B, 3, S, S) float in [0, 1], RGB, unless stated; masks (B, 1, S, S) in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lipsync_cli import weights as files
from lipsync_cli.data.dataset import stack_frames
from lipsync_cli.errors import WeightsError
from lipsync_cli.faces.base import JAW, NOSE_TIP
from lipsync_cli.generators.refs.network import gaussian_blur
from lipsync_cli.models.blocks import EXPERT_VIEW, WAV2LIP_SIZE, lower_half
from lipsync_cli.train.losses import sync_bce

VGG_LAYERS = (15, 22, 29)  # torchvision vgg16.features indices of relu3_3, relu4_3, relu5_3 (mid-to-high)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def blend(generated: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """X̂ = blur(sg(M))·G + (1 − blur(sg(M)))·X: what dubbing pastes, so losses see what users see.

    The stop-gradient keeps image losses from shrinking the mask to hide errors; the mask learns from its BCE.
    """
    m = gaussian_blur(mask.detach())
    return m * generated + (1 - m) * target


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error inside the mask: sum(|pred − target|·M) / (sum(M)·C), independent of mask area."""
    return ((pred - target).abs() * mask).sum() / (mask.sum() * pred.shape[1]).clamp_min(1e-6)


def mask_bce(pred: Tensor, target: Tensor) -> Tensor:
    """BCE of the predicted blend mask against the landmark mask (computed in fp32: sigmoid outputs)."""
    return F.binary_cross_entropy(pred.float().clamp(1e-6, 1 - 1e-6), target.float())


class Perceptual(nn.Module):
    """L1 between VGG-16 relu3_3/relu4_3/relu5_3 features. weights: "imagenet" (the weights.toml entry
    vgg16_imagenet: cached, verified, downloaded like every other file) or "random" (tests, offline runs: a
    fixed random network is still a multi-scale feature distance)."""

    def __init__(self, weights: str = "imagenet"):
        super().__init__()
        from torchvision.models import vgg16

        net = vgg16(weights=None)
        if weights == "imagenet":
            try:
                path = files.resolve("vgg16_imagenet")
            except WeightsError as err:  # offline: say what to pass instead, before any training step
                raise WeightsError(f"{err} -- or train with --perceptual random (or off)") from None
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.features = net.features[: VGG_LAYERS[-1] + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True):  # frozen: stays in eval mode whatever the task does
        return super().train(False)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        x = torch.cat([pred, target]).sub(self.mean).div(self.std)
        loss = pred.new_zeros(())
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG_LAYERS:
                a, b = x.chunk(2)
                loss = loss + F.l1_loss(a, b)
        return loss / len(VGG_LAYERS)


def sync_loss(expert: nn.Module, mel: Tensor, frames: Tensor) -> Tensor:
    """The expert's sync loss (train.losses.sync_bce: −log of the clamped cosine similarity, one clamp for every
    model) of audio and 5-frame face embeddings.

    mel (B, 1, 80, 16) covering the window; frames (B, 3, T=5, S, S) → lower halves, resized to the expert's
    (48, 96) when S != 96, stacked frame-major as (B, 15, 48, 96) like the expert was trained.
    """
    b, c, t, s, _ = frames.shape
    lower = lower_half(frames)
    if s != WAV2LIP_SIZE:
        lower = F.interpolate(lower.flatten(1, 2), size=EXPERT_VIEW, mode="bilinear", align_corners=False)
        lower = lower.view(b, c, t, *EXPERT_VIEW)
    audio, face = expert(mel, stack_frames(lower))
    return sync_bce(audio, face, torch.ones(b, device=frames.device))[0]


def diff_augment(x: Tensor, max_shift: float = 0.08, max_scale: float = 0.08, erode_p: float = 0.5) -> Tensor:
    """DiffAugment-style, differentiable: a random affine (same for the T frames of a sample) and, with
    probability erode_p, a 3x3 erosion (min-pool). x: (B, 3, T, H, W) → same shape."""
    b, c, t, h, w = x.shape
    scale = 1 + (torch.rand(b, device=x.device) * 2 - 1) * max_scale
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = (torch.rand(b, 2, device=x.device) * 2 - 1) * max_shift * 2
    frames = x.transpose(1, 2).reshape(b, t * c, h, w)
    grid = F.affine_grid(theta, list(frames.shape), align_corners=False)
    frames = F.grid_sample(frames, grid, padding_mode="border", align_corners=False)
    eroded = -F.max_pool2d(-frames, 3, 1, 1)
    pick = (torch.rand(b, 1, 1, 1, device=x.device) < erode_p).to(x.dtype)
    frames = pick * eroded + (1 - pick) * frames
    return frames.view(b, t, c, h, w).transpose(1, 2)


def generator_adv_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss: −log σ(D(G))."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(disc: nn.Module, real: Tensor, fake: Tensor, r1_gamma: float = 10.0) -> Tensor:
    """−log σ(D(x)) − log(1 − σ(D(G))) + γ/2·E‖∇ₓD(x)‖², both inputs augmented the same way.

    real, fake: (B, 3, T, H, W); fake must already be detached. One forward pass for both halves (DDP
    expects one forward per backward). The R1 gradient is taken in fp32 outside autocast.
    """
    with torch.autocast(real.device.type, enabled=False):
        real = real.detach().float().requires_grad_(r1_gamma > 0)
        logits = disc(diff_augment(torch.cat([real, fake.float()])))
        real_logits, fake_logits = logits.chunk(2)
        loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        if r1_gamma > 0:
            (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
            loss = loss + r1_gamma / 2 * grad.pow(2).flatten(1).sum(1).mean()
    return loss


def landmark_mask(landmarks, size: int, dilate: int = 11):
    """The region the generator must redraw, as (S, S) float32 in {0, 1}: convex hull of the jaw contour
    (points 0-16) and the nose tip (30), dilated with a dilate x dilate kernel. landmarks (68, 2) in crop
    pixels; NaN landmarks give the fixed lower half instead (the best guess without them)."""
    import cv2

    mask = np.zeros((size, size), np.uint8)
    pts = landmarks[[*JAW, NOSE_TIP]]  # generous on purpose: see blend.LOWER_FACE for the dub-time outline
    if not np.isfinite(pts).all():
        mask[size // 2:] = 1
        return mask.astype(np.float32)
    cv2.fillConvexPoly(mask, cv2.convexHull(pts.round().astype(np.int32)), 1)
    mask = cv2.dilate(mask, np.ones((dilate, dilate), np.uint8))
    return mask.astype(np.float32)


def mask_iou(pred: Tensor, target: Tensor, threshold: float = 0.5) -> float:
    """IoU of the thresholded predicted mask with the (binary) landmark mask, over a whole batch."""
    p, t = pred > threshold, target > 0.5
    union = (p | t).sum().item()
    return (p & t).sum().item() / union if union else 1.0
