"""Multi-frame discriminator for the reference-attention generator's adversarial stage (issue 5).

It judges T consecutive lower-half crops at once (frames stacked on channels), so it can penalise flicker
between frames as well as blur in each. Spectral norm on every conv bounds its Lipschitz constant, which with
the R1 penalty keeps the non-saturating GAN stable at the small batches this project trains with. No
BatchNorm: its statistics would mix real and generated batches.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils import spectral_norm


class RefsDiscriminator(nn.Module):
    """faces (B, 3, T, S/2, S) float in [0, 1], RGB, lower halves → logits (B, 1) (real > 0)."""

    arch = "disc_refs"
    kind = "discriminator"

    def __init__(self, size: int = 96, frames: int = 5, base: int = 32):
        super().__init__()
        self.config = dict(size=size, frames=frames, base=base)
        widths = [3 * frames, base, 2 * base, 4 * base, 8 * base, 8 * base]
        layers = []
        for cin, cout in zip(widths[:-1], widths[1:]):  # five stride-2 convs: (S/2, S) → (S/64, S/32)
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = spectral_norm(nn.Linear(widths[-1], 1))

    def forward(self, faces: Tensor) -> Tensor:
        x = self.features(faces.flatten(1, 2))  # (B, 3T, S/2, S)
        return self.head(x.mean(dim=(2, 3)))  # average over space: works for any multiple-of-32 size
