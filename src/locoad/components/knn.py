"""Exact nearest-neighbour search by chunked matrix products (no Python loop over patches)."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Banks known to have unit rows (made by normalize_bank), keyed by id: nn_cosine_distance
# skips re-normalising them on every query. Weak values, so a freed bank leaves the registry
# and a new tensor reusing its id is not mistaken for it (the identity check below).
_UNIT_ROWS: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()


def has_unit_rows(bank: torch.Tensor) -> bool:
    """True if ``bank`` was made by :func:`normalize_bank` (and not modified in place since)."""
    return _UNIT_ROWS.get(id(bank)) is bank


def compute_dtype(device: torch.device, half: bool) -> torch.dtype:
    """dtype of the similarity products: fp16 on CUDA when ``half``, else float32.

    CPUs without native bf16/fp16 units (e.g. AVX2-only) run half-precision matmuls about
    8x slower than float32, so on CPU ``half`` only halves the stored bank (see
    :func:`storage_dtype`) and every chunk is upcast for the product.
    """
    return torch.float16 if half and device.type == "cuda" else torch.float32


def storage_dtype(device: torch.device, half: bool) -> torch.dtype:
    """dtype to keep a memory bank in: fp16 on CUDA, bf16 on CPU (wide exponent, cheap upcast)."""
    if not half:
        return torch.float32
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def normalize_bank(bank: torch.Tensor, half: bool = False, chunk_size: int = 65536, inplace: bool = False) -> torch.Tensor:
    """Unit-normalise the rows of ``bank`` chunk by chunk (no full float32 copy of a half bank).

    ``inplace`` writes into ``bank`` itself when its dtype is already the storage dtype: a
    caller that owns the tensor (e.g. a fresh ``torch.cat``) then needs no second full copy,
    which matters for 350-image banks of several GiB.
    """
    dtype = storage_dtype(bank.device, half)
    out = bank if inplace and bank.dtype == dtype else torch.empty(bank.shape, dtype=dtype, device=bank.device)
    for j in range(0, bank.shape[0], chunk_size):
        out[j : j + chunk_size] = F.normalize(bank[j : j + chunk_size].float(), dim=-1)
    _UNIT_ROWS[id(out)] = out
    return out


def subset_unit_rows(bank: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Rows ``keep`` of a unit-normalised bank, still known to be unit-norm (no re-normalising)."""
    out = bank[keep]
    if _UNIT_ROWS.get(id(bank)) is bank:
        _UNIT_ROWS[id(out)] = out
    return out


def nn_cosine_distance(
    queries: torch.Tensor,
    bank: torch.Tensor,
    chunk_size: int = 4096,
    half: bool = False,
) -> torch.Tensor:
    """For each query row, 1 - max cosine similarity to any bank row.

    queries: (N, D), bank: (M, D) on the same device (any float dtype; rows need not be unit
    norm). Returns (N,) float32 in [0, 2]. Extra memory is bounded by one ``chunk_size`` x
    ``chunk_size`` block of similarities plus one normalised bank chunk, whatever M is: the
    bank is never copied whole. ``half`` computes the products in fp16 on CUDA (float32 on CPU,
    see :func:`compute_dtype`).
    """
    if bank.shape[0] == 0:
        raise ValueError("empty memory bank")
    if queries.shape[-1] != bank.shape[-1]:
        raise ValueError(f"feature dims differ: queries {queries.shape[-1]}, bank {bank.shape[-1]}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype = compute_dtype(queries.device, half)
    q = F.normalize(queries.float(), dim=-1).to(dtype)
    unit = has_unit_rows(bank)
    best = torch.full((q.shape[0],), -2.0, device=q.device)
    # Bank chunks outside, query chunks inside: each bank chunk is normalised once, however
    # many query chunks there are (a test image has 1369 patches, usually a single chunk).
    for j in range(0, bank.shape[0], chunk_size):
        bj = bank[j : j + chunk_size]
        bj = (bj if unit else F.normalize(bj.float(), dim=-1)).to(dtype)
        for i in range(0, q.shape[0], chunk_size):
            sim = q[i : i + chunk_size] @ bj.T
            torch.maximum(best[i : i + chunk_size], sim.amax(dim=1).float(), out=best[i : i + chunk_size])
    return (1.0 - best).clamp_min(0.0)


def grouped_nn_cosine_distance(
    queries: torch.Tensor,
    bank: torch.Tensor,
    query_labels: Sequence[torch.Tensor],
    bank_labels: Sequence[torch.Tensor],
    exclude: torch.Tensor | None = None,
    chunk_size: int = 4096,
    half: bool = False,
) -> list[torch.Tensor]:
    """Nearest-neighbour cosine distance under several labellings, from one similarity product.

    queries: (N, D); bank: (M, D); ``query_labels[f]`` (N,) and ``bank_labels[f]`` (M,) int
    labels of labelling ``f`` (< 0: not in any group). For every query row with a label >= 0,
    returns 1 - max cosine similarity to the bank rows with the *same* label; a label that no
    bank row has falls back to every bank row with a label >= 0, and if there is none, to the
    whole bank. ``exclude`` (M,) bool drops bank rows (leave-one-out). Rows with label < 0 get
    NaN. This is what class-agnostic, foreground and class-aware patch scores need: their
    groups are row/column subsets of one query x bank similarity matrix, so the matrix product,
    the dominant cost, is done once instead of once per score.
    """
    if len(query_labels) != len(bank_labels):
        raise ValueError("query_labels and bank_labels must have one entry per labelling")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    m = bank.shape[0]
    avail = torch.ones(m, dtype=torch.bool, device=bank.device) if exclude is None else ~exclude.to(bank.device)
    # Per labelling, per query group: (rows, column span, column mask). rows None = every row;
    # span (a, b) when the group's bank rows are contiguous (SharedPatchBank sorts them so),
    # which turns the column gather into a slice. Excluded rows may stay inside a group's
    # columns: their similarities are set to -inf below.
    Plan = tuple[torch.Tensor | None, tuple[int, int] | None, torch.Tensor]
    plans: list[list[Plan]] = []
    for ql, bl in zip(query_labels, bank_labels):
        ql, bl = ql.to(queries.device), bl.to(bank.device)
        present = set(torch.unique(bl[(bl >= 0) & avail]).tolist())
        groups: list[Plan] = []
        for g in torch.unique(ql[ql >= 0]).tolist():
            cols = (bl == g) if g in present else ((bl >= 0) if present else torch.ones_like(avail))
            rows = torch.nonzero(ql == g).squeeze(1)
            idx = torch.nonzero(cols).squeeze(1)
            span = (int(idx[0]), int(idx[-1]) + 1) if int(idx[-1] - idx[0]) + 1 == len(idx) else None
            groups.append((None if len(rows) == len(ql) else rows, span, cols))
        plans.append(groups)
    if all(not p for p in plans):  # no query row in any group: nothing to search
        return [torch.full((queries.shape[0],), float("nan"), device=queries.device) for _ in plans]
    if not avail.any():
        raise ValueError("empty memory bank")
    dtype = compute_dtype(queries.device, half)
    q = F.normalize(queries.float(), dim=-1).to(dtype)
    unit = has_unit_rows(bank)
    best = [torch.full((q.shape[0],), -2.0, device=q.device) for _ in plans]
    for j in range(0, m, chunk_size):
        bj = bank[j : j + chunk_size]
        bj = (bj if unit else F.normalize(bj.float(), dim=-1)).to(dtype)
        sim = (q @ bj.T).float()
        if exclude is not None:
            sim.masked_fill_(~avail[j : j + chunk_size][None], float("-inf"))
        for plan, b in zip(plans, best):
            for rows, span, cols in plan:
                if span is not None:
                    a, e = max(span[0] - j, 0), min(span[1] - j, sim.shape[1])
                    if a >= e:
                        continue
                    sub = sim[:, a:e]
                else:
                    idx = torch.nonzero(cols[j : j + chunk_size]).squeeze(1)
                    if not len(idx):
                        continue
                    sub = sim.index_select(1, idx)
                if rows is None:
                    torch.maximum(b, sub.amax(dim=1), out=b)
                else:
                    b[rows] = torch.maximum(b[rows], sub.index_select(0, rows).amax(dim=1))
    out = []
    for ql, b in zip(query_labels, best):
        d = (1.0 - b).clamp_min(0.0)
        out.append(torch.where(ql.to(d.device) >= 0, d, torch.full_like(d, float("nan"))))
    return out


def top_percent_mean(values: torch.Tensor, percent: float) -> torch.Tensor:
    """Mean of the largest ``percent`` % of ``values`` (at least one value)."""
    if values.numel() == 0:
        raise ValueError("no values to aggregate")
    k = max(1, round(values.numel() * percent / 100.0))
    return values.flatten().topk(k).values.mean()
