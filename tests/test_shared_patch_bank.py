"""The shared patch bank (the one way patches are scored) against a brute-force reference of each
patch score on its own: per-group banks, fallbacks, top-% aggregation, leave-one-out by refitting."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from locoad.components.knn import grouped_nn_cosine_distance
from locoad.features.class_agnostic_patch import ClassAgnosticPatchScore
from locoad.features.class_aware_patch import ClassAwarePatchScore
from locoad.features.foreground_patch import ForegroundPatchScore
from locoad.features.shared_patch_bank import SharedPatchBank, share_patch_banks
from locoad.types import ParsedImage

G, D, C = 6, 5, 5  # grid, feature dim, classes (background, 3 parts, unmatched)


def parsed(seed: int, classes: list[int] | None = None, own_foreground: bool = False) -> ParsedImage:
    """Random features; a random class grid drawn from ``classes`` (0 = background); with
    ``own_foreground`` a foreground grid unrelated to the classes (groups that do not nest)."""
    rng = np.random.default_rng(seed)
    classes = [0, 1, 2, 3] if classes is None else classes
    grid = torch.from_numpy(rng.choice(classes, size=(G, G)))
    feats = torch.from_numpy(rng.normal(size=(D, G, G))).float()
    rgb = np.zeros((G, G, 3), np.uint8)
    fg = torch.from_numpy(rng.random((G, G)) < 0.5) if own_foreground else None
    return ParsedImage(rgb, rgb.astype(np.float32), grid.numpy(), feats, grid, C, foreground=fg)


def brute(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """1 - max cosine similarity, the whole matrix at once, in float64."""
    sim = F.normalize(queries.double(), dim=-1) @ F.normalize(bank.double(), dim=-1).T
    return (1.0 - sim.max(dim=1).values).clamp_min(0.0).float()


def reference_score(f, shots: list[ParsedImage], test: ParsedImage) -> tuple[float, torch.Tensor]:
    """(score, anomaly map) of one patch score alone, written plainly: a bank per group from the
    shots' patches (all shot patches if no shot has a group), a group no shot has searches the
    union of the banks, the mean of the top percent of each group's distances, worst group wins."""
    banks: dict[int, list[torch.Tensor]] = {}
    for p in shots:
        for g, m in f.groups(p).items():
            if m.any():
                banks.setdefault(g, []).append(p.features.permute(1, 2, 0)[m])
    if not banks:
        banks[-1] = [p.features.flatten(1).T for p in shots]
    cat = {g: torch.cat(v) for g, v in banks.items()}
    union = torch.cat(list(cat.values()))
    h, w = test.features.shape[-2:]
    flat = test.features.flatten(1).T
    amap, values = torch.zeros(h * w), []
    for g, m in f.groups(test).items():
        rows = m.flatten()
        if not rows.any():
            continue
        d = brute(flat[rows], cat.get(g, union))
        amap[rows] = d
        values.append(float(d.topk(max(1, round(len(d) * f.top_percent / 100.0))).values.mean()))
    return (max(max(values), 0.0) if values else 1.0), amap.view(h, w)


def all_three(**kw) -> dict:
    return {
        "class_agnostic_patch": ClassAgnosticPatchScore(**kw),
        "foreground_patch": ForegroundPatchScore(**kw),
        "class_aware_patch": ClassAwarePatchScore(**kw),
    }


@pytest.mark.parametrize("chunk", [7, 4096])
def test_grouped_matches_per_group_search(chunk: int) -> None:
    g = torch.Generator().manual_seed(0)
    q, bank = torch.randn(30, 8, generator=g), torch.randn(50, 8, generator=g)
    ql, bl = torch.randint(-1, 3, (30,), generator=g), torch.randint(-1, 2, (50,), generator=g)  # label 2: no bank row
    exclude = torch.zeros(50, dtype=torch.bool)
    exclude[:10] = True
    (d,) = grouped_nn_cosine_distance(q, bank, [ql], [bl], exclude=exclude, chunk_size=chunk)
    keep = ~exclude
    for lab in (0, 1, 2):
        rows = ql == lab
        cols = keep & (bl == lab) if (keep & (bl == lab)).any() else keep & (bl >= 0)
        torch.testing.assert_close(d[rows], brute(q[rows], bank[cols]))
    assert torch.isnan(d[ql < 0]).all()


def test_grouped_search_in_query_blocks_gives_the_same(monkeypatch) -> None:
    """A CPU search splits a large batch of queries into blocks; the result must not depend on it."""
    from locoad.components import knn

    g = torch.Generator().manual_seed(1)
    q, bank = torch.randn(40, 8, generator=g), torch.randn(50, 8, generator=g)
    ql = [torch.randint(-1, 3, (40,), generator=g), torch.zeros(40, dtype=torch.long)]
    bl = [torch.randint(-1, 2, (50,), generator=g).sort().values, torch.zeros(50, dtype=torch.long)]
    exclude = torch.zeros(50, dtype=torch.bool)
    exclude[::7] = True
    whole = grouped_nn_cosine_distance(q, bank, ql, bl, exclude=exclude, chunk_size=16)
    monkeypatch.setattr(knn, "CPU_BLOCK_ELEMENTS", 16 * 3)  # blocks of 3 query rows
    blocked = grouped_nn_cosine_distance(q, bank, ql, bl, exclude=exclude, chunk_size=16)
    for a, b in zip(whole, blocked):
        torch.testing.assert_close(a, b, equal_nan=True, rtol=0, atol=1e-6)  # BLAS rounds per block shape


def test_grouped_falls_back_to_whole_bank_when_no_row_is_grouped() -> None:
    q, bank = torch.randn(4, 3), torch.randn(6, 3)
    (d,) = grouped_nn_cosine_distance(q, bank, [torch.zeros(4, dtype=torch.long)], [torch.full((6,), -1)])
    torch.testing.assert_close(d, brute(q, bank))
    with pytest.raises(ValueError, match="empty"):
        grouped_nn_cosine_distance(q, bank, [torch.zeros(4, dtype=torch.long)], [torch.zeros(6, dtype=torch.long)],
                                   exclude=torch.ones(6, dtype=torch.bool))


def test_whole_bank_fallback_read_from_a_labelling_of_every_row() -> None:
    """Beside a class-agnostic labelling (one label on every row) the whole-bank maximum is that
    labelling's own: a labelling that falls back to it (no labelled bank row) still finds it."""
    g = torch.Generator().manual_seed(3)
    q, bank = torch.randn(12, 8, generator=g), torch.randn(40, 8, generator=g)
    exclude = torch.zeros(40, dtype=torch.bool)
    exclude[::5] = True
    fallback, agnostic = grouped_nn_cosine_distance(
        q, bank, [torch.zeros(12, dtype=torch.long)] * 2, [torch.full((40,), -1), torch.zeros(40, dtype=torch.long)],
        exclude=exclude, chunk_size=16)
    torch.testing.assert_close(fallback, brute(q, bank[~exclude]))
    torch.testing.assert_close(agnostic, fallback, rtol=0, atol=0)


SHOT_SETS = {
    "plain": [parsed(i) for i in range(4)],
    # Only one shot has class 3 and one shot no foreground at all: leave-one-out hits both fallbacks.
    "sparse": [parsed(0, [0, 1, 3]), parsed(1, [0, 1]), parsed(2, [0]), parsed(3, [0, 2])],
    "no_foreground_but_one": [parsed(0, [0, 1]), parsed(1, [0]), parsed(2, [0])],
    "independent_foreground": [parsed(i, own_foreground=True) for i in range(4)],
    "foreground_in_one_shot_only": [parsed(0, [0]), parsed(1, [1, 2]), parsed(2, [0])],
}
TESTS = [parsed(10), parsed(11, [0, 4]), parsed(12, [0]), parsed(13, [1, 2, 3, 4]), parsed(14, own_foreground=True)]


@pytest.mark.parametrize("name", list(SHOT_SETS))
@pytest.mark.parametrize("subset", [None, ("foreground_patch",), ("class_aware_patch", "foreground_patch")])
def test_shared_bank_equals_each_score_alone(name: str, subset) -> None:
    shots = SHOT_SETS[name]
    feats = all_three(top_percent=10.0)
    if subset:
        feats = {n: feats[n] for n in subset}
    bank = SharedPatchBank(feats, shots)
    held = list(range(len(shots)))
    shared_loo = bank.loo_scores(shots, held)
    for t in TESTS:
        shared = bank.score(t)
        for n, f in feats.items():
            value, amap = reference_score(f, shots, t)
            assert shared[n].value == pytest.approx(value, abs=1e-5), n
            torch.testing.assert_close(shared[n].anomaly_map, amap, atol=1e-5, rtol=0)
            assert f.score(t, f.fit(shots)).value == pytest.approx(value, abs=1e-5), n  # one score's own bank
    for n, f in feats.items():
        want = [reference_score(f, shots[:i] + shots[i + 1 :], shots[i])[0] for i in held]
        np.testing.assert_allclose(shared_loo[n], want, atol=1e-5)
        np.testing.assert_allclose(f.loo_scores(shots, held), want, atol=1e-5)


def test_share_patch_banks_groups_by_settings() -> None:
    feats = all_three()
    feats["foreground_patch"] = ForegroundPatchScore(half=True)
    feats["class_aware_patch"] = ClassAwarePatchScore(coreset_ratio=0.5)
    banks = share_patch_banks(feats, SHOT_SETS["plain"])
    assert sorted(sorted(b.features) for b in banks) == [["class_agnostic_patch"], ["class_aware_patch"], ["foreground_patch"]]
    with pytest.raises(ValueError, match="same half"):
        SharedPatchBank({"a": ClassAgnosticPatchScore(), "c": ClassAwarePatchScore(coreset_ratio=0.5)}, SHOT_SETS["plain"])


def test_shared_coreset_subsets_the_bank_and_never_lowers_a_distance() -> None:
    shots, test = SHOT_SETS["plain"], TESTS[0]
    exact = SharedPatchBank(all_three(top_percent=10.0), shots)
    full = SharedPatchBank(all_three(top_percent=10.0, coreset_ratio=1.0), shots)
    half = SharedPatchBank(all_three(top_percent=10.0, coreset_ratio=0.5), shots)
    assert len(full.owner) == len(exact.owner) and half.n_used == -(-exact.n_used // 2)
    d_exact, d_full, d_half = exact.distances(test), full.distances(test), half.distances(test)
    for n, (d, lab) in d_exact.items():
        torch.testing.assert_close(d_full[n][0], d, equal_nan=True)  # ratio 1 keeps every row
        inside = lab >= 0
        assert (d_half[n][0][inside] >= d[inside] - 1e-6).all()  # a subset is never nearer
        assert (d_half[n][0][inside] > d[inside] + 1e-6).any()
    # kept rows keep their labels: each row of the coreset bank is a row of the exact bank
    sims = half.bank[: half.n_used].float() @ exact.bank.float().T
    match = sims.argmax(1)
    assert torch.allclose(sims.amax(1), torch.ones(half.n_used), atol=1e-5)
    for n in exact.labels:
        assert torch.equal(half.labels[n][: half.n_used], exact.labels[n][match])


def test_grouped_with_no_labelled_query_needs_no_bank() -> None:
    (d,) = grouped_nn_cosine_distance(torch.randn(3, 2), torch.randn(4, 2), [torch.full((3,), -1)], [torch.zeros(4, dtype=torch.long)],
                                      exclude=torch.ones(4, dtype=torch.bool))
    assert torch.isnan(d).all()


def test_shared_bank_of_unlike_settings_is_a_bug_not_a_setting() -> None:
    # share_patch_banks groups by bank_settings, so only a caller's bug reaches this check: a plain
    # ValueError keeps its traceback (a ConfigError would print one line and hide where it came from)
    from locoad.errors import ConfigError

    with pytest.raises(ValueError, match="same half") as err:
        SharedPatchBank({"a": ClassAgnosticPatchScore(), "b": ForegroundPatchScore(half=True)}, [parsed(0)])
    assert not isinstance(err.value, ConfigError)


def test_a_foreground_only_bank_searches_only_the_foreground_patches(monkeypatch) -> None:
    """On a CPU the background patches of a bank that only foreground scores share stay out of the
    similarity product (their distance is NaN either way); every score stays the reference's."""
    import locoad.components.knn as knn

    searched = []
    real = knn._grouped_search
    monkeypatch.setattr(knn, "_grouped_search", lambda q, *a, **kw: searched.append(len(q)) or real(q, *a, **kw))
    shots, test = SHOT_SETS["plain"], TESTS[0]
    f = ForegroundPatchScore(top_percent=10.0)
    shared = SharedPatchBank({"foreground_patch": f}, shots).score(test)["foreground_patch"]
    assert searched == [int(f.groups(test)[1].sum())] and 0 < searched[0] < G * G
    value, amap = reference_score(f, shots, test)
    assert shared.value == pytest.approx(value, abs=1e-5)
    torch.testing.assert_close(shared.anomaly_map, amap, atol=1e-5, rtol=0)
    searched.clear()
    SharedPatchBank(all_three(), shots).score(test)  # the class-agnostic score groups every patch
    assert searched == [G * G]


def local_scale_reference(shots: list[ParsedImage], owners: list[int], test: ParsedImage, mode: str,
                          held: int | None = None, cap: float | None = None) -> torch.Tensor:
    """Per test patch: min over memory patches m of (distance - r(m)), r(m) the distance of m to
    the nearest patch of another shot's same copy (``nearest``), or to each other shot's nearest
    patch averaged over those shots (``mean``), capped at its ``cap`` quantile; the held-out shot
    left out everywhere."""
    copy = [owners[:i].count(o) for i, o in enumerate(owners)]
    keep = [i for i, o in enumerate(owners) if o != held]
    x = {i: F.normalize(shots[i].features.flatten(1).T.double(), dim=-1) for i in keep}
    mem, scale = [], []
    for i in keep:
        others = [x[j] for j in keep if owners[j] != owners[i] and copy[j] == copy[i]]
        per_shot = torch.stack([1.0 - (x[i] @ o.T).max(dim=1).values for o in others])
        r = per_shot.min(dim=0).values if mode == "nearest" else per_shot.mean(dim=0)
        mem.append(x[i])
        scale.append(r)
    scale = torch.cat(scale)
    if cap is not None:
        scale = scale.clamp_max(torch.quantile(scale, cap))
    q = F.normalize(test.features.flatten(1).T.double(), dim=-1)
    return (1.0 - (q @ torch.cat(mem).T + scale[None]).max(dim=1).values).float()


@pytest.mark.parametrize("mode", ["nearest", "mean"])
def test_local_scale_subtracts_each_memory_patch_distance_to_the_other_shots(mode: str) -> None:
    """Four shots and a moved copy of each (owners), the copies compared only with copies; the
    leave-one-out recomputes the scale without the held-out shot; two shots: the plain distance."""
    shots = [parsed(30 + i) for i in range(8)]
    owners = [0, 1, 2, 3, 0, 1, 2, 3]  # the shots as taken, then one moved copy of each, as the model orders them
    scored = {"class_agnostic_patch": ClassAgnosticPatchScore(top_percent=10.0, local_scale=mode)}
    bank = SharedPatchBank(scored, shots, owners)
    d, _ = bank.distances(TESTS[0])["class_agnostic_patch"]
    torch.testing.assert_close(d, local_scale_reference(shots, owners, TESTS[0], mode), atol=1e-5, rtol=0)
    assert (d < 0).any()  # below the scale of its nearest memory patch: no clamp at 0
    d1, _ = bank.distances(TESTS[0], exclude_shot=1)["class_agnostic_patch"]
    torch.testing.assert_close(d1, local_scale_reference(shots, owners, TESTS[0], mode, held=1), atol=1e-5, rtol=0)

    plain = SharedPatchBank({"class_agnostic_patch": ClassAgnosticPatchScore(top_percent=10.0)}, shots[:2])
    two = SharedPatchBank({"class_agnostic_patch": ClassAgnosticPatchScore(top_percent=10.0, local_scale=mode)}, shots[:2])
    torch.testing.assert_close(two.distances(TESTS[0])["class_agnostic_patch"][0],
                               plain.distances(TESTS[0])["class_agnostic_patch"][0])


@pytest.mark.parametrize("mode", ["nearest", "mean"])
def test_local_scale_cap_clips_each_scale_at_a_quantile_of_the_searched_rows(mode: str) -> None:
    """The cap's quantile is taken over the rows searched: without the held-out shot's in the
    leave-one-out; a cap moves the distances (the check can fail)."""
    shots = [parsed(30 + i) for i in range(8)]
    owners = [0, 1, 2, 3, 0, 1, 2, 3]
    capped = SharedPatchBank({"class_agnostic_patch": ClassAgnosticPatchScore(
        top_percent=10.0, local_scale=mode, local_scale_cap=0.5)}, shots, owners)
    d, _ = capped.distances(TESTS[0])["class_agnostic_patch"]
    torch.testing.assert_close(d, local_scale_reference(shots, owners, TESTS[0], mode, cap=0.5), atol=1e-5, rtol=0)
    assert not torch.allclose(d, local_scale_reference(shots, owners, TESTS[0], mode), atol=1e-4)
    d1, _ = capped.distances(TESTS[0], exclude_shot=2)["class_agnostic_patch"]
    torch.testing.assert_close(d1, local_scale_reference(shots, owners, TESTS[0], mode, held=2, cap=0.5),
                               atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="local_scale_cap must be a quantile"):
        ClassAgnosticPatchScore(local_scale=mode, local_scale_cap=1.5)
    with pytest.raises(ValueError, match="local_scale_cap caps the local scale, which is off"):
        ClassAgnosticPatchScore(local_scale_cap=0.5)


def test_local_scale_with_a_coreset_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="local_scale.*coreset"):
        ClassAgnosticPatchScore(local_scale="mean", coreset_ratio=0.1)
    with pytest.raises(ValueError, match="local_scale must be one of"):
        ClassAgnosticPatchScore(local_scale="median")


def test_grouped_search_over_runs_of_rows_and_shared_labellings_gives_the_index_search(monkeypatch) -> None:
    """A label whose bank rows lie in a few runs is searched run by run, and two labellings with the
    same rows share one search: both give what the search by index (every label scattered) gives."""
    from locoad.components import knn

    g = torch.Generator().manual_seed(2)
    q, bank = torch.randn(20, 8, generator=g), torch.randn(60, 8, generator=g)
    runs = torch.zeros(60, dtype=torch.long)
    runs[5:15], runs[30:42], runs[50:53] = 1, 1, 1  # label 1 in three runs, label 0 in four
    ql = [torch.randint(-1, 2, (20,), generator=g), torch.zeros(20, dtype=torch.long), torch.ones(20, dtype=torch.long)]
    bl = [runs, torch.zeros(60, dtype=torch.long), torch.ones(60, dtype=torch.long)]  # the last two: every row
    assert knn.LabelGroups.of(runs).spans == [[(0, 5), (15, 30), (42, 50), (53, 60)], [(5, 15), (30, 42), (50, 53)]]
    exclude = torch.zeros(60, dtype=torch.bool)
    exclude[::9] = True
    by_runs = grouped_nn_cosine_distance(q, bank, ql, bl, exclude=exclude, chunk_size=16)
    monkeypatch.setattr(knn, "MAX_RUNS", 1)  # every label in more than one run: by index
    assert isinstance(knn.LabelGroups.of(runs).spans[1], torch.Tensor)
    by_index = grouped_nn_cosine_distance(q, bank, ql, bl, exclude=exclude, chunk_size=16)
    for a, b in zip(by_runs, by_index):
        torch.testing.assert_close(a, b, equal_nan=True, rtol=0, atol=0)
    keep = ~exclude
    for lab in (0, 1):
        rows = ql[0] == lab
        torch.testing.assert_close(by_runs[0][rows], brute(q[rows], bank[keep & (runs == lab)]))
    torch.testing.assert_close(by_runs[1], brute(q, bank[keep]))
    torch.testing.assert_close(by_runs[2], by_runs[1], rtol=0, atol=0)


def test_lookalike_part_rows_lie_in_a_few_runs_of_the_bank() -> None:
    """The shots' foreground rows that a lookalike score searches are sorted into one run per group
    of the other scores (a slice each), not scattered through the bank (an index gather)."""
    shots = SHOT_SETS["independent_foreground"]  # a foreground that the classes do not nest
    feats = all_three(top_percent=10.0)
    feats["foreground_patch"] = ForegroundPatchScore(top_percent=10.0, memory="all", lookalikes=True)
    bank = SharedPatchBank(feats, shots)
    (part,) = bank.part_groups.spans
    assert isinstance(part, list) and len(part) <= C
    on_part = torch.cat([p.foreground_grid.flatten() for p in shots])
    assert sum(b - a for a, b in part) == int(on_part.sum())


def test_lookalike_leave_one_out_equals_a_refit_where_only_the_held_out_shot_has_parts() -> None:
    """Where the held-out shot owned every part row, the masked search fell back to every row, so
    every patch of it looked like a part and was scored; a refit on the other shots has no part
    rows and scores only its foreground."""
    f = ForegroundPatchScore(top_percent=10.0, memory="all", lookalikes=True)
    feats = {"foreground_patch": f}
    shots = [parsed(0, [0, 1, 2]), parsed(1, [0])]  # the second shot's segmentation found no foreground
    loo = SharedPatchBank(feats, shots).loo_scores(shots, [0, 1])["foreground_patch"]
    refit = [SharedPatchBank(feats, shots[:i] + shots[i + 1:]).score(shots[i])["foreground_patch"].value
             for i in (0, 1)]
    np.testing.assert_allclose(loo, refit, rtol=1e-5)


def test_coreset_leave_one_out_equals_a_refit_on_the_other_shots() -> None:
    """The coreset was chosen once over every shot, so masking the held-out shot's rows left a
    memory that lacked rows the held-out ones had covered: larger leave-one-out scores."""
    feats = {"class_agnostic_patch": ClassAgnosticPatchScore(top_percent=10.0, coreset_ratio=0.3)}
    shots = [parsed(i) for i in range(4)]
    loo = SharedPatchBank(feats, shots).loo_scores(shots, [0, 1, 2, 3])["class_agnostic_patch"]
    refit = [SharedPatchBank(feats, shots[:i] + shots[i + 1:]).score(shots[i])["class_agnostic_patch"].value
             for i in range(4)]
    np.testing.assert_allclose(loo, refit, rtol=1e-5)


@pytest.mark.parametrize("mode", ["mean", "nearest"])
def test_local_scale_with_blank_trailing_shots(mode: str) -> None:
    """A foreground-only bank whose last shot has no foreground patch (a segmenter that found
    nothing) counted the shots from the searched rows, one short: the fit failed on a shape."""
    blank_last = [parsed(i, classes=c) for i, c in enumerate([[0, 1, 2, 3]] * 3 + [[0]])]
    blank_middle = [blank_last[0], blank_last[3], *blank_last[1:3]]
    scores = []
    for shots in (blank_last, blank_middle):
        f = ForegroundPatchScore(local_scale=mode)
        scores.append(f.score(parsed(9), f.fit(shots)).value)
    assert np.isfinite(scores).all()
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)  # the blank shot's place does not matter


def test_top_percent_outside_0_100_is_a_config_error() -> None:
    """Above 100 the top-k mean read past its image into the next one of the batch (NaN, or
    scores that depend on the batch)."""
    for bad in (150, 0, -1, True, "2"):
        with pytest.raises(ValueError, match=r"top_percent must be in \(0, 100\]"):
            ClassAgnosticPatchScore(top_percent=bad)
    assert ClassAgnosticPatchScore(top_percent=100).top_percent == 100
