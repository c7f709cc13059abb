"""DeAOT label-map propagation as an :class:`Aligner`.

The reference image and its segment map are the first frame of a two-frame "video"; DeAOT
(yoxu515/aot-benchmark, PyPI ``deaotpy``, import package ``aot``) propagates the reference ids
to the target frame, and every target segment takes the majority propagated id.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from locoad.aligners.base import Aligner
from locoad.backbones.base import read_checkpoint, shape_mismatches
from locoad.device import resolve_device, same_device
from locoad.errors import CheckpointMismatchError, ConfigError, checkpoint_missing, is_whole_number
from locoad.types import SegmentedImage

log = logging.getLogger(__name__)

# variant (an aot.configs.models module) -> official PRE_YTB_DAV checkpoint and its download.
DEAOT_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "deaott": (
        "DeAOTT_PRE_YTB_DAV.pth",
        "https://drive.google.com/file/d/1ThWIZQS03cYWx1EKNN8MIMnJS5eRowzr",
    ),
    "deaots": (
        "DeAOTS_PRE_YTB_DAV.pth",
        "https://drive.google.com/file/d/1YwIAV5tBtn5spSFxKLBQBEQGwPHyQlHi",
    ),
    "deaotb": (
        "DeAOTB_PRE_YTB_DAV.pth",
        "https://drive.google.com/file/d/1BHxsonnvJXylqHlZ1zJHHc-ymKyq-CFf",
    ),
    "deaotl": (
        "DeAOTL_PRE_YTB_DAV.pth",
        "https://drive.google.com/file/d/18elNz_wi9JyVBcIUYKhRdL08MA-FqHD5",
    ),
    "r50_deaotl": (
        "R50_DeAOTL_PRE_YTB_DAV.pth",
        "https://drive.google.com/file/d/1QoChMkTVxdYZ_eBlZhK2acq9KMQZccPJ",
    ),
    "swinb_deaotl": (
        "SwinB_DeAOTL_PRE_YTB_DAV.pth",
        "https://drive.google.com/file/d/1g4E-F0RPOx9Nd6J7tU9AE1TjsouL4oZq",
    ),
}
MODEL_ZOO = "https://github.com/yoxu515/aot-benchmark/blob/main/MODEL_ZOO.md"
# Frames are normalised as aot.dataloaders.video_transforms.MultiToTensor does.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_STRIDE = 16  # encoder output stride of every DeAOT variant


def majority_assignment(
    segments: np.ndarray, propagated: np.ndarray, unmatched_id: int
) -> dict[int, int]:
    """Give every segment id > 0 the most frequent propagated id among its pixels.

    ``propagated`` holds 0 (background) or reference ids 1..``unmatched_id - 1``. A segment whose
    majority is background becomes ``unmatched_id``; on a tie a reference id beats background
    (the segment is foreground, so any reference claim is evidence) and the lowest id wins
    among reference ids.
    """
    if segments.shape != propagated.shape:
        raise ValueError(
            f"shape mismatch: segments {segments.shape}, propagated {propagated.shape}"
        )
    seg = segments.astype(np.int64).ravel()
    prop = propagated.astype(np.int64).ravel()
    if prop.size and (prop.min() < 0 or prop.max() >= unmatched_id):
        raise ValueError(f"propagated ids must lie in 0..{unmatched_id - 1}")
    ids = np.unique(seg[seg > 0])
    if ids.size == 0:
        return {}
    # One bincount over (segment, propagated id) pairs: row = segment, column = propagated id.
    counts = np.bincount(seg * unmatched_id + prop, minlength=(int(seg.max()) + 1) * unmatched_id)
    counts = counts.reshape(-1, unmatched_id)[ids]
    fg = counts[:, 1:]
    best = fg.argmax(axis=1) + 1 if fg.shape[1] else np.zeros(len(ids), dtype=np.int64)
    fg_best = fg.max(axis=1) if fg.shape[1] else np.zeros(len(ids), dtype=np.int64)
    cls = np.where(counts[:, 0] > fg_best, unmatched_id, best)
    return {int(s): int(c) for s, c in zip(ids, cls)}


def network_size(h: int, w: int, input_size: int | None, align_corners: bool) -> tuple[int, int]:
    """Frame size fed to DeAOT: long side scaled to ``input_size`` (``None`` keeps the image
    size), each side snapped to the encoder stride as MultiRestrictSize does (16k + 1 when the
    model aligns corners, else 16k)."""
    scale = 1.0 if input_size is None else input_size / max(h, w)

    def snap(x: float) -> int:
        if align_corners:
            return max(1, round((x - 1) / _STRIDE)) * _STRIDE + 1
        return max(1, round(x / _STRIDE)) * _STRIDE

    return snap(h * scale), snap(w * scale)


def build_deaot(variant: str, checkpoint: str | None = None) -> torch.nn.Module:
    """Build a DeAOT model with the aot-benchmark config of ``variant``; load ``checkpoint``.

    Missing checkpoint keys raise (they would silently stay random); extra keys are ignored
    with a warning, like aot.utils.checkpoint.load_network.
    """
    from aot.configs.default import DefaultEngineConfig
    from aot.networks.models import build_vos_model

    # DefaultEngineConfig (not a stage config like pre_ytb_dav) adds the TRAIN_/TEST_ keys the
    # model reads without creating result directories on disk.
    cfg = DefaultEngineConfig("locoad", variant)
    # Without spatial_correlation_sampler the layers print a notice and fall back to pure PyTorch.
    with contextlib.redirect_stdout(io.StringIO()) as notices:
        model = build_vos_model(cfg.MODEL_VOS, cfg)
    if "Correlation" in notices.getvalue():
        log.info("spatial_correlation_sampler not installed: DeAOT uses its pure-PyTorch fallback")
    if checkpoint is not None:
        obj = read_checkpoint(checkpoint, lambda: torch.load(checkpoint, map_location="cpu", weights_only=True))
        state = obj.get("state_dict", obj.get("model", obj)) if isinstance(obj, dict) else obj
        state = {k.removeprefix("module."): v for k, v in state.items()}
        wrong = shape_mismatches(model.state_dict(), state)
        if wrong:
            raise CheckpointMismatchError(
                f"{checkpoint} does not fit DeAOT variant {variant!r}: {len(wrong)} tensors of another shape "
                f"(e.g. {wrong[:2]}); is it the {DEAOT_CHECKPOINTS[variant][0]} file?"
            )
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys:
            raise CheckpointMismatchError(
                f"{checkpoint} does not fit DeAOT variant {variant!r}: {len(result.missing_keys)} "
                f"missing keys (e.g. {result.missing_keys[:3]}); is it the {DEAOT_CHECKPOINTS[variant][0]} file?"
            )
        if result.unexpected_keys:
            # A larger variant's file (more LSTT layers) shares every key of the smaller one's
            # first layer: ignored, its extra layers would leave a model the file never was.
            raise CheckpointMismatchError(
                f"{checkpoint} does not fit DeAOT variant {variant!r}: {len(result.unexpected_keys)} keys it "
                f"lacks (e.g. {result.unexpected_keys[:3]}; another variant's file?); is it the "
                f"{DEAOT_CHECKPOINTS[variant][0]} file?"
            )
    return model.eval()


class DeAOTAligner(Aligner):
    """Align segments by propagating the reference label map with DeAOT.

    ``fit`` encodes the reference frame and its mask once (the engine's memory); ``align``
    propagates that memory to each target frame, so the reference is not re-encoded per image.
    DeAOT identifies at most 10 objects per sub-engine; the aot-benchmark inference engine
    runs ``ceil(C / 10)`` sub-engines sharing one image encoding and merges their logits, so any
    C up to ``max_objects`` works (cost grows with C / 10). References with more than
    ``max_objects`` segments raise ``ValueError``: merging segments would change the class ids.
    """

    def __init__(
        self,
        variant: str = "deaott",
        checkpoint: str | None = None,
        allow_random_weights: bool = False,
        device: str = "auto",
        input_size: int | None = 465,
        max_objects: int = 64,
    ):
        super().__init__()
        if variant not in DEAOT_CHECKPOINTS:
            raise ConfigError(
                f"unknown DeAOT variant {variant!r}; expected one of {list(DEAOT_CHECKPOINTS)}"
            )
        fname, url = DEAOT_CHECKPOINTS[variant]
        if input_size is not None and not is_whole_number(input_size, _STRIDE):
            # 0 or a negative size ran DeAOT on 17 x 17 px frames (one encoder cell) without a word
            raise ConfigError(f"aligner.input_size must be a whole number >= {_STRIDE} (px of the long side) or "
                              f"null (the image's size), got {input_size!r}")
        if not is_whole_number(max_objects, 1):
            raise ConfigError(f"aligner.max_objects must be a whole number >= 1, got {max_objects!r}")
        if checkpoint is not None:
            checkpoint = str(Path(checkpoint).expanduser())  # `~/weights/...` as the other loaders read it
        if checkpoint is None and not allow_random_weights:
            raise ConfigError(
                f"DeAOTAligner with checkpoint=None runs with random weights; set aligner.checkpoint "
                f"to {fname} (or allow_random_weights=true in tests)"
            )
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise checkpoint_missing("DeAOT", checkpoint, fname, f"{url} (listed in {MODEL_ZOO})", "aligner.checkpoint",
                                     [f for f, _ in DEAOT_CHECKPOINTS.values()])
        self.variant = variant
        self.checkpoint = checkpoint
        self.allow_random_weights = allow_random_weights
        self.device = device
        self.input_size = input_size
        self.max_objects = max_objects
        self._followed: torch.device | None = None  # the trainer's device, for device=auto
        self._model: torch.nn.Module | None = None
        self._engine: Any = None
        self._net_size: tuple[int, int] | None = None

    @property
    def model(self) -> torch.nn.Module:
        """The DeAOT network (built and loaded on first access, then reused)."""
        if self._model is None:
            dev = resolve_device(self.device, self._followed)
            self._model = build_deaot(self.variant, self.checkpoint).to(dev)
        return self._model

    def follow(self, device: torch.device) -> None:
        """device=auto: run on ``device`` (the trainer's); a fitted reference is re-encoded there."""
        if self.device != "auto":
            return
        self._followed = torch.device(device)
        if self._model is not None and not same_device(self._dev, self._followed):  # cuda is cuda:0
            self._model.to(self._followed)
            if self.reference is not None:
                self.fit(self.reference)  # the engine's memory lives on the old device

    @property
    def _dev(self) -> torch.device:
        return next(self.model.parameters()).device

    def _frame(self, rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, h, w) normalised float tensor at the network size."""
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self._dev).permute(2, 0, 1)[None].float()
        if tuple(x.shape[-2:]) != size:
            # Bicubic like the demo's cv2.INTER_CUBIC; clamp as resizing a uint8 image would.
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 255)
        mean = x.new_tensor(_MEAN).view(1, 3, 1, 1)
        std = x.new_tensor(_STD).view(1, 3, 1, 1)
        return (x / 255.0 - mean) / std

    def fit(self, reference: SegmentedImage) -> DeAOTAligner:
        super().fit(reference)
        reference = self.reference  # its ids without gaps: one DeAOT object per segment shown
        c = reference.num_segments
        if c > self.max_objects:
            raise ConfigError(
                f"reference has {c} segments but DeAOTAligner.max_objects={self.max_objects}; "
                "raise max_objects (slower) or lower the segmenter's max_segments"
            )
        self._engine = None
        if c == 0:
            return self  # nothing to propagate: every target segment will be unmatched
        from aot.networks.engines import build_engine

        model = self.model
        h, w = reference.segments.shape
        self._net_size = network_size(h, w, self.input_size, model.cfg.MODEL_ALIGN_CORNERS)
        dev = self._dev
        engine = build_engine(
            model.cfg.MODEL_ENGINE,
            phase="eval",
            aot_model=model,
            gpu_id=dev.index or 0,
            long_term_mem_gap=model.cfg.TEST_LONG_TERM_MEM_GAP,
            short_term_mem_skip=model.cfg.TEST_SHORT_TERM_MEM_SKIP,
        )
        img = self._frame(reference.rgb, self._net_size)
        mask = torch.from_numpy(reference.segments.astype(np.float32)).to(dev)[None, None]
        # nearest-exact samples pixel centres as the frame's resize does; legacy "nearest"
        # shifts the mask against its frame by up to one network pixel (tested)
        mask = F.interpolate(mask, size=self._net_size, mode="nearest-exact")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch.meshgrid indexing notice
            engine.add_reference_frame(img, mask, obj_nums=[c], frame_step=0)
        self._engine = engine
        return self

    def propagate(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W) int64 map of reference ids (0 = background) propagated onto ``rgb``."""
        self.fitted_reference()
        h, w = rgb.shape[:2]
        if self._engine is None:
            return np.zeros((h, w), dtype=np.int64)
        assert self._net_size is not None
        # Targets use the reference's network size: the engine's memory and position
        # embedding are fixed to it. Memory is never updated, so each target sees only the
        # reference (a fresh two-frame video each time).
        img = self._frame(rgb, self._net_size)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self._engine.match_propogate_one_frame(img)
            logits = self._engine.decode_current_logits((h, w))
        # Merged logits have one channel per id of every sub-engine; ids above C are padding.
        logits = logits[:, : self.num_reference_classes + 1]
        return logits.argmax(dim=1)[0].cpu().numpy().astype(np.int64)

    def align(self, image: SegmentedImage) -> np.ndarray:
        propagated = self.propagate(image.rgb)
        assignment = majority_assignment(image.segments, propagated, self.unmatched_id)
        return self.paint(image.segments, assignment)
