"""syncnet_python's network `S` (joonson/syncnet_python, MIT): the judge of the papers' LSE-D / LSE-C.

NOT our lip-sync expert (that is lipsync_cli/models/lipsync_expert.py, Wav2Lip's SyncNet_color, trained by
`lipsync train expert`). This one only exists to load the public `syncnet_v2.model` unchanged, so
its layer positions, and therefore its state-dict names (netcnnaud.0.weight, ...), are upstream's.
The layout is ../shared/reference/syncnet/README.md §1.
"""

from __future__ import annotations

from torch import Tensor, nn

EMBEDDING = 1024  # upstream's num_layers_in_fc_layers


def _conv_bn_relu(conv: nn.Module, bn: nn.Module) -> list[nn.Module]:
    return [conv, bn, nn.ReLU(inplace=True)]


def _audio_trunk() -> nn.Sequential:
    """(N, 1, 13, 20) MFCC window -> (N, 512, 1, 1). Positions are the key prefixes of the file."""
    return nn.Sequential(
        *_conv_bn_relu(nn.Conv2d(1, 64, 3, 1, 1), nn.BatchNorm2d(64)),  # 0-2
        nn.MaxPool2d(kernel_size=1, stride=1),  # 3: identity, kept so the later positions match
        *_conv_bn_relu(nn.Conv2d(64, 192, 3, 1, 1), nn.BatchNorm2d(192)),  # 4-6
        nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),  # 7: 192x11x9
        *_conv_bn_relu(nn.Conv2d(192, 384, 3, padding=1), nn.BatchNorm2d(384)),  # 8-10
        *_conv_bn_relu(nn.Conv2d(384, 256, 3, padding=1), nn.BatchNorm2d(256)),  # 11-13
        *_conv_bn_relu(nn.Conv2d(256, 256, 3, padding=1), nn.BatchNorm2d(256)),  # 14-16
        nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),  # 17: 256x5x4
        *_conv_bn_relu(nn.Conv2d(256, 512, (5, 4), padding=0), nn.BatchNorm2d(512)),  # 18-20: 512x1x1
    )


def _lip_trunk() -> nn.Sequential:
    """(N, 3, 5, 224, 224) BGR 0-255 frames -> (N, 512, 1, 1, 1); kernels are (T, H, W)."""
    same = dict(kernel_size=(1, 3, 3), padding=(0, 1, 1))
    return nn.Sequential(
        *_conv_bn_relu(nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2), padding=0), nn.BatchNorm3d(96)),  # 0-2
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),  # 3: 96x1x54x54
        *_conv_bn_relu(nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), nn.BatchNorm3d(256)),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # 7: 256x1x13x13
        *_conv_bn_relu(nn.Conv3d(256, 256, **same), nn.BatchNorm3d(256)),  # 8-10
        *_conv_bn_relu(nn.Conv3d(256, 256, **same), nn.BatchNorm3d(256)),  # 11-13
        *_conv_bn_relu(nn.Conv3d(256, 256, **same), nn.BatchNorm3d(256)),  # 14-16
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),  # 17: 256x1x6x6
        *_conv_bn_relu(nn.Conv3d(256, 512, (1, 6, 6), padding=0), nn.BatchNorm3d(512)),  # 18-20: 512x1x1x1
    )


def _head() -> nn.Sequential:
    """512 -> 1024, no activation after the last layer (the embedding is not normalised)."""
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, EMBEDDING))


class SyncNetV2(nn.Module):
    """Two towers: audio MFCC windows and 5-frame lip windows -> unnormalised 1024-d embeddings.

    The attributes are created in upstream's order (netcnnaud, netfcaud, netfclip, netcnnlip), which is
    the state-dict order of the public file.
    """

    def __init__(self):
        super().__init__()
        self.netcnnaud = _audio_trunk()
        self.netfcaud = _head()
        self.netfclip = _head()
        self.netcnnlip = _lip_trunk()

    def forward_aud(self, mfcc: Tensor) -> Tensor:
        """(N, 1, 13, 20) float32 MFCC (coefficient, MFCC frame) -> (N, 1024) float32."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, frames: Tensor) -> Tensor:
        """(N, 3, 5, 224, 224) float32 raw 0-255 BGR (channel, time, H, W) -> (N, 1024) float32."""
        return self.netfclip(self.netcnnlip(frames).flatten(1))
