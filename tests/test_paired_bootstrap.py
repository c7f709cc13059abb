"""benchmarks/paired_bootstrap.py: a change's AUROC difference against the test images' noise."""

from __future__ import annotations

import numpy as np
import paired_bootstrap
import pytest
from sklearn.metrics import roc_auc_score

TYPES = np.array(["good"] * 8 + ["logical_anomalies"] * 4 + ["structural_anomalies"] * 4)
LABELS = (TYPES != "good").astype(int)


def _dump(path, scores_per_seed: list[np.ndarray], types=TYPES, fusions=("loo",)) -> str:
    """A quality_synthetic.py-style dump of one category, one run per seed (under each name in
    ``fusions``); the single feature's LOO scores are ones, so the fused score (fusion=loo) is
    the score itself."""
    arrays = {"widgets/labels": (types != "good").astype(int), "widgets/types": types,
              "widgets/defects": np.array([""] * len(types))}
    for seed, score in enumerate(scores_per_seed):
        for fusion in fusions:
            arrays[f"widgets/hungarian/{fusion}/4/{seed}/score/foreground_patch"] = score
            arrays[f"widgets/hungarian/{fusion}/4/{seed}/loo/foreground_patch"] = np.ones(4)
    np.savez(path, **arrays)
    return str(path)


def test_auroc_rows_is_sklearns_auroc_row_by_row_ties_included():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(20, 16)).astype(float)  # many ties
    labels = np.tile(LABELS, (20, 1))
    expected = [roc_auc_score(y, s) for y, s in zip(labels, scores)]
    np.testing.assert_allclose(paired_bootstrap.auroc_rows(scores, labels), expected)


def test_draws_keep_each_type_count_and_the_first_row_is_the_test_set():
    idx = paired_bootstrap.draws(TYPES, 50, np.random.default_rng(0))
    assert idx.shape == (51, 16) and sorted(idx[0]) == list(range(16))
    for row in idx[1:]:
        assert [(TYPES[row] == t).sum() for t in ("good", "logical_anomalies", "structural_anomalies")] == [8, 4, 4]
    assert len({tuple(r) for r in idx[1:]}) > 40  # resamples, not copies


def test_the_same_scores_differ_by_nothing_in_every_draw(tmp_path, capsys):
    rng = np.random.default_rng(1)
    scores = [LABELS + rng.normal(0, 1.0, 16) for _ in range(3)]
    base = _dump(tmp_path / "a.npz", scores)
    paired_bootstrap.main([base, base, "--overrides", "fusion=loo", "-B", "200"])
    out = capsys.readouterr().out
    assert "difference +0.0000  95 % interval [+0.0000, +0.0000]  new higher in 0% of draws" in out


def test_a_real_gain_clears_the_interval_and_noise_does_not(tmp_path, capsys):
    rng = np.random.default_rng(2)
    noise = [rng.normal(0, 1.0, 16) for _ in range(3)]
    weak = _dump(tmp_path / "weak.npz", [0.3 * LABELS + n for n in noise])
    strong = _dump(tmp_path / "strong.npz", [3.0 * LABELS + n for n in noise])
    jitter = _dump(tmp_path / "jitter.npz", [0.3 * LABELS + n + rng.normal(0, 0.3, 16) for n in noise])
    runs_weak = paired_bootstrap.fused_runs(weak, paired_bootstrap.compose_config(["fusion=loo"]).model.fusion)
    runs_strong = paired_bootstrap.fused_runs(strong, paired_bootstrap.compose_config(["fusion=loo"]).model.fusion)
    runs_jitter = paired_bootstrap.fused_runs(jitter, paired_bootstrap.compose_config(["fusion=loo"]).model.fusion)
    gain = paired_bootstrap.bootstrap([(runs_weak, runs_strong)], 300)["mean"][:, 0]
    diff = gain[1:, 1] - gain[1:, 0]
    assert gain[0, 1] > gain[0, 0] and np.percentile(diff, 2.5) > 0  # the gain is outside the noise
    # row 0 is the plain mean AUROC of the runs
    assert gain[0, 0] == pytest.approx(np.mean([roc_auc_score(LABELS, 0.3 * LABELS + n) for n in noise]))
    same = paired_bootstrap.bootstrap([(runs_weak, runs_jitter)], 300)["mean"][:, 0]
    lo, hi = np.percentile(same[1:, 1] - same[1:, 0], [2.5, 97.5])
    assert lo < 0 < hi  # a change that only re-jitters the scores stays inside it
    paired_bootstrap.main([weak, strong, weak, jitter, "--overrides", "fusion=loo", "-B", "100"])
    assert "mean over the 2 pairs" in capsys.readouterr().out


def test_unpaired_dumps_and_an_odd_count_are_clear_errors(tmp_path, capsys):
    a = _dump(tmp_path / "a.npz", [LABELS + 0.5] * 2)
    b = _dump(tmp_path / "b.npz", [LABELS + 0.5] * 3)  # one run more
    other = np.array(["good"] * 10 + ["logical_anomalies"] * 3 + ["structural_anomalies"] * 3)
    c = _dump(tmp_path / "c.npz", [(other != "good") + 0.5] * 2, types=other)
    with pytest.raises(ValueError, match="hold different runs"):
        paired_bootstrap.main([a, b, "--overrides", "fusion=loo"])
    with pytest.raises(ValueError, match="differ in widgets's images"):
        paired_bootstrap.main([a, c, "--overrides", "fusion=loo"])
    with pytest.raises(SystemExit):
        paired_bootstrap.main([a, b, a])
    assert "pass them in pairs" in capsys.readouterr().err
    # a "+"-joined side of other test images: the later dump's labels replaced the earlier one's
    with pytest.raises(ValueError, match="c.npz: its widgets/labels differ from the dump joined before it"):
        paired_bootstrap.main([a, f"{a}+{c}", "--overrides", "fusion=loo"])


def test_dumps_run_with_other_fusions_pair_run_by_run(tmp_path, capsys):
    # experiment=lite0_lite2 dumps its runs under its own fusion's name; each side is fused by
    # its own config, so the runs pair by category, aligner, k and seed.
    rng = np.random.default_rng(3)
    base = _dump(tmp_path / "a.npz", [LABELS + rng.normal(0, 0.8, LABELS.size) for _ in range(3)])
    other = _dump(tmp_path / "b.npz", [LABELS + rng.normal(0, 0.8, LABELS.size) for _ in range(3)],
                  fusions=("loo_patch_weighted",))
    paired_bootstrap.main([base, other, "--overrides", "fusion=loo", "-B", "20"])
    line = capsys.readouterr().out.splitlines()[0]
    assert "difference" in line and "different runs" not in line
    both = _dump(tmp_path / "c.npz", [LABELS + 0.5] * 3, fusions=("loo", "sum"))
    with pytest.raises(ValueError, match="several fusions"):
        paired_bootstrap.main([base, both, "--overrides", "fusion=loo"])


def test_per_type_figures_and_the_seeds_filter(tmp_path, capsys):
    rng = np.random.default_rng(3)
    scores = [LABELS * np.r_[np.zeros(8), np.full(4, 2.0), np.full(4, 0.2)] + rng.normal(0, 1.0, 16) for _ in range(3)]
    path = _dump(tmp_path / "a.npz", scores)
    cfg = paired_bootstrap.compose_config(["fusion=loo"]).model.fusion
    runs, data = paired_bootstrap.fused_runs(path, cfg, seeds=[0])
    assert [key[3] for key in runs] == [0]  # (category, aligner, k, seed)
    typed = paired_bootstrap.per_type([runs, runs], data, 200, np.random.default_rng(0))
    assert set(typed) == {("widgets", "logical"), ("widgets", "structural")}
    good_or_logical = TYPES != "structural_anomalies"
    assert typed["widgets", "logical"][0, 0] == pytest.approx(roc_auc_score(LABELS[good_or_logical], scores[0][good_or_logical]))
    lo, hi = np.percentile(typed["widgets", "structural"][1:, 0], [2.5, 97.5])
    assert hi - lo > 0.1  # 8 good and 4 anomalous images: a wide interval
    # ... but one draw serves both sides: the same scores differ by exactly nothing in every draw
    assert np.array_equal(typed["widgets", "structural"][:, 0], typed["widgets", "structural"][:, 1])
    paired_bootstrap.main([path, path, "--overrides", "fusion=loo", "--seeds", "0", "--per-type", "-B", "50"])
    out = capsys.readouterr().out
    assert "widgets                logical    base" in out and "structural" in out
    assert "difference +0.000 [+0.000, +0.000]" in out
    with pytest.raises(ValueError, match="no dumped runs of --seeds"):
        paired_bootstrap.main([path, path, "--overrides", "fusion=loo", "--seeds", "7"])


def test_lowest_part_per_seed_is_the_weakest_type_averaged_over_the_draws(tmp_path, capsys):
    # Seed 0 separates both types; seed 1 ranks the structural images below every good one.
    good, logical, structural = np.zeros(8), np.ones(4), np.ones(4)
    seed0 = np.concatenate([good, logical, structural])
    seed1 = np.concatenate([good, logical, -structural])
    base = _dump(tmp_path / "a.npz", [seed0, seed1])
    better = _dump(tmp_path / "b.npz", [seed0, seed0])
    cfg = paired_bootstrap.compose_config(["fusion=loo"]).model.fusion
    pair = (paired_bootstrap.fused_runs(base, cfg), paired_bootstrap.fused_runs(better, cfg))
    lowest = paired_bootstrap.bootstrap([pair], 200)["lowest"][:, 0]
    assert tuple(lowest[0]) == pytest.approx((0.5, 1.0))  # as measured: (1 + 0) / 2 and (1 + 1) / 2
    assert np.all(lowest[1:, 1] >= lowest[1:, 0])  # every resample keeps the order of this gain
    paired_bootstrap.main([base, better, "--overrides", "fusion=loo", "-B", "20"])
    assert "lowest part per seed: base 0.5000  new 1.0000  difference +0.5000" in capsys.readouterr().out


def test_lowest_part_per_seed_keeps_two_aligners_apart(tmp_path):
    # One shot draw, two aligners: hungarian separates both types, nearest ranks the structural
    # images below every good one. Each aligner's lowest part counts: (1 + 0) / 2, not min = 0.
    good, anomalous = np.zeros(8), np.ones(4)
    arrays = {"widgets/labels": LABELS, "widgets/types": TYPES, "widgets/defects": np.array([""] * 16)}
    for aligner, structural in (("hungarian", anomalous), ("nearest", -anomalous)):
        arrays[f"widgets/{aligner}/loo/4/0/score/foreground_patch"] = np.concatenate([good, anomalous, structural])
        arrays[f"widgets/{aligner}/loo/4/0/loo/foreground_patch"] = np.ones(4)
    np.savez(tmp_path / "two.npz", **arrays)
    runs = paired_bootstrap.fused_runs(str(tmp_path / "two.npz"), paired_bootstrap.compose_config(["fusion=loo"]).model.fusion)
    assert len(runs[0]) == 2
    lowest = paired_bootstrap.bootstrap([(runs, runs)], 20)["lowest"][0, 0]
    assert tuple(lowest) == pytest.approx((0.5, 0.5))


def test_dumps_of_other_image_files_with_the_same_labels_do_not_pair(tmp_path):
    """A generator's new version can redraw a category with the same labels, types and defect
    names; the files' checksums (dumps since 2026-12-07) tell the two apart, joined or paired."""
    a = _dump(tmp_path / "a.npz", [LABELS + 0.5] * 2)
    b = _dump(tmp_path / "b.npz", [LABELS + 0.5] * 2)
    for path, crc in ((a, 1), (b, 2)):
        arrays = dict(np.load(path))
        arrays["widgets/images"] = np.full(len(TYPES), crc, dtype=np.uint32)
        np.savez(path, **arrays)
    with pytest.raises(ValueError, match="differ in widgets's images"):
        paired_bootstrap.main([a, b, "--overrides", "fusion=loo"])
    with pytest.raises(ValueError, match="b.npz: its widgets/images differ from the dump joined before it"):
        paired_bootstrap.main([a, f"{a}+{b}", "--overrides", "fusion=loo"])
    old = _dump(tmp_path / "old.npz", [LABELS + 0.5] * 2)  # written before dumps named their files: labels decide
    paired_bootstrap.main([a, old, "--overrides", "fusion=loo", "-B", "10"])


def test_a_side_joined_with_plus_adds_a_feature_scored_alone(tmp_path, capsys):
    # BASE+FEATURE: the second dump's feature joins each run of the first (a feature run alone).
    rng = np.random.default_rng(3)
    noise = [rng.normal(0, 1.0, 16) for _ in range(2)]
    base = _dump(tmp_path / "base.npz", [0.3 * LABELS + n for n in noise])
    extra = {f"widgets/hungarian/loo/4/{seed}/{kind}/class_location": v
             for seed in range(2) for kind, v in (("score", 5.0 * LABELS.astype(float)), ("loo", np.ones(4)))}
    np.savez(tmp_path / "feature.npz", **extra)
    joined = f"{base}+{tmp_path / 'feature.npz'}"
    runs, _ = paired_bootstrap.fused_runs(joined, paired_bootstrap.compose_config(["fusion=loo"]).model.fusion)
    np.testing.assert_allclose(runs["widgets", "hungarian", 4, 0], 0.3 * LABELS + noise[0] + 5.0 * LABELS)
    paired_bootstrap.main([base, joined, "--overrides", "fusion=loo", "-B", "50"])
    out = capsys.readouterr().out
    assert "new 1.0000" in out and "lowest part per seed: base" in out


def test_runs_below_the_floor_are_counted_per_side_by_their_lower_part(tmp_path, capsys):
    good, logical, structural = np.arange(8.0), np.arange(4.0) + 2.5, np.arange(4.0) + 20.0
    fine = np.concatenate([good, logical + 10, structural])  # both parts 1.0
    weak = np.concatenate([good, logical, structural])  # logical 18 of 32 pairs (0.5625), structural 1.0
    base = _dump(tmp_path / "a.npz", [fine, fine])
    new = _dump(tmp_path / "b.npz", [fine, weak])
    runs, data = paired_bootstrap.fused_runs(new, paired_bootstrap.compose_config(["fusion=loo"]).model.fusion)
    assert paired_bootstrap.cells_below(runs, data, 0.65) == ["widgets/hungarian/4/1: 0.56"]
    assert paired_bootstrap.cells_below(runs, data, 0.55) == []
    paired_bootstrap.main([base, new, "--overrides", "fusion=loo", "-B", "20"])
    out = capsys.readouterr().out
    assert "runs with a part below 0.65: base 0, new 1" in out and "new: widgets/hungarian/4/1: 0.56" in out


def test_refusion_ramps_a_weight_by_the_shots_not_the_held_out_count(tmp_path):
    """With model.max_loo below k the model holds out fewer shots than it has and passes
    shots=k to the fusion; the re-fusion took k from the leave-one-out count, so a weight that
    grows with the shots (full_weight_shots) came out smaller than the model's."""
    from omegaconf import OmegaConf

    arrays = {"widgets/labels": LABELS, "widgets/types": TYPES, "widgets/defects": np.array([""] * len(TYPES))}
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        arrays[f"widgets/hungarian/loo/8/0/score/{name}"] = rng.random(len(TYPES))
        arrays[f"widgets/hungarian/loo/8/0/loo/{name}"] = np.ones(2)  # max_loo=2 of k = 8
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    cfg = OmegaConf.create({"_target_": "locoad.fusion.loo.LeaveOneOutSum", "full_weight_shots": {"a": 3}})
    runs, _ = paired_bootstrap.fused_runs(str(path), cfg)
    fused = runs[("widgets", "hungarian", 8, 0)]
    np.testing.assert_allclose(fused, arrays["widgets/hungarian/loo/8/0/score/a"] + arrays["widgets/hungarian/loo/8/0/score/b"])
