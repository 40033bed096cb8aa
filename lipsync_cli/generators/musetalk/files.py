"""The three MuseTalk parts on disk → loaded networks (strictly: every tensor, by name and shape).

A user's MuseTalk `models/` folder (as upstream's download script lays it out) is read as is:

  musetalkV15/unet.pth, musetalkV15/musetalk.json    the UNet (TMElyralab/MuseTalk)
  sd-vae/config.json + diffusion_pytorch_model.bin   the VAE (stabilityai/sd-vae-ft-mse)
  whisper/config.json + pytorch_model.bin (+ preprocessor_config.json)   whisper-tiny (openai)

`--model musetalk` finds the same layout under $LIPSYNC_WEIGHTS_DIR/musetalk or the cache (the
weights.toml entries with architecture "musetalk", each verified like every other weights file).
The networks are built from their configs with diffusers / transformers and loaded here rather than
with from_pretrained, so a wrong or partial file is a one-line error instead of a silently
re-initialised layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lipsync_cli import weights
from lipsync_cli.errors import InputError, WeightsError
from lipsync_cli.models.checkpoint import _public_arch, _strip_prefixes, load_strict, read_checkpoint

INSTALL_HINT = 'pip install "lipsync-cli[musetalk]"'
NAME = "musetalk"  # the --model name that selects this family from weights.toml
UNET_WEIGHTS, UNET_CONFIG = "musetalkV15/unet.pth", "musetalkV15/musetalk.json"
VAE_DIR, WHISPER_DIR = "sd-vae", "whisper"
VAE_WEIGHTS = ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors")
WHISPER_WEIGHTS = ("pytorch_model.bin", "model.safetensors")
CONFIG, PREPROCESSOR = "config.json", "preprocessor_config.json"
# weights.toml entry → which file of the layout it is
ENTRIES = {"musetalk_unet": "unet", "musetalk_config": "unet_config", "sd_vae_config": "vae_config",
           "sd_vae": "vae_weights", "whisper_tiny_config": "whisper_config", "whisper_tiny": "whisper_weights",
           "whisper_tiny_preprocessor": "whisper_preprocessor"}
# sd-vae-ft-mse's weight file predates diffusers' attention rename; its mid-block attentions use these names
OLD_VAE_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
WHISPER_PREFIXES = ("model.",)  # openai/whisper-tiny is saved as WhisperForConditionalGeneration


@dataclass(frozen=True)
class MuseTalkFiles:
    unet: Path
    unet_config: Path
    vae_config: Path
    vae_weights: Path
    whisper_config: Path
    whisper_weights: Path
    whisper_preprocessor: Optional[Path] = None  # absent: transformers' defaults (= whisper-tiny's file)


@dataclass
class MuseTalkNetworks:
    """The loaded parts, in eval mode on one device, float32."""

    unet: object  # diffusers UNet2DConditionModel: (B, 8, 32, 32) latents + (B, 50, 384) context → (B, 4, 32, 32)
    vae: object  # diffusers AutoencoderKL: (B, 3, 256, 256) RGB in [-1, 1] ⇄ (B, 4, 32, 32) latents
    encoder: object  # transformers WhisperEncoder: (1, 80, 3000) log-mel → 5 × (1, 1500, 384) hidden states
    extractor: object  # transformers WhisperFeatureExtractor: 16 kHz samples → log-mel
    scaling_factor: float  # the VAE config's latent scale (0.18215)


def is_musetalk(name_or_path: str) -> bool:
    """`--model musetalk`, or a folder (checkpoints of the other families are single files)."""
    return str(name_or_path) == NAME or Path(name_or_path).expanduser().is_dir()


def locate(name_or_path: str) -> MuseTalkFiles:
    """The part files of a MuseTalk models/ folder, or of the weights.toml entries (verified, downloaded)."""
    if str(name_or_path) == NAME:
        return MuseTalkFiles(**{field: weights.resolve(name) for name, field in ENTRIES.items()})
    root = Path(name_or_path).expanduser()
    if (root / "models" / UNET_CONFIG).is_file():  # the MuseTalk checkout itself was given
        root = root / "models"
    return MuseTalkFiles(
        unet=_need(root, UNET_WEIGHTS), unet_config=_need(root, UNET_CONFIG),
        vae_config=_need(root, f"{VAE_DIR}/{CONFIG}"), vae_weights=_need_one(root, VAE_DIR, VAE_WEIGHTS),
        whisper_config=_need(root, f"{WHISPER_DIR}/{CONFIG}"),
        whisper_weights=_need_one(root, WHISPER_DIR, WHISPER_WEIGHTS),
        whisper_preprocessor=_maybe(root / WHISPER_DIR / PREPROCESSOR))


def _need(root: Path, rel: str) -> Path:
    path = root / rel
    if not path.is_file():
        what = "a Wav2Lip checkpoint, not a MuseTalk models/ folder" if _holds_wav2lip(root) else "not a MuseTalk models/ folder"
        raise InputError(f"{root} lacks {rel}: {what} (it needs {UNET_WEIGHTS}, {UNET_CONFIG}, {VAE_DIR}/ and "
                         f"{WHISPER_DIR}/; or pass --model {NAME} for the cached weights)")
    return path


def _need_one(root: Path, folder: str, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / folder / name).is_file():
            return root / folder / name
    return _need(root, f"{folder}/{names[0]}")


def _maybe(path: Path) -> Optional[Path]:
    return path if path.is_file() else None


def _holds_wav2lip(root: Path) -> bool:
    return any(p.suffix in (".pth", ".pt", ".tar") for p in root.glob("*")) and not (root / "musetalkV15").is_dir()


def load(files: MuseTalkFiles, device: str = "cpu") -> MuseTalkNetworks:
    """Build each network from its config, load its file strictly, put it on `device` in eval mode."""
    try:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import WhisperConfig, WhisperFeatureExtractor
        from transformers.models.whisper.modeling_whisper import WhisperEncoder
    except ImportError as err:
        raise WeightsError(f"--model {NAME} needs diffusers and transformers ({err.name} is not installed): "
                           f"{INSTALL_HINT}") from None
    unet = load_unet(files, UNet2DConditionModel)
    vae_config = _json(files.vae_config)
    vae = AutoencoderKL.from_config(vae_config)
    load_strict(vae, rename_old_vae_attention(read_state(files.vae_weights)), files.vae_weights, mismatch("VAE"))
    encoder = WhisperEncoder(WhisperConfig.from_json_file(str(files.whisper_config)))
    load_strict(encoder, whisper_encoder_state(read_state(files.whisper_weights)), files.whisper_weights,
                mismatch("whisper encoder"))
    extractor = (WhisperFeatureExtractor.from_json_file(str(files.whisper_preprocessor))
                 if files.whisper_preprocessor else WhisperFeatureExtractor())
    nets = [net.to(device).eval() for net in (unet, vae, encoder)]
    return MuseTalkNetworks(*nets, extractor=extractor, scaling_factor=float(vae.config.scaling_factor))


def load_unet(files: MuseTalkFiles, unet_class):
    """The 3.4 GB UNet with one copy of its weights in memory: built on the meta device (no random
    initialisation to allocate and then overwrite), its file memory-mapped, the mapped tensors assigned as its
    parameters. Building then loading, as before, peaked at two copies (~7 GB) per worker."""
    import torch

    with torch.device("meta"):
        unet = unet_class.from_config(_json(files.unet_config))
    load_strict(unet, _unet_state(files.unet, mmap=True), files.unet, mismatch("MuseTalk UNet"), assign=True)
    return unet


def _json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{path} is not a readable JSON config ({err}): copy it again") from None


def read_state(path: Path, mmap: bool = False) -> dict:
    """A state dict from a .safetensors file or a torch file (read as data only, weights_only); mmap: the
    tensors stay backed by the file (no copy in memory until a page is read)."""
    if Path(path).suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))  # safetensors memory-maps by itself
        except Exception as err:  # noqa: BLE001 - a damaged header fails in several ways
            raise InputError(f"{Path(path).name} is not a readable safetensors file ({err}): copy it again") from None

    return read_checkpoint(path, mmap=mmap)


def _unet_state(path: Path, mmap: bool = False) -> dict:
    state = read_state(path, mmap=mmap)

    inner = state.get("state_dict", state)
    if "arch" in state or (isinstance(inner, dict) and _public_arch(_strip_prefixes(inner))):
        raise InputError(f"{path} is a Wav2Lip/lipsync-cli checkpoint, not MuseTalk's UNet: pass it as "
                         f"--model {path} on its own, or a MuseTalk models/ folder")
    return state


def rename_old_vae_attention(state: dict) -> dict:
    """Map the pre-rename attention names (…attentions.0.query.weight) to diffusers' (…to_q.weight)."""
    renamed = {}
    for key, value in state.items():
        head, _, leaf = key.rpartition(".")  # leaf: weight / bias
        module, _, name = head.rpartition(".")
        if ".attentions." in key and name in OLD_VAE_ATTENTION:
            key = f"{module}.{OLD_VAE_ATTENTION[name]}.{leaf}"
        renamed[key] = value
    return renamed


def whisper_encoder_state(state: dict) -> dict:
    """The encoder's entries of a whisper file (WhisperModel or ...ForConditionalGeneration), without
    their prefixes; the decoder's entries are left out (MuseTalk never runs it)."""
    for prefix in WHISPER_PREFIXES:
        if any(k.startswith(prefix + "encoder.") for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}


def mismatch(what: str) -> str:
    """checkpoint.load_strict's account of a file that does not fit `what`."""
    return f"does not fit the {what} its config describes ({{problem}}): pass the published MuseTalk 1.5 files"
