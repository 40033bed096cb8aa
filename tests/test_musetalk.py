"""MuseTalk 1.5 family (issue 11): conformance with ../shared/reference/musetalk (its README is the
specification), then `lipsync dub --model <MuseTalk models/ folder>` end to end with tiny networks saved
in the published on-disk layout, and the bad inputs a user can give it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_utils import held_capfd, hold_capfd, lipsync_in_process  # noqa: F401 (hold_capfd: autouse fixture)
from conftest import audio_piece, check_dub_output, ffmpeg_bin, make_speech, shared_path

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import torch  # noqa: E402

from lipsync_cli.generators.musetalk import whisper_audio as mt_audio  # noqa: E402
from lipsync_cli.generators.musetalk import crop_rule as mt_crop  # noqa: E402
from lipsync_cli.generators.musetalk import files as mt_files  # noqa: E402


@pytest.fixture(scope="module")
def arch():
    return json.loads(shared_path("reference", "musetalk", "musetalk_arch.json").read_text())


@pytest.fixture(scope="module")
def vec():
    return np.load(shared_path("reference", "musetalk", "musetalk_vectors.npz"))


@pytest.fixture(scope="module")
def models_dir(arch, tmp_path_factory):
    from musetalk_utils import write_models_folder

    return write_models_folder(tmp_path_factory.mktemp("MuseTalk") / "models", arch)


@pytest.fixture(scope="module")
def gen(models_dir):
    from lipsync_cli.generators.registry import load_generator

    return load_generator(str(models_dir), device="cpu", precision="fp32", batch_size=4)


def keys_of(module) -> list:
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in module.state_dict().items()]


# ---------------------------------------------------------------- the real networks' names, shapes and counts


def test_real_unet_config_builds_the_published_key_list(arch):
    from diffusers import UNet2DConditionModel

    real = arch["real"]["unet"]
    with torch.device("meta"):  # 850 M parameters: names and shapes only, no memory
        unet = UNet2DConditionModel.from_config(real["config"])
    assert keys_of(unet) == real["keys"]
    assert len(real["keys"]) == real["n_keys"] == 686
    assert sum(p.numel() for p in unet.parameters()) == real["n_params"]
    state = {k: torch.empty(s, device="meta") for k, s, _ in real["keys"]}
    mt_files.load_strict(unet, state, Path("unet.pth"), mt_files.mismatch("MuseTalk UNet"))  # the file's names load as they are


def test_real_vae_file_names_old_attention_names_map_onto_the_module(arch):
    from diffusers import AutoencoderKL
    from musetalk_utils import old_vae_names

    real = arch["real"]["vae"]
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(real["config"])
    assert keys_of(vae) == real["keys"] and real["n_keys"] == 248
    assert sum(p.numel() for p in vae.parameters()) == real["n_params"]
    file_state = old_vae_names({k: torch.empty(s, device="meta") for k, s, _ in real["keys"]})
    old = [k for k in file_state if k.endswith(("query.weight", "proj_attn.bias"))]
    assert len(old) == 4, "encoder and decoder mid-block attentions carry the old names in the file"
    assert list(mt_files.rename_old_vae_attention(file_state)) == [k for k, _, _ in real["keys"]]


def test_real_whisper_file_model_prefix_and_decoder_are_handled(arch):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    real = arch["real"]["whisper_encoder"]
    with torch.device("meta"):
        encoder = WhisperEncoder(WhisperConfig(**real["config"]))
    assert [["encoder." + k, s, d] for k, s, d in keys_of(encoder)] == real["keys"] and real["n_keys"] == 67
    assert sum(p.numel() for p in encoder.parameters()) == real["n_params"]
    # openai/whisper-tiny's file: WhisperForConditionalGeneration, so `model.encoder.*`, `model.decoder.*`, proj_out
    file_state = {f"model.{k}": 0 for k, _, _ in real["keys"]}
    file_state.update({"model.decoder.embed_tokens.weight": 0, "proj_out.weight": 0})
    assert list(mt_files.whisper_encoder_state(file_state)) == [k[len("encoder."):] for k, _, _ in real["keys"]]


# ---------------------------------------------------------------- tiny networks, stage by stage


def test_tiny_folder_loads_strictly_with_the_reference_weights(gen, arch):
    nets = gen.nets
    assert keys_of(nets.unet) == arch["tiny"]["unet"]["keys"]
    assert keys_of(nets.vae) == arch["tiny"]["vae"]["keys"]
    assert [["encoder." + k, s, d] for k, s, d in keys_of(nets.encoder)] == arch["tiny"]["whisper"]["keys"]
    assert nets.scaling_factor == pytest.approx(0.18215)


def test_audio_features_hidden_states_and_chunks(gen, vec):
    nets = gen.nets
    np.testing.assert_allclose(nets.extractor.mel_filters, vec["whisper_mel_filters"], atol=1e-6)
    signal = vec["audio_signal"]
    feats = mt_audio.input_features(signal, nets.extractor)
    assert tuple(feats.shape) == (1, 80, 3000)
    assert np.abs(feats.numpy() - vec["whisper_input_features"]).max() <= 1e-4
    hidden = mt_audio.hidden_states(torch.from_numpy(vec["whisper_input_features"]), nets.encoder, len(signal))
    assert hidden.shape == (50, 5, 384)
    assert np.abs(hidden - vec["whisper_hidden_states"][0]).max() <= 1e-4
    times = np.arange(25) / 25  # floor(1.0077 s · 25) = 25 frames
    np.testing.assert_array_equal(mt_audio.window_starts(times), vec["whisper_chunk_start_index"])
    chunks = mt_audio.frame_chunks(vec["whisper_hidden_states"][0], times)
    assert chunks.shape == (25, 50, 384)
    assert np.abs(chunks - vec["whisper_chunks"]).max() <= 1e-4
    # the whole path through the generator's own hook, from the signal
    assert np.abs(gen.audio_windows(signal, times)[:] - vec["whisper_chunks"]).max() <= 1e-4


def test_contexts_made_per_chunk_equal_all_at_once_across_segments(gen):
    """65 s of audio (three 30 s segments): contexts asked for a chunk at a time, in the pipeline's order, equal
    the contexts of every frame computed at once, also for chunks whose windows straddle a segment boundary;
    at most two segments' hidden states are held at a time."""
    from lipsync_cli.frames import chunks

    nets = gen.nets
    rng = np.random.default_rng(0)
    signal = (0.1 * rng.standard_normal(65 * 16000)).astype(np.float32)
    times = np.arange(int(65 * 25)) / 25
    whole = mt_audio.frame_chunks(mt_audio.hidden_states(mt_audio.input_features(signal, nets.extractor),
                                                         nets.encoder, len(signal)), times)
    lazy = gen.audio_windows(signal, times)
    held = []
    parts = [lazy[part] for part in chunks(len(times), 64) if not held.append(len(lazy.segments.kept))]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)
    assert max(held) <= 2 and len(lazy.segments.kept) == 1  # the last chunk needs the last segment only


def upstream_chunk_starts(n_frames: int, fps: float) -> np.ndarray:
    """Upstream's get_whisper_chunk start steps (relative to unpadded step 0) with its int(fps)."""
    import math

    mult = 50 / int(fps)
    lead = math.ceil(mult) * 2
    return np.array([math.floor(i * mult) for i in range(n_frames)]) - lead


def test_timing_equals_upstream_at_25fps_and_follows_timestamps_at_ntsc():
    n = 25 * 60
    np.testing.assert_array_equal(mt_audio.window_starts(np.arange(n) / 25), upstream_chunk_starts(n, 25))
    fps = 30000 / 1001
    times = np.arange(int(60 * fps)) / fps
    ours = mt_audio.window_starts(times) + mt_audio.LEAD_STEPS  # step under each frame's timestamp
    assert np.abs(ours / 50 - times).max() < 1 / 50  # within one 20 ms step over a minute
    drift = (upstream_chunk_starts(len(times), fps) + 4)[-1] / 50 - times[-1]
    assert drift > 1.5, "upstream's int(fps) drifts (29 fps chunks for a 29.97 fps video)"


def test_positional_encoding(vec):
    assert np.abs(mt_audio.positional_encoding(50, 384).numpy() - vec["positional_encoding"]).max() <= 1e-5


def test_vae_latents_are_the_scaled_posterior_mean(gen, vec):
    crops = vec["crops_bgr"][..., ::-1].copy()  # the vectors are BGR; the generator takes RGB
    import copy

    vae64 = copy.deepcopy(gen.nets.vae).double()  # float64 copy: our pre-processing + the library VAE
    with torch.inference_mode():
        latents = gen.latents(crops).numpy()
        full = gen._pixels(crops).double()
        masked = full.clone()
        masked[:, :, 128:] = -1
        moments_masked = vae64.quant_conv(vae64.encoder(masked)).numpy()
        moments_ref = vae64.quant_conv(vae64.encoder(full)).numpy()
    assert np.abs(moments_masked - vec["vae_moments_masked"]).max() <= 1e-4
    assert np.abs(moments_ref - vec["vae_moments_ref"]).max() <= 1e-4
    # In float32 on this AVX-512 CPU the masked crop's moments drift by up to 1.4e-3 from the stored ones: torch's
    # CPU GroupNorm (the first resnet's norm1 already errs by 1.2e-4 relative to float64) loses precision on the
    # constant −1 half. float64 gives 6.5e-6 above, so the float32 latents get 5e-4 instead of 1e-4.
    assert latents.shape == (2, 8, 32, 32)
    assert np.abs(latents - vec["latents_mode"]).max() <= 5e-4
    assert np.abs(latents[:, 4:] - vec["latents_mode"][:, 4:]).max() <= 1e-4  # the unmasked reference half
    assert np.abs(latents - vec["latents_sample_seeded"]).max() > 1e-3  # not upstream's random sample


def test_unet_step_and_decoding(gen, vec):
    with torch.inference_mode():
        out = gen.unet(torch.from_numpy(vec["latents_mode"][vec["gen_latent_index"]]),
                       torch.from_numpy(vec["whisper_chunks"][vec["gen_chunk_index"]]))
        assert np.abs(out.numpy() - vec["gen_unet_out"]).max() <= 1e-4
        decoded = gen.decode(torch.from_numpy(vec["gen_unet_out"]))
    diff = np.abs(decoded[..., ::-1].astype(np.int16) - vec["gen_decoded_bgr"])
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3


def test_generator_batch_runs_the_whole_chain(gen, vec):
    """crops + chunks → generated crops through Generator.__call__ (batching, masking, PE, UNet, decode)."""
    crops = vec["crops_bgr"][..., ::-1].copy()[vec["gen_latent_index"]]
    out, mask = gen(vec["whisper_chunks"][vec["gen_chunk_index"]], crops)
    assert mask is None and out.shape == (4, 256, 256, 3) and out.dtype == np.uint8
    diff = np.abs(out[..., ::-1].astype(np.int16) - vec["gen_decoded_bgr"])
    assert np.mean(diff > 1) < 0.01  # within float32 noise of the masked-crop latents (see above)


# ---------------------------------------------------------------- crop rule


def test_crop_rule_every_case(vec):
    names = list(vec["bbox_case_names"])
    for i, name in enumerate(names):
        box = mt_crop.landmark_box(vec["bbox_landmarks"][i])
        assert (box is None) == bool(vec["bbox_falls_back"][i]), name
        if box is None:
            continue
        assert box == tuple(vec["bbox_landmark_box"][i]), name
        assert mt_crop.v15_box(box, int(vec["bbox_frame_height"])) == tuple(vec["bbox_v15_box"][i]), name


def test_fallback_keeps_the_tracked_box_and_no_face_stays_empty(vec):
    marks = vec["bbox_landmarks"][[0, 5, 0]].copy()
    marks[2] = np.nan
    tracked = np.array([[170, 50, 280, 200], [1, 2, 3, 4], [np.nan] * 4], dtype=np.float32)
    boxes = mt_crop.musetalk_boxes(marks, tracked, 512)
    np.testing.assert_array_equal(boxes[0], vec["bbox_v15_box"][0])
    np.testing.assert_array_equal(boxes[1], tracked[1])  # rule failed (x1 < 0): the detector's box
    assert np.isnan(boxes[2]).all()


def test_crops_are_lanczos_and_exact(vec):
    for i in range(2):
        np.testing.assert_array_equal(mt_crop.crop(vec["frame_bgr"], vec["crop_boxes"][i].astype(np.float32)),
                                      vec["crops_bgr"][i])


# ---------------------------------------------------------------- precision


def test_bf16_stays_within_the_measured_tolerance(models_dir, vec):
    from lipsync_cli.generators.registry import load_generator
    from lipsync_cli.generators.musetalk.generator import BF16_MAX_LEVELS, BF16_MEAN_LEVELS

    crops = vec["crops_bgr"][..., ::-1].copy()[vec["gen_latent_index"]]
    chunks = vec["whisper_chunks"][vec["gen_chunk_index"]]
    outs = {p: load_generator(str(models_dir), device="cpu", precision=p, batch_size=4)(chunks, crops)[0]
            for p in ("fp32", "bf16")}
    diff = np.abs(outs["fp32"].astype(np.int16) - outs["bf16"].astype(np.int16))
    print(f"MuseTalk bf16 vs fp32: max {diff.max()} mean {diff.mean():.2f} levels")
    assert outs["fp32"].std() > 5
    assert diff.max() > 0, "bf16 really ran"
    assert diff.max() <= BF16_MAX_LEVELS and diff.mean() <= BF16_MEAN_LEVELS


# ---------------------------------------------------------------- end to end through the CLI


def run_cli(*args, env=None):
    """`lipsync dub ARGS` in this process (tests/cli_utils.py: no interpreter, torch and diffusers import per run);
    in a process of its own with another environment."""
    import os

    args = ["dub", *map(str, args), "--detector", "dlib", "--device", "cpu"]
    if env is None:
        return lipsync_in_process(held_capfd(), *args)
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "lipsync_cli", *args], capture_output=True, text=True, env=full_env)



def audio_seconds(path: Path) -> float:
    from lipsync_cli.media import load_audio

    return len(load_audio(path)) / 16000


@pytest.mark.slow
def test_cli_dubs_the_vfr_clip_with_a_models_folder(tmp_path, models_dir):
    video = shared_path("media", "04_square700_frontal.mp4")
    audio = audio_piece(shared_path("media", "04b_dub_audio_en_44k.wav"), tmp_path / "a.wav", 1.2)
    out = tmp_path / "vfr.mp4"
    proc = run_cli(video, audio, "-o", out, "--model", models_dir)
    assert proc.returncode == 0, proc.stderr
    from lipsync_cli.media import probe

    check_dub_output(out, 700, 700, audio_seconds(audio), float(probe(video).fps))
    assert "0 edited" not in proc.stderr


@pytest.mark.slow
def test_cli_dubs_the_portrait_hevc_clip(tmp_path, models_dir):
    video = shared_path("media", "02_portrait_1080x1920_hevc.mp4")
    audio = audio_piece(shared_path("media", "02b_dub_audio_en_16k.wav"), tmp_path / "a.wav", 1.0)
    out = tmp_path / "portrait.mp4"
    proc = run_cli(video, audio, "-o", out, "--model", models_dir, "--reference", "kmeans")
    assert proc.returncode == 0, proc.stderr
    check_dub_output(out, 1080, 1920, audio_seconds(audio), 25.0)
    # the one family dubbed on this clip (it was two): the face is found and dubbed in most frames
    frames, edited = map(int, re.search(r"dubbed (\d+) frames \((\d+) edited", proc.stderr).groups())
    assert edited > 0.8 * frames


@pytest.mark.slow
def test_cli_dubs_a_still_image(tmp_path, models_dir, face_image):
    audio = make_speech(tmp_path / "s.wav", "Hello there.")
    out = tmp_path / "still.mp4"
    proc = run_cli(face_image, audio, "-o", out, "--model", models_dir)
    assert proc.returncode == 0, proc.stderr
    check_dub_output(out, 300, 300, audio_seconds(audio), 25.0)
    assert "0 edited" not in proc.stderr


def faceless_stretch_clip(path: Path) -> Path:
    """2 s at 25 fps: the astronaut, then 0.6 s of a plain grey wall, then the astronaut again."""
    import cv2
    from conftest import astronaut_face

    face = cv2.resize(astronaut_face()[0:300, 100:400], (256, 256), interpolation=cv2.INTER_AREA)
    cmd = [ffmpeg_bin(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "256x256", "-r", "25",
           "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "12", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for i in range(50):
        frame = np.full_like(face, 128) if 20 <= i < 35 else np.roll(face, i % 5, axis=1)
        proc.stdin.write(frame.tobytes())
    proc.stdin.close()
    assert proc.wait() == 0
    return path


@pytest.mark.parametrize("reference", ["same", "kmeans"])
def test_dub_edits_only_inside_the_mask_and_passes_faceless_frames(tmp_path, models_dir, gen, reference, monkeypatch):
    """In-process so the frames before and after blending can be compared exactly (the mp4 is lossy)."""
    from lipsync_cli import pipeline
    from lipsync_cli.config import DubConfig, FaceConfig, MuseTalkConfig

    clip = faceless_stretch_clip(tmp_path / "gap.mp4")
    audio = make_speech(tmp_path / "s.wav", "One two three.")
    seen = []
    real_edit = pipeline.edit_frames

    def spy(frames, track, rows, weights, mels, generator, stages):
        before = [f.copy() for f in frames]
        after = real_edit(frames, track, rows, weights, mels, generator, stages)
        seen.extend(zip(before, after, [track.boxes[r] for r in rows], weights))
        return after

    monkeypatch.setattr(pipeline, "edit_frames", spy)
    encoded = []
    hook = gen.nets.vae.encoder.register_forward_hook(lambda m, i, o: encoded.append(i[0].shape[0]))
    try:
        gen.cfg = MuseTalkConfig(reference=reference, n_refs=3)
        gen.ref_latents = gen.ref_of_source = None
        cfg = DubConfig(model=str(models_dir), faces=FaceConfig(detector="dlib"), quiet=True, device="cpu",
                        musetalk=gen.cfg, chunk_frames=16)
        result = pipeline.dub(clip, audio, tmp_path / "out.mp4", cfg, generator=gen)
    finally:
        hook.remove()
        gen.cfg, gen.ref_latents, gen.ref_of_source = MuseTalkConfig(), None, None
    assert 0 < result.frames_edited < result.frames
    changed = 0
    for before, after, box, weight in seen:
        if weight == 0 or not np.isfinite(box).all():
            np.testing.assert_array_equal(before, after)  # no face: untouched
            continue
        from lipsync_cli.faces.crop import pixel_box

        x1, y1, x2, y2 = pixel_box(box, before.shape)
        outside = np.ones(before.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        outside[y1:y1 + (y2 - y1) // 3, x1:x2] = True  # the upper face is never blended either
        np.testing.assert_array_equal(before[outside], after[outside])
        changed += int((before != after).any())
    assert changed >= 0.8 * result.frames_edited
    edited_crops = sum(encoded)
    if reference == "kmeans":
        # references once per clip (≤ 3 crops), then one masked crop per edited frame
        assert result.frames_edited <= edited_crops <= result.frames_edited + 3
    else:
        assert edited_crops == 2 * result.frames_edited  # masked + full crop of each frame


# ---------------------------------------------------------------- bad inputs


@pytest.fixture()
def clip_and_audio(tmp_path, face_clip):
    return face_clip, make_speech(tmp_path / "s.wav", "Hi.")


def copy_models(models_dir: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(models_dir, dest)
    return dest


def test_folder_without_musetalk_json_is_one_line_exit_1(tmp_path, models_dir, clip_and_audio):
    bad = copy_models(models_dir, tmp_path / "models")
    (bad / "musetalkV15" / "musetalk.json").unlink()
    proc = run_cli(*clip_and_audio, "-o", tmp_path / "o.mp4", "--model", bad)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "musetalk.json" in proc.stderr and "Traceback" not in proc.stderr


def test_unet_of_another_shape_is_one_line_exit_1(tmp_path, models_dir, arch, clip_and_audio):
    bad = copy_models(models_dir, tmp_path / "models")
    cfg = dict(arch["tiny"]["unet"]["config"], block_out_channels=[16, 32, 32])
    from diffusers import UNet2DConditionModel

    torch.save(UNet2DConditionModel.from_config(cfg).state_dict(), bad / "musetalkV15" / "unet.pth")
    proc = run_cli(*clip_and_audio, "-o", tmp_path / "o.mp4", "--model", bad)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "mis-shaped" in proc.stderr and "unet.pth" in proc.stderr


def test_wav2lip_checkpoint_as_musetalk_folder_is_one_line_exit_1(tmp_path, models_dir, wav2lip_ckpt, clip_and_audio):
    import shutil

    bad = copy_models(models_dir, tmp_path / "models")
    shutil.copy(wav2lip_ckpt, bad / "musetalkV15" / "unet.pth")
    proc = run_cli(*clip_and_audio, "-o", tmp_path / "o.mp4", "--model", bad)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Wav2Lip" in proc.stderr
    folder = tmp_path / "w2l"
    folder.mkdir()
    shutil.copy(wav2lip_ckpt, folder / "wav2lip_gan.pth")
    proc = run_cli(*clip_and_audio, "-o", tmp_path / "o.mp4", "--model", folder)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and "Wav2Lip" in proc.stderr, proc.stderr


def test_missing_cached_weights_offline_is_one_line_exit_3(tmp_path, clip_and_audio):
    env = {"LIPSYNC_CACHE_DIR": str(tmp_path / "cache"), "LIPSYNC_OFFLINE": "1", "LIPSYNC_WEIGHTS_DIR": str(tmp_path / "none")}
    proc = run_cli(*clip_and_audio, "-o", tmp_path / "o.mp4", "--model", "musetalk", env=env)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "offline" in proc.stderr and "TMElyralab/MuseTalk" in proc.stderr


def test_cached_layout_is_found_by_name(tmp_path, models_dir, monkeypatch):
    """`--model musetalk` reads $LIPSYNC_WEIGHTS_DIR/musetalk/... (the same layout as a models/ folder)."""
    import shutil

    from lipsync_cli import weights

    shutil.copytree(models_dir, tmp_path / "w" / "musetalk")
    monkeypatch.setenv("LIPSYNC_WEIGHTS_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("LIPSYNC_CACHE_DIR", str(tmp_path / "cache"))
    found = mt_files.locate("musetalk")
    assert found.unet == tmp_path / "w" / "musetalk" / "musetalkV15" / "unet.pth"
    assert found.whisper_preprocessor.name == "preprocessor_config.json"
    assert not any(weights.expected_sha256(weights.entry(n)) for n in mt_files.ENTRIES), \
        "a copy the user placed is not recorded as if lipsync had downloaded it"


def test_missing_extra_names_the_install_command(monkeypatch, models_dir):
    from lipsync_cli.errors import WeightsError

    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers → ImportError
    with pytest.raises(WeightsError, match=r'pip install "lipsync-cli\[musetalk\]"'):
        mt_files.load(mt_files.locate(str(models_dir)))


def test_weights_list_shows_the_musetalk_parts(tmp_path):
    import os

    env = dict(os.environ, LIPSYNC_CACHE_DIR=str(tmp_path), COLUMNS="250")
    out = subprocess.run([sys.executable, "-m", "lipsync_cli", "weights", "list"], capture_output=True, text=True,
                         env=env).stdout
    for name in mt_files.ENTRIES:
        assert name in out
    assert "MIT" in out and "Apache-2.0" in out and "commercial included" in out


def test_weights_download_musetalk_means_its_parts_and_fails_offline_with_exit_3(tmp_path):
    import os

    from lipsync_cli import weights

    assert set(weights.expand(["musetalk"])) == set(mt_files.ENTRIES)
    env = dict(os.environ, LIPSYNC_CACHE_DIR=str(tmp_path), LIPSYNC_OFFLINE="1")
    env.pop("LIPSYNC_WEIGHTS_DIR", None)
    proc = subprocess.run([sys.executable, "-m", "lipsync_cli", "weights", "download", "musetalk"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 3 and proc.stderr.strip().count("\n") == 0 and "offline" in proc.stderr, proc.stderr


def test_reference_option_is_refused_for_other_models(tmp_path, clip_and_audio, wav2lip_ckpt):
    proc = run_cli(*clip_and_audio, "-o", tmp_path / "o.mp4", "--model", wav2lip_ckpt, "--reference", "kmeans")
    assert proc.returncode == 2 and "--reference" in proc.stderr, proc.stderr
    proc = run_cli(*clip_and_audio, "-o", tmp_path / "o.mp4", "--model", "musetalk", "--reference", "sideways")
    assert proc.returncode == 2 and "'same', 'kmeans'" in proc.stderr, proc.stderr  # the parser names the choices
