"""Tiny LatentSync networks filled by the reference README's rule, saved as a user's checkpoints folder.

The file formats are upstream's: latentsync_unet.pt = {"state_dict": upstream names (1246 entries)},
whisper/tiny.pt = openai-whisper {"dims", "model_state_dict"} (whole model, encoder first), vae/ a
diffusers AutoencoderKL folder, config.yaml upstream's UNet config format, mask.png upstream's.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "latentsync"


def is_norm_scale(name: str) -> bool:
    parts = name.split(".")
    if parts[-1] != "weight" or len(parts) < 2:
        return False
    return "norm" in parts[-2] or "ln" in parts[-2].split("_") or (len(parts) > 2 and parts[-3] == "norms")


def fill(keys, buffers: dict, seed: int = 1234) -> dict:
    """The README's fill rule, entry by entry in list order; `buffers` are the constructor's values."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape, dtype in keys:
        if name in buffers:
            w = buffers[name]
        elif dtype != "float32":
            w = torch.zeros(shape)
        elif len(shape) > 1:
            w = torch.randn(shape, generator=g) * math.sqrt(2.0 / math.prod(shape[1:])) * 0.7
        elif is_norm_scale(name):
            w = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            w = torch.randn(shape, generator=g) * 0.1
        state[name] = w
    return state


def motion_table(length: int, width: int) -> torch.Tensor:
    """(1, length, width): upstream's temporal position table (sin in even, cos in odd columns)."""
    position = torch.arange(length).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, width, 2) * (-math.log(10000.0) / width))
    pe = torch.zeros(1, length, width)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe


def whisper_table(length: int, channels: int) -> torch.Tensor:
    """openai-whisper's sinusoids(length, channels)."""
    increment = np.log(10000) / (channels // 2 - 1)
    inv = torch.exp(-increment * torch.arange(channels // 2))
    scaled = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


def unet_state(nets: dict, seed: int = 1234) -> dict:
    buffers = {name: motion_table(shape[1], shape[2]) for name, shape, _ in nets["unet"]["keys"]
               if name.endswith(".pos_encoder.pe")}
    return fill(nets["unet"]["keys"], buffers, seed)


def whisper_file(nets: dict, key: str = "whisper", seed: int = 1234) -> dict:
    dims = nets[key].get("config") or nets[key]["dims"]
    buffers = {"encoder.positional_embedding": whisper_table(dims["n_audio_ctx"], dims["n_audio_state"])}
    return {"dims": dict(dims), "model_state_dict": fill(nets[key]["keys"], buffers, seed)}


def write_checkpoints(root: Path, arch: dict, seed: int = 1234, resolution: int = 64) -> Path:
    """root/latentsync_unet.pt, whisper/tiny.pt, vae/, config.yaml, mask.png with the tiny networks."""
    import yaml
    from safetensors.torch import save_file

    nets = arch["tiny"]
    (root / "whisper").mkdir(parents=True, exist_ok=True)
    (root / "vae").mkdir(exist_ok=True)
    torch.save({"state_dict": unet_state(nets, seed), "global_step": 0}, root / "latentsync_unet.pt")
    torch.save(whisper_file(nets, seed=seed), root / "whisper" / "tiny.pt")
    (root / "vae" / "config.json").write_text(json.dumps(dict(nets["vae"]["config"], _class_name="AutoencoderKL")))
    save_file(fill(nets["vae"]["keys"], {}, seed), str(root / "vae" / "diffusion_pytorch_model.safetensors"))
    (root / "config.yaml").write_text(yaml.safe_dump({"model": nets["unet"]["config"],
                                                      "data": {"resolution": resolution, "num_frames": 16}}))
    shutil.copy(REFERENCE / "mask.png", root / "mask.png")
    return root
