"""Image-level metrics: F1-max (the seed's metric) and AUROC, overall and per anomaly type.

Conventions: label 1 = anomalous, 0 = good; a higher score means more anomalous.
With only one class present F1-max/AUROC are undefined: the functions return NaN and warn
(never raise), so one degenerate split cannot kill a sweep.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import roc_auc_score

GOOD = "good"
TYPES = {"logical": "logical_anomalies", "structural": "structural_anomalies"}


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    labels = np.asarray(labels).astype(int).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in length")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf; fix the score that produced them")
    if len(np.unique(labels)) < 2:
        warnings.warn("only one class present: F1-max/AUROC undefined, returning NaN", stacklevel=3)
        return None
    return labels, scores


def f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    """Max over thresholds of F1 = 2PR/(P+R), thresholds at every distinct score.

    Tied scores move together across a threshold (one operating point per distinct value).
    """
    checked = _check(labels, scores)
    if checked is None:
        return float("nan")
    labels, scores = checked
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    fp = np.cumsum(1 - y)
    last = np.r_[np.diff(s) != 0, True]  # keep only the last index of each tie group
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return float(f1.max())


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half)."""
    checked = _check(labels, scores)
    if checked is None:
        return float("nan")
    return float(roc_auc_score(*checked))


def image_metrics(scores: np.ndarray, labels: np.ndarray, types: list[str] | np.ndarray) -> dict:
    """{"f1_max", "auroc", "logical": {...}, "structural": {...}, "auroc_loco"} for one score.

    The per-type entries compare that anomaly type against the good images only;
    ``auroc_loco`` is the mean of the logical and structural AUROC, as MVTec LOCO AD reports it.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    types = np.asarray(types)
    out: dict = {"f1_max": f1_max(labels, scores), "auroc": auroc(labels, scores)}
    for short, folder in TYPES.items():
        keep = (types == GOOD) | (types == folder)
        if (types == folder).any():
            out[short] = {"f1_max": f1_max(labels[keep], scores[keep]), "auroc": auroc(labels[keep], scores[keep])}
    if all(t in out for t in TYPES):
        out["auroc_loco"] = (out["logical"]["auroc"] + out["structural"]["auroc"]) / 2
    return out


def f1_floor(labels: np.ndarray) -> float:
    """F1 of calling every image anomalous, 2p/(1+p) with p the anomalous fraction."""
    p = float(np.mean(np.asarray(labels) == 1))
    return 2 * p / (1 + p)
