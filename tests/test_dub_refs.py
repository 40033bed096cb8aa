"""`lipsync dub --model <refs checkpoint>`: KMeans references encoded once per clip, predicted mask used."""

import re

import numpy as np
import pytest
import torch
from cli_utils import lipsync_in_process
from conftest import audio_piece, shared_path

from lipsync_cli.config import DubConfig, FaceConfig
from lipsync_cli.generators.registry import load_generator
from lipsync_cli.models import save_checkpoint
from lipsync_cli.generators.refs.network import RefsGenerator
from lipsync_cli.pipeline import dub


@pytest.fixture(scope="module")
def refs_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = RefsGenerator(size=96, n_refs=4, base=8)
    path = tmp_path_factory.mktemp("refs") / "refs.pt"
    save_checkpoint(path, model)
    return path


def test_reference_encoder_runs_k_times_per_clip(tmp_path, face_clip, speech_wav, refs_ckpt):
    gen = load_generator(str(refs_ckpt), device="cpu", batch_size=8)  # many batches per clip
    encoded = []
    gen.model.reference_encoder.register_forward_hook(lambda mod, inp, out: encoded.append(inp[0].shape[0]))
    cfg = DubConfig(model=str(refs_ckpt), faces=FaceConfig(detector="dlib"), quiet=True, device="cpu", chunk_frames=16)
    result = dub(face_clip, speech_wav, tmp_path / "out.mp4", cfg, generator=gen)
    assert result.frames_edited > 0.9 * result.frames
    assert result.frames > 8 * 4, "several batches must have run"
    assert sum(encoded) == 4, f"reference encoder saw {encoded} crops; expected K=4 once per clip"


def test_refs_checkpoint_dubs_shared_clip_and_still_image(tmp_path, face_image, refs_ckpt, capfd):
    video = shared_path("media", "05_turned_head_224_glasses.mp4")
    audio = shared_path("media", "02b_dub_audio_en_16k.wav")
    short = audio_piece(audio, tmp_path / "short.wav", 1.2)
    for src, name in ((video, "clip.mp4"), (face_image, "still.mp4")):
        out = tmp_path / name
        proc = lipsync_in_process(capfd, "dub", src, short, "-o", out, "--model", refs_ckpt, "--detector", "dlib",
                                  "--device", "cpu")
        assert proc.returncode == 0, proc.stderr
        edited = re.search(r"\((\d+) edited", proc.stderr)
        assert out.is_file() and edited, proc.stderr
        assert int(edited.group(1)) > 0, f"{name}: the face was never dubbed: {proc.stderr}"


def test_dub_blends_with_the_blurred_predicted_mask(refs_ckpt):
    """The mask handed to blending is the network's mask blurred (k 5, sigma 3) exactly as in training's blend:
    a hard-edged prediction reaches the frame softened, never as a visible step."""
    from lipsync_cli.generators.refs.network import gaussian_blur

    gen = load_generator(str(refs_ckpt), device="cpu", batch_size=4)
    rng = np.random.default_rng(0)
    gen.set_references(rng.integers(0, 256, (4, 96, 96, 3), dtype=np.uint8))
    hard = torch.zeros(1, 1, 96, 96)
    hard[..., 48:, 20:76] = 1.0  # a box-shaped prediction

    def hard_mask_model(mel, masked, ref_cache=None):
        return torch.full((len(mel), 3, 96, 96), 0.5), hard.expand(len(mel), -1, -1, -1)

    gen.model.forward = hard_mask_model
    _, masks = gen(rng.standard_normal((3, 80, 16)).astype(np.float32),
                   rng.integers(0, 256, (3, 96, 96, 3), dtype=np.uint8))
    assert masks.shape == (3, 96, 96)
    np.testing.assert_allclose(masks[0], gaussian_blur(hard)[0, 0].numpy(), atol=1e-6)
    steps = np.abs(np.diff(masks[0], axis=1)).max()
    assert steps < 0.5, f"largest jump between neighbouring mask pixels {steps:.2f}: not softened"
