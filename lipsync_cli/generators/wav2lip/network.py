"""The Wav2Lip generator: a face U-Net whose bottleneck is the audio embedding.

Parameter names and arithmetic match the public wav2lip.pth / wav2lip_gan.pth checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lipsync_cli.models.blocks import ConvBlock, TransposeBlock, audio_encoder, fold_time, residual_stack


def _encoder_stage(cin: int, cout: int, n_res: int) -> nn.Sequential:
    """Stride-2 downsampling conv followed by n_res residual blocks."""
    return nn.Sequential(ConvBlock(cin, cout, 3, 2, 1), *residual_stack(cout, n_res))


def _decoder_stage(cin: int, cout: int, n_res: int) -> nn.Sequential:
    """Stride-2 upsampling transpose conv followed by n_res residual blocks."""
    return nn.Sequential(TransposeBlock(cin, cout, 3, 2, 1, output_padding=1), *residual_stack(cout, n_res))


class Wav2Lip(nn.Module):
    """mel (B, 1, 80, 16) + faces (B, 6, 96, 96) -> (B, 3, 96, 96) float32 in [0, 1].

    faces = masked target (lower half zeroed) and reference stacked on channels, in [0, 1], in
    the colour order the weights were trained with (load_checkpoint makes that RGB).
    Sequences are accepted too: mel (B, T, 1, 80, 16) + faces (B, 6, T, 96, 96) -> (B, 3, T, 96, 96).
    """

    arch = "wav2lip"
    kind = "generator"

    def __init__(self):
        super().__init__()
        self.config: dict = {}
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(ConvBlock(6, 16, 7, 1, 3)),  # 96
            _encoder_stage(16, 32, 2),  # 48
            _encoder_stage(32, 64, 3),  # 24
            _encoder_stage(64, 128, 2),  # 12
            _encoder_stage(128, 256, 2),  # 6
            _encoder_stage(256, 512, 1),  # 3
            nn.Sequential(ConvBlock(512, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0)),  # 1
        ])
        self.audio_encoder = audio_encoder(last_stage_residuals=1)
        # each decoder stage's input is the previous stage's output concatenated with the skip
        # connection of the same resolution, hence cin = cout(prev) + encoder channels
        self.face_decoder_blocks = nn.ModuleList([
            nn.Sequential(ConvBlock(512, 512, 1, 1, 0)),  # 1
            nn.Sequential(TransposeBlock(1024, 512, 3, 1, 0), *residual_stack(512, 1)),  # 3
            _decoder_stage(1024, 512, 2),  # 6
            _decoder_stage(768, 384, 2),  # 12
            _decoder_stage(512, 256, 2),  # 24
            _decoder_stage(320, 128, 2),  # 48
            _decoder_stage(160, 64, 2),  # 96
        ])
        self.output_block = nn.Sequential(ConvBlock(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def forward(self, mel: Tensor, faces: Tensor) -> Tensor:
        sequence = faces.dim() == 5
        if sequence:  # fold time into the batch, time-major like the reference implementation
            b, t = faces.shape[0], faces.shape[2]
            mel = mel.transpose(0, 1).reshape(b * t, *mel.shape[2:])  # (T*B, 1, 80, 16)
            faces = fold_time(faces)  # (T*B, 6, 96, 96)
        skips = []
        x = faces
        for block in self.face_encoder_blocks:
            x = block(x)
            skips.append(x)
        x = self.audio_encoder(mel)  # (B, 512, 1, 1)
        for block, skip in zip(self.face_decoder_blocks, reversed(skips)):
            x = torch.cat([block(x), skip], dim=1)
        out = self.output_block(x)  # (B, 3, 96, 96) in [0, 1]
        if sequence:
            out = out.reshape(t, b, *out.shape[1:]).permute(1, 2, 0, 3, 4)
        return out
