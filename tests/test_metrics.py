import warnings

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve

from locoad.metrics import auroc, f1_floor, f1_max, image_metrics, pixel_auroc


def pair_count_auroc(y, s) -> float:
    """AUROC as the Mann-Whitney statistic: over every (anomalous, good) pair, 1 if the anomalous
    image scores higher, 1/2 on a tie, 0 otherwise; the mean. Independent of any ROC code."""
    y, s = np.asarray(y).ravel(), np.asarray(s, dtype=float).ravel()
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_pair_count_auroc_by_hand():
    # pairs (a, g): (0.9, 0.1) 1, (0.9, 0.5) 1, (0.5, 0.1) 1, (0.5, 0.5) 1/2 -> 3.5 / 4
    assert pair_count_auroc([1, 1, 0, 0], [0.9, 0.5, 0.1, 0.5]) == 0.875
    assert auroc([1, 1, 0, 0], [0.9, 0.5, 0.1, 0.5]) == 0.875
    assert auroc([0, 0, 1], [0.3, 0.2, 0.1]) == 0.0


def sklearn_f1_max(y, s):
    p, r, _ = precision_recall_curve(y, s)
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0)
    return f1.max()


@pytest.mark.parametrize("seed", range(20))
def test_f1_max_and_auroc_match_independent_computations(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    # Coarse rounding creates many ties.
    s = np.round(rng.normal(size=n) + y * rng.uniform(0, 2), int(rng.integers(0, 3)))
    assert f1_max(y, s) == pytest.approx(sklearn_f1_max(y, s), abs=1e-12)
    assert auroc(y, s) == pytest.approx(pair_count_auroc(y, s), abs=1e-12)


def test_edge_cases():
    assert f1_max([0, 1], [0.0, 1.0]) == 1.0
    # All scores tied: the only threshold flags everything -> the all-anomalous floor.
    y = np.array([0, 0, 1, 1, 1])
    assert f1_max(y, np.zeros(5)) == pytest.approx(f1_floor(y))
    assert auroc(y, np.zeros(5)) == 0.5
    # Perfectly inverted scores still flag everything at the lowest threshold.
    assert f1_max([1, 1, 0, 0], [0.0, 0.1, 0.8, 0.9]) == pytest.approx(f1_floor([1, 1, 0, 0]))


def test_one_class_gives_nan_with_warning():
    with pytest.warns(UserWarning, match="one class"):
        assert np.isnan(f1_max([1, 1, 1], [0.1, 0.2, 0.3]))
    with pytest.warns(UserWarning, match="one class"):
        assert np.isnan(auroc([0, 0], [0.1, 0.2]))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="differ in length"):
        f1_max([0, 1], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        f1_max([0, 1], [0.1, float("nan")])


def test_image_metrics_splits_by_type():
    types = np.array(["good"] * 4 + ["logical_anomalies"] * 2 + ["structural_anomalies"] * 2)
    labels = (types != "good").astype(int)
    scores = np.array([0, 0.1, 0.2, 0.3, 0.9, 0.8, 0.15, 0.25])  # structural overlaps good
    m = image_metrics(scores, labels, types)
    assert m["logical"] == {"f1_max": 1.0, "auroc": 1.0}
    # structural vs good: 0.15 beats 2 of 4 good, 0.25 beats 3 of 4 -> 5 / 8
    assert m["structural"]["auroc"] == pytest.approx(5 / 8)
    assert m["auroc"] == pytest.approx(pair_count_auroc(labels, scores))


def test_pixel_auroc():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 8, 8)) > 0.8
    maps = masks + rng.normal(0, 0.5, masks.shape)
    assert pixel_auroc(masks, maps) == pytest.approx(pair_count_auroc(masks.ravel(), maps.ravel()))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert np.isnan(pixel_auroc(np.zeros((2, 4, 4)), np.ones((2, 4, 4))))


def test_pixel_auroc_orders_map_values_float16_would_tie():
    """The maps kept for the pixel AUROC were float16 (about three digits): two pixels of 10.000
    and 10.002 tied, so a map that orders every pixel right scored below 1."""
    import torch

    from locoad.models.base import AnomalyModule, ScoreOutput

    class Fixed(AnomalyModule):
        def score_batch(self, batch):
            amap = torch.full((1, 8, 8), 10.0)
            amap[0, :, :4] += 0.002 * float(batch["label"][0])  # the defect's half, just above the rest
            return ScoreOutput({"fused": torch.tensor([1.0])}, amap)

    m = Fixed()
    m.pixel_metric_size = 8
    m.on_test_epoch_start()
    mask = torch.zeros(1, 8, 8)
    mask[0, :, :4] = 1
    for label, kind in ((0, "good"), (1, "structural_anomalies")):
        m.test_step({"path": [f"{kind}.png"], "label": torch.tensor([label]), "anomaly_type": [kind],
                     "mask": mask * label}, 0)
    m.on_test_epoch_end()
    assert m.test_results.metrics["fused"]["pixel_auroc"] == 1.0
