"""The reference-attention generator (issue 5): model, reference selection, losses, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_utils import lipsync_in_process

from lipsync_cli.generators.refs.kmeans_references import (ClipReferences, N_REFS, kmeans_references, lip_features,
                                                          select_references)
from lipsync_cli.generators.refs.network import RefsGenerator

K = 4  # references in the model tests: fewer than the default 10 keeps them fast, same code path


def small_model(size: int = 96, **switches) -> RefsGenerator:
    torch.manual_seed(0)
    return RefsGenerator(size=size, n_refs=K, base=8, **switches).eval()


def inputs(size: int, b: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(b, 1, 80, 16, generator=g)
    masked = torch.rand(b, 3, size, size, generator=g)
    masked[:, :, size // 2:] = 0
    refs = torch.rand(1, K, 3, size, size, generator=g)
    return mel, masked, refs


@pytest.mark.parametrize("size", [96, 128])
def test_output_shapes_and_ranges(size):
    model = small_model(size)
    mel, masked, refs = inputs(size, b=3)
    with torch.no_grad():
        rgb, mask = model(mel, masked, refs=refs)
        per_sample, _ = model(mel, masked, refs=refs.expand(3, -1, -1, -1, -1))  # (B, K, ...) refs too
    assert rgb.shape == (3, 3, size, size) and mask.shape == (3, 1, size, size)
    assert 0 <= rgb.min() and rgb.max() <= 1 and 0 <= mask.min() and mask.max() <= 1
    torch.testing.assert_close(per_sample, rgb)


def test_size_must_be_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        RefsGenerator(size=100)


def test_attention_weights_follow_the_formula_sum_to_one_and_follow_the_audio():
    model = small_model()
    refs = torch.zeros(1, K, 512)
    refs[0, :, 0] = torch.tensor([-2.0, -0.5, 0.5, 2.0])  # references differ along one direction
    audio = torch.zeros(2, 512)
    audio[0, 0], audio[1, 0] = 1.5, -1.5  # two sounds that point opposite ways
    weights = model.attention_weights(audio, refs)
    expected = torch.softmax(-torch.sigmoid(audio @ refs[0].T), dim=1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(weights.sum(1), torch.ones(2))
    assert weights[0].argmax() == 0 and weights[1].argmax() == K - 1  # the audio decides which reference leads
    mel, masked, refs_img = inputs(96)
    with torch.no_grad():  # in the model the weights come from the audio encoder: different sounds, other mix
        cache = model.encode_references(refs_img)
        w = model.attention_weights(model.audio_encoder(mel), cache.embeddings)
    torch.testing.assert_close(w.sum(1), torch.ones(2))
    assert (w[0] - w[1]).abs().max() > 0


def test_mean_aggregation_switch_gives_uniform_weights():
    model = small_model(attention=False)
    mel, masked, refs = inputs(96)
    with torch.no_grad():
        cache = model.encode_references(refs)
        weights = model.attention_weights(model.audio_encoder(mel), cache.embeddings)
        rgb, mask = model(mel, masked, ref_cache=cache)
    torch.testing.assert_close(weights, torch.full((2, K), 1 / K))
    assert rgb.shape == (2, 3, 96, 96) and mask.shape == (2, 1, 96, 96)


@pytest.mark.parametrize("switches", [dict(mask_head=False), dict(residual=False), dict(attention=False)])
def test_ablation_switches_build_and_run(switches):
    model = small_model(**switches)
    assert all(model.config[name] == value for name, value in switches.items())
    mel, masked, refs = inputs(96)
    with torch.no_grad():
        rgb, mask = model(mel, masked, refs=refs)
    assert rgb.shape == (2, 3, 96, 96)
    assert (mask is None) == (not model.config["mask_head"])
    assert any(getattr(m, "residual", False) for m in model.modules()) == model.config["residual"]


def test_references_change_the_output_but_only_through_their_mouth_half():
    model = small_model()
    mel, masked, refs = inputs(96)
    other_eyes = refs.clone()
    other_eyes[..., :48, :] = torch.rand_like(other_eyes[..., :48, :])
    other_mouths = refs.clone()
    other_mouths[..., 48:, :] = torch.rand_like(other_mouths[..., 48:, :])
    with torch.no_grad():
        base, _ = model(mel, masked, refs=refs)
        eyes, _ = model(mel, masked, refs=other_eyes)
        mouths, _ = model(mel, masked, refs=other_mouths)
    torch.testing.assert_close(eyes, base)
    assert (mouths - base).abs().max() > 1e-4


def test_reference_encoder_runs_k_times_per_clip_not_per_frame():
    model = small_model()
    encoded = []
    model.reference_encoder.register_forward_hook(lambda mod, args, out: encoded.append(args[0].shape[0]))
    _, _, refs = inputs(96)
    with torch.no_grad():
        cache = model.encode_references(refs)  # once per clip
        outputs = [model(*inputs(96, b=5, seed=s)[:2], ref_cache=cache)[0] for s in range(3)]  # 3 batches, 15 frames
        assert encoded == [K]  # K reference images encoded for the 15 frames
        direct, _ = model(*inputs(96, b=5, seed=2)[:2], refs=refs)
    torch.testing.assert_close(outputs[2], direct)  # the cache gives what encoding per call gives


# --- reference selection ---------------------------------------------------------------------------------


def clustered_landmarks(n_clusters: int = 4, per_cluster: int = 12, seed: int = 0):
    """(N, 68, 2) landmarks in a 96-pixel crop: n_clusters mouth shapes (openness), small noise; labels (N,)."""
    rng = np.random.default_rng(seed)
    template = rng.uniform(20, 76, size=(68, 2)).astype(np.float32)
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    rng.shuffle(labels)
    marks = np.repeat(template[None], len(labels), axis=0)
    marks[:, 48:68, 1] += labels[:, None] * 6.0  # the lips open further in each cluster
    marks[:, 4:13, 1] += labels[:, None] * 3.0  # and the chin drops
    marks += rng.normal(0, 0.3, size=marks.shape).astype(np.float32)
    return marks, labels


def test_kmeans_picks_one_frame_nearest_each_true_cluster():
    marks, labels = clustered_landmarks()
    boxes = np.tile(np.float32([0, 0, 96, 96]), (len(marks), 1))
    picked = select_references(marks, boxes, k=4)
    assert len(set(picked.tolist())) == 4 and sorted(labels[picked]) == [0, 1, 2, 3]
    feats = lip_features(marks, boxes)
    for i in picked:  # each pick is its cluster's most central frame (KMeans centroid = the cluster mean)
        members = np.flatnonzero(labels == labels[i])
        centre = feats[members].mean(0)
        assert i == members[np.argmin(((feats[members] - centre) ** 2).sum(1))]


def test_fewer_distinct_frames_than_k_repeat_for_dubbing_and_augment_for_training():
    marks, labels = clustered_landmarks(n_clusters=3, per_cluster=1)
    marks = np.repeat(marks, 5, axis=0)  # 15 frames, 3 distinct mouth shapes
    boxes = np.tile(np.float32([0, 0, 96, 96]), (len(marks), 1))
    picked = select_references(marks, boxes, k=N_REFS)
    assert len(picked) == N_REFS and len(set(labels[picked // 5].tolist())) == 3
    assert len(kmeans_references(lip_features(marks, boxes), k=N_REFS)) == 3
    crops = np.zeros((15, 96, 96, 3), np.uint8)
    idx, missing = ClipReferences(marks, crops, k=N_REFS).pick(0, 5, np.random.default_rng(0))
    assert len(idx) == 3 and missing == N_REFS - 3


def test_still_image_gets_one_reference_and_random_mode_one_random_frame():
    marks, _ = clustered_landmarks()
    boxes = np.tile(np.float32([0, 0, 96, 96]), (len(marks), 1))
    assert select_references(marks[:1], boxes[:1]).tolist() == [0]
    picks = {int(select_references(marks, boxes, mode="random", seed=s)[0]) for s in range(5)}
    assert len(picks) > 1


def test_training_references_never_come_from_the_target_window():
    marks, _ = clustered_landmarks(per_cluster=6)
    crops = np.zeros((len(marks), 96, 96, 3), np.uint8)
    refs = ClipReferences(marks, crops, k=4)
    rng = np.random.default_rng(0)
    for start in range(len(marks) - 4):
        idx, missing = refs.pick(start, 5, rng)
        assert len(idx) == 4 and missing == 0 and not ((idx >= start) & (idx < start + 5)).any()


def test_clips_without_landmarks_cluster_on_mouth_pixels():
    crops = np.zeros((30, 96, 96, 3), np.uint8)
    openness = np.arange(30) % 3  # three mouth sizes, interleaved in time
    for i, o in enumerate(openness):
        crops[i, 60:64 + 8 * o, 30:66] = 200
    boxes = np.tile(np.float32([0, 0, 96, 96]), (30, 1))
    picked = select_references(np.full((30, 68, 2), np.nan, np.float32), boxes, k=3, crops=crops)
    assert sorted(openness[picked]) == [0, 1, 2]


# --- losses and schedule -----------------------------------------------------------------------------------


def test_masked_l1_is_the_mean_error_inside_the_mask_whatever_its_area():
    from lipsync_cli.train.refs_losses import masked_l1

    pred, target = torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)
    pred[:, :, 16:] = 0.4  # wrong inside the lower half only
    small, large = torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    small[:, :, 20:24, 10:14], large[:, :, 16:] = 1, 1
    assert masked_l1(pred, target, small).item() == pytest.approx(0.4)
    assert masked_l1(pred, target, large).item() == pytest.approx(0.4)
    assert masked_l1(pred, pred * 0 + 0.4, large).item() == pytest.approx(0.0)


def test_blend_keeps_the_target_outside_the_mask_and_stops_the_mask_gradient():
    from lipsync_cli.train.refs_losses import blend

    gen, target = torch.ones(1, 3, 32, 32, requires_grad=True), torch.zeros(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32, requires_grad=True)
    with torch.no_grad():
        mask[:, :, 20:] = 1
    out = blend(gen, target, mask)
    assert out[:, :, :15].abs().max().item() == 0  # beyond the blur's reach: the input pixels
    assert out[:, :, 25:].min().item() == pytest.approx(1.0)  # deep inside: the generated pixels
    assert 0 < out[0, 0, 19, 0].item() < 1  # the k=5 sigma=3 blur feathers the edge
    out.sum().backward()
    assert mask.grad is None and gen.grad.abs().sum() > 0


def test_landmark_mask_is_the_dilated_hull_of_jaw_and_nose_tip():
    from lipsync_cli.train.refs_losses import landmark_mask

    marks = np.full((68, 2), np.nan, np.float32)
    t = np.linspace(0, np.pi, 17)
    marks[0:17] = np.stack([48 - 30 * np.cos(t), 50 + 30 * np.sin(t)], 1)  # a U-shaped jaw below y = 50
    marks[30] = (48, 45)  # nose tip
    mask = landmark_mask(marks, 96, dilate=11)
    assert mask[70, 48] == 1 and mask[46, 48] == 1  # chin area and just under the nose
    assert mask[20, 48] == 0 and mask[60, 5] == 0  # forehead, far cheek
    assert mask[50, 48 - 30 - 5] == 1 and mask[50, 48 - 30 - 7] == 0  # dilated by 5 px each side
    fallback = landmark_mask(np.full((68, 2), np.nan, np.float32), 96)
    assert fallback[48:].all() and not fallback[:48].any()  # unknown landmarks: the fixed lower half


def test_discriminator_loss_has_r1_penalty_and_augmentation_keeps_shapes():
    from lipsync_cli.models.refs_discriminator import RefsDiscriminator
    from lipsync_cli.train.refs_losses import diff_augment, discriminator_loss, generator_adv_loss

    torch.manual_seed(0)
    disc = RefsDiscriminator(size=64, frames=5, base=8)
    real, fake = torch.rand(2, 3, 5, 32, 64), torch.rand(2, 3, 5, 32, 64)
    assert diff_augment(real).shape == real.shape
    assert disc(real).shape == (2, 1)
    with_r1 = discriminator_loss(disc, real, fake, r1_gamma=10.0)
    torch.manual_seed(1)
    without = discriminator_loss(disc, real, fake, r1_gamma=0.0)
    assert with_r1.item() > without.item() > 0
    with_r1.backward()
    assert all(p.grad is not None for p in disc.parameters() if p.requires_grad)
    assert generator_adv_loss(torch.tensor([[10.0]])) < generator_adv_loss(torch.tensor([[-10.0]]))


def test_perceptual_loss_on_random_vgg_needs_no_download():
    from lipsync_cli.train.refs_losses import Perceptual

    torch.manual_seed(0)
    loss = Perceptual("random")
    a = torch.rand(1, 3, 32, 32)
    assert loss(a, a).item() == 0 and loss(a, torch.rand(1, 3, 32, 32)).item() > 0
    assert not any(p.requires_grad for p in loss.parameters())


def test_stage_schedule_weights_and_lr_annealing():
    from lipsync_cli.config import RefsConfig
    from lipsync_cli.train.refs import loss_weights, lr_scale, passes_thresholds, stage_at

    cfg = RefsConfig(stage1_fraction=0.5, anneal_fraction=0.2, l1_threshold=0.1, perceptual_threshold=0.5)
    assert [stage_at(s, 100, 0.5) for s in (1, 50, 51, 100)] == [1, 1, 2, 2]
    assert [lr_scale(s, 100, cfg) for s in (1, 40, 41, 50, 51, 90, 100)] == [1, 1, 1, 0.1, 1, 1, 0.1]
    assert lr_scale(45, 100, cfg) > lr_scale(46, 100, cfg) > lr_scale(50, 100, cfg) > 0  # linear ramp down
    w1, w1_on, w2 = loss_weights(1, False, cfg), loss_weights(1, True, cfg), loss_weights(2, True, cfg)
    assert (w1["l1"], w1["perceptual"], w1["mask"], w1["expert"], w1["adv"]) == (1, 0.5, 1, 0, 0)
    assert (w1_on["expert"], w1_on["adv"]) == (0.01, 0) and (w2["expert"], w2["adv"]) == (0.1, 0.01)
    assert passes_thresholds({"l1": 0.05, "perceptual": 0.4}, cfg)
    assert not passes_thresholds({"l1": 0.05, "perceptual": 0.6}, cfg)
    assert not passes_thresholds({"l1": 0.2, "perceptual": 0.1}, cfg)
    off = RefsConfig(mask_head=False, perceptual="off")
    assert loss_weights(2, True, off, gan=False)["adv"] == 0 and loss_weights(1, False, off)["mask"] == 0


# --- the training task ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_refs_data(tmp_path_factory):
    from synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("refs_data"), n_clips=4, seconds=3.0, size=64,
                                  voice="synthetic")


class _Run:
    """The two Trainer helpers a task calls, for driving train_step by hand on one batch."""

    def autocast(self):
        return torch.autocast("cpu", enabled=False)

    def optimize(self, loss, optimizer):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def test_dataset_items_and_references_outside_the_window(synthetic_refs_data):
    from lipsync_cli.config import RefsConfig
    from lipsync_cli.data.dataset import ClipStore
    from lipsync_cli.train.refs_data import RefsDataset

    data = RefsDataset(ClipStore(synthetic_refs_data, "train"), RefsConfig(n_refs=K), seed=0, train=False)
    item = data[7]
    assert item["target"].shape == (3, 5, 64, 64) and item["target"].dtype == torch.uint8
    assert item["masked"][:, :, 32:].max() == 0 and torch.equal(item["masked"][:, :, :32], item["target"][:, :, :32])
    assert item["refs"].shape == (K, 3, 64, 64) and item["mel"].shape == (5, 1, 80, 16)
    assert item["target_mask"].shape == (1, 5, 64, 64)
    clip, start = (int(v) for v in data.index[7])
    faces = np.asarray(data.store.faces(clip))
    window = faces[start:start + 5].transpose(0, 3, 1, 2)
    for ref in item["refs"].numpy():  # every reference is a frame of the clip, none from the target's window
        assert any(np.array_equal(ref, f.transpose(2, 0, 1)) for f in faces)
        assert not any(np.array_equal(ref, w) for w in window)


def test_task_losses_fall_when_overfitting_one_batch(synthetic_refs_data):
    from lipsync_cli.config import GeneratorConfig, RefsConfig, TrainConfig
    from lipsync_cli.train.refs import RefsTask

    torch.manual_seed(0)
    cfg = RefsConfig(n_refs=K, base=8, perceptual="off", stage1_fraction=0.5)
    task = RefsTask(GeneratorConfig(arch="refs", refs=cfg), expert=None)
    train, _ = task.datasets(synthetic_refs_data, seed=0)
    task.build(torch.device("cpu"), TrainConfig(max_steps=16, lr=2e-3))
    batch = torch.utils.data.default_collate([train[3]])  # one 5-frame window and its references
    logs = [task.train_step(batch, step, _Run()) for step in range(1, 17)]
    for name in ("l1", "mask", "total"):
        assert logs[-1][name] < 0.85 * logs[0][name], name
    assert "adv" not in logs[7] and "adv" in logs[8] and "disc" in logs[8]  # stage 2 adds the GAN


@pytest.mark.slow
def test_train_generator_refs_runs_both_stages_and_learns_the_synthetic_set(synthetic_refs_data, tmp_path):
    """What `lipsync train generator --arch refs` runs, with a small network and no VGG download."""
    import csv
    import time

    from ckpt_utils import write_public_checkpoint

    from lipsync_cli.config import GeneratorConfig, RefsConfig, TrainConfig
    from lipsync_cli.models import load_checkpoint
    from lipsync_cli.train import train_generator

    expert = write_public_checkpoint(tmp_path / "expert.pth", "syncnet")
    gen_cfg = GeneratorConfig(arch="refs", refs=RefsConfig(n_refs=K, base=8, perceptual="off"))
    cfg = TrainConfig(batch_size=2, lr=1e-3, max_steps=40, val_every=20, val_batches=3, ckpt_every=40,
                      log_every=5, num_workers=0, device="cpu")
    started = time.perf_counter()
    run = train_generator(synthetic_refs_data, tmp_path / "run", cfg, gen_cfg, str(expert), quiet=True)
    print(f"refs training: {time.perf_counter() - started:.0f} s for {cfg.max_steps} steps")
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    val = {(int(r["step"]), r["metric"]): float(r["value"]) for r in rows if r["phase"] == "val"}
    train = {(int(r["step"]), r["metric"]): float(r["value"]) for r in rows if r["phase"] == "train"}
    print({k: round(v, 3) for k, v in val.items()})
    assert val[(40, "l1")] <= 0.7 * val[(0, "l1")]  # held-out masked L1 falls by at least 30%
    assert val[(40, "mask_iou")] > 0.7
    assert train[(20, "stage")] == 1 and "adv" not in {m for s, m in train if s == 20}
    assert train[(40, "stage")] == 2 and (40, "adv") in train and (40, "disc") in train and (40, "expert") in train
    model = load_checkpoint(run / "last.pt", expect="generator")  # the checkpoint rebuilds the generator
    assert model.arch == "refs" and model.config["size"] == 64
    with torch.no_grad():
        rgb, mask = model(torch.zeros(2, 1, 80, 16), torch.zeros(2, 3, 64, 64),
                          ref_cache=model.encode_references(torch.rand(1, K, 3, 64, 64)))
    assert rgb.shape == (2, 3, 64, 64) and mask.shape == (2, 1, 64, 64)


def test_cli_train_generator_refs_switches_reach_the_checkpoint(synthetic_refs_data, tmp_path, capfd):
    """The ablation switches of `lipsync train generator --arch refs` end up in the saved network's config.
    The CLI runs in this process (tests/cli_utils.py), as in the offline test below."""
    from ckpt_utils import write_public_checkpoint

    from lipsync_cli.models import load_checkpoint

    expert = write_public_checkpoint(tmp_path / "expert.pth", "syncnet")
    run = tmp_path / "run"
    args = ["train", "generator", str(synthetic_refs_data), "--arch", "refs",
            "--expert", str(expert), "-o", str(run), "--max-steps", "2", "--val-every", "2", "--ckpt-every", "2",
            "--batch-size", "2", "--workers", "0", "--device", "cpu", "--refs", "3", "--base", "8",
            "--perceptual", "off", "--mean-refs", "--no-residual", "--no-gan", "-q"]
    proc = lipsync_in_process(capfd, *args)
    assert proc.returncode == 0, proc.stderr
    model = load_checkpoint(run / "last.pt", expect="generator")
    assert {k: model.config[k] for k in ("n_refs", "base", "attention", "residual", "mask_head")} == \
        dict(n_refs=3, base=8, attention=False, residual=False, mask_head=True)
    train_state = torch.load(run / "last.pt", weights_only=True)["train"]
    assert "generator" in train_state["optimizers"]
    assert "discriminator" not in train_state["optimizers"] and "discriminator" not in train_state["nets"]  # --no-gan

    bad = lipsync_in_process(capfd, *args[:-1], "--perceptual", "vgg19")
    assert bad.returncode == 2 and "--perceptual" in bad.stderr and "'off'" in bad.stderr, bad.stderr  # names choices


def test_imagenet_perceptual_offline_fails_in_one_line_before_training(synthetic_refs_data, tmp_path, monkeypatch,
                                                                      capfd):
    """The default --perceptual imagenet needs the vgg16_imagenet weights entry: offline and uncached it is the
    missing-weights error (exit 3), one line saying what to pass instead, and no training step was taken."""
    from ckpt_utils import write_public_checkpoint

    expert = write_public_checkpoint(tmp_path / "expert.pth", "syncnet")
    run = tmp_path / "run"
    monkeypatch.setenv("LIPSYNC_OFFLINE", "1")
    monkeypatch.setenv("LIPSYNC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LIPSYNC_WEIGHTS_DIR", "")
    proc = lipsync_in_process(capfd, "train", "generator", synthetic_refs_data, "--arch", "refs", "--expert", expert,
                              "-o", run, "--max-steps", "2", "--workers", "0", "--device", "cpu", "--batch-size", "2",
                              "--base", "8", "--refs", "3")
    assert proc.returncode == 3, proc.stderr
    assert "vgg16-397923af.pth" in proc.stderr and "--perceptual random" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not list(run.glob("*.pt")), "a training step ran before the weights were found"
