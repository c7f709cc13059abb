"""Greedy k-center coreset (PatchCore): a subset of a memory bank that covers it well.

Each step adds the point farthest from the points chosen so far, which greedily minimises
the covering radius (max distance of a bank row to its nearest chosen row). Distances are
measured after a Gaussian random projection to ``projection_dim`` (Johnson-Lindenstrauss:
pairwise distances are roughly kept) because every step reads the whole projected bank.
"""

from __future__ import annotations

import math

import torch


def coreset_size(total: int, ratio: float | None = None, n: int | None = None, max_n: int | None = None) -> int:
    """Number of rows to keep from ``total``: ``n`` or ``ceil(ratio * total)``, capped by
    ``max_n`` and ``total``, at least 1 (0 for an empty bank)."""
    if (ratio is None) == (n is None):
        raise ValueError("give exactly one of ratio and n")
    if ratio is not None and not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if max_n is not None and max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")
    # rounded first: 0.07 * 100 is 7.000000000000001 in floats, which ceil makes 8
    size = n if n is not None else math.ceil(round(ratio * total, 9))  # type: ignore[operator]
    if max_n is not None:
        size = min(size, max_n)
    return min(max(size, 1), total)


def random_projection(
    bank: torch.Tensor, projection_dim: int | None, seed: int = 0, chunk_size: int = 65536
) -> torch.Tensor:
    """(M, D) -> (M, projection_dim) float32 by a seeded Gaussian matrix (chunked, so a half
    bank is never upcast whole); the bank itself (as float32) when D <= projection_dim."""
    d = bank.shape[1]
    if projection_dim is None or projection_dim <= 0 or d <= projection_dim:
        return bank.float()
    g = torch.Generator().manual_seed(seed)
    # Scaled so squared distances are preserved in expectation.
    proj = (torch.randn(d, projection_dim, generator=g) / math.sqrt(projection_dim)).to(bank.device)
    out = torch.empty(bank.shape[0], projection_dim, device=bank.device)
    for j in range(0, bank.shape[0], chunk_size):
        torch.matmul(bank[j : j + chunk_size].float(), proj, out=out[j : j + chunk_size])
    return out


def greedy_coreset(
    bank: torch.Tensor,
    ratio: float | None = None,
    n: int | None = None,
    projection_dim: int | None = 128,
    seed: int = 0,
    max_n: int | None = None,
) -> torch.Tensor:
    """Indices (on ``bank``'s device, int64, in selection order) of a greedy k-center coreset.

    bank: (M, D). Size: ``n`` rows or ``ratio`` of M (exactly one), capped by ``max_n``; when
    that is >= M every index is returned. Deterministic in ``seed`` (the projection and the
    first point). Memory: the projected bank (M x projection_dim float32) plus O(M).
    """
    total = bank.shape[0]
    if total == 0:
        raise ValueError("empty memory bank")
    size = coreset_size(total, ratio, n, max_n)
    if size >= total:
        return torch.arange(total, device=bank.device)
    x = random_projection(bank, projection_dim, seed)
    sq = (x * x).sum(1)
    g = torch.Generator().manual_seed(seed)
    first = int(torch.randint(total, (1,), generator=g))
    chosen = torch.empty(size, dtype=torch.long, device=bank.device)
    chosen[0] = first
    # Squared distance of every row to its nearest chosen row, updated in place each step:
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, one matrix-vector product per step.
    mind = torch.full((total,), float("inf"), device=x.device)
    dist = torch.empty_like(mind)
    idx = torch.tensor(first, device=x.device)
    for s in range(1, size):
        c = x[idx]
        torch.addmv(sq, x, c, alpha=-2.0, out=dist).add_(sq[idx])  # ||x||^2 - 2 x.c + ||c||^2
        torch.minimum(mind, dist, out=mind)
        mind[idx] = -math.inf  # never picked again, even among exact duplicates
        # Staying on the device (no .item()) keeps CUDA runs free of per-step syncs.
        idx = torch.argmax(mind)
        chosen[s] = idx
    return chosen
