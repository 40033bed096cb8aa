"""Wav2Lip's visual-quality discriminator: scores how real the lower half of each face looks.

Parameter names and arithmetic match the public visual-quality discriminator checkpoint.
"""

from __future__ import annotations

from torch import Tensor, nn

from lipsync_cli.models.blocks import PlainConvBlock, fold_time, lower_half


def _stage(cin: int, cout: int, kernel: int, stride) -> nn.Sequential:
    """A downsampling conv followed by one same-size conv of the same kernel."""
    pad = kernel // 2
    return nn.Sequential(PlainConvBlock(cin, cout, kernel, stride, pad), PlainConvBlock(cout, cout, kernel, 1, pad))


class QualityDiscriminator(nn.Module):
    """faces (B, 3, T, 96, 96) in [0, 1] -> (B*T, 1) probability each frame is real, time-major
    (row t*B + b is frame t of item b). Only the lower half of each frame is scored."""

    arch = "disc_qual"
    kind = "discriminator"

    def __init__(self):
        super().__init__()
        self.config: dict = {}
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(PlainConvBlock(3, 32, 7, 1, 3)),  # 48x96
            _stage(32, 64, 5, (1, 2)),  # 48x48
            _stage(64, 128, 5, 2),  # 24
            _stage(128, 256, 5, 2),  # 12
            _stage(256, 512, 3, 2),  # 6
            _stage(512, 512, 3, 2),  # 3
            nn.Sequential(PlainConvBlock(512, 512, 3, 1, 0), PlainConvBlock(512, 512, 1, 1, 0)),  # 1
        ])
        self.binary_pred = nn.Sequential(nn.Conv2d(512, 1, 1, 1, 0), nn.Sigmoid())

    def forward(self, faces: Tensor) -> Tensor:
        x = fold_time(faces)  # (T*B, 3, 96, 96)
        x = lower_half(x)  # (T*B, 3, 48, 96): where lip-sync artefacts are
        for block in self.face_encoder_blocks:
            x = block(x)
        return self.binary_pred(x).flatten(1)  # (T*B, 1)
