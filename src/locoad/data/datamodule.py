"""LightningDataModule for LOCO-layout data (MVTec LOCO AD, synthetic, or a user's own)."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from locoad.data.dataset import LocoDataset
from locoad.data.ground_truth import LocoGroundTruth, check_mask_sizes
from locoad.data.layout import EVAL_SPLITS, DataLayoutError, Sample, category_dir, list_split
from locoad.errors import ConfigError, is_whole_number

log = logging.getLogger(__name__)


SHOT_DRAWS = ("numpy", "torch")


def select_shots(samples: list[Sample], k_shot: int | None, seed: int, draw: str = "numpy") -> list[Sample]:
    """Draw ``k_shot`` training images reproducibly; ``None`` takes all (full-shot).

    A fixed permutation per seed makes smaller shot sets prefixes of larger ones, so the
    reference (first) image is the same for 1, 2, 4 and 8 shots. ``draw="numpy"`` (default):
    ``np.random.default_rng(seed).permutation(n)``; ``"torch"``: the VAND few-shot protocol's
    ``torch.manual_seed(seed); torch.randperm(n)`` (on a private generator: same permutation,
    global RNG untouched), ``n`` the training images sorted by file name.
    """
    if draw not in SHOT_DRAWS:
        raise DataLayoutError(f"data.shot_draw={draw!r}; use one of {', '.join(SHOT_DRAWS)}")
    if k_shot is None:
        return list(samples)
    check_k_shot(k_shot)
    if k_shot > len(samples):
        raise DataLayoutError(
            f"data.k_shot={k_shot} but only {len(samples)} training images exist; "
            f"use data.k_shot<={len(samples)} or data.k_shot=null for full-shot"
        )
    if draw == "torch":
        order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed))[:k_shot].tolist()
    else:
        order = np.random.default_rng(seed).permutation(len(samples))[:k_shot]
    return [samples[i] for i in order]


def check_k_shot(k_shot: int | None) -> None:
    """``k_shot`` is a whole number >= 1 or ``None``; 0 must not silently mean full-shot."""
    if k_shot is None:
        return
    if not is_whole_number(k_shot, 1):
        raise DataLayoutError(
            f"data.k_shot must be a whole number >= 1 (shots per category) or null for full-shot "
            f"(every training image), got {k_shot!r}"
        )


def warn_missing_ground_truth(samples: list[Sample], show: int = 3) -> None:
    """One warning for anomalous images without a ground-truth mask folder: their mask would be
    empty, i.e. "perfectly normal" pixels, so the models leave them out of the pixel metrics."""
    missing = [s.path for s in samples if s.label == 1 and not s.masks]
    if missing:
        head = ", ".join(str(p) for p in missing[:show]) + (", ..." if len(missing) > show else "")
        log.warning(
            "%d anomalous %s images have no ground-truth masks (ground_truth/<type>/<image id>/*.png), "
            "e.g. %s: they count in the image metrics but are left out of the pixel metrics",
            len(missing), samples[0].split, head,
        )


# The data settings that decide which shots a model is fitted on (kept in its checkpoints).
FITTED_ON = ("category", "k_shot", "seed", "shot_draw")


class LocoDataModule(L.LightningDataModule):
    """Train = the k shots (reference first), validation = validation/good, test = test/*.

    ``eval_split="tune"`` makes the test stage read the labelled tuning split ``tune/*`` (masks
    in ``ground_truth_tune/``) instead of ``test/*``: sweeps that choose hyper-parameters (e.g.
    fusion weights with Optuna) score on it, and never see the test set. ``synthetic`` (a dict of :func:`locoad.data.synthetic.generate` kwargs) generates the data
    into ``root`` on first use; leave it ``None`` for data on disk.
    """

    def __init__(
        self,
        root: str,
        category: str,
        k_shot: int | None = 4,
        seed: int = 0,
        image_size: int = 518,
        batch_size: int = 8,
        num_workers: int = 0,
        synthetic: dict | None = None,
        eval_split: str = "test",
        shot_draw: str = "numpy",
        bit_depth: int | None = None,
    ):
        super().__init__()
        if eval_split not in EVAL_SPLITS:
            raise DataLayoutError(
                f"data.eval_split={eval_split!r}; use 'test' (the test set) or 'tune' (a labelled "
                "tuning split, for choosing hyper-parameters)"
            )
        check_k_shot(k_shot)  # before any data is generated or read
        # Else a DataLoader worker fails on the first image, with a traceback
        for key, value, low in (("image_size", image_size, 1), ("batch_size", batch_size, 1),
                                ("num_workers", num_workers, 0)):
            if not is_whole_number(value, low):
                raise ConfigError(f"data.{key} must be a whole number >= {low}, got {value!r}")
        if not is_whole_number(seed, 0):
            # null drew other shots on every run, under one name in checkpoints and reports
            raise ConfigError(f"data.seed must be a whole number >= 0 (it draws the shots), got {seed!r}")
        if bit_depth is not None and not (is_whole_number(bit_depth, 9) and bit_depth <= 16):
            raise ConfigError(f"data.bit_depth must be the bits of a 16-bit file's values (9-16), or null "
                              f"for the full 16-bit range; got {bit_depth!r}")
        self.bit_depth = bit_depth
        self.eval_split = eval_split
        if shot_draw not in SHOT_DRAWS:
            raise DataLayoutError(f"data.shot_draw={shot_draw!r}; use one of {', '.join(SHOT_DRAWS)}")
        self.shot_draw = shot_draw
        self.root = Path(root).expanduser()
        self.category = category
        self.k_shot = k_shot
        self.seed = seed
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.synthetic = dict(synthetic) if synthetic else None
        self._splits: dict[str, list[Sample]] | None = None
        self._ground_truth: LocoGroundTruth | None = None

    def prepare_data(self) -> None:
        if self.synthetic is not None:
            from locoad.data.synthetic import generate

            generate(self.root, **{"categories": [self.category], **self.synthetic})  # this one only

    @property
    def splits(self) -> dict[str, list[Sample]]:
        if self._splits is None:
            self.prepare_data()
            cdir = category_dir(self.root, self.category)
            train = list_split(cdir, "train")
            if not train:  # full-shot would fit on nothing; k shots would ask for k <= 0
                raise DataLayoutError(f"{cdir / 'train' / 'good'} holds no image: put the category's good "
                                      "training images there (PNG, JPEG, BMP or TIFF)")
            self._splits = {
                "train": select_shots(train, self.k_shot, self.seed, self.shot_draw),
                "validation": list_split(cdir, "validation"),
                # the test stage's samples: test/ or, with eval_split=tune, tune/
                "test": list_split(cdir, self.eval_split),
            }
            warn_missing_ground_truth(self._splits["test"])
            check_mask_sizes(self._splits["test"])  # before any model work, not at the metrics
            log.info(
                "data %s/%s: %d shots, %d validation, %d %s",
                self.root, self.category, len(self._splits["train"]), len(self._splits["validation"]),
                len(self._splits["test"]), self.eval_split,
            )
        return self._splits

    def ground_truth(self) -> LocoGroundTruth:
        """Ground-truth regions and defect types of the test stage's samples (read lazily)."""
        if getattr(self, "_ground_truth", None) is None:
            self._ground_truth = LocoGroundTruth(self.splits["test"], category_dir(self.root, self.category))
        return self._ground_truth

    def setup(self, stage: str | None = None) -> None:
        _ = self.splits  # fail early, before any model work, on a bad layout

    # -- checkpoint: what a fitted model was fitted on (Lightning stores it beside the model) ----
    def state_dict(self) -> dict:
        return {key: getattr(self, key) for key in FITTED_ON}

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint tested (or resumed) on another category or shot draw would score one
        product's shots against another's images, and the run's config.yaml would name the wrong
        ones: raise instead."""
        differ = [f"data.{k}={state[k]} (this run: {getattr(self, k)})" for k in FITTED_ON
                  if k in state and state[k] != getattr(self, k)]
        if differ:
            raise ConfigError(f"this checkpoint was fitted on {', '.join(differ)}: test it with the data "
                              "settings it was fitted with, or fit again (train=true)")

    def dataset(self, split: str) -> LocoDataset:
        return LocoDataset(self.splits[split], self.image_size, self.bit_depth)

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=False,  # order matters: the first shot is the alignment reference
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
