"""Part kinds as colour classes fitted on the shots, without a segmenter or an aligner.

Shared by the ``composition``, ``instance_set`` and ``symmetry`` scores. Every image is white-balanced first
(``cast_and_level``: the channel medians give the colour cast, the bright end the exposure),
lightness weighs ``lightness_weight`` of chroma, k-means centres of the shots' pixels closer than
``merge_distance`` are merged (one colour in two shades is one kind), every pixel goes to its
nearest centre, and the kinds that own at least ``background_share`` of the shots' image border
are the background.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.cluster import KMeans

from locoad.colour import cast_and_level, flat_cast_and_level, gray_world, rgb_to_lab
from locoad.errors import ConfigError
from locoad.types import ParsedImage

# white_balance name -> per-image balance of (H, W, 3) RGB in [0, 1] (None: the image as it is)
WHITE_BALANCES = {"cast_and_level": cast_and_level, "flat_cast_and_level": flat_cast_and_level,
                  "gray_world": gray_world, "none": None}


def merge_distances(merge_distance: float | Sequence[float], owner: str) -> list[float]:
    """The cuts of ``merge_distance`` (a number or a list of numbers) as floats, for ``fit_levels``."""
    distances = [merge_distance] if isinstance(merge_distance, (int, float)) else list(merge_distance)
    if not distances:
        raise ConfigError(f"{owner} merge_distance must be a number or a non-empty list of numbers")
    return [float(d) for d in distances]


# adapt_centres: Lloyd steps per image, and the pixels a centre needs to move
ADAPT_STEPS = 2
ADAPT_MIN_PIXELS = 50


def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N,) index of the nearest of ``centres`` (K, 3) for every row of ``x`` (N, 3)."""
    d = (x * x).sum(1)[:, None] - 2 * x @ centres.T + (centres * centres).sum(1)[None]
    return d.argmin(1)


class ColourKinds:
    def __init__(
        self,
        n_colours: int = 8,
        lightness_weight: float = 0.5,
        sample_stride: int = 4,
        background_share: float = 0.1,
        white_balance: str | bool = "cast_and_level",
        merge_distance: float = 12.0,
        seed: int = 0,
        owner: str = "colour kinds",
        adapt_centres: float = 0.0,
        dark_chroma: float = 0.0,
    ):
        if n_colours < 2:
            raise ConfigError(f"{owner} n_colours must be >= 2, got {n_colours}")
        if sample_stride < 1:
            raise ConfigError(f"{owner} sample_stride must be >= 1, got {sample_stride}")
        self.n_colours = n_colours
        self.lightness_weight = lightness_weight
        self.sample_stride = sample_stride
        self.background_share = background_share
        if isinstance(white_balance, bool):  # configs before the choice existed
            white_balance = "gray_world" if white_balance else "none"
        if white_balance not in WHITE_BALANCES:
            raise ConfigError(f"{owner} white_balance must be one of {', '.join(WHITE_BALANCES)}, got {white_balance!r}")
        if adapt_centres < 0:
            raise ConfigError(f"{owner} adapt_centres must be >= 0 (scaled CIELAB units; 0: off), got {adapt_centres}")
        if dark_chroma < 0:
            raise ConfigError(f"{owner} dark_chroma must be >= 0 (CIELAB lightness; 0: off), got {dark_chroma}")
        self.white_balance = white_balance
        self.adapt_centres = adapt_centres
        self.dark_chroma = dark_chroma
        self.merge_distance = merge_distance
        self.seed = seed

    def lab(self, parsed: ParsedImage) -> np.ndarray:
        """(H, W, 3) CIELAB, white-balanced per image as ``white_balance`` says, which removes
        exposure changes and colour casts before colours are compared: ``cast_and_level`` (every
        channel divided by its median, one gain putting the bright end at 0.9), ``gray_world``
        (every channel's median, mostly background, made the same grey: on a dark background a
        gain of 2-3 that saturates every light part into one white) or ``none``."""
        balance = WHITE_BALANCES[self.white_balance]
        if balance is None:
            return parsed.lab
        # Kept on the image: leave-one-out fits and several scores read every shot again (keyed
        # by the balance: composition and instance_set may use different ones).
        key = f"_lab_{self.white_balance}"
        cached = getattr(parsed, key, None)
        if cached is None:
            rgb = torch.from_numpy(parsed.rgb.astype(np.float32) / 255.0)
            cached = rgb_to_lab(balance(rgb, channel_dim=-1).numpy())
            object.__setattr__(parsed, key, cached)
        return cached

    def scaled_lab(self, parsed: ParsedImage) -> np.ndarray:
        """(H*W, 3) the colour space of the classes."""
        lab = self.lab(parsed).reshape(-1, 3).astype(np.float32)  # a copy: the cached image stays as it is
        if self.dark_chroma > 0:
            # A dark pixel's chroma is ill-determined (noise, a part's colour jitter and the cast
            # removal all scale it up), so below this lightness a and b fade towards grey.
            lab[:, 1:] *= np.clip(lab[:, :1] / self.dark_chroma, 0.0, 1.0)
        # Lightness counts less than chroma: exposure and illumination gradients move L most.
        return lab * np.array([self.lightness_weight, 1.0, 1.0], dtype=np.float32)

    def _kmeans(self, shots: list[ParsedImage]) -> tuple[np.ndarray, np.ndarray]:
        """Unmerged k-means centres (K, 3) of the shots' pixels in scaled CIELAB and their sizes."""
        s = self.sample_stride
        pix = np.concatenate([self.scaled_lab(p).reshape(*p.lab.shape[:2], 3)[::s, ::s].reshape(-1, 3) for p in shots])
        k = min(self.n_colours, len(np.unique(pix.round(1), axis=0)))
        km = KMeans(n_clusters=max(k, 1), n_init=3, random_state=self.seed).fit(pix)
        return km.cluster_centers_, np.bincount(km.labels_, minlength=len(km.cluster_centers_))

    @staticmethod
    def merge(centres: np.ndarray, sizes: np.ndarray, distance: float) -> np.ndarray:
        """Centres closer than ``distance`` (average linkage) replaced by their size-weighted mean.
        One part colour split in two shades (light falls unevenly) is one kind: kinds that swap
        pixels from image to image would make every count and area unstable."""
        if distance <= 0 or len(centres) < 2:
            return centres.astype(np.float32)
        groups = fcluster(linkage(centres, "average"), distance, criterion="distance")
        return np.stack([np.average(centres[groups == g], axis=0, weights=sizes[groups == g])
                         for g in np.unique(groups)]).astype(np.float32)

    def kind_map(self, parsed: ParsedImage, centres: np.ndarray) -> np.ndarray:
        """(H, W) index of the nearest centre of every pixel (with ``adapt_centres``, of the
        centres adapted to this image)."""
        x = self.scaled_lab(parsed)
        nearest = _nearest(x, centres)
        if self.adapt_centres > 0:
            # A capture's uneven light can move part of a surface across the border between two
            # shades; centres that follow their own pixels a little keep it one kind (a surface
            # that crosses whole still changes kind). The shift is bounded, so no centre takes
            # another's colour.
            moved = centres.astype(np.float32)
            for _ in range(ADAPT_STEPS):
                counts = np.bincount(nearest, minlength=len(centres))
                sums = np.stack([np.bincount(nearest, weights=x[:, c], minlength=len(centres)) for c in range(3)], 1)
                target = np.where(counts[:, None] >= ADAPT_MIN_PIXELS, sums / np.maximum(counts, 1)[:, None], moved)
                shift = target - centres
                norm = np.linalg.norm(shift, axis=1, keepdims=True)
                moved = (centres + shift * np.minimum(1.0, self.adapt_centres / np.maximum(norm, 1e-9))).astype(np.float32)
                nearest = _nearest(x, moved)
        return nearest.reshape(parsed.lab.shape[:2])

    @staticmethod
    def border_share(kinds: np.ndarray, n: int) -> np.ndarray:
        """(n,) fraction of a kind map's border pixels of each kind."""
        border = np.concatenate([kinds[0], kinds[-1], kinds[1:-1, 0], kinds[1:-1, -1]])
        return np.bincount(border, minlength=n)[:n] / len(border)

    def background(self, shots: list[ParsedImage], centres: np.ndarray) -> np.ndarray:
        """(K,) bool: the kinds that own a good part of the border in the shots (one colour may
        split into several kinds under uneven light); their area and pieces are the
        background's texture, not the product."""
        share = np.mean([self.border_share(self.kind_map(p, centres), len(centres)) for p in shots], axis=0)
        return share >= self.background_share

    def fit(self, shots: list[ParsedImage]) -> tuple[np.ndarray, np.ndarray]:
        """Centres (K, 3) in scaled CIELAB, merged at ``merge_distance``, and background (K,) bool."""
        return self.fit_levels(shots, [self.merge_distance])[0]

    def fit_levels(self, shots: list[ParsedImage], distances: list[float]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(centres, background) at every merge distance of one k-means fit, finest first; a cut
        that gives the same classes as a finer one is left out (its kinds would count twice)."""
        centres, sizes = self._kmeans(shots)
        levels: list[tuple[np.ndarray, np.ndarray]] = []
        for d in sorted(distances):
            c = self.merge(centres, sizes, d)
            if not levels or len(c) != len(levels[-1][0]):
                levels.append((c, self.background(shots, c)))
        return levels
