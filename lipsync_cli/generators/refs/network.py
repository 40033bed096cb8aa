"""The reference-attention generator (issue 5): KMeans references, audio-keyed attention, predicted blend mask.

Three encoders turn a masked target crop, K reference crops of the same person and a mel window into 512-d
embeddings plus per-scale skip features. The K references are mixed with weights keyed by the audio
embedding, w_k = softmax_k(-sigmoid(a . r_k)), applied to the embeddings and to every skip scale.
A bilinear-upsampling decoder fuses identity skips, aggregated reference skips and a projection of the audio
embedding at every scale, then two heads (no skips) draw the RGB face and a 1-channel blend mask.

References are encoded once per clip (`encode_references` → `RefCache`) and reused for every batch, so the
reference encoder runs K times per clip at dub time, not K times per frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn
from torch.nn import functional as F

EMBED_DIM = 512  # size of every encoder's embedding (the 512-d)
N_LEVELS = 5  # strided downsamplings: S → S/32, hence "size multiple of 32"
BLEND_KERNEL, BLEND_SIGMA = 5, 3.0  # the blur applied to the predicted mask before blending (training and dubbing)


def gaussian_blur(x: torch.Tensor, k: int = BLEND_KERNEL, sigma: float = BLEND_SIGMA) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with replicate padding (edges keep their value)."""
    t = torch.arange(k, device=x.device, dtype=x.dtype) - (k - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    c = x.shape[1]
    x = F.pad(x, (k // 2,) * 4, mode="replicate")
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def mouth_region(refs: torch.Tensor) -> torch.Tensor:
    """Keep only the mouth half of reference crops: rows [S/2, S) stay, the upper half becomes 0.

    Why zero and not the target's upper half: references are encoded once per clip, so they cannot depend on
    the frame being generated; the identity encoder already sees the target's upper half. Zeroing the eyes
    also stops the decoder from copying a reference's blink or head pose into the output.
    refs: (..., 3, S, S) float in [0, 1] → same shape.
    """
    out = refs.clone()
    out[..., : refs.shape[-2] // 2, :] = 0
    return out


def coord_channels(mel: torch.Tensor) -> torch.Tensor:
    """Append 2 coordinate channels (mel-bin and time position in [-1, 1]) so convs know where they are.

    mel: (B, 1, 80, 16) → (B, 3, 80, 16).
    """
    b, _, h, w = mel.shape
    ys = torch.linspace(-1, 1, h, device=mel.device, dtype=mel.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
    xs = torch.linspace(-1, 1, w, device=mel.device, dtype=mel.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([mel, ys, xs], dim=1)


class ConvBNReLU(nn.Module):
    """3x3 Conv-BN-ReLU; with `residual` the input is added back (the residual-blocks ablation switch).

    Not blocks.ConvBlock: that one keeps the public Wav2Lip checkpoints' layout (a biased conv inside
    `conv_block`, any kernel); this one is the refs family's own (bias-free conv before BN, `conv`/`bn`),
    and renaming its parameters would break every refs checkpoint trained so far."""

    def __init__(self, cin: int, cout: int, stride=1, residual: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.residual = residual and cin == cout and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return F.relu(y + x if self.residual else y)


def Conv1x1(cin: int, cout: int) -> nn.Sequential:
    """Pointwise Conv-BN-ReLU: mixes channels (the decoder's skip merge) without spatial cost."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def stage(cin: int, cout: int, stride, residual: bool) -> nn.Sequential:
    """One encoder level: a (strided) conv that changes width, then one same-width block."""
    return nn.Sequential(ConvBNReLU(cin, cout, stride), ConvBNReLU(cout, cout, 1, residual))


class ImageEncoder(nn.Module):
    """(B, 3, S, S) → (embedding (B, 512), skips [S, S/2, ..., S/32] with `widths` channels)."""

    def __init__(self, size: int, widths: List[int], residual: bool):
        super().__init__()
        self.levels = nn.ModuleList([stage(3, widths[0], 1, residual)])
        for cin, cout in zip(widths[:-1], widths[1:]):
            self.levels.append(stage(cin, cout, 2, residual))
        # A conv as wide as the S/32 map keeps where things are in the embedding (global pooling would not).
        self.embed = nn.Conv2d(widths[-1], EMBED_DIM, size // 2 ** N_LEVELS)

    def forward(self, x: torch.Tensor):
        skips = []
        for level in self.levels:
            x = level(x)
            skips.append(x)
        return self.embed(x).flatten(1), skips


class AudioEncoder(nn.Module):
    """mel (B, 1, 80, 16) + coordinates → (B, 512). 80x16 → 27x16 → 9x6 → 3x3 → 1x1."""

    def __init__(self, widths: List[int], residual: bool):
        super().__init__()
        self.net = nn.Sequential(
            stage(3, widths[0], 1, residual),
            stage(widths[0], widths[1], (3, 1), residual),
            stage(widths[1], widths[2], 3, residual),
            stage(widths[2], widths[3], (3, 2), residual),
            nn.Conv2d(widths[3], EMBED_DIM, 3),
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.net(coord_channels(mel)).flatten(1)


@dataclass
class RefCache:
    """Encoded references of one clip (or of each sample in a training batch).

    embeddings: (R, K, 512) with R = 1 (broadcast over the batch) or R = B; skips: per scale (R, K, C, h, w).
    """

    embeddings: torch.Tensor
    skips: List[torch.Tensor]

    def for_batch(self, b: int) -> "RefCache":
        """Expanded to b samples: R = 1 broadcasts; R dividing b serves b/R consecutive samples per set
        (training: one reference set per 5-frame window)."""
        r = self.embeddings.shape[0]
        if r == b:
            return self
        if r == 1:
            return RefCache(self.embeddings.expand(b, -1, -1), [s.expand(b, -1, -1, -1, -1) for s in self.skips])
        if b % r:
            raise ValueError(f"{r} reference sets cannot be shared evenly by a batch of {b}")
        return RefCache(self.embeddings.repeat_interleave(b // r, 0), [s.repeat_interleave(b // r, 0) for s in self.skips])


class Decoder(nn.Module):
    """Embeddings → features at S. At each scale S/32 ... S: concat(decoder, identity skip, reference skip,
    audio projection broadcast over the map) → 1x1 merge → conv block; between scales bilinear x2 + conv.
    The heads after the last scale take no skips."""

    def __init__(self, size: int, widths: List[int], residual: bool):
        super().__init__()
        top = widths[-1]
        # A transposed conv as wide as the S/32 map is the inverse of the encoders' embedding conv.
        self.unflatten = nn.ConvTranspose2d(3 * EMBED_DIM, top, size // 2 ** N_LEVELS)
        scales = list(reversed(widths))  # channels at S/32, S/16, ..., S
        self.audio_proj = nn.ModuleList([nn.Linear(EMBED_DIM, c) for c in scales])
        # 1x1 to merge the four inputs, then a 3x3 block: a 3x3 conv on 4c channels would cost 4x as much
        self.fuse = nn.ModuleList([nn.Sequential(Conv1x1(4 * c, c), ConvBNReLU(c, c, 1, residual)) for c in scales])
        self.up = nn.ModuleList([ConvBNReLU(cin, cout) for cin, cout in zip(scales[:-1], scales[1:])])

    def forward(self, emb, audio, ident_skips, ref_skips) -> torch.Tensor:
        x = self.unflatten(emb[:, :, None, None])
        for i, fuse in enumerate(self.fuse):
            level = len(ident_skips) - 1 - i
            a = self.audio_proj[i](audio)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = fuse(torch.cat([x, ident_skips[level], ref_skips[level], a], dim=1))
            if i < len(self.up):
                x = self.up[i](F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        return x


class RefsGenerator(nn.Module):
    """Reference-attention generator. See the module docstring; `config` rebuilds it from a checkpoint."""

    arch = "refs"
    kind = "generator"

    def __init__(self, size: int = 96, n_refs: int = 10, base: int = 32, attention: bool = True,
                 mask_head: bool = True, residual: bool = True):
        super().__init__()
        if size % 2 ** N_LEVELS or size < 2 ** N_LEVELS:
            raise ValueError(f"RefsGenerator size must be a positive multiple of 32, got {size}")
        self.config = dict(size=size, n_refs=n_refs, base=base, attention=attention, mask_head=mask_head,
                           residual=residual)
        widths = [base, 2 * base, 4 * base, 8 * base, 8 * base, 16 * base]  # at S, S/2, ..., S/32
        self.identity_encoder = ImageEncoder(size, widths, residual)
        self.reference_encoder = ImageEncoder(size, widths, residual)  # shared by the K references
        self.audio_encoder = AudioEncoder(widths[:4], residual)
        self.decoder = Decoder(size, widths, residual)
        self.rgb_head = nn.Sequential(ConvBNReLU(base, base), nn.Conv2d(base, 3, 1), nn.Sigmoid())
        self.mask_head = nn.Sequential(ConvBNReLU(base, base), nn.Conv2d(base, 1, 1), nn.Sigmoid()) if mask_head else None

    def encode_references(self, refs: torch.Tensor) -> RefCache:
        """refs (R, K, 3, S, S) float in [0, 1], RGB, whole crops → RefCache. Runs the encoder R*K times."""
        r, k = refs.shape[:2]
        emb, skips = self.reference_encoder(mouth_region(refs).flatten(0, 1))
        return RefCache(emb.view(r, k, -1), [s.view(r, k, *s.shape[1:]) for s in skips])

    def attention_weights(self, audio: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
        """audio (B, 512), ref_emb (B|1, K, 512) → w_k = softmax_k(−σ(a·r_k)), (B, K) summing to 1 over K.

        σ bounds each score to (0, 1), so no reference can take more than e times another's weight: every
        reference keeps contributing, and the audio shifts the mix towards the mouth shapes it needs.
        """
        if not self.config["attention"]:  # the mean-aggregation ablation
            return audio.new_full((audio.shape[0], ref_emb.shape[1]), 1.0 / ref_emb.shape[1])
        scores = torch.einsum("bd,bkd->bk", audio.float(), ref_emb.float().expand(audio.shape[0], -1, -1))
        return torch.softmax(-torch.sigmoid(scores), dim=1).to(audio.dtype)

    def forward(self, mel: torch.Tensor, masked: torch.Tensor, refs: Optional[torch.Tensor] = None,
                ref_cache: Optional[RefCache] = None):
        """mel (B, 1, 80, 16) log-mel; masked (B, 3, S, S) in [0, 1] RGB with rows [S/2, S) zeroed; refs
        (R, K, 3, S, S) in [0, 1] with R = 1, B or a divisor of B (each set serves B/R consecutive samples),
        or a ref_cache from encode_references → (rgb (B, 3, S, S) in [0, 1], mask (B, 1, S, S) in [0, 1],
        or None when built without the mask head)."""
        if ref_cache is None:
            if refs is None:
                raise ValueError("RefsGenerator needs refs or ref_cache")
            ref_cache = self.encode_references(refs)
        cache = ref_cache.for_batch(mel.shape[0])
        audio = self.audio_encoder(mel)
        ident, ident_skips = self.identity_encoder(masked)
        w = self.attention_weights(audio, cache.embeddings)  # (B, K)
        ref = torch.einsum("bk,bkd->bd", w, cache.embeddings)
        ref_skips = [torch.einsum("bk,bkchw->bchw", w, s) for s in cache.skips]
        x = self.decoder(torch.cat([ident, ref, audio], dim=1), audio, ident_skips, ref_skips)
        mask = self.mask_head(x) if self.mask_head is not None else None
        return self.rgb_head(x), mask
