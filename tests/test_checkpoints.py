"""Checkpoint loading/saving: public Wav2Lip layouts, our self-describing format, and the one-line
errors users get for the wrong kind of file, a broken file, or a file carrying code."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import torch
from ckpt_utils import write_public_checkpoint

from lipsync_cli.errors import InputError
from lipsync_cli.models import checkpoint_kind, load_checkpoint, read_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def disc_file(tmp_path_factory):
    """The smallest public network (the quality discriminator) in the public layout."""
    return write_public_checkpoint(tmp_path_factory.mktemp("ckpt") / "disc.pth", "disc_qual", seed=3)


@pytest.fixture(scope="module")
def expert_file(tmp_path_factory):
    return write_public_checkpoint(tmp_path_factory.mktemp("ckpt") / "lipsync_expert.pth", "syncnet", seed=1)


def _public_state(path) -> dict:
    return {k.removeprefix("module."): v for k, v in torch.load(path, weights_only=True)["state_dict"].items()}


def _assert_one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400
    return msg


@pytest.mark.parametrize("layout", ["wrapped+module", "wrapped", "bare+module", "bare"])
def test_public_layout_variants_load_the_same_weights(disc_file, tmp_path, layout):
    state = _public_state(disc_file)
    inner = {f"module.{k}": v for k, v in state.items()} if "module" in layout else state
    path = tmp_path / "variant.pth"
    torch.save({"state_dict": inner, "global_step": 5} if layout.startswith("wrapped") else inner, path)
    model = load_checkpoint(path, rgb=False)
    assert model.arch == "disc_qual" and not model.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_public_weights_are_converted_to_rgb(disc_file):
    """The first conv of a BGR-trained file gets its input channels reversed; nothing else changes."""
    state = _public_state(disc_file)
    model = load_checkpoint(disc_file)
    first = "face_encoder_blocks.0.0.conv_block.0.weight"
    assert torch.equal(model.state_dict()[first], state[first].flip(1))
    assert torch.equal(model.state_dict()["binary_pred.0.weight"], state["binary_pred.0.weight"])


def test_checkpoint_kind_recognises_each_public_network(disc_file, expert_file, tmp_path):
    gen = write_public_checkpoint(tmp_path / "wav2lip.pth", "wav2lip")
    assert checkpoint_kind(gen) == "generator"
    assert checkpoint_kind(expert_file) == "expert"
    assert checkpoint_kind(disc_file) == "discriminator"


def test_wrong_kind_says_what_the_file_is(expert_file):
    with pytest.raises(InputError) as err:
        load_checkpoint(expert_file, expect="generator")
    msg = _assert_one_line(err)
    assert "lipsync_expert.pth is a lip-sync expert checkpoint" in msg and "generator is needed" in msg
    assert load_checkpoint(expert_file, expect="expert").kind == "expert"


def test_our_format_round_trip_keeps_weights_without_recolouring(expert_file, tmp_path):
    """A public model saved in our format reloads identically (its RGB conversion is not applied twice)."""
    model = load_checkpoint(expert_file)
    path = save_checkpoint(tmp_path / "run" / "expert.pt", model, step=7, note="x")
    raw = read_checkpoint(path)
    assert raw["arch"] == "syncnet" and raw["config"] == {} and raw["step"] == 7 and raw["note"] == "x"
    again = load_checkpoint(path, expect="expert")
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name
    assert list(tmp_path.joinpath("run").iterdir()) == [path]  # no temp file left behind


def test_our_format_rebuilds_the_config(tmp_path):
    from lipsync_cli.models import get_architecture

    model = get_architecture("refs")(size=64, n_refs=3, base=8, mask_head=False)
    # DataParallel-style wrapper: save_checkpoint stores the bare network
    path = save_checkpoint(tmp_path / "refs.pt", torch.nn.DataParallel(model))
    again = load_checkpoint(path, expect="generator")
    assert type(again) is type(model) and again.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


def test_failed_save_keeps_the_old_file_and_leaves_no_temp(disc_file, tmp_path, monkeypatch):
    model = load_checkpoint(disc_file)
    target = tmp_path / "last.pt"
    target.write_bytes(b"previous checkpoint")

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(target, model)
    assert target.read_bytes() == b"previous checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_truncated_file_is_a_one_line_input_error(disc_file, tmp_path):
    cut = tmp_path / "cut.pth"
    cut.write_bytes(disc_file.read_bytes()[: disc_file.stat().st_size // 2])
    with pytest.raises(InputError) as err:
        load_checkpoint(cut)
    assert "cut.pth is not a readable checkpoint" in _assert_one_line(err)


def test_non_checkpoint_files_are_input_errors(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(InputError):
        load_checkpoint(text)
    with pytest.raises(InputError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pth")
    other = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "conv1.weight": torch.zeros(1)}, other)
    with pytest.raises(InputError, match="not a Wav2Lip or lipsync-cli checkpoint"):
        load_checkpoint(other)
    alien = tmp_path / "alien.pt"
    torch.save({"arch": "vit_huge", "config": {}, "state_dict": {}}, alien)
    with pytest.raises(InputError, match="vit_huge"):
        load_checkpoint(alien)


def test_different_variant_is_explained_not_dumped(disc_file, tmp_path):
    state = _public_state(disc_file)
    state["face_encoder_blocks.0.0.conv_block.0.weight"] = torch.zeros(32, 3, 5, 5)
    path = tmp_path / "variant.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(InputError) as err:
        load_checkpoint(path)
    msg = _assert_one_line(err)
    assert "visual-quality discriminator" in msg and "different variant" in msg and "[32, 3, 5, 5]" in msg


class _Payload:
    """Unpickling this would create `marker`: the shape of a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dumps"])
def test_pickle_carrying_code_is_refused_without_running_it(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": {"x": torch.zeros(1)}, "payload": _Payload(marker)}
    if writer == "torch.save":  # zip container
        torch.save(payload, path)
    else:  # a bare pickle stream, as old torch versions or hand-made files have
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(InputError) as err:
        load_checkpoint(path)
    assert "refusing to load" in _assert_one_line(err)
    assert not marker.exists()


def test_importing_models_does_not_import_torch():
    code = "import sys, lipsync_cli.models as m; list(m.ARCHITECTURES); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_registered_architecture_builds_and_names_itself():
    """The registry lists each network once, including both discriminators, and each class carries its name."""
    from lipsync_cli.models import ARCHITECTURES, get_architecture

    assert {"wav2lip", "syncnet", "disc_qual", "refs", "disc_refs"} <= set(ARCHITECTURES)
    for name in ARCHITECTURES:
        cls = get_architecture(name)
        assert cls.arch == name and cls.kind in ("generator", "expert", "discriminator")
