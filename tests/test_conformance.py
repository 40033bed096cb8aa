"""Public Wav2Lip checkpoints load and compute exactly as upstream: parameter names, shapes and
order, network outputs (within 1e-4) and the log-mel front-end (within 1e-3), against the
conformance vectors in ../shared/reference (see its README)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ckpt_utils import recipe_state_dict, write_public_layout
from conftest import shared_path

from lipsync_cli.audio import log_mel
from lipsync_cli.models import get_architecture, load_checkpoint

# reference json name -> our architecture name
NETWORKS = {"wav2lip": "wav2lip", "syncnet_color": "syncnet", "disc_qual": "disc_qual"}
TOL = 1e-4


@pytest.fixture(scope="module")
def arch_ref() -> dict:
    return json.loads(shared_path("reference", "wav2lip_arch.json").read_text())


@pytest.fixture(scope="module")
def outputs() -> dict:
    with np.load(shared_path("reference", "wav2lip_outputs.npz")) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def public_files(arch_ref, tmp_path_factory) -> dict:
    """ref name -> a checkpoint in the public layout holding the README's deterministic weights."""
    folder = tmp_path_factory.mktemp("public")
    return {ref: write_public_layout(folder / f"{ref}.pth", recipe_state_dict(arch_ref[ref]["keys"]))
            for ref in NETWORKS}


def _bgr(x: np.ndarray, dim: int = 1) -> torch.Tensor:
    """Reverse each group of 3 colour channels along dim (RGB <-> BGR for stacked images)."""
    order = np.arange(x.shape[dim]).reshape(-1, 3)[:, ::-1].ravel()
    return torch.from_numpy(np.ascontiguousarray(np.take(x, order, axis=dim)))


def _max_diff(ours: torch.Tensor, ref: np.ndarray) -> float:
    assert tuple(ours.shape) == ref.shape
    return float(np.abs(ours.detach().numpy() - ref).max())


@pytest.mark.parametrize("ref", list(NETWORKS))
def test_parameter_names_shapes_and_order(arch_ref, ref):
    model = get_architecture(NETWORKS[ref])()
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
    assert ours == arch_ref[ref]["keys"]
    assert sum(p.numel() for p in model.parameters()) == arch_ref[ref]["n_params"]


def test_generator_matches_reference(public_files, outputs):
    mel, faces = torch.from_numpy(outputs["in_mel"]), outputs["in_face6"]
    with torch.no_grad():
        exact = load_checkpoint(public_files["wav2lip"], rgb=False)
        assert exact.kind == "generator" and not exact.training
        assert _max_diff(exact(mel, torch.from_numpy(faces)), outputs["wav2lip_out"]) < TOL
        # default load takes/returns RGB: the same network with its colour channels reordered
        rgb = load_checkpoint(public_files["wav2lip"])
        out = rgb(mel, _bgr(faces))
    assert _max_diff(_bgr(out.numpy()), outputs["wav2lip_out"]) < TOL


def test_generator_sequence_input_matches_per_frame(public_files, outputs):
    """(B, T, 1, 80, 16) + (B, 6, T, 96, 96) gives each frame what the 4-D call gives it."""
    model = load_checkpoint(public_files["wav2lip"])
    mel, faces = torch.from_numpy(outputs["in_mel"]), torch.from_numpy(outputs["in_face6"])
    with torch.no_grad():
        seq = model(torch.stack([mel, mel.flip(0)], dim=1), torch.stack([faces, faces.flip(0)], dim=2))
        single = model(mel, faces)
    assert seq.shape == (2, 3, 2, 96, 96)
    torch.testing.assert_close(seq[:, :, 0], single, atol=1e-5, rtol=0)
    torch.testing.assert_close(seq[:, :, 1], single.flip(0), atol=1e-5, rtol=0)


def test_expert_matches_reference(public_files, outputs):
    mel, faces = torch.from_numpy(outputs["in_mel"]), outputs["in_face15"]
    with torch.no_grad():
        exact = load_checkpoint(public_files["syncnet_color"], rgb=False)
        audio, face = exact(mel, torch.from_numpy(faces))
        rgb_audio, rgb_face = load_checkpoint(public_files["syncnet_color"])(mel, _bgr(faces))
    assert exact.kind == "expert"
    for ours in (audio, rgb_audio):
        assert _max_diff(ours, outputs["syncnet_audio"]) < TOL
    for ours in (face, rgb_face):
        assert _max_diff(ours, outputs["syncnet_face"]) < TOL
    torch.testing.assert_close(face.norm(dim=1), torch.ones(2))


def test_discriminator_matches_reference(public_files, outputs):
    faces = outputs["in_face3"]
    with torch.no_grad():
        exact = load_checkpoint(public_files["disc_qual"], rgb=False)
        scores = exact(torch.from_numpy(faces))
        rgb_scores = load_checkpoint(public_files["disc_qual"])(_bgr(faces))
    assert exact.kind == "discriminator"
    assert _max_diff(scores, outputs["disc_out"]) < TOL
    assert _max_diff(rgb_scores, outputs["disc_out"]) < TOL


def test_discriminator_generator_loss_is_bce_against_real(public_files, outputs):
    """The generator's GAN loss (Wav2Lip's "perceptual" loss): BCE of the scores of generated faces vs real."""
    from lipsync_cli.train.losses import bce

    model = load_checkpoint(public_files["disc_qual"], rgb=False)
    faces = torch.from_numpy(outputs["in_face3"]).requires_grad_(True)
    loss = bce(model(faces), torch.ones(1))
    expected = -np.log(outputs["disc_out"]).mean()
    assert abs(loss.item() - expected) < 1e-4
    loss.backward()  # the generator's GAN loss must reach the generated pixels
    assert faces.grad is not None and faces.grad.abs().sum() > 0


def test_log_mel_matches_reference():
    with np.load(shared_path("reference", "wav2lip_mel.npz")) as npz:
        signal, ref = npz["signal"], npz["mel"]
    mel = log_mel(signal)
    assert mel.dtype == np.float32 and mel.shape == ref.shape == (80, 241)
    assert np.abs(mel - ref).max() < 1e-3


def test_log_mel_made_in_parts_equals_one_pass_over_the_whole_signal():
    """log_mel works MEL_PART frames at a time (memory flat in the audio's length): across the part boundaries the
    result is the one-pass STFT → mel → dB → scale of the whole signal, bit for bit."""
    from lipsync_cli import audio

    wav = (np.random.default_rng(0).standard_normal(16000 * 23 + 123) * 0.1).astype(np.float32)
    padded = np.pad(audio.preemphasis(wav), audio.N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, audio.N_FFT)[::audio.HOP_LENGTH]  # all at once
    mel = audio.mel_filters() @ np.abs(np.fft.rfft(frames * audio.hann_window(), axis=1)).T.astype(np.float32)
    db = 20 * np.log10(np.maximum(audio.AMPLITUDE_FLOOR, mel)) - audio.REF_LEVEL_DB
    whole = np.clip(2 * audio.MAX_ABS_VALUE * (db - audio.MIN_LEVEL_DB) / -audio.MIN_LEVEL_DB - audio.MAX_ABS_VALUE,
                    -audio.MAX_ABS_VALUE, audio.MAX_ABS_VALUE).astype(np.float32)
    ours = log_mel(wav)
    assert ours.shape == whole.shape == (80, 1841) and 1841 > 2 * audio.MEL_PART  # three parts
    assert np.array_equal(ours, whole)
