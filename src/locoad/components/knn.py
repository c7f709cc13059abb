"""Exact nearest-neighbour search by chunked matrix products (no Python loop over patches),
and the top-% aggregation of its distances."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

# Banks known to have unit rows (made by normalize_bank), keyed by id: the search
# skips re-normalising them on every query. Weak values, so a freed bank leaves the registry
# and a new tensor reusing its id is not mistaken for it (the identity check below).
_UNIT_ROWS: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()
# Largest similarity block (elements) of a grouped search on a CPU: 16 MiB of float32.
CPU_BLOCK_ELEMENTS = 1 << 22


def has_unit_rows(bank: torch.Tensor) -> bool:
    """True if ``bank`` was made by :func:`normalize_bank` (and not modified in place since)."""
    return _UNIT_ROWS.get(id(bank)) is bank


@contextlib.contextmanager
def own_precision() -> Iterator[None]:
    """Autocast off (CPU and CUDA): the kNN products, segment means and vector scores run at
    their own dtype (:func:`compute_dtype`), whatever ``trainer.precision`` autocasts to."""
    with contextlib.ExitStack() as stack:
        for device_type in ("cpu", "cuda"):
            if torch.is_autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


def apply_keeping_unit_rows(bank: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn(bank)`` (e.g. a move to another device), still known to have unit rows if ``bank`` was."""
    out = fn(bank)
    if out is not bank and has_unit_rows(bank):
        _UNIT_ROWS[id(out)] = out
    return out


def compute_dtype(device: torch.device, half: bool) -> torch.dtype:
    """dtype of the similarity products: fp16 on CUDA when ``half``, else float32.

    CPUs without native bf16/fp16 units (e.g. AVX2-only) run half-precision matmuls about
    8x slower than float32, so on CPU ``half`` only halves the stored bank (see
    :func:`storage_dtype`) and every chunk is upcast for the product.
    """
    return torch.float16 if half and device.type == "cuda" else torch.float32


def storage_dtype(device: torch.device, half: bool) -> torch.dtype:
    """dtype to keep a memory bank in: fp16 on CUDA, bf16 on CPU (wide exponent, cheap upcast)."""
    if not half:
        return torch.float32
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def normalize_bank(bank: torch.Tensor, half: bool = False, chunk_size: int = 65536, inplace: bool = False) -> torch.Tensor:
    """Unit-normalise the rows of ``bank`` chunk by chunk (no full float32 copy of a half bank).

    ``inplace`` writes into ``bank`` itself when its dtype is already the storage dtype: a
    caller that owns the tensor (e.g. a fresh ``torch.cat``) then needs no second full copy,
    which matters for 350-image banks of several GiB.
    """
    dtype = storage_dtype(bank.device, half)
    out = bank if inplace and bank.dtype == dtype else torch.empty(bank.shape, dtype=dtype, device=bank.device)
    for j in range(0, bank.shape[0], chunk_size):
        out[j : j + chunk_size] = F.normalize(bank[j : j + chunk_size].float(), dim=-1)
    _UNIT_ROWS[id(out)] = out
    return out


def subset_unit_rows(bank: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Rows ``keep`` of a unit-normalised bank, still known to be unit-norm (no re-normalising)."""
    out = bank[keep]
    if _UNIT_ROWS.get(id(bank)) is bank:
        _UNIT_ROWS[id(out)] = out
    return out


Span = list[tuple[int, int]] | torch.Tensor
MAX_RUNS = 64  # a label in more runs of rows than this is searched by index


@dataclass
class LabelGroups:
    """The bank rows of every label of one labelling, found once per bank on the host so that a
    search needs no host synchronisation: ``spans[i]`` lists the (start, end) runs of label
    ``labels[i]``'s rows, one when they are contiguous (:class:`SharedPatchBank` sorts them so, and
    the search slices), up to ``MAX_RUNS``, else it is an index tensor; ``lut`` maps a label to its
    position in ``labels`` (-1: no bank row has it)."""

    labels: list[int]
    spans: list[Span]
    lut: torch.Tensor
    # Equal for two labellings with the same runs of rows (their searches are one); None where a
    # label's rows are an index tensor.
    key: str | None = field(init=False)

    def __post_init__(self) -> None:
        self.key = None if any(isinstance(s, torch.Tensor) for s in self.spans) else repr(self.spans)

    @classmethod
    def of(cls, bank_labels: torch.Tensor) -> LabelGroups:
        host = bank_labels.cpu()
        labels = torch.unique(host[host >= 0]).tolist()
        spans: list[Span] = []
        for g in labels:
            idx = torch.nonzero(host == g).squeeze(1)
            breaks = (torch.nonzero(idx.diff() != 1).squeeze(1) + 1).tolist()
            if len(breaks) < MAX_RUNS:
                starts, ends = [0, *breaks], [*breaks, len(idx)]
                spans.append([(int(idx[a]), int(idx[b - 1]) + 1) for a, b in zip(starts, ends)])
            else:
                spans.append(idx.to(bank_labels.device))
        lut = torch.full((max(labels, default=-1) + 2,), -1, dtype=torch.long)
        lut[torch.tensor(labels, dtype=torch.long)] = torch.arange(len(labels))
        return cls(labels, spans, lut.to(bank_labels.device))

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> LabelGroups:
        """The same groups with every tensor passed through ``fn`` (a device move)."""
        spans = [fn(s) if isinstance(s, torch.Tensor) else s for s in self.spans]
        return LabelGroups(self.labels, spans, fn(self.lut))


def grouped_nn_cosine_distance(
    queries: torch.Tensor,
    bank: torch.Tensor,
    query_labels: Sequence[torch.Tensor],
    bank_labels: Sequence[torch.Tensor],
    exclude: torch.Tensor | None = None,
    chunk_size: int = 4096,
    half: bool = False,
    groups: Sequence[LabelGroups] | None = None,
    bank_scale: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Nearest-neighbour cosine distance under several labellings, from one similarity product.

    queries: (N, D); bank: (M, D); ``query_labels[f]`` (N,) and ``bank_labels[f]`` (M,) int
    labels of labelling ``f`` (< 0: not in any group). For every query row with a label >= 0,
    returns 1 - max cosine similarity to the bank rows with the *same* label; a label that no
    bank row has falls back to every bank row with a label >= 0, and if there is none, to the
    whole bank. ``exclude`` (M,) bool drops bank rows (leave-one-out). Rows with label < 0 get
    NaN. This is what class-agnostic, foreground and class-aware patch scores need: their
    groups are row/column subsets of one query x bank similarity matrix, so the matrix product,
    the dominant cost, is done once instead of once per score. Queries of several images can
    be stacked into one call (one product for a whole batch).

    ``groups`` (:meth:`LabelGroups.of` of each ``bank_labels``, kept with the bank) makes the
    search free of host synchronisation: every step is a device op, so a CUDA search never
    waits for the host. Products run at :func:`compute_dtype`, never under autocast.

    ``bank_scale`` (M,): each bank row's own distance scale (e.g. its distance to the other
    shots, :func:`nearest_other_shot`); the search then returns min over rows of
    (distance - scale), which can be negative, instead of the plain nearest distance.
    """
    if len(query_labels) != len(bank_labels):
        raise ValueError("query_labels and bank_labels must have one entry per labelling")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if exclude is not None:
        # Leave-one-out (fit time): host checks are cheap here.
        if not any(bool((ql >= 0).any()) for ql in query_labels):
            return [torch.full((queries.shape[0],), float("nan"), device=queries.device) for _ in query_labels]
        if bool(exclude.all()):
            raise ValueError("empty memory bank")
    if bank.shape[0] == 0:
        raise ValueError("empty memory bank")
    if queries.shape[-1] != bank.shape[-1]:
        raise ValueError(f"feature dims differ: queries {queries.shape[-1]}, bank {bank.shape[-1]}")
    groups = [LabelGroups.of(bl) for bl in bank_labels] if groups is None else list(groups)
    rows = None
    if queries.device.type == "cpu" and query_labels:
        # A query no labelling groups (the background, where only foreground scores share a bank)
        # is NaN whatever the search finds: on a CPU it stays out of the product. A GPU takes
        # every row, which keeps its search free of host synchronisation.
        query_labels = [ql.to(queries.device) for ql in query_labels]
        active = torch.stack(query_labels).ge(0).any(0)
        if not bool(active.all()):
            rows = active.nonzero().squeeze(1)
            if not len(rows):
                return [torch.full((queries.shape[0],), float("nan")) for _ in query_labels]
            query_labels = [ql.index_select(0, rows) for ql in query_labels]
    with own_precision():
        found = _grouped_search(queries if rows is None else queries.index_select(0, rows), bank, query_labels,
                                groups, exclude, chunk_size, half, bank_scale)
    if rows is None:
        return found
    return [torch.full((queries.shape[0],), float("nan"), dtype=d.dtype).index_copy_(0, rows, d) for d in found]


def _grouped_search(queries, bank, query_labels, groups, exclude, chunk_size, half, bank_scale=None) -> list[torch.Tensor]:
    m, n = bank.shape[0], queries.shape[0]
    dev = queries.device
    keep = None if exclude is None else ~exclude.to(bank.device)
    dtype = compute_dtype(dev, half)
    q = F.normalize(queries.float(), dim=-1).to(dtype)
    unit = has_unit_rows(bank)
    # The whole-bank maximum is only a fallback: needed when rows are excluded or a labelling
    # has no labelled bank row at all. A labelling with one label on every row (a class-agnostic
    # score) finds it anyway.
    need_whole = keep is not None or not all(g.labels for g in groups)
    whole_key = repr([[(0, m)]])
    # Best similarity per query to each bank group of each labelling, and to the whole bank.
    # Labellings with the same row ranges (every row, for a class-agnostic score and a foreground
    # score whose memory is every patch) share one search.
    group_best: list[torch.Tensor] = []
    distinct: list[int] = []  # the labellings searched; the others read a twin's result
    searched: dict[str, int] = {}
    for g in groups:
        if g.key in searched:
            group_best.append(group_best[searched[g.key]])
            continue
        if g.key is not None:
            searched[g.key] = len(group_best)
        distinct.append(len(group_best))
        group_best.append(torch.full((n, max(len(g.labels), 1)), float("-inf"), device=dev))
    whole = torch.full((n,), float("-inf"), device=dev)
    whole_from = searched.get(whole_key) if need_whole else None
    need_whole = need_whole and whole_from is None
    # A batch of images has many query rows: on a CPU, blocks of them keep each similarity
    # block small enough for the caches (16 MiB); a GPU takes the batch at once.
    q_block = n if dev.type == "cuda" else max(1, CPU_BLOCK_ELEMENTS // max(1, min(m, chunk_size)))
    for j in range(0, m, chunk_size):
        bj = bank[j : j + chunk_size]
        bj = (bj if unit else F.normalize(bj.float(), dim=-1)).to(dtype)
        e = j + bj.shape[0]
        for r in range(0, n, q_block):
            # (bank rows x queries): a bank group is a band of whole rows, so its maximum reads
            # contiguous memory (a band of columns would stride through every row).
            sim = (bj @ q[r : r + q_block].T).float()
            if bank_scale is not None:
                sim.add_(bank_scale[j:e, None])  # max of (similarity + scale) = min of (distance - scale)
            if keep is not None:
                sim.masked_fill_(~keep[j:e][:, None], float("-inf"))
            if need_whole:
                torch.maximum(whole[r : r + q_block], sim.amax(dim=0), out=whole[r : r + q_block])
            for f in distinct:
                lg, best = groups[f], group_best[f]
                for i, span in enumerate(lg.spans):
                    col = best[r : r + q_block, i]
                    if isinstance(span, torch.Tensor):
                        idx = span[(span >= j) & (span < e)] - j  # rows in many runs (other callers)
                        if len(idx):
                            torch.maximum(col, sim.index_select(0, idx).amax(dim=0), out=col)
                        continue
                    for a, b in span:
                        a, b = max(a, j), min(b, e)
                        if a < b:
                            torch.maximum(col, sim[a - j : b - j].amax(dim=0), out=col)
    if whole_from is not None:
        whole = group_best[whole_from][:, 0]
    out = []
    for ql, lg, best in zip(query_labels, groups, group_best):
        ql = ql.to(dev)
        pos = lg.lut.to(dev)[ql.clamp(0, len(lg.lut) - 1)]
        pos = torch.where((ql >= 0) & (ql < len(lg.lut)), pos, torch.full_like(pos, -1))
        own = best.gather(1, pos.clamp_min(0)[:, None])[:, 0]
        # A label no (remaining) bank row has: every labelled bank row; none at all: the whole bank.
        labelled = best.amax(dim=1) if lg.labels else whole
        labelled = torch.where(torch.isinf(labelled), whole, labelled)
        sim_best = torch.where((pos >= 0) & ~torch.isinf(own), own, labelled)
        d = 1.0 - sim_best
        d = d if bank_scale is not None else d.clamp_min(0.0)
        out.append(torch.where(ql >= 0, d, torch.full_like(d, float("nan"))))
    return out


def _sorted_by_group(values: torch.Tensor, groups: torch.Tensor, num_groups: int,
                     descending: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every value of (B, n) ``values`` as float64, sorted by (row, group) key and by value
    within a key; with each key's start and count. Keys are ``row * num_groups + group``, and one
    extra key last for the ungrouped values (``groups`` < 0)."""
    b = values.shape[0]
    key = torch.where(groups >= 0, groups + num_groups * torch.arange(b, device=groups.device)[:, None],
                      torch.full_like(groups, b * num_groups)).flatten()
    v = values.flatten().double()
    order = torch.argsort(v, descending=descending, stable=True)
    order = order[torch.argsort(key[order], stable=True)]
    counts = torch.zeros(b * num_groups + 1, dtype=torch.long, device=v.device).scatter_add_(0, key, torch.ones_like(key))
    return v[order], torch.cumsum(counts, 0) - counts, counts


def worst_group_top_percent(values: torch.Tensor, groups: torch.Tensor, num_groups: int, percent: float) -> torch.Tensor:
    """Per row of (B, n) ``values``: the largest, over the groups of that row, of the mean of
    the group's top ``percent`` % values (at least one value); ``groups`` (B, n) in
    0..``num_groups`` - 1, < 0 = in no group. Rows with no grouped value get -inf.

    The mean of the top ``percent`` % of every group of every row at once, device ops only: one
    sort, counts and a float64 cumulative sum, no host synchronisation per group or image.
    """
    sv, start, counts = _sorted_by_group(values, groups, num_groups, descending=True)
    k = torch.round(counts.double() * percent / 100.0).long().clamp_min(1)  # as round(n * percent / 100)
    csum = torch.cat([sv.new_zeros(1), torch.cumsum(sv, 0)])
    end = (start + k).clamp_max(len(sv))
    means = (csum[end] - csum[start]) / k
    means = torch.where(counts > 0, means, torch.full_like(means, float("-inf")))
    return means[:-1].view(values.shape[0], num_groups).amax(dim=1).float()


def group_median(values: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(B, ``num_groups``) median of each group's values in every row of (B, n) ``values``
    (``groups`` as in :func:`worst_group_top_percent`; the mean of the two middle values of an
    even count, as ``torch.quantile``); NaN for a group with no value. Device ops only."""
    sv, start, counts = _sorted_by_group(values, groups, num_groups, descending=False)
    lo = (start + (counts - 1).clamp_min(0) // 2).clamp_max(len(sv) - 1)
    hi = (start + counts // 2).clamp_max(len(sv) - 1)
    med = torch.where(counts > 0, (sv[lo] + sv[hi]) / 2, torch.full_like(start, float("nan"), dtype=sv.dtype))
    return med[:-1].view(values.shape[0], num_groups).to(values.dtype)


def nearest_other_shot(bank: torch.Tensor, owner: torch.Tensor, copy: torch.Tensor, n_shots: int,
                       half: bool = False) -> torch.Tensor:
    """(M, S = ``n_shots``) best cosine similarity of every bank row to the rows of each shot
    0..S-1 that are the same copy (``copy``: 0 the shot as taken, j its j-th moved copy); -inf for
    the row's own shot (``owner``) and for shots without such a copy (a shot with no row at all
    too: S is given, not read from ``owner``). One product per pair of shots and copy."""
    owner, copy = owner.to(bank.device), copy.to(bank.device)
    best = torch.full((bank.shape[0], n_shots), float("-inf"), device=bank.device)
    dtype = compute_dtype(bank.device, half)
    unit = has_unit_rows(bank)
    for c in torch.unique(copy).tolist():
        rows = {s: ((copy == c) & (owner == s)).nonzero().squeeze(1) for s in range(n_shots)}
        x = {s: bank.index_select(0, r) for s, r in rows.items() if len(r)}
        x = {s: (v if unit else F.normalize(v.float(), dim=-1)).to(dtype) for s, v in x.items()}
        for s, xs in x.items():
            for t, xt in x.items():
                if t != s:
                    best[rows[s], t] = (xs @ xt.T).float().amax(dim=1)
    return best
