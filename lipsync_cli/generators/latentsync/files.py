"""LatentSync checkpoints on disk → loaded networks (strictly: every tensor, by name and shape).

A user's LatentSync `checkpoints/` folder is read as upstream's download leaves it:

  latentsync_unet.pt      {"state_dict": UNet3DConditionModel weights (1246 entries)}   ByteDance/LatentSync-1.6
  whisper/tiny.pt         openai-whisper format {"dims", "model_state_dict"}             same repository
  vae/                    optional: a diffusers AutoencoderKL folder (else the sd_vae entries: sd-vae-ft-mse)
  config.yaml             optional: upstream's UNet config (the `model:` section of configs/unet/stage2_512.yaml
                          plus `data: resolution:`) for a network other than the published one
  mask.png                optional: upstream's latentsync/utils/mask.png (else the latentsync_mask entry)

`--model latentsync` (1.6, 512 px) and `--model latentsync-1.5` (256 px) read the same parts from the
weights.toml entries. Upstream loads its UNet with strict=False (a renamed key silently stays random);
here every part loads strictly, and a wrong file is a one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from lipsync_cli import weights
from lipsync_cli.errors import InputError, WeightsError
from lipsync_cli.generators.latentsync import unet as unet_mod
from lipsync_cli.generators.musetalk.files import _json, read_state, rename_old_vae_attention
from lipsync_cli.models.checkpoint import load_strict

INSTALL_HINT = 'pip install "lipsync-cli[latentsync]"'
NAMES = {"latentsync": 512, "latentsync-1.5": 256}  # --model names → model resolution (1.6 and 1.5)
UNET_FILE, WHISPER_FILE, CONFIG_FILE, MASK_FILE, VAE_DIR = (
    "latentsync_unet.pt", "whisper/tiny.pt", "config.yaml", "mask.png", "vae")
# weights.toml entries of each name (the UNet differs; whisper, mask and VAE are shared)
UNET_ENTRY = {"latentsync": "latentsync_unet", "latentsync-1.5": "latentsync15_unet"}
WHISPER_ENTRY, MASK_ENTRY, VAE_ENTRIES = "latentsync_whisper", "latentsync_mask", ("sd_vae", "sd_vae_config")
MASK_SHA256 = "aa233251b9ff5691a1565a4108f0910ab1e5e7ad79a7bb2b741ab4d92c81053c"
VAE_SCALE = 0.18215  # upstream's scripts/inference.py sets scaling_factor 0.18215, shift_factor 0
PUBLISHED_RESOLUTION = 512  # a folder without config.yaml holds the 1.6 network


@dataclass(frozen=True)
class LatentSyncFiles:
    unet: Path
    whisper: Path
    mask: Path
    vae_config: Path
    vae_weights: Path
    config: Optional[Path] = None  # upstream-format UNet config; None: the published one
    resolution: int = PUBLISHED_RESOLUTION


@dataclass
class LatentSyncNetworks:
    """The loaded parts, in eval mode on one device, float32."""

    unet: object  # diffusers UNetMotionModel (upstream GroupNorms): (B, 13, F, R/8, R/8) + (B·F, 50, 384) → (B, 4, F, R/8, R/8)
    vae: object  # diffusers AutoencoderKL: (B, 3, R, R) RGB in [-1, 1] ⇄ (B, 4, R/8, R/8)
    encoder: object  # transformers WhisperEncoder: (1, 80, 3000) log-mel → states of (1, 1500, 384)
    mask: np.ndarray  # (256, 256) uint8, upstream's mask.png channel 0 (255 = keep, 0 = redraw)
    resolution: int  # model input size R (512 for 1.6, 256 for 1.5)


def is_latentsync(name_or_path) -> bool:
    """A --model value for this family: a name, a folder holding latentsync_unet.pt or whisper/tiny.pt, or the
    UNet file itself."""
    text = str(name_or_path)
    if text in NAMES:
        return True
    path = Path(text).expanduser()
    if path.is_dir():
        return any((path / rel).exists() for rel in (UNET_FILE, WHISPER_FILE, CONFIG_FILE))
    return path.name == UNET_FILE


def locate(name_or_path) -> LatentSyncFiles:
    """The part files of a checkpoints folder, or of the weights.toml entries (verified, downloaded)."""
    text = str(name_or_path)
    if text in NAMES:
        unet, whisper, mask = (weights.resolve(name) for name in (UNET_ENTRY[text], WHISPER_ENTRY, MASK_ENTRY))
        vae_weights, vae_config = (weights.resolve(name) for name in VAE_ENTRIES)
        return LatentSyncFiles(unet=unet, whisper=whisper, mask=mask, vae_config=vae_config, vae_weights=vae_weights,
                               resolution=NAMES[text])
    root = Path(text).expanduser()
    root = root.parent if root.is_file() else root
    config = _maybe(root / CONFIG_FILE)
    vae_weights, vae_config = _vae_files(root)
    return LatentSyncFiles(unet=_need(root, UNET_FILE), whisper=_need(root, WHISPER_FILE), mask=_mask_file(root),
                           vae_config=vae_config, vae_weights=vae_weights, config=config,
                           resolution=read_config(config)[1] if config else PUBLISHED_RESOLUTION)


def _need(root: Path, rel: str) -> Path:
    if not (root / rel).is_file():
        raise InputError(f"{root} lacks {rel}: not a LatentSync checkpoints folder (it needs {UNET_FILE} and "
                         f"{WHISPER_FILE}; or pass --model latentsync for the published weights)")
    return root / rel


def _maybe(path: Path) -> Optional[Path]:
    return path if path.is_file() else None


def _vae_files(root: Path) -> tuple[Path, Path]:
    """(weights, config) of the folder's vae/, else of the sd_vae entries."""
    folder = root / VAE_DIR
    if folder.is_dir():
        for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
            if (folder / name).is_file() and (folder / "config.json").is_file():
                return folder / name, folder / "config.json"
        raise InputError(f"{folder} is not a diffusers AutoencoderKL folder (it needs config.json and "
                         "diffusion_pytorch_model.safetensors or .bin)")
    return tuple(weights.resolve(name) for name in VAE_ENTRIES)


def _mask_file(root: Path) -> Path:
    if (root / MASK_FILE).is_file():
        return root / MASK_FILE
    return weights.resolve(MASK_ENTRY)


def read_config(path: Path) -> tuple[dict, int]:
    """Upstream's UNet config YAML → (its `model:` section, data.resolution)."""
    import yaml

    try:
        cfg = yaml.safe_load(Path(path).read_text())
        return dict(cfg["model"]), int(cfg["data"]["resolution"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path} is not an upstream LatentSync UNet config (needs `model:` and `data: resolution:`;"
                         f" {type(err).__name__}: {err})") from None


def published_config() -> dict:
    """The `model:` section of upstream's configs/unet/stage2_512.yaml (the same in stage2.yaml, 1.5)."""
    return dict(
        act_fn="silu", add_audio_layer=True, attention_head_dim=8, block_out_channels=[320, 640, 1280, 1280],
        center_input_sample=False, cross_attention_dim=384,
        down_block_types=["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"],
        mid_block_type="UNetMidBlock3DCrossAttn", up_block_types=["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3,
        downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=13, layers_per_block=2,
        mid_block_scale_factor=1, norm_eps=1e-5, norm_num_groups=32, out_channels=4, sample_size=64,
        resnet_time_scale_shift="default", use_motion_module=True, motion_module_resolutions=[1, 2, 4, 8],
        motion_module_mid_block=False, motion_module_decoder_only=False, motion_module_type="Vanilla",
        motion_module_kwargs=dict(num_attention_heads=8, num_transformer_block=1,
                                  attention_block_types=["Temporal_Self", "Temporal_Self"],
                                  temporal_position_encoding=True, temporal_position_encoding_max_len=24,
                                  temporal_attention_dim_div=1, zero_initialize=True))


def load(files: LatentSyncFiles, device: str = "cpu") -> LatentSyncNetworks:
    """Build each network from its config, load its file strictly, put it on `device` in eval mode."""
    try:
        from diffusers import AutoencoderKL  # noqa: F401 - fail early, before any file is read
        from transformers.models.whisper.modeling_whisper import WhisperEncoder  # noqa: F401
    except ImportError as err:
        raise WeightsError(f"LatentSync needs diffusers and transformers ({err.name} is not installed): "
                           f"{INSTALL_HINT}") from None
    model = read_config(files.config)[0] if files.config else published_config()
    state = _unet_state(files.unet)  # first: a wrong file fails before any network is built
    encoder = load_whisper(files.whisper)
    if encoder.config.d_model != model["cross_attention_dim"]:
        raise InputError(f"{files.whisper.name} is {encoder.config.d_model} wide but the UNet attends to "
                         f"{model['cross_attention_dim']}-wide audio: pass the whisper file of this checkpoint")
    nets = [load_unet(files.unet, model, state), load_vae(files.vae_config, files.vae_weights), encoder]
    unet, vae, encoder = (net.to(device).eval() for net in nets)
    return LatentSyncNetworks(unet, vae, encoder, read_mask(files.mask), files.resolution)


def load_unet(path: Path, model: dict, state: Optional[dict] = None):
    """latentsync_unet.pt → UNetMotionModel with upstream's GroupNorms, every entry loaded, with one copy of its
    weights in memory: built on the meta device (no random initialisation to allocate and then overwrite), the
    file memory-mapped, its tensors assigned as the parameters. Building then loading held two copies (~10 GB)."""
    state = _unet_state(path) if state is None else state
    try:
        unet = unet_mod.build(model, meta=True)
    except (KeyError, ValueError) as err:
        raise InputError(f"the UNet config does not describe a LatentSync UNet ({err})") from None
    load_strict(unet, unet_mod.remap_state(state), path, mismatch("LatentSync UNet"), assign=True)
    return unet


def _unet_state(path: Path) -> dict:
    obj = read_state(path, mmap=True)
    state = obj.get("state_dict") if isinstance(obj.get("state_dict"), dict) else None
    if state is None or not any(".motion_modules." in k for k in state):
        what = ("a Wav2Lip/lipsync-cli checkpoint" if "arch" in obj or "state_dict" in obj
                else "a MuseTalk or other UNet" if any("down_blocks." in k for k in obj) else "not LatentSync's UNet")
        raise InputError(f"{path} is {what}, not a LatentSync UNet (latentsync_unet.pt from "
                         "ByteDance/LatentSync-1.6 holds {'state_dict': ...} with motion modules)")
    return state


def whisper_encoder_config(dims: dict):
    """openai-whisper ModelDimensions → a transformers WhisperConfig for the encoder."""
    from transformers import WhisperConfig

    width = dims["n_audio_state"]
    return WhisperConfig(num_mel_bins=dims["n_mels"], max_source_positions=dims["n_audio_ctx"], d_model=width,
                         encoder_layers=dims["n_audio_layer"], encoder_attention_heads=dims["n_audio_head"],
                         encoder_ffn_dim=4 * width)


_WHISPER_RENAMES = [("positional_embedding", "embed_positions.weight"), ("blocks.", "layers."),
                    ("attn.query.", "self_attn.q_proj."), ("attn.key.", "self_attn.k_proj."),
                    ("attn.value.", "self_attn.v_proj."), ("attn.out.", "self_attn.out_proj."),
                    ("attn_ln.", "self_attn_layer_norm."), ("mlp.0.", "fc1."), ("mlp.2.", "fc2."),
                    ("mlp_ln.", "final_layer_norm."), ("ln_post.", "layer_norm.")]


def whisper_encoder_state(model_state: dict) -> dict:
    """openai-whisper names of the encoder's entries → transformers WhisperEncoder names (decoder dropped)."""
    out = {}
    for name, value in model_state.items():
        if not name.startswith("encoder."):
            continue
        name = name[len("encoder."):]
        for old, new in _WHISPER_RENAMES:
            name = name.replace(old, new)
        out[name] = value
    return out


def load_whisper(path: Path):
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    obj = read_state(path)
    if not isinstance(obj.get("dims"), dict) or not isinstance(obj.get("model_state_dict"), dict):
        raise InputError(f"{path} is not an openai-whisper checkpoint (needs 'dims' and 'model_state_dict'): pass "
                         "whisper/tiny.pt from the LatentSync checkpoints")
    encoder = WhisperEncoder(whisper_encoder_config(obj["dims"]))
    load_strict(encoder, whisper_encoder_state(obj["model_state_dict"]), path, mismatch("whisper encoder"))
    return encoder


def load_vae(config: Path, weights_file: Path):
    from diffusers import AutoencoderKL

    cfg = dict(_json(config), scaling_factor=VAE_SCALE, shift_factor=0.0)
    vae = AutoencoderKL.from_config(cfg)
    load_strict(vae, rename_old_vae_attention(read_state(weights_file)), weights_file, mismatch("VAE"))
    return vae


def mismatch(what: str) -> str:
    """checkpoint.load_strict's account of a file that does not fit `what`."""
    return (f"does not fit the {what} its config describes ({{problem}}): pass the published LatentSync files, or a "
            "config.yaml that describes this network")


def read_mask(path: Path) -> np.ndarray:
    """mask.png → (H, W) uint8, its first colour channel (upstream reads it as RGB; the three are equal)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path} is not a readable image: copy upstream's latentsync/utils/mask.png again")
    return np.ascontiguousarray(image[:, :, 2])  # BGR → the R channel
