"""One memory bank of every shot patch, shared by the exact patch scores.

Class-agnostic, foreground and class-aware patch scores search the same shot patches: their
banks and query groups are row/column subsets of one (test patches x shot patches) cosine
similarity matrix. Computing that product once per image (and once per held-out shot for the
leave-one-out calibration) instead of once per score removes most of the non-model cost of a
test image, and one bank instead of three takes a third of the memory. Results are identical
to each score's own ``fit``/``score`` (tests check this). With a coreset, one greedy k-center
selection runs over the shared bank (not one per score and group), so the similarity product
shrinks for all three scores at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from locoad.components.coreset import greedy_coreset
from locoad.components.knn import (
    LabelGroups,
    apply_keeping_unit_rows,
    grouped_nn_cosine_distance,
    nearest_other_shot,
    normalize_bank,
    subset_unit_rows,
)
from locoad.features.base import FeatureScore, PatchScore
from locoad.types import ParsedImage


class SharedPatchBank:
    """Memory of several :class:`PatchScore` s with the same bank settings (:func:`bank_settings`)."""

    def __init__(self, features: dict[str, PatchScore], shots: list[ParsedImage], owners: list[int] | None = None):
        """``owners``: the shot each image came from (default: each its own), so that the
        leave-one-out of a shot also leaves out its moved copies (``model.shot_augment``)."""
        if not features:
            raise ValueError("no patch scores to share a bank")
        if not shots:
            raise ValueError("no training shots")
        first = next(iter(features.values()))
        if any(bank_settings(f) != bank_settings(first) for f in features.values()):
            # share_patch_banks groups the scores by bank_settings, so only a bug gets here
            raise ValueError("a shared bank needs patch scores with the same half, chunk_size, coreset settings, backbone_part and local_scale (cap)")
        self.features = dict(features)
        # A coreset is chosen over every shot's rows, so masking a held-out shot's rows leaves a
        # memory that is not the other shots' coreset: the leave-one-out refits from these.
        self.sources = None if first.exact else (list(shots), list(owners or range(len(shots))))
        self.half, self.chunk_size, self.local_mode = first.half, first.chunk_size, first.local_scale
        self.local_cap = first.local_scale_cap
        labels = {n: torch.cat([f.labels(p).cpu() for p in shots]) for n, f in self.features.items()}
        if owners is None:
            owners = list(range(len(shots)))
        if len(owners) != len(shots):
            raise ValueError(f"{len(owners)} owners for {len(shots)} shot images")
        def per_row(values: list[int]) -> torch.Tensor:  # one value per shot image -> one per patch row
            return torch.cat([torch.full((p.class_grid.numel(),), v, dtype=torch.long) for v, p in zip(values, shots)])

        owner = per_row(owners)
        used = torch.stack([lab >= 0 for lab in labels.values()]).any(0)
        # Row order: rows some score groups first, then by each score's labels, so that every
        # group (all patches, the foreground, each class) is a contiguous run of rows and the
        # search slices the similarity matrix instead of gathering columns. Rows no score
        # groups (background when only foreground scores are on) go last: the common query
        # reads a prefix; they stay for the "no group at all" fallback.
        keys = [lab.numpy() for lab in reversed(list(labels.values()))] + [(~used).numpy()]
        # Scores that also query the test patches that look like a part (ForegroundPatchScore.
        # lookalikes) search the shots' foreground rows as one more labelling of the same product;
        # sorted last, those rows lie in a few runs (one per group of the other keys), not scattered.
        self.lookalike = [n for n, f in self.features.items() if getattr(f, "lookalikes", False)]
        on_part = torch.cat([p.foreground_grid.flatten().cpu() for p in shots]) if self.lookalike else None
        if on_part is not None:
            keys.insert(0, on_part.numpy())
        order = torch.from_numpy(np.lexsort(keys))
        position = torch.empty_like(order)
        position[order] = torch.arange(len(order))
        feat0 = first.features_of(shots[0])
        bank = torch.empty((len(order), feat0.shape[0]), dtype=feat0.dtype, device=feat0.device)
        start = 0
        for p in shots:  # written shot by shot: a full-shot bank is never held twice
            x = first.features_of(p).flatten(1).T
            bank.index_copy_(0, position[start : start + len(x)].to(bank.device), x)
            start += len(x)
        self.bank = normalize_bank(bank, self.half, inplace=True)
        self.labels = {n: lab[order].to(feat0.device) for n, lab in labels.items()}
        self.owner = owner[order].numpy()  # host: only the leave-one-out (fit time) reads it
        # The foreground of each shot as taken (its first image; moved copies follow it), by owner:
        # scores that read where the shots have parts (ForegroundPatchScore.expected) get these.
        first_of: dict[int, ParsedImage] = {}
        for o, p in zip(owners, shots):
            first_of.setdefault(o, p)
        self.shot_owner = np.array(list(first_of))
        self.shot_foreground = torch.stack([p.foreground_grid for p in first_of.values()]).to(feat0.device)
        self.n_used = int(used.sum())
        on_part = None if on_part is None else on_part[order]
        # local_scale: each grouped row's best similarity to every other shot's rows of the same
        # copy (the shot as taken, or its j-th moved copy: images of one owner come in move
        # order); the ungrouped tail (a fallback only) keeps no scale.
        self.other_best = None
        if first.local_scale != "none" and len(set(owners)) >= 3:
            copy = per_row([owners[:i].count(o) for i, o in enumerate(owners)])[order]
            self.scale_shots, shot_index = np.unique(self.owner, return_inverse=True)  # columns of other_best
            shot_index = torch.from_numpy(shot_index)
            used_rows = slice(0, self.n_used)
            self.other_best = torch.full((len(order), len(self.scale_shots)), float("-inf"), device=self.bank.device)
            # every shot a column, those without a searched row too (a blank trailing shot)
            self.other_best[used_rows] = nearest_other_shot(self.bank[used_rows], shot_index[used_rows],
                                                            copy[used_rows], len(self.scale_shots), self.half)
        if not first.exact and self.n_used:
            # Greedy k-center over the grouped rows (PatchCore); ascending indices keep every
            # group a contiguous run. The ungrouped tail stays whole (fallback only).
            ratio = first.coreset_ratio if first.coreset_ratio is not None else 1.0
            keep = greedy_coreset(self.bank[: self.n_used].float(), ratio=ratio, max_n=first.coreset_max,
                                  projection_dim=first.coreset_projection_dim, seed=first.coreset_seed)
            keep = torch.cat([keep.sort().values.to(self.bank.device),
                              torch.arange(self.n_used, len(self.owner), device=self.bank.device)])
            self.bank = subset_unit_rows(self.bank, keep)
            self.labels = {n: lab[keep.to(lab.device)] for n, lab in self.labels.items()}
            self.owner = self.owner[keep.cpu().numpy()]  # (no local_scale with a coreset: PatchScore)
            on_part = None if on_part is None else on_part[keep.cpu()]
            self.n_used = int((keep < self.n_used).sum())
        self.part_rows = None
        if on_part is not None:
            self.part_rows = torch.where(on_part, 0, -1).long().to(self.bank.device)
            self.part_groups = LabelGroups.of(self.part_rows)
        # Host copies and the bank rows of every group, found once: the search plans nothing
        # per image (no host synchronisation on a GPU).
        self._host_labels = {n: lab.cpu().numpy() for n, lab in self.labels.items()}
        self.groups = [LabelGroups.of(lab) for lab in self.labels.values()]
        # Every score has grouped rows: searching the prefix of grouped rows always suffices.
        self._prefix_always = all(g.labels for g in self.groups)

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Pass every tensor through ``fn`` (the module's ``.to()``): the bank moves with the model."""
        self.bank = apply_keeping_unit_rows(self.bank, fn)
        self.labels = {n: fn(lab) for n, lab in self.labels.items()}
        self.shot_foreground = fn(self.shot_foreground)
        self.groups = [g.apply(fn) for g in self.groups]
        if self.other_best is not None:
            self.other_best = fn(self.other_best)
        if self.part_rows is not None:
            self.part_rows, self.part_groups = fn(self.part_rows), self.part_groups.apply(fn)

    def bank_scale(self, exclude_shot: int | None = None) -> torch.Tensor | None:
        """(M,) each row's distance to the other shots (``local_scale``: the nearest row of any, or
        the mean over the shots of each one's nearest row), the held-out shot left out too; 0
        where no other shot is left; capped at ``local_scale_cap``'s quantile of the searched rows'
        scales; None without local_scale."""
        if self.other_best is None:
            return None
        best = self.other_best
        if exclude_shot is not None:
            best = best[:, torch.from_numpy(self.scale_shots != exclude_shot).to(best.device)]
        if self.local_mode == "mean":
            other = ~torch.isinf(best)
            scale = torch.where(other, 1.0 - best, torch.zeros_like(best)).sum(1) / other.sum(1).clamp_min(1)
        else:
            top = best.amax(dim=1)
            scale = torch.where(torch.isinf(top), torch.zeros_like(top), 1.0 - top)
        if self.local_cap is not None:  # the quantile of the searched grouped rows' scales
            searched = self.owner[: self.n_used] != exclude_shot
            pool = scale[: self.n_used][torch.from_numpy(searched).to(scale.device)]
            if len(pool):
                scale = scale.clamp_max(torch.quantile(pool, self.local_cap))
        return scale

    def distances(self, parsed: ParsedImage, exclude_shot: int | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per score: (per-patch distance (h*w,), per-patch group label (h*w,))."""
        return {n: (d[0], lab[0]) for n, (d, lab) in self.distances_batch([parsed], exclude_shot).items()}

    def distances_batch(self, parsed: list[ParsedImage], exclude_shot: int | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per score: (distances (B, h*w), group labels (B, h*w)) of a batch of images, from one
        similarity product for the whole batch."""
        shot_fg = self.shot_foreground if exclude_shot is None else self.shot_foreground[
            torch.from_numpy(self.shot_owner != exclude_shot).to(self.shot_foreground.device)]
        q_labels = {n: torch.stack([f.query_labels(p, shot_fg) for p in parsed]) for n, f in self.features.items()}
        # A lookalike score searches every test patch (its memory is every shot patch, label 1),
        # its own queries kept aside; one more labelling finds each patch's nearest part row.
        own_queries = {n: q_labels[n] for n in self.lookalike}
        for n in self.lookalike:
            q_labels[n] = torch.ones_like(q_labels[n])
        exclude = None if exclude_shot is None else torch.from_numpy(self.owner == exclude_shot).to(self.bank.device)
        # The ungrouped tail of the bank is only needed where a score finds no grouped row at all.
        full = len(self.owner)
        m = self.n_used if self._prefix_suffices(q_labels, exclude_shot) else full
        scale = self.bank_scale(exclude_shot)
        source = next(iter(self.features.values()))  # every score of a bank reads the same part
        flat = torch.cat([source.features_of(p).flatten(1).T for p in parsed])
        query_labels = [lab.flatten() for lab in q_labels.values()]
        bank_labels, groups = [lab[:m] for lab in self.labels.values()], list(self.groups)
        search_parts = bool(self.lookalike) and bool(self.part_groups.labels)  # no shot foreground: no part rows
        if search_parts and exclude is not None:
            # Leave-one-out as a refit on the other shots: where only the held-out shot has part
            # rows there are none to search (the search would fall back to every row, so every
            # patch would look like a part). A host check, at fit time only.
            search_parts = bool(((self.part_rows[:m] >= 0) & ~exclude[:m]).any())
        if search_parts:
            query_labels.append(torch.zeros_like(query_labels[0]))
            bank_labels.append(self.part_rows[:m])
            groups.append(self.part_groups)
        dists = grouped_nn_cosine_distance(
            flat,
            self.bank[:m] if m < full else self.bank,
            query_labels,
            bank_labels,
            exclude=None if exclude is None else exclude[:m],
            chunk_size=self.chunk_size,
            half=self.half,
            groups=groups,  # grouped rows all lie in the prefix: the same groups for any m
            bank_scale=None if scale is None else scale[:m],
        )
        out = {n: (d.view(len(parsed), -1), q_labels[n]) for n, d in zip(self.features, dists)}
        for n in self.lookalike:
            d, own = out[n][0], own_queries[n]
            # A patch looks like a part when its nearest shot patch is a part row (the nearest
            # part row is then the nearest row).
            part = (dists[-1].view_as(d) <= d) if search_parts else torch.zeros_like(own, dtype=torch.bool)
            out[n] = (d, torch.where((own >= 0) | part, torch.ones_like(own), own))
        return out

    def _prefix_suffices(self, q_labels: dict[str, torch.Tensor], exclude_shot: int | None) -> bool:
        if exclude_shot is None:
            return self._prefix_always
        keep = self.owner != exclude_shot  # leave-one-out, at fit time: host checks are fine
        for n, ql in q_labels.items():
            if (ql >= 0).any() and not (self._host_labels[n][keep] >= 0).any():
                return False
        return True

    def score(self, parsed: ParsedImage, exclude_shot: int | None = None) -> dict[str, FeatureScore]:
        return {
            n: self.features[n].aggregate(parsed, d, lab)
            for n, (d, lab) in self.distances(parsed, exclude_shot).items()
        }

    def score_batch(self, parsed: list[ParsedImage]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per score: image scores (B,) and anomaly maps (B, h, w), on the device."""
        h, w = parsed[0].features.shape[-2:]
        num_groups = max(p.num_classes for p in parsed)
        out = {}
        for n, (d, lab) in self.distances_batch(parsed).items():
            value, amap = self.features[n].aggregate_batch(d, lab, num_groups)
            out[n] = (value, amap.view(len(parsed), h, w))
        return out

    def loo_scores(self, shots: list[ParsedImage], held: list[int]) -> dict[str, np.ndarray]:
        """Each held-out shot against the bank without its own rows (exact leave-one-out); with a
        coreset, against a bank refitted on the other shots (and their moved copies)."""
        if self.sources is not None:
            images, owners = self.sources
            rows = [SharedPatchBank(self.features, [p for p, o in zip(images, owners) if o != i],
                                    [o for o in owners if o != i]).score(shots[i]) for i in held]
        else:
            rows = [self.score(shots[i], exclude_shot=i) for i in held]
        return {n: np.array([r[n].value for r in rows]) for n in self.features}


def bank_settings(f: PatchScore) -> tuple:
    """Patch scores with equal settings can share one bank."""
    return (f.half, f.chunk_size, f.coreset_ratio, f.coreset_max, f.coreset_projection_dim, f.coreset_seed,
            f.backbone_part, f.local_scale, f.local_scale_cap)


def share_patch_banks(features: dict[str, object], shots: list[ParsedImage],
                      owners: list[int] | None = None) -> list[SharedPatchBank]:
    """One :class:`SharedPatchBank` per distinct :func:`bank_settings` among the patch scores
    (``owners``: see :class:`SharedPatchBank`)."""
    groups: dict[tuple, dict[str, PatchScore]] = {}
    for n, f in features.items():
        if isinstance(f, PatchScore):
            groups.setdefault(bank_settings(f), {})[n] = f
    return [SharedPatchBank(g, shots, owners) for g in groups.values()]
