"""Several backbones at once: their patch features side by side on the first one's grid.

Each member sees the same images and keeps its own input size and normalisation; the features
are resized to the first member's grid and concatenated over channels. :attr:`parts` says which
channels are whose: the model gives the aligner and the class scores the first member's
channels (the *primary* part), and a patch score with ``backbone_part: <name>`` searches its own
memory of that member's channels only, so every member's patch evidence is a score of its own
(with its own leave-one-out maximum) rather than one distance over mixed channels.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from locoad.backbones.base import Backbone
from locoad.errors import ConfigError


class BackboneEnsemble(Backbone):
    """``members``: name -> backbone, the first one primary (it sets the grid)."""

    normalize = False  # every member normalises its own input

    def __init__(self, members: Mapping[str, nn.Module], image_size: int | None = None, **single: object):
        """``image_size``: the size the data is read at (``data.image_size`` follows it); every
        member resizes to its own input size. None: the first member's. ``single``: keys of a
        single backbone (``layers``, ``pool_size``, ...), refused with where they belong."""
        if single:
            keys = ", ".join(sorted(single))
            raise ConfigError(f"a backbone ensemble has no {keys}: its members have (backbone.members.<name>.{sorted(single)[0]}=...); "
                              "a model that sets them for one backbone (model=ulsad) needs a single one, e.g. backbone=efficientnet_lite0")
        super().__init__()
        if len(members) < 2:
            raise ConfigError(f"a backbone ensemble needs at least two members, got {len(members)}: "
                             "choose a single backbone (e.g. backbone=efficientnet_lite0) instead")
        self.members = nn.ModuleDict(dict(members))
        first = next(iter(self.members.values()))
        self.image_size, self.patch_size = int(image_size or first.image_size), first.patch_size
        self.embed_dim = sum(int(m.embed_dim) for m in self.members.values())
        self.parts: dict[str, tuple[int, int]] = {}
        start = 0
        for name, m in self.members.items():
            self.parts[name] = (start, start + int(m.embed_dim))
            start += int(m.embed_dim)

    @property
    def grid_size(self) -> int:
        """The first member's grid, whatever size the data is read at."""
        return next(iter(self.members.values())).grid_size

    @property
    def primary(self) -> str:
        """The member whose channels the aligner and the class scores read."""
        return next(iter(self.parts))

    @property
    def preferred_feature_norm(self) -> str:
        norms = {getattr(m, "preferred_feature_norm", "none") for m in self.members.values()}
        if len(norms) > 1:
            raise ConfigError(f"the ensemble's members prefer different feature norms ({', '.join(sorted(norms))}): "
                             "set model.feature_norm explicitly")
        return norms.pop()

    def cache_key(self) -> dict:
        """Members are stored one by one (``models/seven_feature/stored.py``); this key is for a
        direct caller of the stage cache."""
        from locoad.cache.fingerprint import backbone_key

        return {"members": {n: backbone_key(m) for n, m in self.members.items()}}

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        g = self.grid_size
        out = []
        for m in self.members.values():
            f = m(images)
            if f.shape[-2:] != (g, g):
                f = nn.functional.interpolate(f, size=(g, g), mode="bilinear", align_corners=False)
            out.append(f.float())
        return torch.cat([f.to(out[0].device) for f in out], dim=1)


def split_parts(features: torch.Tensor, parts: Mapping[str, tuple[int, int]] | None) -> dict[str, torch.Tensor]:
    """(D, h, w) ensemble features -> name -> that member's (D_i, h, w) channels (views)."""
    return {n: features[a:b] for n, (a, b) in (parts or {}).items()}


def members_read(backbone: nn.Module, parts: set[str]) -> nn.Module:
    """``backbone`` without the ensemble members that no score reads (``parts``: the members the
    scores name; the first, primary one is always read): a member nothing reads would run for
    nothing (``backbone=efficientnet_lite0_lite2 features=competition``); one left is itself.
    A name that is no member leaves the ensemble whole, for the model to refuse."""
    if not isinstance(backbone, BackboneEnsemble) or not parts <= set(backbone.members):
        return backbone
    keep = {n: m for i, (n, m) in enumerate(backbone.members.items()) if i == 0 or n in parts}
    if len(keep) == len(backbone.members):
        return backbone
    if len(keep) == 1:
        return next(iter(keep.values()))
    return BackboneEnsemble(keep, image_size=backbone.image_size)
