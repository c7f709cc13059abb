"""Exact nearest-neighbour search by chunked matrix products (no Python loop over patches)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nn_cosine_distance(
    queries: torch.Tensor,
    bank: torch.Tensor,
    chunk_size: int = 4096,
    half: bool = False,
) -> torch.Tensor:
    """For each query row, 1 - max cosine similarity to any bank row.

    queries: (N, D), bank: (M, D) on the same device. Returns (N,) float32 in [0, 2].
    Memory is bounded by ``chunk_size`` x ``chunk_size`` similarities at a time; ``half``
    computes the products in fp16/bf16 (bf16 on CPU), useful for large full-shot banks.
    """
    if bank.shape[0] == 0:
        raise ValueError("empty memory bank")
    if queries.shape[-1] != bank.shape[-1]:
        raise ValueError(f"feature dims differ: queries {queries.shape[-1]}, bank {bank.shape[-1]}")
    dtype = (torch.bfloat16 if queries.device.type == "cpu" else torch.float16) if half else torch.float32
    q = F.normalize(queries.float(), dim=-1).to(dtype)
    b = F.normalize(bank.float(), dim=-1).to(dtype)
    best = torch.full((q.shape[0],), -2.0, device=q.device)
    for i in range(0, q.shape[0], chunk_size):
        qi = q[i : i + chunk_size]
        row_best = torch.full((qi.shape[0],), -2.0, device=q.device)
        for j in range(0, b.shape[0], chunk_size):
            sim = qi @ b[j : j + chunk_size].T
            row_best = torch.maximum(row_best, sim.max(dim=1).values.float())
        best[i : i + chunk_size] = row_best
    return (1.0 - best).clamp_min(0.0)


def top_percent_mean(values: torch.Tensor, percent: float) -> torch.Tensor:
    """Mean of the largest ``percent`` % of ``values`` (at least one value)."""
    if values.numel() == 0:
        raise ValueError("no values to aggregate")
    k = max(1, round(values.numel() * percent / 100.0))
    return values.flatten().topk(k).values.mean()
