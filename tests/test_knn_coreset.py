"""Exact chunked kNN (the grouped search, one group) against brute force, the top-% aggregation,
greedy k-center coreset, and the patch scores' coreset option."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import nn_cosine_distance
from locoad.components.coreset import coreset_size, greedy_coreset, random_projection
from locoad.components.knn import group_median, normalize_bank, worst_group_top_percent
from locoad.features.class_agnostic_patch import ClassAgnosticPatchScore
from locoad.types import ParsedImage


def brute_force(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """1 - max cosine similarity, the whole similarity matrix at once, in float64."""
    sim = F.normalize(queries.double(), dim=-1) @ F.normalize(bank.double(), dim=-1).T
    return (1.0 - sim.max(dim=1).values).clamp_min(0.0).float()


def covering_radius(bank: torch.Tensor, subset: torch.Tensor) -> float:
    """Largest distance from a bank row to its nearest subset row."""
    return float(torch.cdist(bank.double(), bank[subset].double()).min(dim=1).values.max())


@pytest.mark.parametrize(
    ("n", "m", "chunk"),
    [
        (50, 70, 4096),  # one chunk each way
        (64, 96, 32),  # exact multiples of the chunk
        (65, 97, 32),  # one row past a chunk boundary
        (31, 33, 1),  # degenerate chunk size
        (10, 1, 8),  # a one-row bank
    ],
)
def test_nn_cosine_distance_matches_brute_force(n: int, m: int, chunk: int) -> None:
    g = torch.Generator().manual_seed(n * 1000 + m)
    q, b = torch.randn(n, 24, generator=g), torch.randn(m, 24, generator=g) * 3.0
    got = nn_cosine_distance(q, b, chunk_size=chunk)
    assert got.shape == (n,) and got.dtype == torch.float32
    torch.testing.assert_close(got, brute_force(q, b), atol=1e-5, rtol=0)


def test_nn_cosine_distance_exact_match_is_zero() -> None:
    b = torch.randn(40, 16)
    assert nn_cosine_distance(b[5:9] * 7.0, b, chunk_size=7).abs().max() < 1e-5


@pytest.mark.parametrize("chunk", [16, 4096])
def test_half_on_cpu_stores_a_bf16_bank_and_computes_in_float32(chunk: int) -> None:
    """On the CPU ``half`` only halves the stored bank; the products stay float32 (compute_dtype):
    a float32 bank gives float32 results, a bf16 bank bf16-rounding error (~3 digits)."""
    g = torch.Generator().manual_seed(1)
    q, b = torch.randn(100, 64, generator=g), torch.randn(300, 64, generator=g)
    ref = brute_force(q, b)
    torch.testing.assert_close(nn_cosine_distance(q, b, chunk, half=True), ref, atol=1e-5, rtol=0)
    half_bank = normalize_bank(b, half=True)
    assert half_bank.dtype == torch.bfloat16
    torch.testing.assert_close(nn_cosine_distance(q, half_bank, chunk, half=True), ref, atol=1e-2, rtol=0)


@pytest.mark.parametrize("chunk", [16, 4096])
def test_half_precision_products_run_in_fp16_within_tolerance(chunk: int, monkeypatch) -> None:
    """The CUDA path: with ``half`` the similarity products run in fp16. No GPU here, so the
    CPU is given CUDA's compute dtype (fp16 matmuls work on the CPU, only slowly); the products
    are then really fp16 (error above float32's, every matmul operand fp16) and still within
    fp16 tolerance of the float64 reference, for the plain and the grouped search."""
    from locoad.components import knn

    assert knn.compute_dtype(torch.device("cuda"), True) == torch.float16  # what CUDA runs
    assert knn.compute_dtype(torch.device("cpu"), True) == torch.float32
    monkeypatch.setattr(knn, "compute_dtype", lambda device, half: torch.float16 if half else torch.float32)
    g = torch.Generator().manual_seed(1)
    q, b = torch.randn(100, 64, generator=g), torch.randn(300, 64, generator=g)
    ref = brute_force(q, b)
    dtypes: list[torch.dtype] = []  # the dtype of every matmul operand from here on
    matmul = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: (dtypes.extend((a.dtype, b.dtype)), matmul(a, b))[1])
    labels = [torch.zeros(100, dtype=torch.long)], [torch.zeros(300, dtype=torch.long)]
    for got in (nn_cosine_distance(q, b, chunk, half=True),
                knn.grouped_nn_cosine_distance(q, b, *labels, chunk_size=chunk, half=True)[0]):
        assert got.dtype == torch.float32
        err = (got - ref).abs().max().item()
        assert 1e-6 < err < 2e-3, err  # fp16 rounding shows, and stays small
    assert dtypes and set(dtypes) == {torch.float16}
    dtypes.clear()
    torch.testing.assert_close(nn_cosine_distance(q, b, chunk), ref, atol=1e-5, rtol=0)  # half=False
    assert set(dtypes) == {torch.float32}


def test_normalize_bank_unit_rows() -> None:
    b = torch.randn(33, 8) * 5
    nb = normalize_bank(b, chunk_size=10)
    torch.testing.assert_close(nb.norm(dim=1), torch.ones(33))
    torch.testing.assert_close(nn_cosine_distance(b, nb), nn_cosine_distance(b, b))


def test_nn_cosine_distance_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        nn_cosine_distance(torch.randn(3, 4), torch.zeros(0, 4))
    with pytest.raises(ValueError, match="dims"):
        nn_cosine_distance(torch.randn(3, 4), torch.randn(3, 5))


def test_worst_group_top_percent() -> None:
    v = torch.arange(100.0)[None]
    one = torch.zeros(1, 100, dtype=torch.long)
    assert float(worst_group_top_percent(v, one, 1, 2.0)[0]) == pytest.approx(98.5)
    assert float(worst_group_top_percent(v, one, 1, 0.001)[0]) == 99.0  # at least one value
    assert torch.isinf(worst_group_top_percent(torch.zeros(1, 3), torch.full((1, 3), -1), 1, 1.0)).all()
    # several rows and groups: each row's worst group, against a per-group loop
    g = torch.Generator().manual_seed(0)
    vals, groups = torch.rand(3, 200, generator=g), torch.randint(-1, 4, (3, 200), generator=g)
    groups[2] = -1
    groups[2, :5] = 3
    got = worst_group_top_percent(vals, groups, 4, 10.0)
    for r in range(3):
        want = max(vals[r][groups[r] == c].topk(max(1, round(int((groups[r] == c).sum()) * 10.0 / 100.0))).values.mean()
                   for c in groups[r].unique().tolist() if c >= 0)
        assert float(got[r]) == pytest.approx(float(want), abs=1e-6)


def clustered(n_clusters: int = 20, per: int = 50, dim: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, dim, generator=g) * 10
    return (centres[:, None] + torch.randn(n_clusters, per, dim, generator=g)).reshape(-1, dim)


def test_coreset_covers_better_than_random_subset() -> None:
    bank = clustered()
    idx = greedy_coreset(bank, n=40, projection_dim=None, seed=0)
    assert len(idx) == 40 and len(set(idx.tolist())) == 40
    rng = np.random.default_rng(0)
    random_radii = [covering_radius(bank, torch.from_numpy(rng.choice(len(bank), 40, replace=False))) for _ in range(10)]
    assert covering_radius(bank, idx) < min(random_radii)
    # Every cluster gets a point (40 picks, 20 well-separated clusters of 50).
    assert len(set((idx // 50).tolist())) == 20


def test_coreset_with_projection_still_spreads() -> None:
    bank = clustered(dim=256)
    idx = greedy_coreset(bank, n=20, projection_dim=32, seed=3)
    assert len(set((idx // 50).tolist())) == 20  # one per cluster, even after projection


def test_coreset_deterministic_by_seed() -> None:
    bank = torch.randn(500, 64)
    a = greedy_coreset(bank, ratio=0.1, projection_dim=16, seed=7)
    b = greedy_coreset(bank, ratio=0.1, projection_dim=16, seed=7)
    c = greedy_coreset(bank, ratio=0.1, projection_dim=16, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    torch.testing.assert_close(random_projection(bank, 16, seed=7), random_projection(bank, 16, seed=7))


def test_coreset_size_handling() -> None:
    bank = torch.randn(101, 8)
    assert len(greedy_coreset(bank, ratio=0.1)) == 11  # ceil
    assert len(greedy_coreset(bank, n=5)) == 5
    assert len(greedy_coreset(bank, ratio=0.5, max_n=7)) == 7
    assert len(greedy_coreset(bank, ratio=1e-6)) == 1  # at least one row
    assert coreset_size(0, ratio=0.5) == 0
    assert coreset_size(100, ratio=0.07) == 7  # 0.07 * 100 is 7.000000000000001 in floats
    for kwargs in ({}, {"ratio": 0.1, "n": 3}, {"ratio": 0.0}, {"ratio": 1.5}, {"n": 0}, {"n": 3, "max_n": 0}):
        with pytest.raises(ValueError):
            greedy_coreset(bank, **kwargs)
    with pytest.raises(ValueError, match="empty"):
        greedy_coreset(torch.zeros(0, 8), n=1)


@pytest.mark.parametrize("kwargs", [{"n": 101}, {"n": 500}, {"ratio": 1.0}])
def test_coreset_whole_bank_when_size_reaches_len(kwargs: dict) -> None:
    assert torch.equal(greedy_coreset(torch.randn(101, 8), **kwargs), torch.arange(101))


def test_coreset_duplicates_give_unique_indices() -> None:
    bank = torch.ones(30, 4)  # every row identical: all distances 0
    idx = greedy_coreset(bank, n=10)
    assert len(set(idx.tolist())) == 10


def parsed(features: torch.Tensor) -> ParsedImage:
    h, w = features.shape[-2:]
    cm = np.ones((4 * h, 4 * w), np.int64)
    return ParsedImage(
        rgb=np.zeros((4 * h, 4 * w, 3), np.uint8),
        lab=np.zeros((4 * h, 4 * w, 3), np.float32),
        class_map=cm,
        features=features,
        class_grid=torch.ones(h, w, dtype=torch.long),
        num_classes=3,
    )


def test_patch_score_coreset_option() -> None:
    g = torch.Generator().manual_seed(0)
    shots = [parsed(torch.randn(16, 6, 6, generator=g)) for _ in range(4)]  # 144 patches
    exact = ClassAgnosticPatchScore()
    core = ClassAgnosticPatchScore(coreset_ratio=0.25)
    capped = ClassAgnosticPatchScore(coreset_ratio=0.5, coreset_max=10)
    only_max = ClassAgnosticPatchScore(coreset_max=12)
    assert exact.fit(shots).bank.shape == (144, 16)
    assert core.fit(shots).bank.shape == (36, 16)
    assert capped.fit(shots).bank.shape == (10, 16)
    assert only_max.fit(shots).bank.shape == (12, 16)
    # A shot scores 0 against an exact bank holding it; the coreset bank is a subset, so >= 0.
    assert exact.score(shots[0], exact.fit(shots)).value == pytest.approx(0.0, abs=1e-5)
    assert core.score(shots[0], core.fit(shots)).value >= exact.score(shots[0], exact.fit(shots)).value
    half = ClassAgnosticPatchScore(half=True)
    assert half.fit(shots).bank.dtype == torch.bfloat16
    assert half.score(shots[1], half.fit(shots)).value == pytest.approx(0.0, abs=1e-2)
    with pytest.raises(ValueError):
        ClassAgnosticPatchScore(coreset_ratio=0.0)


def test_unit_rows_registry() -> None:
    from locoad.components.knn import has_unit_rows

    b = torch.randn(20, 8)
    nb = normalize_bank(b)
    assert has_unit_rows(nb) and not has_unit_rows(b) and not has_unit_rows(nb.clone())
    q = torch.randn(5, 8)
    torch.testing.assert_close(nn_cosine_distance(q, nb), brute_force(q, b), atol=1e-5, rtol=0)


def test_normalize_bank_inplace() -> None:
    b = torch.randn(10, 4) * 3
    ref = F.normalize(b, dim=-1)
    out = normalize_bank(b, inplace=True)
    assert out is b
    torch.testing.assert_close(out, ref)
    assert normalize_bank(torch.randn(10, 4), half=True, inplace=True).dtype == torch.bfloat16  # new tensor


def test_group_median_matches_torch_quantile_per_group() -> None:
    g = torch.Generator().manual_seed(1)
    vals, groups = torch.rand(3, 201, generator=g), torch.randint(-1, 4, (3, 201), generator=g)
    groups[1, groups[1] == 2] = 0  # row 1 has no group 2
    groups[2, :6] = 3
    groups[2, 6:] = -1  # row 2: one group of an even count
    got = group_median(vals, groups, 4)
    for r in range(3):
        for c in range(4):
            sel = vals[r][groups[r] == c]
            if len(sel):
                assert float(got[r, c]) == pytest.approx(float(torch.quantile(sel, 0.5)), abs=1e-6)
            else:
                assert torch.isnan(got[r, c])
