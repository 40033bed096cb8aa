"""The reference-attention generator (issue 5): model, reference selection, losses, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lipsync_cli.models.refs import RefsGenerator
from lipsync_cli.references import ClipReferences, N_REFS, kmeans_references, lip_features, select_references

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
