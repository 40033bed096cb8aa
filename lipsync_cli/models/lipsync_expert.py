"""The lip-sync expert (Wav2Lip's SyncNet_color): embeds a 0.2 s mel window and the lower
halves of the 5 matching face frames into one 512-d space where in-sync pairs are close.

Parameter names and arithmetic match the public lipsync_expert.pth checkpoint.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lipsync_cli.models.blocks import ConvBlock, audio_encoder, residual_stack


def _face_encoder() -> nn.Sequential:
    """(B, 15, 48, 96) -> (B, 512, 1, 1)."""
    layers: list[nn.Module] = [
        ConvBlock(15, 32, 7, 1, 3),  # 48x96
        ConvBlock(32, 64, 5, (1, 2), 1), *residual_stack(64, 2),  # 46x47
    ]
    # (cin, cout, residual blocks), each stage halving both sides: 23x24 -> 12x12 -> 6x6
    for cin, cout, n_res in [(64, 128, 3), (128, 256, 2), (256, 512, 2)]:
        layers += [ConvBlock(cin, cout, 3, 2, 1), *residual_stack(cout, n_res)]
    layers += [ConvBlock(512, 512, 3, 2, 1),  # 3x3
               ConvBlock(512, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0)]  # 1x1
    return nn.Sequential(*layers)


class SyncNet(nn.Module):
    """mel (B, 1, 80, 16) + faces (B, 15, 48, 96) -> (audio_emb, face_emb), each (B, 512) float32
    with unit L2 norm. faces: lower halves of 5 consecutive crops stacked on channels, in [0, 1]."""

    arch = "syncnet"
    kind = "expert"

    def __init__(self):
        super().__init__()
        self.config: dict = {}
        self.face_encoder = _face_encoder()
        self.audio_encoder = audio_encoder(last_stage_residuals=2)

    def forward(self, mel: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
        face_emb = self.face_encoder(faces).flatten(1)
        audio_emb = self.audio_encoder(mel).flatten(1)
        return F.normalize(audio_emb, p=2, dim=1), F.normalize(face_emb, p=2, dim=1)
