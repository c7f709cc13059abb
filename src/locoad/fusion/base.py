"""Fusion rules: turn per-feature scores into one score.

A rule is fitted on the leave-one-out (LOO) scores of the k shots: for each feature, the
scores each shot gets against the other k - 1 shots, i.e. how large that feature gets on
normal images. ``fuse`` combines arrays of test scores (one array per feature).
"""

from __future__ import annotations

import logging

import numpy as np

from locoad.errors import ConfigError

log = logging.getLogger(__name__)

# How a feature's leave-one-out scores become its divisor (fusion.scale_statistic).
SCALE_STATISTICS = {"max": np.max, "median": np.median}


def warn_unknown(option: str, names, features) -> None:
    """A preset's per-feature option may name a feature another feature set lacks: not an error,
    but said once per fit."""
    unknown = sorted(set(names) - set(features))
    if unknown:
        log.warning("fusion.%s: %s not among this model's features (%s); ignored",
                    option, ", ".join(unknown), ", ".join(sorted(features)))


class Fusion:
    """Base rule with per-feature weights: ``scale_f`` = LOO maximum (or the initial scale for
    1-shot, and where the LOO maximum is 0), and user multipliers ``weights[f]`` (default 1; 0
    switches a feature off). ``full_weight_shots[f] = n``: feature f gets ``weights[f] * min(k, n) / n``
    at k shots, for a score whose normal spread only the shots can tell (one shot shows none).
    ``scale_statistic[f] = "median"``: f's divisor is the median of its LOO scores instead of their
    maximum, for a score whose LOO maximum one odd shot sets (composition's is 3-5 times its LOO
    median on the development data, the patch scores' 1.3-1.5 times). ``shared_weights[f] =
    [copies]``: f's weight is split evenly over f and those of its copies that are scored (a
    backbone ensemble's member scores, ``lite2_<f>``), so the evidence weighs the same with one
    backbone or several."""

    transductive = False  # True: needs the whole test set at once (e.g. ranks)

    def __init__(
        self,
        weights: dict[str, float] | None = None,
        initial_scales: dict[str, float] | None = None,
        default_initial_scale: float = 1.0,
        min_scale: float = 1e-6,
        full_weight_shots: dict[str, int] | None = None,
        scale_statistic: dict[str, str] | None = None,
        shared_weights: dict[str, list[str]] | None = None,
    ):
        self.base_weights = dict(weights or {})
        self.shared_weights = {n: list(c) for n, c in (shared_weights or {}).items()}
        own = sorted(c for copies in self.shared_weights.values() for c in copies if c in self.base_weights)
        if own:
            raise ConfigError(f"fusion.weights sets {', '.join(own)}, which share(s) a weight "
                              "(fusion.shared_weights): weight the score it copies instead, or drop "
                              "it from fusion.shared_weights")
        self.weights = dict(self.base_weights)  # at the fitted shot count (fit)
        self.full_weight_shots = {n: int(v) for n, v in (full_weight_shots or {}).items()}
        bad = {n: v for n, v in self.full_weight_shots.items() if v < 1}
        if bad:
            raise ConfigError(f"fusion.full_weight_shots must be shot counts >= 1, got {bad}")
        copied = sorted(c for copies in self.shared_weights.values() for c in copies if c in self.full_weight_shots)
        if copied:
            raise ConfigError(f"fusion.full_weight_shots names {', '.join(copied)}, which share(s) a weight "
                              "(fusion.shared_weights): name the score it copies instead")
        self.scale_statistic = dict(scale_statistic or {})
        bad = {n: v for n, v in self.scale_statistic.items() if v not in SCALE_STATISTICS}
        if bad:
            raise ConfigError(f"fusion.scale_statistic must be one of {sorted(SCALE_STATISTICS)} per feature, got {bad}")
        self._named_statistic = set(self.scale_statistic)  # as given: the ones warn_unknown checks
        # a score's copies (fusion.shared_weights) share its weight, so its scale statistic too
        for name, stat in list(self.scale_statistic.items()):
            for copy in self.shared_weights.get(name, ()):
                self.scale_statistic.setdefault(copy, stat)
        self.initial_scales = dict(initial_scales or {})
        self.default_initial_scale = default_initial_scale
        self.min_scale = min_scale
        self.scales: dict[str, float] = {}

    def with_copies(self, names) -> frozenset[str]:
        """``names`` and their copies (fusion.shared_weights)."""
        return frozenset(names) | {c for n in names for c in self.shared_weights.get(n, ())}

    def fit(self, loo_scores: dict[str, np.ndarray], shots: int | None = None) -> Fusion:
        """LOO scores per feature ((k,) each; empty for 1-shot, where initial scales apply).
        ``shots``: k, where fewer shots than k were held out (default: the LOO scores' length)."""
        k = shots or max([np.size(s) for s in loo_scores.values()] + [1])
        warn_unknown("full_weight_shots", self.full_weight_shots, loo_scores)
        warn_unknown("scale_statistic", self._named_statistic, loo_scores)
        self.weights = dict(self.base_weights)
        self.scales = {}  # a refit on other features keeps none of the last fit's
        for name, n in self.full_weight_shots.items():
            if name in loo_scores:
                self.weights[name] = self.base_weights.get(name, 1.0) * min(k, n) / n
        for name, copies in self.shared_weights.items():
            scored = [n for n in (name, *copies) if n in loo_scores]
            share = self.weights.get(name, 1.0) / max(len(scored), 1)
            self.weights.update(dict.fromkeys(scored, share))
        unmeasured = sorted(n for n, s in loo_scores.items() if not np.size(s) and n not in self.initial_scales)
        if unmeasured:
            # One shot, no LOO: a score without its measured scale is divided by a constant, so its
            # weight against the others is arbitrary (a patch distance of ~0.15 counts ~7x less).
            log.warning("fusion: no 1-shot initial scale for %s; dividing by default_initial_scale=%s. "
                        "Measure them with benchmarks/initial_scales.py --only %s",
                        ", ".join(unmeasured), self.default_initial_scale, " ".join(unmeasured))
        for name, s in loo_scores.items():
            s = np.asarray(s, dtype=np.float64)
            if not np.isfinite(s).all():
                # NaN would make every fused score NaN, inf switch the feature off, both silently
                raise FloatingPointError(
                    f"fusion: the leave-one-out scores of {name} are not finite ({s.tolist()}): that score "
                    "returned NaN or inf on a shot; check its settings or remove it from features")
            initial = float(self.initial_scales.get(name, self.default_initial_scale))
            scale = float(SCALE_STATISTICS[self.scale_statistic.get(name, "max")](s)) if s.size else initial
            if scale < self.min_scale and s.size and s.max() >= self.min_scale:
                # most shots score 0 (a count): the median is 0, but the shots do show a spread
                scale = float(s.max())
            if scale < self.min_scale:
                # All shots agree perfectly on this feature, so they say nothing about its normal
                # spread. Flooring the divisor at min_scale would multiply any non-zero test score
                # by ~1e6 and make this one feature the whole fused score; its 1-shot initial
                # scale (a typical normal value, measured) is the prior the shots failed to refine.
                log.warning(
                    "fusion: the leave-one-out scale of %s is %.3g (the shots agree exactly); dividing "
                    "by its initial scale %.3g instead", name, scale, initial,
                )
                scale = initial
            if scale < self.min_scale:
                raise ConfigError(
                    f"fusion.initial_scales.{name}={scale} (or default_initial_scale): a divisor must "
                    f"be >= {self.min_scale}"
                )
            self.scales[name] = scale
        return self

    def ratios(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each score over its scale (1: as large as on the most unusual shot), features with
        weight 0 left out."""
        if not self.scales:
            raise RuntimeError("fusion used before fit()")
        out = {n: np.asarray(s, dtype=np.float64) / self.scales.get(n, 1.0)
               for n, s in scores.items() if self.weights.get(n, 1.0) != 0}
        if scores and not out:
            raise ConfigError("fusion.weights switch off every feature; give at least one a non-zero weight")
        return out

    def normalised(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """:meth:`ratios` times the weights."""
        return {n: self.weights.get(n, 1.0) * r for n, r in self.ratios(scores).items()}

    def grouped(self, terms: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-feature terms with each score and its weight-sharing copies (``shared_weights``)
        summed into one entry under the score's name: for rules that do not add their terms up (a
        maximum, a mean), so that a score split over two backbones counts as one score, not as two
        at half weight."""
        out = dict(terms)
        for name, copies in self.shared_weights.items():
            members = [n for n in (name, *copies) if n in out]
            if len(members) > 1:
                out[name] = np.sum([out.pop(n) for n in members], axis=0)
        return out

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def map_weight(self, name: str) -> float:
        """Factor of a feature's patch anomaly map in the fused map: its weight over its scale,
        as in the image fusion, so a feature switched off (weight 0) is off in the map too."""
        return self.weights.get(name, 1.0) / max(self.scales.get(name, 1.0), 1e-12)
