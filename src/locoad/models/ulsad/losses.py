"""ULSAD losses: small functions on tensors (B, C, H, W), each returning a scalar or a map.

The paper's refined DFR objective adds a direction term to DFR's squared error: a feature
vector that keeps its length but turns is also penalised. The same per-position distance is
used for the attention loss of the global branch and for the global-local consistency loss,
and (without reduction) as the anomaly map at test time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def feature_distance(a: torch.Tensor, b: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-position distance (B, H, W): mean over channels of (a - b)^2 + lam * (1 - cos(a, b))."""
    sq = (a - b).pow(2).mean(dim=1)
    cos = F.cosine_similarity(a, b, dim=1)
    return sq + lam * (1.0 - cos)


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention between the spatial positions of (B, C, H, W) maps."""
    b, c, h, w = value.shape
    q, k, v = (t.flatten(2).transpose(1, 2) for t in (query, key, value))  # (B, HW, C)
    weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1)  # (B, HW, HW)
    return (weights @ v).transpose(1, 2).reshape(b, c, h, w)


def local_loss(features: torch.Tensor, reconstruction: torch.Tensor, lam: float) -> torch.Tensor:
    """Refined DFR objective: reconstruct the pre-trained features (squared error + direction)."""
    return feature_distance(features, reconstruction, lam).mean()


def attention_loss(features: torch.Tensor, global_out: torch.Tensor, lam: float) -> torch.Tensor:
    """Global branch: its output, used as attention queries over the pre-trained features,
    must reproduce the features' self-attention, i.e. which positions relate to which.

    Because the global branch compresses the image into a single code, it can only do this
    by learning the layout of normal images; a missing or surplus part breaks it.
    """
    target = attention(features, features, features)
    pred = attention(global_out, features, features)
    return feature_distance(target, pred, lam).mean()


def global_local_loss(global_out: torch.Tensor, local_pred: torch.Tensor, lam: float) -> torch.Tensor:
    """Consistency between the global branch and the local branch's second output head.

    At test time their disagreement is the global (logical) anomaly map.
    """
    return feature_distance(global_out, local_pred, lam).mean()
