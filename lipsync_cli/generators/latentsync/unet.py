"""LatentSync's UNet3DConditionModel as diffusers' UNetMotionModel: config, key remap, GroupNorm change.

../shared/reference/latentsync/README.md ("Mapping onto diffusers") is the specification: the
published `latentsync_unet.pt` loads into UNetMotionModel after a rename inside the motion modules,
and computes upstream's function only when 65 GroupNorms take their statistics where upstream's do:
the resnets' and `conv_norm_out` over all frames of a clip jointly (upstream normalises the 5-D
tensor), the motion modules' input norm per frame (diffusers normalises those jointly).
"""

from __future__ import annotations

import re

NUM_FRAMES = 16  # frames per UNet call (upstream's num_frames); the motion modules' tables hold 24 at most
MAX_FRAMES = 24  # temporal_position_encoding_max_len of the published config

# upstream block names → diffusers' motion-model blocks of the same layout
BLOCK_TYPES = {"CrossAttnDownBlock3D": "CrossAttnDownBlockMotion", "DownBlock3D": "DownBlockMotion",
               "UpBlock3D": "UpBlockMotion", "CrossAttnUpBlock3D": "CrossAttnUpBlockMotion"}

# inside `.motion_modules.`, in this order (README "Key remap")
_MOTION_RENAMES = [(".temporal_transformer.", "."), ("attention_blocks.0.pos_encoder.pe", "pos_embed.pe"),
                   ("attention_blocks.0.", "attn1."), ("attention_blocks.1.", "attn2."),
                   ("norms.0.", "norm1."), ("norms.1.", "norm2."), ("ff_norm.", "norm3.")]
_DUPLICATE_TABLE = "attention_blocks.1.pos_encoder.pe"  # a second copy of the block's table; diffusers keeps one
_JOINT = re.compile(r"(^|\.)resnets\.\d+\.norm[12]$|^conv_norm_out$")  # upstream: statistics over all frames
_PER_FRAME = re.compile(r"\.motion_modules\.\d+\.norm$")  # upstream: statistics per frame


def diffusers_config(model: dict) -> dict:
    """Upstream's `model:` section (configs/unet/stage2*.yaml) → UNetMotionModel keyword arguments."""
    mm = model.get("motion_module_kwargs", {})
    unsupported = {k: model.get(k) for k in ("use_motion_module", "add_audio_layer") if model.get(k) is False}
    if unsupported or model.get("motion_module_mid_block") or model.get("motion_module_decoder_only"):
        raise ValueError(f"only the published motion-module layout is supported, not {unsupported or 'this one'}")
    return dict(
        in_channels=model["in_channels"], out_channels=model["out_channels"],
        down_block_types=tuple(BLOCK_TYPES[b] for b in model["down_block_types"]),
        up_block_types=tuple(BLOCK_TYPES[b] for b in model["up_block_types"]),
        block_out_channels=tuple(model["block_out_channels"]), layers_per_block=model["layers_per_block"],
        downsample_padding=model.get("downsample_padding", 1),
        mid_block_scale_factor=model.get("mid_block_scale_factor", 1), act_fn=model.get("act_fn", "silu"),
        norm_num_groups=model["norm_num_groups"], norm_eps=model.get("norm_eps", 1e-5),
        cross_attention_dim=model["cross_attention_dim"],
        num_attention_heads=model["attention_head_dim"],  # upstream's "head dim" is the number of heads
        motion_num_attention_heads=mm.get("num_attention_heads", 8),
        motion_max_seq_length=mm.get("temporal_position_encoding_max_len", MAX_FRAMES),
        use_motion_mid_block=False, use_linear_projection=False, sample_size=model.get("sample_size"),
    )


def remap_key(name: str) -> str | None:
    """An upstream state-dict name → the UNetMotionModel name (None: an entry diffusers does not keep)."""
    if ".motion_modules." not in name:
        return name
    if name.endswith(_DUPLICATE_TABLE):
        return None
    for old, new in _MOTION_RENAMES:
        name = name.replace(old, new)
    return name


def remap_state(state: dict) -> dict:
    """Upstream's 1246 entries → diffusers' 1226 (the duplicate position tables dropped)."""
    out = {}
    for name, value in state.items():
        new = remap_key(name)
        if new is not None:
            out[new] = value
    return out


class _Frames:
    """How many frames the current UNet call has; set by a pre-hook, read by the joint GroupNorms."""

    n = NUM_FRAMES


def _group_norm_classes():
    import torch
    from torch import nn

    class ClipGroupNorm(nn.GroupNorm):
        """GroupNorm of (B·F, C, H, W) with statistics over all F frames of each clip, as upstream's 5-D one."""

        frames: _Frames

        def forward(self, x):
            f = self.frames.n
            clip = x.reshape(x.shape[0] // f, f, *x.shape[1:]).transpose(1, 2)  # (B, C, F, H, W)
            out = nn.functional.group_norm(clip, self.num_groups, self.weight, self.bias, self.eps)
            return out.transpose(1, 2).reshape(x.shape)

    class FrameGroupNorm(nn.GroupNorm):
        """GroupNorm of (B, C, F, H, W) with statistics per frame, as upstream's motion modules."""

        def forward(self, x):
            b, c, f = x.shape[:3]
            frames = x.transpose(1, 2).reshape(b * f, c, *x.shape[3:])
            out = nn.functional.group_norm(frames, self.num_groups, self.weight, self.bias, self.eps)
            return out.reshape(b, f, c, *x.shape[3:]).transpose(1, 2)

    return torch, ClipGroupNorm, FrameGroupNorm


def upstream_group_norms(unet, joint: bool = True, per_frame: bool = True) -> int:
    """Swap the 65 GroupNorms whose statistics differ from upstream's (in place); returns how many.

    `joint` / `per_frame` exist so a test can show that leaving either half out breaks conformance."""
    torch, ClipGroupNorm, FrameGroupNorm = _group_norm_classes()
    frames = _Frames()
    swapped = 0
    for name, module in list(unet.named_modules()):
        cls = (ClipGroupNorm if joint and _JOINT.search(name) else
               FrameGroupNorm if per_frame and _PER_FRAME.search(name) else None)
        if cls is None or not isinstance(module, torch.nn.GroupNorm):
            continue
        module.__class__ = cls  # same parameters and attributes, another forward
        if cls is ClipGroupNorm:
            module.frames = frames
        swapped += 1

    def note_frames(_module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        frames.n = int(sample.shape[2])  # (B, C, F, H, W)

    unet.register_forward_pre_hook(note_frames, with_kwargs=True)
    return swapped


def build(model: dict, device: str = "cpu", meta: bool = False):
    """An untrained UNetMotionModel for upstream's `model:` section, with upstream's GroupNorms."""
    import torch
    from diffusers import UNetMotionModel

    if meta:
        with torch.device("meta"):
            unet = UNetMotionModel(**diffusers_config(model))
    else:
        unet = UNetMotionModel(**diffusers_config(model))
    upstream_group_norms(unet)
    return unet.to(device) if not meta else unet
