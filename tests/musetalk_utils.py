"""Tiny MuseTalk networks filled by the reference fill rule, saved as a user's MuseTalk models/ folder.

The layout and file formats are the published ones: musetalkV15/unet.pth (a bare state dict) +
musetalk.json, sd-vae/ with the pre-rename attention names in diffusion_pytorch_model.bin, whisper/
saved as WhisperForConditionalGeneration (encoder keys prefixed `model.`) + preprocessor_config.json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from lipsync_cli.generators.musetalk.files import OLD_VAE_ATTENTION


def fill(keys, seed: int = 1234) -> dict:
    """The reference README's weight-fill rule, entry by entry in list order."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape, dtype in keys:
        parts = name.split(".")
        if dtype != "float32":
            w = torch.zeros(shape)
        elif name.endswith("running_var"):
            w = torch.rand(shape, generator=g) + 0.5
        elif len(shape) > 1:
            w = torch.randn(shape, generator=g) * math.sqrt(2.0 / math.prod(shape[1:])) * 0.7
        elif parts[-1] == "weight" and "norm" in parts[-2]:
            w = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            w = torch.randn(shape, generator=g) * 0.1
        state[name] = w
    return state


def old_vae_names(state: dict) -> dict:
    """diffusers' attention names back to the ones sd-vae-ft-mse's file uses."""
    back = {new: old for old, new in OLD_VAE_ATTENTION.items()}
    out = {}
    for key, value in state.items():
        for new, old in back.items():
            if ".attentions." in key and f".{new}." in key:
                key = key.replace(f".{new}.", f".{old}.")
        out[key] = value
    return out


def write_models_folder(root: Path, arch: dict, which: str = "tiny", seed: int = 1234) -> Path:
    """root/musetalkV15, root/sd-vae, root/whisper as upstream's download script leaves them.

    arch: musetalk_arch.json. which "tiny" fills with the rule (the vectors' weights); "real" writes the real
    configs with small random weights (only for the benchmark: ~4 GB)."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    nets = arch[which]
    unet_cfg = nets["unet"]["config"]
    vae_cfg = dict(nets["vae"]["config"], scaling_factor=0.18215)
    whisper_key = "whisper" if which == "tiny" else "whisper_encoder"
    (root / "musetalkV15").mkdir(parents=True, exist_ok=True)
    (root / "sd-vae").mkdir(exist_ok=True)
    (root / "whisper").mkdir(exist_ok=True)
    (root / "musetalkV15" / "musetalk.json").write_text(json.dumps(unet_cfg))
    torch.save(fill(nets["unet"]["keys"], seed), root / "musetalkV15" / "unet.pth")
    (root / "sd-vae" / "config.json").write_text(json.dumps(vae_cfg))
    torch.save(old_vae_names(fill(nets["vae"]["keys"], seed)), root / "sd-vae" / "diffusion_pytorch_model.bin")
    wcfg = WhisperConfig(**nets[whisper_key]["config"])
    model = WhisperForConditionalGeneration(wcfg)
    encoder = {f"model.{k}": v for k, v in fill(nets[whisper_key]["keys"], seed).items()}
    state = {**model.state_dict(), **encoder}
    torch.save(state, root / "whisper" / "pytorch_model.bin")
    wcfg.to_json_file(str(root / "whisper" / "config.json"))
    WhisperFeatureExtractor().to_json_file(str(root / "whisper" / "preprocessor_config.json"))
    return root
