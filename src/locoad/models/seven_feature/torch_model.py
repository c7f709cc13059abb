"""The seven-feature method as a plain torch module: segment -> align -> extract -> score -> fuse.

No Lightning here, and no storage: it computes. ``encode`` runs the expensive, per-image stages
(backbone, segmenter); ``fit`` builds the alignment reference and the feature memories
(:meth:`~SevenFeatureModel.fit_memory`) and the leave-one-out fusion calibration
(:meth:`~SevenFeatureModel.calibrate`) from encoded shots; ``score`` scores encoded test images.
Storing stage outputs between runs wraps the stages from outside (``models/seven_feature/stored.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from locoad.aligners.base import Aligner
from locoad.aligners.reference import most_typical
from locoad.backbones.base import Backbone
from locoad.backbones.ensemble import split_parts
from locoad.colour import divide_smooth_light, flatten_light, gray_world, white_patch
from locoad.components.augment import RigidMove, move_images, move_labels, plan_moves
from locoad.components.knn import apply_keeping_unit_rows, own_precision
from locoad.errors import ConfigError, is_whole_number
from locoad.features.base import Feature, missing_backbone_part
from locoad.features.shared_patch_bank import SharedPatchBank, share_patch_banks
from locoad.fusion.base import Fusion
from locoad.segmenters.base import Segmenter, foreground_segmenter_of
from locoad.types import BACKGROUND, ParsedImage, SegmentedImage, rgb_to_lab

log = logging.getLogger(__name__)

# How the backbone's input is normalised per image (``model.photometric``): name -> function of
# (B, 3, H, W) images in [0, 1] (None: the images as they are).
PHOTOMETRIC: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "none": None,
    "white_level": lambda x: white_patch(x, per_channel=False),
    "white_patch": white_patch,
    "gray_world": gray_world,
    "flat_white_level": lambda x: white_patch(flatten_light(x), per_channel=False),
    "smooth_white_level": lambda x: white_patch(divide_smooth_light(x), per_channel=False),
}


@dataclass
class Encoded:
    """The per-image outputs of the expensive stages."""

    rgb: np.ndarray  # (S, S, 3) uint8 at work_size
    segments: np.ndarray  # (S, S) int32 label map
    features: torch.Tensor  # (D, h, w) raw backbone features
    # (A, D, h, w) features of the shot's moved copies (``model.shot_augment``), shots only
    augmented: torch.Tensor | None = None
    # height / width of the capture the square images were squeezed from (the moved copies
    # turn the capture, not the square: components/augment.py)
    aspect: float = 1.0
    # (S, S) bool product foreground when the segmenter judges it apart from the parts
    # (``Segmenter.foreground_segmenter``); None: the union of the parts
    foreground: np.ndarray | None = None
    _lab: np.ndarray | None = field(default=None, repr=False, compare=False)
    # What later code derives from this image once and keeps with it (e.g. a content key).
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def lab(self) -> np.ndarray:
        """CIELAB of ``rgb``, computed once: the aligner's cost and the class features share it."""
        if self._lab is None:
            self._lab = rgb_to_lab(self.rgb)
        return self._lab

    def apply(self, fn) -> None:
        """Pass every tensor through ``fn`` in place (the model's ``.to()``)."""
        self.features = fn(self.features)
        if self.augmented is not None:
            self.augmented = fn(self.augmented)


def to_uint8(images: torch.Tensor, size: int) -> np.ndarray:
    """(B, 3, H, W) float [0, 1] -> (B, size, size, 3) uint8."""
    x = images.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def majority_grid(class_map: np.ndarray, grid: int, num_classes: int) -> torch.Tensor:
    """Class map -> (grid, grid) by majority vote inside each patch (small parts survive
    better than with centre sampling)."""
    h, w = class_map.shape
    # Cell of every pixel as adaptive pooling assigns it when the size divides evenly.
    cell = (np.arange(h)[:, None] * grid // h) * grid + (np.arange(w)[None, :] * grid // w)
    counts = np.bincount((cell * num_classes + class_map).ravel(), minlength=grid * grid * num_classes)
    return torch.from_numpy(counts.reshape(grid, grid, num_classes).argmax(-1))


def resize_nearest(a: np.ndarray, size: int) -> np.ndarray:
    if a.shape[:2] == (size, size):
        return a
    t = torch.from_numpy(a.astype(np.int64))[None, None].float()
    return F.interpolate(t, size=(size, size), mode="nearest")[0, 0].long().numpy()


class SevenFeatureModel(nn.Module):
    def __init__(
        self,
        segmenter: Segmenter,
        aligner: Aligner,
        backbone: Backbone,
        features: dict[str, Feature],
        fusion: Fusion,
        work_size: int = 256,
        feature_norm: str = "auto",
        max_loo: int = 16,
        photometric: str = "none",
        shot_augment: dict | None = None,
        reference: str = "first",
        loo_reference: str = "shared",
    ):
        super().__init__()
        if reference not in ("first", "typical"):
            raise ConfigError(f"model.reference must be first or typical; got {reference!r}")
        if loo_reference not in ("shared", "refit"):
            raise ConfigError(f"model.loo_reference must be shared or refit; got {loo_reference!r}")
        # How the reference shot is scored in the leave-one-out calibration: ``shared``, against
        # the others' memory as aligned to it and with its own class map (no alignment error, which
        # no test image has); ``refit``, as a test image of a model fitted on the others alone.
        self.loo_reference = loo_reference
        # The alignment reference: the first shot (the seed), or the most typical one
        # (aligners/reference.py); ``shot_order``: the shots as given, reference first.
        self.reference = reference
        self.shot_order: list[int] = []
        if photometric not in PHOTOMETRIC:
            raise ConfigError(f"model.photometric must be one of {', '.join(PHOTOMETRIC)}; got {photometric!r}")
        if not features:
            raise ConfigError("features is empty: choose a feature set, e.g. features=all7")
        self.segmenter = segmenter
        self.aligner = aligner
        self.backbone = backbone
        self.features = dict(features)
        for name, feat in self.features.items():
            feat.name = name
        self.fusion = fusion
        # Alignment only matters to scores that use classes; without one, a segment is just
        # foreground (class 1) and the aligner is never called.
        self.aligned = any(f.needs_classes for f in self.features.values())
        # A backbone ensemble's member channels (backbones/ensemble.py): the first member's are
        # what the aligner and the class scores read; a patch score may read another's.
        self.parts: dict[str, tuple[int, int]] = dict(getattr(backbone, "parts", None) or {})
        for name, feat in self.features.items():
            part = getattr(feat, "backbone_part", None)
            if part is not None and part not in self.parts:
                raise missing_backbone_part(f"feature {name}", part, self.parts)
        self.reads_foreground = any(f.reads_foreground for f in self.features.values())
        if not is_whole_number(work_size, 8):  # 0 failed inside the first training step
            raise ConfigError(f"model.work_size must be a whole number >= 8 (pixels of the class maps), got {work_size!r}")
        self.work_size = work_size
        if feature_norm == "auto":
            feature_norm = getattr(backbone, "preferred_feature_norm", "none")
        if feature_norm not in ("none", "center", "standardize"):
            raise ConfigError(f"feature_norm must be none, center, standardize or auto; got {feature_norm!r}")
        self.feature_norm = feature_norm
        if not is_whole_number(max_loo, 1):  # 0 left every score uncalibrated (scale 1), or failed
            raise ConfigError(f"model.max_loo must be a whole number >= 1 (shots scored leave-one-out), got {max_loo!r}")
        self.max_loo = max_loo
        self.photometric = photometric
        # Moved copies of every shot, encoded at fit for the patch memory only (plain data:
        # the stage cache keys the scores on it).
        if OmegaConf.is_config(shot_augment):
            shot_augment = OmegaConf.to_container(shot_augment, resolve=True)
        self.shot_augment = dict(shot_augment or {})
        self.moves: list[RigidMove] = plan_moves(self.shot_augment, getattr(backbone, "grid_size", 1))
        self.register_buffer("feat_mean", torch.zeros(0), persistent=False)
        self.register_buffer("feat_std", torch.zeros(0), persistent=False)
        self.shots: list[Encoded] = []
        self.parsed_shots: list[ParsedImage] = []
        self.states: dict[str, object] = {}
        self.patch_banks: list[SharedPatchBank] = []  # exact patch scores share one bank
        self.loo_scores: dict[str, np.ndarray] = {}

    @property
    def is_fitted(self) -> bool:
        return bool(self.states)

    def _apply(self, fn, recurse: bool = True):
        """``.to()``, ``.cuda()``, ``.half()``...: the fitted state (plain attributes, so that
        its structure needs no buffer names) moves with the module like its buffers do."""
        super()._apply(fn, recurse)
        for s in self.shots:
            s.apply(fn)
        for p in self.parsed_shots:
            p.apply(fn)
        for b in self.patch_banks:
            b.apply(fn)
        for name, state in self.states.items():
            if isinstance(state, dict):  # a patch score's own banks (coreset): group -> bank
                self.states[name] = {g: apply_keeping_unit_rows(t, fn) for g, t in state.items()}
            elif isinstance(state, torch.Tensor):  # e.g. local_patch's stack of shot features
                self.states[name] = fn(state)
        return self

    def follow(self, device: torch.device) -> None:
        """Segmenter and aligner networks configured with device=auto run on ``device``."""
        for part in (self.segmenter, self.aligner):
            if hasattr(part, "follow"):  # plain callables (tests, notebooks) hold no network
                part.follow(device)

    # -- stages ----------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor, shots: bool = False,
               aspects: torch.Tensor | list[float] | None = None) -> list[Encoded]:
        """Backbone (batched) and segmentation of a batch of (B, 3, H, W) images in [0, 1].
        ``shots``: training shots, whose moved copies (``shot_augment``) are encoded too.
        ``aspects``: each image's capture height / width (the data sets' ``aspect``) when the
        images were squeezed to a square; None: the images are the captures."""
        rgbs = to_uint8(images, self.work_size)
        x = self.backbone_input(images)
        feats = self.backbone(x)
        if aspects is None:
            aspects = [images.shape[-2] / images.shape[-1]] * len(rgbs)
        aspects = [float(a) for a in aspects]
        fg = self.foreground_segmenter()
        out = [Encoded(rgb, self.segmenter(rgb), f, aspect=a, foreground=None if fg is None else fg(rgb) > 0)
               for rgb, f, a in zip(rgbs, feats, aspects)]
        if shots and self.moves:
            moved = torch.stack([self.backbone(move_images(x, mv, aspects)) for mv in self.moves], dim=1)
            for e, a in zip(out, moved):
                e.augmented = a
        return out

    def foreground_segmenter(self):
        """The segmenter of the foreground patch score's foreground, when a score reads it and
        the segmenter has one (``Segmenter.foreground_segmenter``); None: the parts' union."""
        return foreground_segmenter_of(self.segmenter) if self.reads_foreground else None

    def backbone_input(self, images: torch.Tensor) -> torch.Tensor:
        """What the backbone sees: the images, normalised per image as ``photometric`` says
        (exposure and colour casts would otherwise move every patch feature): ``white_level``
        one gain that puts the bright end (99th percentile) at 0.9, ``flat_white_level`` the
        same after a lighting gradient (a plane fitted on the border) is divided out,
        ``smooth_white_level`` after the light as a smooth field (a light spot, vignetting) is,
        ``white_patch`` the same per channel, ``gray_world`` the median at a fixed grey. The
        segmenter and the colour scores read the untouched images: they have their own light
        handling. Applied before the stored backbone, so the stage cache keys features by this
        input."""
        normalise = PHOTOMETRIC[self.photometric]
        return images if normalise is None else normalise(images.float())

    def normalise(self, feats: torch.Tensor) -> torch.Tensor:
        if self.feature_norm == "none" or self.feat_mean.numel() == 0:
            return feats
        x = feats - self.feat_mean.view(-1, 1, 1).to(feats.device)
        if self.feature_norm == "standardize":
            x = x / self.feat_std.view(-1, 1, 1).to(feats.device)
        return x

    @staticmethod
    def check_finite(encoded: list[Encoded]) -> None:
        """One check (one host synchronisation) for a whole batch."""
        if encoded and not torch.stack([torch.isfinite(e.features).all() for e in encoded]).all():
            # NaN/inf features come from broken weights or a numerically unstable dtype; used,
            # they would silently poison every cost and kNN distance.
            raise FloatingPointError(
                "the backbone returned NaN/inf features. Check the checkpoint (a corrupt or "
                "mismatched file) and backbone.dtype (try float32)."
            )

    def segmented(self, enc: Encoded) -> SegmentedImage:
        """The aligner's and the scores' view of an image: normalised features, computed once
        (:meth:`check_finite` first)."""
        return self.view(enc.rgb, enc.segments, enc.features, enc.lab, enc.foreground, enc.aspect)

    def view(self, rgb: np.ndarray, segments: np.ndarray, features: torch.Tensor, lab: np.ndarray,
             foreground: np.ndarray | None, aspect: float = 1.0) -> SegmentedImage:
        """An image with its normalised features; with a backbone ensemble, ``features`` the
        primary member's channels and ``parts`` every member's."""
        x = self.normalise(features)
        if not self.parts:
            return SegmentedImage(rgb, segments, x, lab, foreground, aspect=aspect)
        parts = split_parts(x, self.parts)
        return SegmentedImage(rgb, segments, parts[next(iter(parts))], lab, foreground, parts, aspect)

    def parse(self, image: SegmentedImage, class_map: np.ndarray) -> ParsedImage:
        # background, the reference classes and unmatched; or background and foreground
        num_classes = self.aligner.num_reference_classes + 2 if self.aligned else 2
        grid = image.features.shape[-1]
        fg = class_map != BACKGROUND if image.foreground is None else image.foreground
        return ParsedImage(
            rgb=image.rgb,
            lab=image.lab,
            class_map=class_map.astype(np.int64),
            features=image.features,
            class_grid=majority_grid(class_map, grid, num_classes).to(image.features.device),
            num_classes=num_classes,
            foreground=majority_grid(fg.astype(np.int64), grid, 2).bool().to(image.features.device),
            parts=image.parts,
            aspect=image.aspect,
        )

    # -- fit ---------------------------------------------------------------------------------
    def fit(self, shots: list[Encoded]) -> None:
        """Reference = shots[0] (``reference=typical``: the most typical shot, moved first);
        memory banks and LOO calibration from all shots."""
        self.fit_memory(shots)
        self.calibrate()

    def fit_memory(self, shots: list[Encoded]) -> None:
        """The alignment reference and every feature's memory (no calibration yet)."""
        with torch.no_grad(), own_precision():
            self._fit_memory(shots)

    def _fit_memory(self, shots: list[Encoded]) -> None:
        if not shots:
            raise ValueError("no training shots")
        self.check_finite(shots)
        if self.feature_norm != "none":
            # in float64: the same statistics whatever the shots' order (a checkpoint stores them
            # reordered, reference first, and a reload's float32 sums differed in the last digits)
            allp = torch.cat([s.features.flatten(1) for s in shots], dim=1).double()  # (D, N)
            dtype = shots[0].features.dtype
            self.feat_mean = allp.mean(1).to(dtype)
            self.feat_std = (allp.std(1).clamp_min(1e-6) if allp.shape[1] > 1 else torch.ones_like(allp[:, 0])).to(dtype)
        views = [self.segmented(s) for s in shots]
        typical = self.aligned and self.reference == "typical"
        ref = most_typical(views, getattr(self.aligner, "weights", None)) if typical else 0
        # the reference leads: every later step reads shots[0] as the reference
        self.shot_order = [ref] + [i for i in range(len(shots)) if i != ref]
        shots, views = [shots[i] for i in self.shot_order], [views[i] for i in self.shot_order]
        self.shots = shots
        if shots[0].segments.max() == 0:
            # Still a valid model: every segment of every image becomes "unmatched" and the
            # class features degrade to foreground statistics. Say so loudly.
            log.warning(
                "the reference image (%s shot) has no foreground segment: the segmenter found only "
                "background, so alignment has no classes. Check the segmenter (weights, min_area) "
                "or choose another data.seed.", "the first" if ref == 0 else "the most typical"
            )
        if self.aligned:
            self.aligner.fit(views[0])
            maps = [self.aligner.reference_class_map()] + [self.aligner.align(v) for v in views[1:]]
        else:
            maps = [foreground_map(v.segments) for v in views]
        self.parsed_shots = [self.parse(v, m) for v, m in zip(views, maps)]
        blank = [i for i, p in enumerate(self.parsed_shots[1:], 1) if p.foreground is not None and not p.foreground.any()]
        if blank:
            # Its leave-one-out patch scores are 1 (no patch to score), far above any other
            # shot's: as the fusion's scale they leave those scores next to nothing in the sum.
            log.warning("%d of %d shots have no foreground patch (the segmenter found only background): their "
                        "leave-one-out scores set the fusion's scale, so the patch scores count for little. Check "
                        "the segmenter or choose another data.seed", len(blank), len(shots))
        moved, owners = self._moved_shots(shots, maps)
        self.patch_banks = share_patch_banks(self.features, self.parsed_shots + moved,
                                             list(range(len(shots))) + owners)
        shared = {n: b for b in self.patch_banks for n in b.features}
        self.states = {n: shared[n] if n in shared else f.fit(self.parsed_shots) for n, f in self.features.items()}

    def _moved_shots(self, shots: list[Encoded], maps: list[np.ndarray]) -> tuple[list[ParsedImage], list[int]]:
        """The shots' moved copies as parsed images (features, and the shot's class map moved
        the same way) and the shot each came from: patch memory only, and the leave-one-out
        leaves a shot's copies out with it."""
        if not self.moves:
            return [], []
        out, owners = [], []
        for i, (s, m) in enumerate(zip(shots, maps)):
            if s.augmented is None or len(s.augmented) != len(self.moves):
                raise ValueError(
                    f"shot {i} has {0 if s.augmented is None else len(s.augmented)} moved copies, "
                    f"model.shot_augment asks for {len(self.moves)}: encode shots with encode(images, shots=True) "
                    "(a checkpoint keeps the setting it was fitted with)")
            labels = torch.from_numpy(np.asarray(m, dtype=np.int64))
            fg = None if s.foreground is None else torch.from_numpy(s.foreground.astype(np.int64))
            for mv, f in zip(self.moves, s.augmented):
                moved_map = move_labels(labels, mv, s.aspect).numpy()
                moved_fg = None if fg is None else move_labels(fg, mv, s.aspect).numpy() > 0
                # rgb/lab stay the shot's: the patch banks read only features and grids
                view = self.view(s.rgb, moved_map.astype(np.int32), f, s.lab, moved_fg, s.aspect)
                out.append(self.parse(view, moved_map))
                owners.append(i)
        return out, owners

    def calibrate(self, loo_scores: dict[str, np.ndarray] | None = None) -> None:
        """Fit the fusion on the leave-one-out scores: ``loo_scores`` when given (computed
        before for the same memory), else computed now."""
        if loo_scores is None:
            with torch.no_grad(), own_precision():
                loo_scores = self._leave_one_out()
        self.loo_scores = {n: loo_scores[n] for n in self.features}
        self.fusion.fit(self.loo_scores, shots=len(self.parsed_shots))  # max_loo may hold out fewer

    def _leave_one_out(self) -> dict[str, np.ndarray]:
        """Each shot scored against the others (at most ``max_loo`` shots, evenly spaced)."""
        k = len(self.parsed_shots)
        if k < 2:
            return {n: np.zeros(0) for n in self.features}
        held = np.unique(np.linspace(0, k - 1, min(k, self.max_loo)).round().astype(int)).tolist()
        out = {}
        for bank in self.patch_banks:
            out.update(bank.loo_scores(self.parsed_shots, held))
        for n, f in self.features.items():
            if n not in out:
                out[n] = f.loo_scores(self.parsed_shots, held)
        if self.aligned and self.loo_reference == "refit" and held[0] == 0:
            for n, v in self._reference_scored_by_the_others().items():
                out[n] = np.concatenate([self.features[n].loo_floored(np.array([v])), np.asarray(out[n])[1:]])
        return {n: out[n] for n in self.features}

    def _reference_scored_by_the_others(self) -> dict[str, float]:
        """The reference shot's scores as a test image of the model fitted on the other shots
        (another reference among them, every shot aligned to it); the full fit is put back."""
        fitted = {k: getattr(self, k) for k in ("shots", "parsed_shots", "patch_banks", "states", "shot_order",
                                                "feat_mean", "feat_std")}
        try:
            self._fit_memory(fitted["shots"][1:])
            values, _, _ = self.score_parts(fitted["shots"][:1])
        finally:
            for k, v in fitted.items():
                setattr(self, k, v)
            self.aligner.fit(self.segmented(self.shots[0]))
        return {n: v[0] for n, v in values.items()}

    # -- score -------------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, encoded: list[Encoded]) -> tuple[dict[str, np.ndarray], torch.Tensor | None, list[np.ndarray]]:
        """Per-feature scores (name -> (B,)), the (B, h, w) anomaly map and the class maps."""
        scores, amap, _, class_maps = self.score_with_maps(encoded)
        return scores, amap, class_maps

    @torch.no_grad()
    def score_with_maps(self, encoded: list[Encoded]) -> tuple[
            dict[str, np.ndarray], torch.Tensor | None, dict[str, torch.Tensor], list[np.ndarray]]:
        """:meth:`score` plus each patch score's own (B, h, w) anomaly map (name -> maps)."""
        return self.assemble(*self.score_parts(encoded))

    @torch.no_grad()
    def score_parts(self, encoded: list[Encoded]) -> tuple[dict[str, list[float]], list[dict[str, torch.Tensor]], list[np.ndarray]]:
        """(per feature: one value per image, per image: the patch map of each patch score,
        class maps).

        The patch scores of the whole batch come from one similarity product per shared bank
        and stay on the device until one copy of the batch's values at the end; alignment and
        the vector scores work on the host's label maps. Precision is the scores' own
        (autocast off)."""
        if not self.is_fitted:
            raise RuntimeError("model not fitted: run fit (train=true) or load a checkpoint (ckpt_path=...)")
        values: dict[str, list[float]] = {n: [0.0] * len(encoded) for n in self.features}
        patch_maps: list[dict[str, torch.Tensor]] = [{} for _ in encoded]
        if not encoded:
            return values, patch_maps, []
        with own_precision():
            self.check_finite(encoded)
            parsed, class_maps = [], []
            for enc in encoded:
                view = self.segmented(enc)
                class_maps.append(self.aligner.align(view) if self.aligned else foreground_map(view.segments))
                parsed.append(self.parse(view, class_maps[-1]))
            on_device = {}
            for bank in self.patch_banks:
                for n, (v, m) in bank.score_batch(parsed).items():
                    on_device[n] = v
                    for i in range(len(encoded)):
                        patch_maps[i][n] = m[i]
            for n, f in self.features.items():  # the scores outside the banks
                if n not in on_device:
                    for i, p in enumerate(parsed):
                        result = f.score(p, self.states[n])
                        values[n][i] = result.value
                        if result.anomaly_map is not None:  # e.g. local_patch: its map joins the fused map
                            patch_maps[i][n] = result.anomaly_map
            if on_device:  # one host copy for the batch's patch scores
                host = torch.stack(list(on_device.values())).double().cpu().numpy()
                for n, row in zip(on_device, host):
                    values[n] = [float(v) for v in row]
        return values, patch_maps, class_maps

    def assemble(self, values: dict[str, list[float]], patch_maps: list[dict[str, torch.Tensor]],
                 class_maps: list[np.ndarray]) -> tuple[
                     dict[str, np.ndarray], torch.Tensor | None, dict[str, torch.Tensor], list[np.ndarray]]:
        """:meth:`score_parts` -> (scores (B,) per feature, the (B, h, w) anomaly map: the patch
        scores' maps weighted as the fusion weighs their scores (``Fusion.map_weight``), each
        patch score's own (B, h, w) maps, class maps)."""
        scores = {n: np.array(values[n], dtype=np.float64) for n in self.features}
        maps = []
        per_score: dict[str, list[torch.Tensor]] = {}
        for per_image in patch_maps:
            amap = None
            for n in self.features:
                if n in per_image:
                    per_score.setdefault(n, []).append(per_image[n])
                w = self.fusion.map_weight(n) if n in per_image else 0.0
                if w != 0:  # fusion.weights apply to the map as to the image score
                    weighted = per_image[n] * w
                    amap = weighted if amap is None else amap + weighted
            if amap is not None:
                maps.append(amap)
        feature_maps = {n: torch.stack(m) for n, m in per_score.items() if len(m) == len(patch_maps)}
        return scores, (torch.stack(maps) if maps else None), feature_maps, class_maps

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        return self.fusion.fuse(scores)


def foreground_map(segments: np.ndarray) -> np.ndarray:
    """Class map without alignment: 1 on every segment, 0 on background."""
    return (segments > 0).astype(np.int64)
