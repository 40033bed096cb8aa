"""Losses shared by the tasks. Both are computed in float32 outside autocast: binary cross-entropy
on fp16 probabilities is refused by autocast and loses precision near 0 and 1."""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-7  # probabilities are clamped into [EPS, 1 - EPS] so log() stays finite


def bce(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of probabilities (any shape) against targets in {0, 1}."""
    with torch.autocast(prob.device.type, enabled=False):
        return F.binary_cross_entropy(prob.float().clamp(EPS, 1 - EPS), target.float().expand_as(prob))


def sync_probability(audio_emb: torch.Tensor, face_emb: torch.Tensor) -> torch.Tensor:
    """(B, D) unit-norm embeddings -> (B,) cosine similarity, read as P(in sync). The expert's
    embeddings come out of a ReLU, so the cosine is already in [0, 1]."""
    return (audio_emb.float() * face_emb.float()).sum(dim=1)


def sync_bce(audio_emb: torch.Tensor, face_emb: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, prob): BCE of the cosine similarity against label (B,) in {0, 1}: 1 = in sync."""
    prob = sync_probability(audio_emb, face_emb)
    return bce(prob, label), prob
