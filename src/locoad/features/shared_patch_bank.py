"""One memory bank of every shot patch, shared by the exact patch scores.

Class-agnostic, foreground and class-aware patch scores search the same shot patches: their
banks and query groups are row/column subsets of one (test patches x shot patches) cosine
similarity matrix. Computing that product once per image (and once per held-out shot for the
leave-one-out calibration) instead of once per score removes most of the non-model cost of a
test image, and one bank instead of three takes a third of the memory. Results are identical
to each score's own ``fit``/``score`` (tests check this); coreset banks are per score and are
not shared.
"""

from __future__ import annotations

import numpy as np
import torch

from locoad.components.knn import grouped_nn_cosine_distance, normalize_bank
from locoad.features.base import FeatureScore, PatchScore
from locoad.types import ParsedImage


class SharedPatchBank:
    """Memory of several exact :class:`PatchScore` s with the same ``half`` and ``chunk_size``."""

    def __init__(self, features: dict[str, PatchScore], shots: list[ParsedImage]):
        if not features:
            raise ValueError("no patch scores to share a bank")
        if not shots:
            raise ValueError("no training shots")
        first = next(iter(features.values()))
        if any(not f.exact or (f.half, f.chunk_size) != (first.half, first.chunk_size) for f in features.values()):
            raise ValueError("a shared bank needs exact patch scores with the same half and chunk_size")
        self.features = dict(features)
        self.half, self.chunk_size = first.half, first.chunk_size
        labels = {n: torch.cat([f.labels(p).cpu() for p in shots]) for n, f in self.features.items()}
        owner = torch.cat([torch.full((p.class_grid.numel(),), i, dtype=torch.long) for i, p in enumerate(shots)])
        used = torch.stack([lab >= 0 for lab in labels.values()]).any(0)
        # Row order: rows some score groups first, then by each score's labels, so that every
        # group (all patches, the foreground, each class) is a contiguous run of rows and the
        # search slices the similarity matrix instead of gathering columns. Rows no score
        # groups (background when only foreground scores are on) go last: the common query
        # reads a prefix; they stay for the "no group at all" fallback.
        keys = [lab.numpy() for lab in reversed(list(labels.values()))] + [(~used).numpy()]
        order = torch.from_numpy(np.lexsort(keys))
        position = torch.empty_like(order)
        position[order] = torch.arange(len(order))
        first = shots[0].features
        bank = torch.empty((len(order), first.shape[0]), dtype=first.dtype, device=first.device)
        start = 0
        for p in shots:  # written shot by shot: a full-shot bank is never held twice
            x = p.features.flatten(1).T
            bank.index_copy_(0, position[start : start + len(x)].to(bank.device), x)
            start += len(x)
        self.bank = normalize_bank(bank, self.half, inplace=True)
        self.labels = {n: lab[order].to(first.device) for n, lab in labels.items()}
        self.owner = owner[order]
        self.n_used = int(used.sum())

    def distances(self, parsed: ParsedImage, exclude_shot: int | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per score: (per-patch distance (h*w,), per-patch group label (h*w,))."""
        q_labels = {n: f.labels(parsed) for n, f in self.features.items()}
        exclude = None if exclude_shot is None else (self.owner == exclude_shot).to(self.bank.device)
        # The unused tail of the bank is only needed where a score finds no grouped row at all.
        m = self.n_used if self._prefix_suffices(q_labels, exclude) else len(self.owner)
        flat = parsed.features.flatten(1).T
        dists = grouped_nn_cosine_distance(
            flat,
            self.bank[:m] if m < len(self.owner) else self.bank,
            list(q_labels.values()),
            [lab[:m] for lab in self.labels.values()],
            exclude=None if exclude is None else exclude[:m],
            chunk_size=self.chunk_size,
            half=self.half,
        )
        return {n: (d, q_labels[n]) for n, d in zip(self.features, dists)}

    def _prefix_suffices(self, q_labels: dict[str, torch.Tensor], exclude: torch.Tensor | None) -> bool:
        for n, ql in q_labels.items():
            if not (ql >= 0).any():
                continue
            bl = self.labels[n]
            if exclude is not None:
                bl = bl[~exclude.to(bl.device)]
            if not (bl >= 0).any():
                return False
        return True

    def score(self, parsed: ParsedImage, exclude_shot: int | None = None) -> dict[str, FeatureScore]:
        return {
            n: self.features[n].aggregate(parsed, d, lab)
            for n, (d, lab) in self.distances(parsed, exclude_shot).items()
        }

    def loo_scores(self, shots: list[ParsedImage], held: list[int]) -> dict[str, np.ndarray]:
        """Each held-out shot against the bank without its own rows (exact leave-one-out)."""
        rows = [self.score(shots[i], exclude_shot=i) for i in held]
        return {n: np.array([r[n].value for r in rows]) for n in self.features}


def share_patch_banks(features: dict[str, object], shots: list[ParsedImage]) -> list[SharedPatchBank]:
    """One :class:`SharedPatchBank` per (half, chunk_size) among the exact patch scores."""
    groups: dict[tuple[bool, int], dict[str, PatchScore]] = {}
    for n, f in features.items():
        if isinstance(f, PatchScore) and f.exact:
            groups.setdefault((f.half, f.chunk_size), {})[n] = f
    return [SharedPatchBank(g, shots) for g in groups.values()]
