"""LatentSync 1.6 / 1.5 family (issue 22): conformance with ../shared/reference/latentsync (its README is the
specification), each stage fed its stored input and loaded through the loader a user's files go through;
then `lipsync dub --model <LatentSync checkpoints folder>` with tiny networks in the published on-disk
layout, and the bad inputs a user can give it. The tiny UNet takes seconds per call on the shared CPU, so
UNet calls are few: one first call, one wrong-GroupNorm call, one 3-step loop on the 4-frame window."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_utils import held_capfd, hold_capfd, lipsync_in_process  # noqa: F401 (hold_capfd: autouse fixture)
from conftest import audio_piece, check_dub_output, ffprobe_streams, make_speech, shared_path

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import torch  # noqa: E402

from lipsync_cli.generators.latentsync import align, files, paste, sampler  # noqa: E402
from lipsync_cli.generators.latentsync import audio as ls_audio  # noqa: E402
from lipsync_cli.generators.latentsync import unet as ls_unet  # noqa: E402

BROWS_NOSE_68 = [17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 29, 30, 31, 35]  # the vectors' 14 points, in their order


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny networks are thousands of small ops: on the shared 2-core machine two intra-op threads spend more
    time spinning at OpenMP's barriers (the partner thread descheduled) than computing. Measured under load 9:
    this file in 49 s with one thread, 218 s with two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def arch():
    return json.loads(shared_path("reference", "latentsync", "latentsync_arch.json").read_text())


@pytest.fixture(scope="module")
def vec():
    return np.load(shared_path("reference", "latentsync", "latentsync_vectors.npz"))


@pytest.fixture(scope="module")
def ckpt_dir(arch, tmp_path_factory):
    from latentsync_utils import write_checkpoints

    return write_checkpoints(tmp_path_factory.mktemp("LatentSync") / "checkpoints", arch)


@pytest.fixture(scope="module")
def gen(ckpt_dir):
    from lipsync_cli.config import LatentSyncConfig
    from lipsync_cli.generators.registry import load_generator

    return load_generator(str(ckpt_dir), device="cpu", precision="fp32", latentsync=LatentSyncConfig(steps=1))


@pytest.fixture(scope="module")
def nets(gen):
    return gen.nets


def as68(points14: np.ndarray) -> np.ndarray:
    """The vectors' 14 points placed at their iBUG-68 indices (the rest: far-away zeros, never read)."""
    out = np.zeros(points14.shape[:-2] + (68, 2), dtype=np.float32)
    out[..., BROWS_NOSE_68, :] = points14
    return out


def frames_last(a: np.ndarray) -> torch.Tensor:
    """(F, C, h, w) → (1, C, F, h, w)."""
    return torch.from_numpy(np.ascontiguousarray(a)).transpose(0, 1)[None]


def keys_of(module) -> dict:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


# ---------------------------------------------------------------- the real networks' names, shapes and counts


def test_real_unet_file_names_remap_onto_unet_motion_model(arch):
    real = arch["real"]["unet"]
    assert files.published_config() == arch["real"]["configs"]["model"]  # what a folder without config.yaml builds
    unet = ls_unet.build(files.published_config(), meta=True)
    file_keys = {name: shape for name, shape, _ in real["keys"]}
    assert len(file_keys) == real["n_keys"] == 1246
    remapped = {ls_unet.remap_key(k): s for k, s in file_keys.items() if ls_unet.remap_key(k) is not None}
    assert len(remapped) == 1226 and remapped == keys_of(unet)
    assert sum(p.numel() for p in unet.parameters()) == real["n_params"] == 1_267_099_844
    state = {k: torch.empty(s, device="meta") for k, s in file_keys.items()}
    files.load_strict(unet, ls_unet.remap_state(state), Path("latentsync_unet.pt"), files.mismatch("LatentSync UNet"))


def test_real_whisper_and_vae_files_load_strictly(arch):
    from diffusers import AutoencoderKL
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    whisper = arch["real"]["whisper"]
    with torch.device("meta"):
        encoder = WhisperEncoder(files.whisper_encoder_config(whisper["dims"]))
        vae = AutoencoderKL.from_config(arch["real"]["vae"]["config"])
    state = {k: torch.empty(s, device="meta") for k, s, _ in whisper["keys"]}
    assert len(state) == whisper["n_keys_whole"] == 167
    encoder_state = files.whisper_encoder_state(state)
    assert len(encoder_state) == whisper["n_keys_encoder"] == 67
    files.load_strict(encoder, encoder_state, Path("tiny.pt"), "whisper encoder")
    assert sum(v.numel() for k, v in encoder.state_dict().items()) == whisper["n_params_encoder"] + 1500 * 384
    assert keys_of(vae) == {k: s for k, s, _ in arch["real"]["vae"]["keys"]}
    assert sum(p.numel() for p in vae.parameters()) == arch["real"]["vae"]["n_params"]


def test_unet_is_built_on_meta_and_takes_the_mapped_files_tensors_in_its_own_dtype(ckpt_dir, tmp_path):
    """load_unet builds no random UNet (meta device) and assigns the memory-mapped file's tensors: every parameter
    is the file's value, none is left on meta, and a half-precision file still gives float32 parameters (what
    copying into a float32 UNet gave)."""
    state = torch.load(ckpt_dir / "latentsync_unet.pt", weights_only=True)["state_dict"]
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"state_dict": half}, tmp_path / "latentsync_unet.pt")
    unet = files.load_unet(tmp_path / "latentsync_unet.pt", files.read_config(ckpt_dir / "config.yaml")[0])
    params, wanted = dict(unet.named_parameters()), ls_unet.remap_state(half)
    assert not any(t.is_meta for t in [*params.values(), *unet.buffers()])
    assert {t.dtype for t in params.values()} == {torch.float32} and len(params) > 100
    assert all(torch.equal(t, wanted[name].float()) for name, t in params.items())


def test_tiny_folder_loads_every_part(gen, ckpt_dir):
    found = files.locate(ckpt_dir)
    assert (found.resolution, found.config.name, found.vae_weights.parent.name) == (64, "config.yaml", "vae")
    assert gen.arch == "latentsync" and gen.size == 64 and gen.batch_size == 16
    assert files.is_latentsync(ckpt_dir) and files.is_latentsync(ckpt_dir / "latentsync_unet.pt")


# ---------------------------------------------------------------- audio


def test_log_mel_features_and_chunks(nets, vec):
    made = ls_audio.SegmentStates(vec["audio_pcm16"].astype(np.float32) / 32768, nets.encoder)  # what dub uses
    assert len(made.bounds) == 1  # a clip of under 30 s: one segment
    np.testing.assert_allclose(made.log_mel(0).numpy(), vec["whisper_log_mel"], atol=1e-4)
    states = ls_audio.segment_states(torch.from_numpy(vec["whisper_log_mel"]), nets.encoder)
    np.testing.assert_allclose(states, vec["whisper_features"], atol=1e-4)
    assert len(made) == len(vec["whisper_features"])
    np.testing.assert_allclose(made[np.arange(len(made))], vec["whisper_features"], atol=1e-4)
    times = np.arange(20) / 25.0
    np.testing.assert_array_equal(ls_audio.chunk_index(37, times), vec["audio_chunk_index"])
    np.testing.assert_array_equal(ls_audio.frame_chunks(vec["whisper_features"], times), vec["audio_chunks"])
    lazy = ls_audio.FrameContexts(vec["whisper_features"], times)  # what the pipeline indexes
    assert len(lazy) == 20
    np.testing.assert_array_equal(lazy[4:9], vec["audio_chunks"][4:9])
    np.testing.assert_array_equal(lazy[[0, 19]], vec["audio_chunks"][[0, 19]])


def _whole_clip_states(speech: np.ndarray, encoder) -> np.ndarray:
    """The reference's recipe in one pass: the whole signal's STFT (last frame dropped), mel power, log10 floored
    8 below the whole log-mel's peak, (x + 4) / 4, then each 3000-frame segment encoded."""
    import librosa

    stft = torch.stft(torch.from_numpy(speech), 400, 160, window=torch.hann_window(400), return_complex=True)[:, :-1]
    filters = torch.from_numpy(librosa.filters.mel(sr=16000, n_fft=400, n_mels=80))
    log_spec = torch.clamp(filters @ (stft.abs() ** 2), min=1e-10).log10()
    mel = (torch.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0
    return np.concatenate([ls_audio.segment_states(mel[:, a:a + 3000], encoder) for a in range(0, mel.shape[1], 3000)])


def test_contexts_made_a_segment_at_a_time_equal_the_whole_clips(nets):
    """What dub indexes (a chunk of frames at a time) equals the contexts of the whole clip's log-mel and states,
    across the 30 s segment boundaries too, with the floor at the whole signal's peak (the last segment is quiet,
    so its floor comes from the first); only the segments a chunk reaches are kept."""
    rng = np.random.default_rng(5)
    speech = (rng.standard_normal(16000 * 65 + 99) * 0.2).astype(np.float32)
    speech[16000 * 60:] *= 1e-4  # the last segment quiet: its own peak would floor it differently
    times = np.arange(int(65 * 25)) / 25.0
    whole = ls_audio.FrameContexts(_whole_clip_states(speech, nets.encoder), times)
    lazy = ls_audio.contexts(speech, times, nets.encoder)
    states = lazy.states
    assert len(states) == len(whole.states) == 3250 and [b for _, b in states.bounds] == [3000, 6000, 6500]
    for part in [slice(0, 16), slice(740, 760), slice(1490, 1510), slice(1600, 1625)]:
        np.testing.assert_allclose(lazy[part], whole[part], rtol=0, atol=1e-4)
        reached = set((ls_audio.chunk_index(len(states), times[part]) // 1500).ravel().tolist())
        assert set(states.segments.kept) == reached
    assert len(reached) == 1 and reached == {2}  # the last chunk needs only the last segment


def test_windows_follow_timestamps_at_ntsc():
    """At 29.97 fps frame n's window starts at its own time (upstream's 25 fps index would drift by 5 frames a second)."""
    times = np.arange(300) * 1001 / 30000
    starts = ls_audio.chunk_index(10_000, times)[:, 0]
    assert (starts[:3] == 0).all()  # the first windows clamp at the start: the first step repeats
    assert np.all(np.abs(starts[3:] + 4 - times[3:] * 50) < 1) and starts[-1] + 4 == int(times[-1] * 50)


# ---------------------------------------------------------------- alignment, mask, paste-back


def test_alignment_points_matrices_and_crops(vec):
    marks = as68(vec["video_landmarks14"])
    np.testing.assert_array_equal(np.stack([align.points3(m) for m in marks]), vec["affine_landmarks3"])
    np.testing.assert_allclose(align.track_matrices(marks, 64), vec["affine_matrix_f32"], atol=1e-3)  # smoothed
    frames = [vec["video_base_rgb"][dy:dy + 256, dx:dx + 256] for dx, dy in vec["video_offsets_xy"]]
    crops = np.stack([align.warp(f, m, align.crop_size(64)).astype(np.uint8)
                      for f, m in zip(frames, vec["affine_matrix_used"])])
    diff = np.abs(crops.astype(int) - vec["affine_face_crop"])
    assert diff.max() <= 1
    import cv2

    aligned = [cv2.resize(c, (64, 64), interpolation=cv2.INTER_LANCZOS4) for c in vec["affine_face_crop"]]
    np.testing.assert_array_equal(np.stack(aligned), vec["aligned_faces"])


@pytest.mark.parametrize("res", [256, 512])
def test_real_size_alignment_and_paste_back(vec, res):
    pts = align.points3(as68(vec["frame512_landmarks14"]))
    np.testing.assert_array_equal(pts, vec[f"real{res}_landmarks3"])
    matrix, _ = align.similarity(pts, res)
    np.testing.assert_allclose(matrix, vec[f"real{res}_affine_matrix_f32"], atol=1e-3)
    face = align.crop(vec["frame512_rgb"], vec[f"real{res}_affine_matrix_used"], res)
    crop = align.warp(vec["frame512_rgb"], vec[f"real{res}_affine_matrix_used"], align.crop_size(res)).astype(np.uint8)
    diff = np.abs(crop.astype(int) - vec[f"real{res}_face_crop"])
    assert diff.max() <= 4 and (diff > 1).mean() <= 0.005
    assert np.abs(face.astype(int) - vec[f"real{res}_face"]).max() <= 4
    known = -paste.pixels(vec[f"real{res}_face"][None])[0]  # the README's known face
    out = paste.restore(vec["frame512_rgb"], paste.crop_face(known, res), vec[f"real{res}_affine_matrix_used"])
    x1, y1, x2, y2 = vec[f"real{res}_restored_crop_box"]
    diff = np.abs(out[y1:y2, x1:x2].astype(int) - vec[f"real{res}_restored_crop"])
    assert diff.max() <= 1 and (diff > 0).mean() <= 0.01
    outside = out.copy()
    outside[y1:y2, x1:x2] = vec["frame512_rgb"][y1:y2, x1:x2]
    np.testing.assert_array_equal(outside, vec["frame512_rgb"])  # nothing outside the box changes


def test_mask_masked_pixels_and_latent_mask(nets, vec):
    mask = paste.model_mask(nets.mask, 64)
    np.testing.assert_array_equal(mask, vec["mask_image"])
    np.testing.assert_array_equal(paste.latent_mask(mask), vec["mask_latent"])
    masked = paste.masked_pixels(paste.pixels(vec["aligned_faces"]), mask)
    assert str(masked.dtype) == str(vec["masked_pixels_dtype"])
    np.testing.assert_array_equal(masked.float().numpy(), vec["masked_pixel_values_f32"])


def test_decode_surround_and_restore(nets, vec):
    src = vec["loop_frame_index"]
    with torch.inference_mode():
        decoded = sampler.decode(nets.vae, frames_last(vec["cfg_latents"][-1]), slice_frames=4)
    np.testing.assert_allclose(decoded.numpy(), vec["decoded"], atol=1e-4)
    faces = paste.surround(torch.from_numpy(vec["decoded"]), paste.pixels(vec["aligned_faces"][src]),
                           paste.model_mask(nets.mask, 64))
    resized = np.stack([paste.crop_face(f, 64) for f in faces]).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(resized, vec["restore_face_in"], atol=1e-4)
    frames = [vec["video_base_rgb"][dy:dy + 256, dx:dx + 256] for dx, dy in vec["video_offsets_xy"]]
    x1, y1, x2, y2 = vec["restored_crop_box"]
    diffs = []
    for j, s in enumerate(src):
        out = paste.restore(frames[s], vec["restore_face_in"][j].transpose(1, 2, 0), vec["affine_matrix_used"][s])
        diffs.append(np.abs(out[y1:y2, x1:x2].astype(int) - vec["restored_crop"][j]))
        out[y1:y2, x1:x2] = frames[s][y1:y2, x1:x2]
        np.testing.assert_array_equal(out, frames[s])
    diffs = np.stack(diffs)
    assert diffs.max() <= 1 and (diffs > 0).mean() <= 0.01


# ---------------------------------------------------------------- VAE, UNet, sampler


def test_vae_posterior_samples(nets, vec):
    src = vec["loop_frame_index"]
    with torch.inference_mode():
        dist = nets.vae.encode(torch.from_numpy(vec["masked_pixel_values_f32"][src])).latent_dist
        np.testing.assert_allclose(dist.mean.numpy(), vec["vae_mean_masked"], atol=1e-4)
        np.testing.assert_allclose(dist.logvar.numpy(), vec["vae_logvar_masked"], atol=1e-4)
        ref = sampler.posterior_latents(nets.vae, paste.pixels(vec["aligned_faces"][src]),
                                        torch.from_numpy(vec["vae_eps_ref"]))
    np.testing.assert_allclose(ref.numpy(), vec["ref_latents"], atol=1e-4)
    mean, logvar = torch.from_numpy(vec["vae_mean_masked"]), torch.from_numpy(vec["vae_logvar_masked"])
    latents = (mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * torch.from_numpy(vec["vae_eps_masked"])) * sampler.SCALE
    np.testing.assert_allclose(latents.numpy(), vec["masked_image_latents"], atol=1e-6)


def conditioning(vec, frames: slice) -> sampler.Conditioning:
    n = frames.stop - frames.start
    mask = torch.from_numpy(vec["mask_latent"])[None, None, None].expand(1, 1, n, 8, 8)
    return sampler.Conditioning(mask, frames_last(vec["masked_image_latents"][frames]),
                                frames_last(vec["ref_latents"][frames]), torch.from_numpy(vec["audio_chunks"][frames]))


def first_call(unet, vec):
    cond = conditioning(vec, slice(0, 16))
    x = cond.unet_input(frames_last(vec["cfg_latents"][0][:16]).expand(2, -1, -1, -1, -1))
    np.testing.assert_array_equal(x.numpy(), vec["unet_input_c0s0"])
    with torch.inference_mode():
        out = unet(x, torch.tensor(int(vec["ddim_timesteps"][0])), encoder_hidden_states=cond.contexts(True)).sample
    want = np.stack([vec["cfg_noise_uncond"][0][:16], vec["cfg_noise_audio"][0][:16]]).transpose(0, 2, 1, 3, 4)
    return np.abs(out.numpy() - want).max()


def test_unet_first_call(nets, vec):
    assert first_call(nets.unet, vec) < 1e-4


def test_diffusers_own_group_norms_fail_the_unet_comparison(ckpt_dir, vec):
    """Without the GroupNorm change (per-frame resnets, joint motion modules) the same weights compute
    another function: the README measures 0.185+ on this call."""
    from diffusers import UNetMotionModel

    model = files.read_config(ckpt_dir / "config.yaml")[0]
    plain = UNetMotionModel(**ls_unet.diffusers_config(model)).eval()
    plain.load_state_dict(ls_unet.remap_state(files._unet_state(ckpt_dir / "latentsync_unet.pt")), strict=True)
    assert first_call(plain, vec) > 0.1


def test_ddim_steps_and_guidance_from_stored_noise(vec):
    sched = sampler.scheduler(3)
    np.testing.assert_array_equal(sched.timesteps.numpy(), vec["ddim_timesteps"])
    np.testing.assert_array_equal(sched.alphas_cumprod.numpy(), vec["ddim_alphas_cumprod"])
    assert list(sampler.scheduler(20).timesteps[:2]) == [951, 901] and int(sampler.scheduler(20).timesteps[-1]) == 1
    for j, t in enumerate(sched.timesteps):
        guided = vec["cfg_noise_uncond"][j] + 1.5 * (vec["cfg_noise_audio"][j] - vec["cfg_noise_uncond"][j])
        np.testing.assert_allclose(guided, vec["cfg_noise_guided"][j], atol=1e-5)
        step = sched.step(frames_last(guided), t, frames_last(vec["cfg_latents"][j]), eta=0.0)
        np.testing.assert_allclose(step.prev_sample.numpy(), frames_last(vec["cfg_latents"][j + 1]).numpy(), atol=1e-5)


def test_three_step_loop_on_the_partial_window(nets, vec):
    """The second UNet call holds 4 frames (16..19): the chained 3-step guided loop from its start latents."""
    frames = slice(16, 20)
    with torch.inference_mode():
        out = sampler.denoise(nets.unet, sampler.scheduler(3), frames_last(vec["cfg_latents"][0][frames]),
                              conditioning(vec, frames), guidance=1.5)
    np.testing.assert_allclose(out.numpy(), frames_last(vec["cfg_latents"][-1][frames]).numpy(), atol=1e-4)
    assert (vec["cfg_latents"][0] == vec["init_noise"][0, :, 0][None]).all()  # one noise for every frame


def test_deepcache_loop_on_the_partial_window(nets, vec):
    """--deepcache: step 0 runs the whole UNet, steps 1 and 2 only its shallow branch on the kept features."""
    frames = slice(16, 20)
    with torch.inference_mode():
        out = sampler.denoise(nets.unet, sampler.scheduler(3), frames_last(vec["deepcache_latents"][0][frames]),
                              conditioning(vec, frames), guidance=1.5, deepcache=True)
    want = frames_last(vec["deepcache_latents"][-1][frames]).numpy()
    np.testing.assert_allclose(out.numpy(), want, atol=1e-4)
    assert np.abs(want - frames_last(vec["cfg_latents"][-1][frames]).numpy()).max() > 0.1  # not the plain run


def test_windows_split_at_faceless_frames_and_jumps():
    from lipsync_cli.generators.latentsync.generator import runs

    sources = np.array([0, 1, 2, 4, 5, 5, 4, 3, 9])  # 3 faceless, a ping-pong turn at 5, a jump to 9
    assert runs(sources) == [range(0, 3), range(3, 8), range(8, 9)]


def test_one_frame_out_of_memory_names_the_smaller_model(gen, monkeypatch):
    from lipsync_cli.generators.latentsync.generator import OutOfMemory

    def oom(*_args):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    gen.face_track(_track(3), (64, 64))
    monkeypatch.setattr(gen, "window", oom)
    before = gen.batch_size
    try:
        with pytest.raises(OutOfMemory, match="latentsync-1.5"):
            gen(np.zeros((3, 50, 384), np.float32), np.zeros((3, 64, 64, 3), np.uint8), np.arange(3))
        assert gen.batch_size == 1  # halved 16 → 8 → 4 → 2 → 1 before giving up
    finally:
        gen.batch_size = before


def test_non_finite_window_is_computed_again_in_fp32_or_is_an_error(gen, vec, monkeypatch):
    """fp16 overflow reads as NaN: a window whose decode is not finite runs again in fp32 with the same draws (the
    output is exactly the fp32 run's), and NaN in fp32 too is a one-line error (device.finite_or_fp32). The UNet
    gives NaN under reduced-precision autocast (bf16 here: what a CPU has) instead of running."""
    from diffusers.models.unets.unet_motion_model import UNetMotionOutput

    from lipsync_cli.errors import InternalError

    contexts, crops = vec["audio_chunks"][:1], vec["aligned_faces"][:1]
    gen.face_track(_track(1), (64, 64))
    want, _ = gen(contexts, crops)  # fp32
    real, calls = gen.nets.unet.forward, []

    def forward(sample, *args, always=False, **kwargs):
        half = torch.is_autocast_enabled("cpu")
        calls.append("bf16" if half else "fp32")
        if half or always:
            return UNetMotionOutput(sample=torch.full_like(sample[:, :4], float("nan")))
        return real(sample, *args, **kwargs)

    monkeypatch.setattr(gen.nets.unet, "forward", forward)
    monkeypatch.setattr(gen, "precision", "bf16")
    gen.face_track(_track(1), (64, 64))  # the clip's draws start again
    got, _ = gen(contexts, crops)
    assert calls == ["bf16", "fp32"]
    np.testing.assert_array_equal(got, want)
    monkeypatch.setattr(gen.nets.unet, "forward", lambda *a, **k: forward(*a, always=True, **k))
    with pytest.raises(InternalError, match=r"LatentSync UNet or VAE gave non-finite values \(NaN/Inf\) even in fp32"):
        gen(contexts, crops)


def _track(n: int):
    from lipsync_cli.faces.track import FaceTrack

    marks = np.zeros((n, 68, 2), np.float32)
    marks[:, BROWS_NOSE_68] = [[20 + i, 20] for i in range(10)] + [[25, 25], [25, 27], [23, 29], [27, 29]]
    return FaceTrack(np.tile(np.float32([0, 0, 60, 60]), (n, 1)), marks)


# ---------------------------------------------------------------- end to end


def run_cli(*args, env=None):
    """`lipsync dub ARGS` in this process (tests/cli_utils.py: no interpreter, torch and diffusers import per run);
    in a process of its own where the test needs another environment."""
    import os

    args = ["dub", *map(str, args), "--detector", "dlib", "--device", "cpu"]
    if env is None:
        return lipsync_in_process(held_capfd(), *args)
    return subprocess.run([sys.executable, "-m", "lipsync_cli", *args], capture_output=True, text=True,
                          env=dict(os.environ, **env))


@pytest.mark.slow
def test_cli_dubs_the_vfr_clip_with_a_checkpoints_folder(tmp_path, ckpt_dir):
    from lipsync_cli.media import load_audio, probe

    video = shared_path("media", "04_square700_frontal.mp4")
    audio = audio_piece(shared_path("media", "04b_dub_audio_en_44k.wav"), tmp_path / "a.wav", 0.5)
    out = tmp_path / "vfr.mp4"
    proc = run_cli(video, audio, "-o", out, "--model", ckpt_dir, "--steps", "1", "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    s = ffprobe_streams(out)
    assert s["video"]["codec_name"] == "h264" and s["audio"]["codec_name"] == "aac"
    assert (int(s["video"]["width"]), int(s["video"]["height"])) == (700, 700)
    fps = float(probe(video).fps)
    assert float(s["format"]["duration"]) == pytest.approx(len(load_audio(audio)) / 16000, abs=1.5 / fps + 0.05)
    assert "0 edited" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_dub_is_seeded_passes_faceless_frames_and_edits_only_the_crop(tmp_path, gen, monkeypatch):
    """In process (the mp4 is lossy): two dubs with one seed give the same frames; frames without a face are
    untouched; nothing outside the warped crop's footprint changes."""
    import cv2
    from test_musetalk import faceless_stretch_clip

    from lipsync_cli import pipeline
    from lipsync_cli.config import DubConfig, FaceConfig

    clip = faceless_stretch_clip(tmp_path / "gap.mp4")
    speech = make_speech(tmp_path / "s.wav", "One two three four.")
    audio = audio_piece(speech, tmp_path / "a.wav", 0.96)
    runs_seen = []
    real_edit = pipeline.edit_frames

    def spy(frames, track, rows, weights, mels, generator, stages):
        before = [f.copy() for f in frames]
        after = real_edit(frames, track, rows, weights, mels, generator, stages)
        runs_seen[-1].extend((b, a, generator.matrices[r], w) for b, a, r, w in zip(before, after, rows, weights))
        return after

    monkeypatch.setattr(pipeline, "edit_frames", spy)
    cfg = DubConfig(model="unused", faces=FaceConfig(detector="dlib"), quiet=True, device="cpu", chunk_frames=16)
    results = []
    for name in ("one.mp4", "two.mp4"):
        runs_seen.append([])
        results.append(pipeline.dub(clip, audio, tmp_path / name, cfg, generator=gen))
    assert 0 < results[0].frames_edited < results[0].frames == 24  # frames 20..23 have no face
    changed = 0
    for (before, after, matrix, weight), (_, again, _, _) in zip(*runs_seen):
        np.testing.assert_array_equal(after, again)  # same seed, same output
        if weight == 0:
            np.testing.assert_array_equal(before, after)
            continue
        w, h = align.crop_size(64)
        footprint = cv2.warpAffine(np.ones((h, w), np.uint8), cv2.invertAffineTransform(matrix.astype(np.float64)),
                                   before.shape[1::-1])
        outside = cv2.dilate(footprint, np.ones((5, 5), np.uint8)) == 0
        np.testing.assert_array_equal(before[outside], after[outside])
        changed += int((before != after).any())
    assert changed == results[0].frames_edited


@pytest.fixture()
def mediapipe_weights(monkeypatch):
    """MediaPipe's face landmarker from ../shared (offline): the fastest landmark detector here on a CPU."""
    monkeypatch.setenv("LIPSYNC_WEIGHTS_DIR", str(shared_path("models", "mediapipe", "face_landmarker.task").parent))
    monkeypatch.setenv("LIPSYNC_OFFLINE", "1")


def dub_in_process(*args):
    """`lipsync dub ARGS` in this process (tests/cli_utils.py): one unguided denoising step in fp32 on the CPU
    (the guided loop is the conformance tests' and the seeded dub's)."""
    return lipsync_in_process(held_capfd(), "dub", *map(str, args), "--detector", "mediapipe", "--device", "cpu",
                              "--steps", "1", "--guidance", "1", "--precision", "fp32")


def portrait_speech(tmp_path: Path) -> Path:
    """0.2 s of 02b (the portrait clip's own speech, from 0.5 s: it starts silent): 5 frames at 25 fps."""
    return audio_piece(shared_path("media", "02b_dub_audio_en_16k.wav"), tmp_path / "a.wav", 0.2, start=0.5)


@pytest.mark.slow
def test_cli_dubs_the_portrait_hevc_clip_on_the_mouth(tmp_path, ckpt_dir, mediapipe_weights):
    """02 + 02b (1080x1920 HEVC portrait) with a checkpoints folder: H.264/AAC of the clip's size, rate and the
    speech's length, every frame dubbed, the licence line naming LatentSync's parts; the similarity warp and its
    inverse put the new mouth on the mouth: the pixels that change lie on the lower face, and away from the face
    only the codec's noise differs."""
    from lipsync_cli.faces import get_detector
    from lipsync_cli.media import read_image

    video, out = shared_path("media", "02_portrait_1080x1920_hevc.mp4"), tmp_path / "portrait.mp4"
    proc = dub_in_process(video, portrait_speech(tmp_path), "-o", out, "--model", ckpt_dir)
    assert proc.returncode == 0, proc.stderr
    check_dub_output(out, 1080, 1920, 0.2, 25.0)
    assert "dubbed 5 frames (5 edited; faces: mediapipe" in proc.stderr, proc.stderr
    [line] = [text for text in proc.stderr.splitlines() if text.startswith("licence:")]
    assert "latentsync_unet, latentsync_whisper, latentsync_mask, sd_vae" in line and "musetalk" not in line
    before, after = read_image(video), read_image(out)  # frame 0 of each
    [face] = get_detector("mediapipe").detect([before])[0]
    x1, y1, x2, y2 = face.box
    diff = np.abs(after.astype(int) - before.astype(int)).max(axis=2)
    ys, xs = np.nonzero(diff > 48)
    assert len(ys) > 200  # the tiny random network redraws the mouth
    nose = face.landmarks[33]
    margin = 0.1 * (x2 - x1)
    assert x1 - margin <= xs.min() and xs.max() <= x2 + margin and ys.max() <= y2 + 2 * margin
    assert np.median(ys) > nose[1] and abs(np.median(xs) - nose[0]) < 0.25 * (x2 - x1)
    far = np.ones(diff.shape, bool)
    w, h = x2 - x1, y2 - y1
    far[max(0, int(y1 - h)):int(y2 + h), max(0, int(x1 - w)):int(x2 + w)] = False
    assert np.percentile(diff[far], 99.9) <= 12  # re-encoding only


@pytest.mark.slow
def test_cli_dubs_a_still_image(tmp_path, ckpt_dir, face_image, mediapipe_weights):
    out = tmp_path / "still.mp4"
    proc = dub_in_process(face_image, portrait_speech(tmp_path), "-o", out, "--model", ckpt_dir)
    assert proc.returncode == 0, proc.stderr
    check_dub_output(out, 300, 300, 0.2, 25.0)
    assert "dubbed 5 frames (5 edited; faces: mediapipe" in proc.stderr, proc.stderr


# ---------------------------------------------------------------- bad inputs


@pytest.fixture()
def clip_and_audio(tmp_path, face_clip):
    return face_clip, make_speech(tmp_path / "s.wav", "Hi.")


def copy_ckpt(ckpt_dir: Path, dest: Path) -> Path:
    shutil.copytree(ckpt_dir, dest)
    return dest


def one_line_error(proc, code: int, *words: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def test_folder_without_the_unet_is_one_line_exit_1(tmp_path, ckpt_dir, clip_and_audio):
    bad = copy_ckpt(ckpt_dir, tmp_path / "checkpoints")
    (bad / "latentsync_unet.pt").unlink()
    out = tmp_path / "o.mp4"
    one_line_error(run_cli(*clip_and_audio, "-o", out, "--model", bad), 1, "latentsync_unet.pt")
    assert not out.exists()


def test_unet_of_another_shape_is_one_line_exit_1(tmp_path, ckpt_dir, arch, clip_and_audio):
    import yaml

    bad = copy_ckpt(ckpt_dir, tmp_path / "checkpoints")
    cfg = yaml.safe_load((bad / "config.yaml").read_text())
    cfg["model"]["block_out_channels"] = [32, 64, 64, 64]
    (bad / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "o.mp4"
    one_line_error(run_cli(*clip_and_audio, "-o", out, "--model", bad), 1, "mis-shaped", "latentsync_unet.pt")
    assert not out.exists()


def test_musetalk_and_wav2lip_files_as_latentsync_are_one_line_exit_1(tmp_path, ckpt_dir, wav2lip_ckpt, clip_and_audio):
    from diffusers import UNet2DConditionModel

    bad = copy_ckpt(ckpt_dir, tmp_path / "checkpoints")
    out = tmp_path / "o.mp4"
    shutil.copy(wav2lip_ckpt, bad / "latentsync_unet.pt")
    one_line_error(run_cli(*clip_and_audio, "-o", out, "--model", bad), 1, "Wav2Lip", "not a LatentSync UNet")
    muse = UNet2DConditionModel(block_out_channels=(32, 64), down_block_types=("DownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=8)
    torch.save(muse.state_dict(), bad / "latentsync_unet.pt")  # MuseTalk's unet.pth is a bare UNet state dict
    one_line_error(run_cli(*clip_and_audio, "-o", out, "--model", bad), 1, "MuseTalk", "not a LatentSync UNet")
    assert not out.exists()


def test_missing_extra_names_the_install_command(monkeypatch, ckpt_dir):
    from lipsync_cli.errors import WeightsError

    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers → ImportError
    with pytest.raises(WeightsError, match=r'pip install "lipsync-cli\[latentsync\]"'):
        files.load(files.locate(ckpt_dir))


def test_options_of_the_family_are_refused_for_others(tmp_path, clip_and_audio, wav2lip_ckpt):
    for flag in (["--steps", "5"], ["--deepcache"]):
        proc = run_cli(*clip_and_audio, "-o", tmp_path / "o.mp4", "--model", wav2lip_ckpt, *flag)
        assert proc.returncode == 2 and "--deepcache" in proc.stderr, proc.stderr


def test_weights_entries_name_sources_and_licences(tmp_path):
    from lipsync_cli import weights

    assert weights.expand(["latentsync"]) == ["latentsync_unet", "latentsync_whisper", "latentsync_mask",
                                              "sd_vae", "sd_vae_config"]
    assert weights.expand(["latentsync-1.5"])[0] == "latentsync15_unet"
    unet = weights.entry("latentsync_unet")
    assert unet.repo_id == "ByteDance/LatentSync-1.6" and unet.commercial == "yes"
    assert "commercial use allowed under its use restrictions" in unet.licence and "OpenRAIL++-M" in unet.licence
    mask = weights.entry("latentsync_mask")
    assert mask.sha256 == files.MASK_SHA256 == weights.sha256_of(shared_path("reference", "latentsync", "mask.png"))
    notice = weights.licence_notice(weights.model_entries("latentsync"))
    assert notice.startswith("licence: every model of this run is cleared for commercial use")


def test_a_checkpoints_folder_names_latentsyncs_parts_in_the_licence_line(ckpt_dir, tmp_path):
    """A LatentSync checkpoints/ folder as --model stands for LatentSync's parts (UNet, whisper, mask, the SD VAE),
    not MuseTalk's; a MuseTalk models/ folder and a MuseTalk checkout (its files under models/) still name MuseTalk's."""
    from lipsync_cli import weights

    parts = weights.model_entries(ckpt_dir)
    assert parts == ["latentsync_unet", "latentsync_whisper", "latentsync_mask", "sd_vae", "sd_vae_config"]
    line = weights.licence_notice(parts)
    assert line.startswith("licence: every model of this run is cleared for commercial use (latentsync_unet")
    assert "musetalk" not in line
    muse = tmp_path / "MuseTalk" / "models"
    for rel in ("musetalkV15/unet.pth", "musetalkV15/musetalk.json", "whisper/config.json"):
        (muse / rel).parent.mkdir(parents=True, exist_ok=True)
        (muse / rel).write_bytes(b"x")
    assert weights.model_entries(muse) == weights.model_entries(muse.parent) == weights.model_entries("musetalk")


def test_names_read_the_weights_dir_layout(tmp_path, ckpt_dir, monkeypatch):
    """`--model latentsync` / `latentsync-1.5` read $LIPSYNC_WEIGHTS_DIR/latentsync[-1.5]/ as upstream lays out
    checkpoints/, with the shared sd_vae entries; the mask must match its pinned sha256."""
    w = tmp_path / "w"
    (w / "latentsync" / "whisper").mkdir(parents=True)
    (w / "latentsync-1.5").mkdir()
    (w / "musetalk" / "sd-vae").mkdir(parents=True)
    for rel in ("latentsync_unet.pt", "whisper/tiny.pt", "mask.png"):
        shutil.copy(ckpt_dir / rel, w / "latentsync" / rel)
    shutil.copy(ckpt_dir / "latentsync_unet.pt", w / "latentsync-1.5" / "latentsync_unet.pt")
    shutil.copy(ckpt_dir / "vae" / "config.json", w / "musetalk" / "sd-vae" / "config.json")
    shutil.copy(ckpt_dir / "vae" / "diffusion_pytorch_model.safetensors",
                w / "musetalk" / "sd-vae" / "diffusion_pytorch_model.bin")
    monkeypatch.setenv("LIPSYNC_WEIGHTS_DIR", str(w))
    monkeypatch.setenv("LIPSYNC_CACHE_DIR", str(tmp_path / "cache"))
    big, small = files.locate("latentsync"), files.locate("latentsync-1.5")
    assert (big.resolution, small.resolution) == (512, 256) and big.config is None
    assert big.unet == w / "latentsync" / "latentsync_unet.pt" and small.unet.parent.name == "latentsync-1.5"
    assert big.mask == w / "latentsync" / "mask.png" and big.vae_weights.parent.name == "sd-vae"
    (w / "latentsync" / "mask.png").write_bytes(bytes(1871))  # right size, wrong bytes
    from lipsync_cli.errors import LipsyncError

    with pytest.raises(LipsyncError, match="latentsync_mask.*failed verification"):
        files.locate("latentsync")


def test_missing_weights_offline_is_one_line_exit_3(tmp_path, clip_and_audio):
    env = {"LIPSYNC_CACHE_DIR": str(tmp_path / "cache"), "LIPSYNC_OFFLINE": "1",
           "LIPSYNC_WEIGHTS_DIR": str(tmp_path / "none")}
    out = tmp_path / "o.mp4"
    one_line_error(run_cli(*clip_and_audio, "-o", out, "--model", "latentsync", env=env), 3, "offline",
                   "ByteDance/LatentSync-1.6")
    assert not out.exists()
