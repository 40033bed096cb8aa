"""Reading and writing model checkpoints.

Two layouts are read:
- ours: {"arch": name, "config": ctor kwargs, "state_dict": ..., **extra}; the file rebuilds its model;
- public Wav2Lip files: {"state_dict": {"module.<name>": tensor}, "optimizer": ...} or a bare state
  dict, with or without the "module." prefix DataParallel adds; the network is recognised from
  its parameter names.

Everything is read with torch.load(weights_only=True): a checkpoint is data, never code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from lipsync_cli.errors import InputError
from lipsync_cli.media.atomic import atomic_output
from lipsync_cli.models.registry import ARCHITECTURES, KIND_NAMES, get_architecture

# Prefixes wrappers add to parameter names: DataParallel/DDP ("module.") and torch.compile ("_orig_mod.")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

# Parameter-name signatures of the public Wav2Lip networks: all of these prefixes occur in the file
PUBLIC_SIGNATURES = {
    "wav2lip": ("face_encoder_blocks.", "audio_encoder.", "face_decoder_blocks.", "output_block."),
    "syncnet": ("face_encoder.", "audio_encoder."),
    "disc_qual": ("face_encoder_blocks.", "binary_pred."),
}

# The public networks were trained on OpenCV's BGR images. This project passes RGB everywhere, so
# on load we reorder the colour channels of the layers that read or write pixels: {param: dim}.
# Permuting a conv's channels is exact (same sums, same outputs, colours swapped).
PUBLIC_COLOUR_PARAMS = {
    "wav2lip": {"face_encoder_blocks.0.0.conv_block.0.weight": 1,
                "output_block.1.weight": 0, "output_block.1.bias": 0},
    "syncnet": {"face_encoder.0.conv_block.0.weight": 1},
    "disc_qual": {"face_encoder_blocks.0.0.conv_block.0.weight": 1},
}


def read_checkpoint(path: str | Path, device: str = "cpu", mmap: bool = False) -> dict:
    """Load a checkpoint file as data only. Returns the raw object (a dict); InputError when the
    file is missing, unreadable, truncated, or carries code that weights_only refuses to run.
    mmap: tensors backed by the file (torch's zip format; the legacy format is read into memory)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path} (pass an existing .pth/.pt file or a weights name)")
    try:
        obj = torch.load(path, map_location=device, weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except Exception as e:  # noqa: BLE001 - a damaged pickle fails in many ways (IndexError, KeyError...)
        if "weights only" in str(e).lower():
            raise InputError(f"{path.name} contains Python objects other than weights (code could run), "
                             "refusing to load it: use a plain state-dict checkpoint from a source you trust") from e
        raise InputError(f"{path.name} is not a readable checkpoint ({type(e).__name__}: {_first_line(e)}): "
                         "it may be truncated or corrupt, download or copy it again") from e
    if not isinstance(obj, dict):
        raise InputError(f"{path.name} holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def load_checkpoint(path: str | Path, device: str = "cpu", expect: str | None = None, rgb: bool = True):
    """Rebuild the network a checkpoint file holds, load it strictly, return it in eval mode on device.

    expect: "generator", "expert" or "discriminator" to refuse other kinds with a message saying
    what the file is. rgb: convert public (BGR-trained) Wav2Lip weights so the model takes and
    returns RGB like the rest of the project; rgb=False keeps the file's exact arithmetic.
    """
    path = Path(path)
    obj = read_checkpoint(path, device)
    arch, config, state = _identify(path, obj)
    cls = get_architecture(arch)
    if expect is not None and cls.kind != expect:
        raise InputError(f"{path.name} is a {KIND_NAMES[cls.kind]} checkpoint ({arch}), but a "
                         f"{KIND_NAMES.get(expect, expect)} is needed here: pass a {expect} checkpoint")
    if "arch" not in obj and rgb:
        state = _bgr_to_rgb(arch, state)
    model = cls(**config)
    load_strict(model, state, path, f"looks like a {KIND_NAMES[model.kind]} ({model.arch}) but is a different variant "
                                    "({problem}): pass a checkpoint of the standard network")
    return model.to(device).eval()


def checkpoint_kind(path: str | Path) -> str:
    """"generator", "expert" or "discriminator": what the file holds (loads tensors, builds no model)."""
    arch, _, _ = _identify(Path(path), read_checkpoint(path))
    return get_architecture(arch).kind


def save_checkpoint(path: str | Path, model, **extra) -> Path:
    """Write {"arch", "config", "state_dict", **extra} atomically (temp file in the same folder,
    renamed only once fully written, so a crash never leaves a half-written checkpoint)."""
    import torch

    path = Path(path)
    net = unwrap(model)
    payload = {"arch": net.arch, "config": dict(net.config), "state_dict": net.state_dict(), **extra}

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
    return path


def _identify(path: Path, obj: dict) -> tuple[str, dict, dict]:
    """(arch, ctor kwargs, clean state dict) for either layout."""
    if "arch" in obj:
        if obj["arch"] not in ARCHITECTURES:
            raise InputError(f"{path.name} was written for architecture {obj['arch']!r}, which this version "
                             f"does not have (known: {', '.join(ARCHITECTURES)}): upgrade lipsync-cli")
        return obj["arch"], dict(obj.get("config") or {}), _strip_prefixes(obj["state_dict"])
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict) or not state:
        raise InputError(f"{path.name} has no state_dict: not a model checkpoint")
    state = _strip_prefixes(state)
    arch = _public_arch(state)
    if arch is None:
        heads = sorted({str(k).split(".")[0] for k in state})[:4]
        raise InputError(f"{path.name} is not a Wav2Lip or lipsync-cli checkpoint (its {len(state)} entries "
                         f"start with {', '.join(heads)}): pass a wav2lip, lipsync_expert or lipsync-cli file")
    return arch, {}, state


def _strip_prefixes(state: dict) -> dict:
    """Drop wrapper prefixes ("module.", "_orig_mod.") that every key carries."""
    for prefix in WRAPPER_PREFIXES:
        if state and all(str(k).startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _public_arch(state: dict) -> str | None:
    """Which public network a state dict is from, by its parameter-name prefixes."""
    keys = list(state)
    for arch, prefixes in PUBLIC_SIGNATURES.items():
        if all(any(k.startswith(p) for k in keys) for p in prefixes):
            return arch
    return None


def _bgr_to_rgb(arch: str, state: dict) -> dict:
    """Reverse the order of each group of 3 colour channels in the pixel-facing layers."""
    import torch

    state = dict(state)
    for name, dim in PUBLIC_COLOUR_PARAMS[arch].items():
        if name in state and state[name].shape[dim] % 3 == 0:
            n = state[name].shape[dim]
            order = torch.arange(n).view(-1, 3).flip(1).flatten()
            state[name] = state[name].index_select(dim, order.to(state[name].device))
    return state


def state_mismatch(own: dict, state: dict) -> str | None:
    """None when `state` fits a module's own state dict key for key and shape; else a one-line account
    ('3 missing, 0 unexpected, 1 mis-shaped tensors; conv.weight is [8, 3], expected [16, 3]')."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or wrong):
        return None
    example = (f"{wrong[0]} is {list(state[wrong[0]].shape)}, expected {list(own[wrong[0]].shape)}" if wrong
               else f"e.g. {(missing or unexpected)[0]}")
    return f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} mis-shaped tensors; {example}"


def load_strict(module, state: dict, path, mismatch: str, assign: bool = False) -> None:
    """load_state_dict(strict=True), with a one-line InputError instead of a shape dump: the file's name, then
    `mismatch` with {problem} filled in (state_mismatch's account).

    assign: the state's tensors become the module's (a module built on the meta device has none to copy into, and a
    memory-mapped file's tensors stay mapped: one copy of the weights in memory), cast to the module's dtype where
    they differ, as a copy would; a tensor left on the meta device is an error."""
    own = module.state_dict()
    problem = state_mismatch(own, state)
    if problem:
        raise InputError(f"{Path(path).name} {mismatch.format(problem=problem)}")
    if assign:
        state = {k: v if v.dtype == own[k].dtype else v.to(own[k].dtype) for k, v in state.items()}
    module.load_state_dict(state, strict=True, assign=assign)
    left = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta] if assign else []
    if left:  # a tensor the file does not hold and the module does not make without a device
        raise InputError(f"{Path(path).name} leaves {len(left)} tensors of the network unset (e.g. {left[0]}): it is "
                         "not a complete checkpoint of this network")


def unwrap(model):
    """The bare network inside DataParallel/DDP (.module) or torch.compile (._orig_mod) wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def _first_line(e: BaseException) -> str:
    """The first line of an exception's message, short enough for a one-line error."""
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:160]
