"""The conv blocks Wav2Lip's three networks are built from.

Parameter names must match the public checkpoints, so each block keeps its layers in an
nn.Sequential called `conv_block` (conv at index 0, BatchNorm at index 1) and its activation
outside it (activations have no parameters, so they never appear in a state dict).
"""

from __future__ import annotations

from torch import Tensor, nn

WAV2LIP_SIZE = 96  # the face crop side every Wav2Lip-compatible network (generator, expert, discriminator) is fixed at
EXPERT_VIEW = (WAV2LIP_SIZE // 2, WAV2LIP_SIZE)  # (H, W) the expert sees: the lower half of a 96x96 crop


def masked_target(faces: Tensor) -> Tensor:
    """The generators' input contract, once: a copy of (..., S, S) faces with the lower half (rows S/2..S)
    zeroed, so a generator never sees the mouth it must redraw. Any dtype; the input is not modified."""
    out = faces.clone()
    out[..., faces.shape[-2] // 2:, :] = 0
    return out


def lower_half(faces: Tensor) -> Tensor:
    """(..., S, S) → (..., S/2, S): the mouth half, what the expert and the discriminators judge (a view)."""
    return faces[..., faces.shape[-2] // 2:, :]


class ConvBlock(nn.Module):
    """Conv2d + BatchNorm + ReLU; with residual=True the input is added before the ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0, residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class TransposeBlock(nn.Module):
    """ConvTranspose2d + BatchNorm + ReLU: the generator decoder's upsampling step."""

    def __init__(self, cin: int, cout: int, kernel_size, stride, padding, output_padding=0):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv_block(x))


class PlainConvBlock(nn.Module):
    """Conv2d + LeakyReLU(0.01), no normalisation: the quality discriminator's block
    (BatchNorm statistics would mix real and generated batches)."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding))
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv_block(x))


def residual_stack(channels: int, n: int) -> list[nn.Module]:
    """n shape-preserving 3x3 residual blocks (how every encoder stage deepens itself)."""
    return [ConvBlock(channels, channels, 3, 1, 1, residual=True) for _ in range(n)]


def audio_encoder(last_stage_residuals: int) -> nn.Sequential:
    """(B, 1, 80, 16) mel window -> (B, 512, 1, 1). The generator and the expert use the same
    encoder except for the depth of the last stage (1 vs 2 residual blocks)."""
    layers: list[nn.Module] = []
    # (cin, cout, stride, residual blocks): 80x16 -> 80x16 -> 27x16 -> 9x6 -> 3x3
    for cin, cout, stride, n_res in [(1, 32, 1, 2), (32, 64, (3, 1), 2), (64, 128, 3, 2),
                                     (128, 256, (3, 2), last_stage_residuals)]:
        layers += [ConvBlock(cin, cout, 3, stride, 1), *residual_stack(cout, n_res)]
    layers += [ConvBlock(256, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0)]  # 3x3 -> 1x1
    return nn.Sequential(*layers)


def fold_time(x: Tensor) -> Tensor:
    """(B, C, T, H, W) -> (T*B, C, H, W), time-major (all batch items of frame 0 first), the
    order the public networks' reference code uses, so per-frame outputs line up with it."""
    b, c, t, h, w = x.shape
    return x.permute(2, 0, 1, 3, 4).reshape(t * b, c, h, w)
