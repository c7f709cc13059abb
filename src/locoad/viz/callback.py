"""The one visualiser: a Lightning callback that draws every test image's panel once, writes the
local gallery (``<run dir>/gallery/index.html``) and hands the same panels to every logger that
takes images (W&B, TensorBoard). It needs no logger: ``logger=none`` still gets the gallery."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from locoad.io import atomic_write_bytes
from locoad.viz.gallery import gallery_order, write_gallery
from locoad.viz.panels import load_rgb, panel

log = logging.getLogger(__name__)


def png_bytes(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def hardest(table: Any, n_per_type: int) -> list[int]:
    """Row positions of the ``n_per_type`` images per anomaly type that the fused score gets most
    wrong (good: highest score, anomalous: lowest), the ones worth looking at in a logger."""
    key = "fused" if "fused" in table else None
    rows: list[int] = []
    for kind, group in table.reset_index(drop=True).groupby("anomaly_type", sort=True):
        idx = list(group.index)
        if key is not None:
            idx.sort(key=lambda i: table[key].iloc[i], reverse=(kind == "good"))
        rows += idx[:n_per_type]
    return rows


class Visualiser(L.Callback):
    """Per test image a panel PNG under ``dirpath/panels/`` and ``dirpath/index.html``; the
    ``log_per_type`` hardest panels of each anomaly type also go to every image-taking logger.

    tile_size: pixels per tile (the panel is one tile per part, ~65 KB as PNG at 128 px).
    max_images: draw at most this many panels, the most anomalous first (None: all);
        the gallery still lists every image's scores.
    """

    def __init__(
        self,
        dirpath: str,
        enabled: bool = True,
        tile_size: int = 128,
        max_images: int | None = None,
        log_per_type: int = 4,
    ):
        self.dirpath = Path(dirpath)
        self.enabled = bool(enabled)
        self.tile_size = int(tile_size)
        self.max_images = max_images
        self.log_per_type = int(log_per_type)
        self.bit_depth: int | None = None  # the data's (data.bit_depth), read at test end

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        results = getattr(pl_module, "test_results", None)
        if not self.enabled or results is None or not trainer.is_global_zero:
            return
        self.bit_depth = getattr(trainer.datamodule, "bit_depth", None)
        wanted = hardest(results.table, self.log_per_type) if trainer.loggers else []
        panels, titles = self.draw(results, keep=set(wanted))
        for lg in trainer.loggers:
            log_panels(lg, results.table, {i: panels[i] for i in wanted if i in panels}, titles)

    def draw(self, results: Any, keep: set[int] | None = None) -> tuple[dict[int, np.ndarray], list[str]]:
        """Write the panels and index.html; returns the panels of the rows in ``keep`` (default:
        all; a full test set's would be ~100 MB) by row position, and their column titles."""
        start = time.perf_counter()
        table = results.table.reset_index(drop=True)
        order = gallery_order(table)
        if self.max_images is not None:
            # and the rows the loggers get (the ones the fused score gets most wrong: for
            # anomalies the lowest-scored, which the cut would leave out)
            order = order[: self.max_images] + [i for i in order[self.max_images:] if keep and i in keep]
        maps = results.anomaly_maps
        vrange = None
        if maps is not None and len(maps):
            finite = np.asarray(maps, dtype=np.float32)
            finite = finite[np.isfinite(finite)]
            if finite.size:  # one colour scale for the run: a good image's map must look cold
                vrange = (float(finite.min()), float(np.quantile(finite, 0.999)))
        masks = getattr(results, "masks", None)
        known = getattr(results, "mask_known", None)
        label_maps = {k: v for k, v in (results.label_maps or {}).items() if len(v) == len(table)}
        panels: dict[int, np.ndarray] = {}
        files: dict[int, str] = {}
        titles: list[str] = []
        for i in order:
            rgb = load_rgb(str(table.at[i, "path"]), self.tile_size, self.bit_depth)
            if rgb is None:
                log.warning("visualiser: cannot read %s; no panel for it", table.at[i, "path"])
                continue
            img, titles = panel(
                rgb,
                anomaly_map=maps[i] if maps is not None and len(maps) == len(table) else None,
                label_maps={k: v[i] for k, v in label_maps.items()},
                mask=masks[i] if masks is not None and len(masks) == len(table) else None,
                vrange=vrange,
                mask_known=bool(known[i]) if known is not None and len(known) == len(table) else True,
            )
            name = f"panels/{i:04d}_{_slug(str(table.at[i, 'anomaly_type']))}_{_slug(Path(str(table.at[i, 'path'])).stem)}.png"
            atomic_write_bytes(self.dirpath / name, png_bytes(img), fsync=False)
            files[i] = name
            if keep is None or i in keep:
                panels[i] = img
        write_gallery(self.dirpath, table, results.metrics, files, title=self.dirpath.parent.name)
        log.info("gallery: %s (%d panels, %.1f s)", self.dirpath / "index.html", len(files),
                 time.perf_counter() - start)
        return panels, titles


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s)[:60]


def log_panels(logger: Any, table: Any, panels: dict[int, np.ndarray], titles: list[str]) -> None:
    """Give ``panels`` to ``logger`` if it takes images (W&B, TensorBoard); others are skipped."""
    if not panels:
        return
    table = table.reset_index(drop=True)

    def caption(i: int) -> str:
        fused = f" fused={float(table.at[i, 'fused']):.4g}" if "fused" in table else ""
        return f"{table.at[i, 'anomaly_type']} {Path(str(table.at[i, 'path'])).name}{fused}"

    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    if isinstance(logger, WandbLogger):
        import wandb

        images = [wandb.Image(img, caption=caption(i)) for i, img in panels.items()]
        logger.experiment.log({"test/panels": images})
        return
    if isinstance(logger, TensorBoardLogger):
        experiment = logger.experiment
        for i, img in panels.items():
            experiment.add_image(f"test/panels/{table.at[i, 'anomaly_type']}/{i:04d}", img, dataformats="HWC")
        experiment.add_text("test/panels/columns", " | ".join(titles))
