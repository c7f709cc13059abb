"""``export.anomaly_maps=true``: every test image's anomaly map as a float32 TIFF at the image's
original resolution, in the layout the official MVTec LOCO AD evaluation reads
(``evaluate_experiment.py --anomaly_maps_dir <run dir>/anomaly_maps``):

    <run dir>/anomaly_maps/<category>/<split>/<type>/<image id>.tiff
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import tifffile

from locoad.data.image_io import read_size
from locoad.io import atomic_write_bytes
from locoad.metrics.loco import resize_map
from locoad.models.base import TestResults

log = logging.getLogger(__name__)


def export_anomaly_maps(out_dir: str | Path, results: TestResults, category: str, split: str = "test") -> Path | None:
    """Write the TIFF tree under ``out_dir/anomaly_maps``; returns its root (None without maps).

    The size is the ground truth's when the image has one, else the image file's own size:
    the same maps, resized the same way, that the run's AU-sPRO was computed from.
    """
    if results.native_maps is None:
        log.warning("export.anomaly_maps=true but the model produced no anomaly maps: nothing exported")
        return None
    gt = results.ground_truth
    size_of = {str(s.path): i for i, s in enumerate(gt.samples)} if gt is not None else {}
    root = Path(out_dir) / "anomaly_maps"
    for amap, path, kind in zip(results.native_maps, results.table["path"], results.table["anomaly_type"]):
        if path in size_of:
            size = gt.size(size_of[path])
        else:
            size = read_size(path)
        buf = io.BytesIO()
        tifffile.imwrite(buf, resize_map(amap, size).astype(np.float32))
        atomic_write_bytes(root / category / split / str(kind) / f"{Path(path).stem}.tiff", buf.getvalue())
    log.info("anomaly maps of %d images written to %s", len(results.native_maps), root / category)
    return root
