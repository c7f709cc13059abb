"""Segment Anything (SAM) automatic mask generation as a :class:`Segmenter`."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from locoad.backbones.base import check_state_dict, read_checkpoint
from locoad.device import resolve_device
from locoad.errors import CheckpointNotFoundError, ConfigError, checkpoint_missing, is_whole_number
from locoad.nested import is_number
from locoad.segmenters.base import Segmenter

# Official checkpoint file per architecture (https://github.com/facebookresearch/segment-anything).
SAM_CHECKPOINTS = {
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
}
SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/{}"
# A tiny architecture for offline tests only: no official weights exist for it.
TEST_MODEL_TYPE = "vit_tiny"


def build_sam_vit_tiny(checkpoint: str | None = None) -> torch.nn.Module:
    """A tiny SAM (2-block, 32-dim image encoder) built with segment_anything's own builder.

    Same signature as ``sam_model_registry`` entries. Prompt encoder and mask decoder keep their
    official sizes (``_build_sam`` fixes them); the image input size stays 1024.
    """
    from segment_anything.build_sam import _build_sam

    return _build_sam(
        encoder_embed_dim=32,
        encoder_depth=2,
        encoder_num_heads=2,
        encoder_global_attn_indexes=[1],
        checkpoint=checkpoint,
    )


def _builders() -> dict[str, Any]:
    from segment_anything import sam_model_registry

    return {**sam_model_registry, TEST_MODEL_TYPE: build_sam_vit_tiny}


class SamSegmenter(Segmenter):
    """SAM's automatic mask generator followed by the shared post-processing.

    The model is built on the first call and reused for every image. ``checkpoint`` must be
    the official file for ``model_type``; ``checkpoint=None`` (random weights) and the test
    architecture ``vit_tiny`` both require ``allow_random_weights=True`` so random weights
    can never be used by accident.
    """

    def __init__(
        self,
        model_type: str = "vit_b",
        checkpoint: str | None = None,
        allow_random_weights: bool = False,
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        min_mask_region_area: int = 0,
        crop_n_layers: int = 0,
        device: str = "auto",
        min_area: float = 0.0005,
        drop_background: bool = True,
        max_segments: int = 64,
    ):
        super().__init__(
            min_area=min_area, drop_background=drop_background, max_segments=max_segments
        )
        known = [*SAM_CHECKPOINTS, TEST_MODEL_TYPE]
        if model_type not in known:
            raise ConfigError(f"unknown SAM model_type {model_type!r}; expected one of {known}")
        if (checkpoint is None or model_type == TEST_MODEL_TYPE) and not allow_random_weights:
            what = (
                "the test-only architecture 'vit_tiny'"
                if model_type == TEST_MODEL_TYPE
                else "checkpoint=None"
            )
            raise ConfigError(
                f"SamSegmenter with {what} runs with random weights; set "
                f"segmenter.checkpoint to {SAM_CHECKPOINTS.get(model_type, 'the official SAM file')} "
                "(or allow_random_weights=true in tests)"
            )
        # Checked here, not by segment_anything: a threshold above 1 filtered out every mask (an
        # empty label map per image, silently) and a count of 0 failed mid-run in its loops.
        for key, value, low in (("points_per_side", points_per_side, 1), ("points_per_batch", points_per_batch, 1),
                                ("crop_n_layers", crop_n_layers, 0), ("min_mask_region_area", min_mask_region_area, 0)):
            if not is_whole_number(value, low):
                raise ConfigError(f"segmenter.{key} must be a whole number >= {low}, got {value!r}")
        for key, value in (("pred_iou_thresh", pred_iou_thresh), ("stability_score_thresh", stability_score_thresh)):
            if not is_number(value) or not 0 <= value <= 1:
                raise ConfigError(f"segmenter.{key} must be in [0, 1] (0: no filter), got {value!r}")
        if checkpoint is not None:
            checkpoint = str(Path(checkpoint).expanduser())  # `~/weights/...` as the other loaders read it
        if checkpoint is not None and not Path(checkpoint).is_file():
            if model_type not in SAM_CHECKPOINTS:  # the test-only architecture: nothing is published
                raise CheckpointNotFoundError(f"SAM checkpoint not found: {checkpoint}. model_type={model_type} is a "
                                              "test-only architecture with no published weights: save its state "
                                              "dict there, or set segmenter.checkpoint=null")
            fname = SAM_CHECKPOINTS[model_type]
            raise checkpoint_missing("SAM", checkpoint, fname, SAM_URL.format(fname), "segmenter.checkpoint",
                                     SAM_CHECKPOINTS.values())
        if min_mask_region_area > 0 and importlib.util.find_spec("cv2") is None:
            # segment_anything's small-region removal imports OpenCV lazily, mid-run.
            raise ImportError(
                "min_mask_region_area > 0 needs opencv-python (pip install opencv-python-headless)"
            )
        self.model_type = model_type
        self.checkpoint = checkpoint
        self.allow_random_weights = allow_random_weights
        self.points_per_side = points_per_side
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.min_mask_region_area = min_mask_region_area
        self.crop_n_layers = crop_n_layers
        self.device = device
        self._followed: torch.device | None = None  # the trainer's device, for device=auto
        self._model: torch.nn.Module | None = None
        self._generator: Any = None

    @property
    def model(self) -> torch.nn.Module:
        """The SAM model (built and loaded on first access)."""
        if self._model is None:
            self._build()
        assert self._model is not None
        return self._model

    def _build(self) -> None:
        from segment_anything import SamAutomaticMaskGenerator

        # Build empty, then load ourselves: ``_build_sam``'s own torch.load has no map_location,
        # so a checkpoint saved from GPU would fail on a CPU-only machine.
        # Random weights (tests) from a fixed seed, apart from the global one: the same network
        # whatever ran before it was built (its label maps then depend on its settings alone, as
        # the stage cache's key assumes), and building it draws nothing from the run's random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            sam = _builders()[self.model_type](checkpoint=None)
        if self.checkpoint is not None:
            state = read_checkpoint(self.checkpoint, lambda: torch.load(self.checkpoint, map_location="cpu", weights_only=True))
            # strict, keys and shapes: a wrong file for model_type names itself and the right one
            check_state_dict(sam, state, source=f"{self.checkpoint} (segmenter.model_type={self.model_type}: "
                             f"{SAM_CHECKPOINTS.get(self.model_type, 'the official SAM file')})")
            sam.load_state_dict(state)
        sam.to(self._target_device()).eval()
        self._model = sam
        self._generator = SamAutomaticMaskGenerator(
            sam,
            points_per_side=self.points_per_side,
            points_per_batch=self.points_per_batch,
            pred_iou_thresh=self.pred_iou_thresh,
            stability_score_thresh=self.stability_score_thresh,
            min_mask_region_area=self.min_mask_region_area,
            crop_n_layers=self.crop_n_layers,
            output_mode="binary_mask",
        )

    def _target_device(self) -> torch.device:
        return resolve_device(self.device, self._followed)

    def follow(self, device: torch.device) -> None:
        """device=auto: run on ``device`` (the trainer's), not wherever CUDA happens to be."""
        if self.device != "auto":
            return
        self._followed = torch.device(device)
        if self._model is not None:
            self._model.to(self._followed)  # in place: the mask generator holds the same model

    def propose(self, rgb: np.ndarray) -> list[np.ndarray]:
        if self._generator is None:
            self._build()
        with torch.no_grad():
            records = self._generator.generate(np.ascontiguousarray(rgb))
        return [np.asarray(r["segmentation"], dtype=bool) for r in records]

    def cache_key(self) -> dict:
        # Device and batch size change speed, not masks.
        key = super().cache_key()
        for k in ("device", "points_per_batch", "allow_random_weights"):
            key.pop(k, None)
        return key
