"""bf16 autocast (chosen automatically on CPUs with native bf16, and selectable anywhere with precision="bf16")
must draw the same mouth as fp32 within the documented tolerance (the Wav2Lip family's BF16_*_LEVELS)."""

import json

import numpy as np
import pytest
from ckpt_utils import recipe_state_dict, write_public_layout
from conftest import astronaut_face, make_speech, shared_path

from lipsync_cli import media
from lipsync_cli.audio import log_mel
from lipsync_cli.device import cpu_supports_bf16, pick_precision
from lipsync_cli.generators.registry import load_generator
from lipsync_cli.generators.wav2lip import generator as wav2lip_generator
from lipsync_cli.generators.wav2lip.generator import BF16_MAX_LEVELS, BF16_MEAN_LEVELS


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory):
    """The Wav2Lip generator with the conformance weights (deterministic, far from zero, unlike an init)."""
    keys = json.loads(shared_path("reference", "wav2lip_arch.json").read_text())["wav2lip"]["keys"]
    return write_public_layout(tmp_path_factory.mktemp("w2l") / "wav2lip.pth", recipe_state_dict(keys))


def test_bf16_output_stays_within_the_documented_tolerance(generator_file, tmp_path):
    import cv2

    face = cv2.resize(astronaut_face()[20:220, 150:330], (96, 96), interpolation=cv2.INTER_AREA)  # the face
    crops = np.stack([np.roll(face, k, axis=1) for k in range(8)])  # (8, 96, 96, 3) uint8 RGB
    mel = log_mel(media.load_audio(make_speech(tmp_path / "s.wav", "Testing the half precision path.")))
    mels = np.stack([mel[:, 10 * k:10 * k + 16] for k in range(8)]).astype(np.float32)
    outs = {p: load_generator(str(generator_file), device="cpu", precision=p, batch_size=8)(mels, crops)[0]
            for p in ("fp32", "bf16")}
    diff = np.abs(outs["fp32"].astype(np.int16) - outs["bf16"].astype(np.int16))
    print(f"bf16 vs fp32: max {diff.max()} mean {diff.mean():.2f} levels")
    assert outs["fp32"].std() > 5  # a real image, not a constant that any precision reproduces
    assert diff.max() > 0  # bf16 really ran: a precision setting that was ignored would give identical crops
    assert diff.max() <= BF16_MAX_LEVELS and diff.mean() <= BF16_MEAN_LEVELS


def test_auto_precision():
    assert pick_precision("auto", "cuda") == "fp16"
    assert pick_precision("auto", "cpu") == ("bf16" if cpu_supports_bf16() else "fp32")
    assert pick_precision("fp32", "cuda") == "fp32"


def test_channels_last_generator_draws_the_same_mouth(generator_file, monkeypatch):
    """The Wav2Lip generator runs in channels_last (faster on CPUs); it must draw what the contiguous network
    draws, within the conformance tolerance (1e-4 of [0, 1]: at most 1 uint8 level after rounding)."""
    import torch

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (4, 96, 96, 3), dtype=np.uint8)
    mels = rng.standard_normal((4, 80, 16)).astype(np.float32)
    outs = {}
    for layout, channels_last in (("channels_last", True), ("contiguous", False)):
        monkeypatch.setattr(wav2lip_generator, "CHANNELS_LAST", channels_last)
        gen = load_generator(str(generator_file), device="cpu", precision="fp32", batch_size=4)
        conv = next(m for m in gen.model.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
        outs[layout] = gen(mels, crops)[0].astype(np.int16)
    assert outs["contiguous"].std() > 5
    assert np.abs(outs["channels_last"] - outs["contiguous"]).max() <= 1
