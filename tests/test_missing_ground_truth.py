"""An anomalous test image without ground-truth masks: one warning, left out of the pixel metrics (issue 12)."""

from __future__ import annotations

import shutil

import lightning as L
import numpy as np
import torch

from locoad.data.datamodule import LocoDataModule
from locoad.models.base import AnomalyModule, ScoreOutput


class MaskEcho(AnomalyModule):
    """Scores = label; map = the true mask, plus 1 everywhere on anomalous images that have no
    masks (their anomaly is real but unannotated: counted as normal pixels, it drags AUROC down)."""

    def score_batch(self, batch: dict) -> ScoreOutput:
        label = batch["label"].float()
        unannotated = ((batch["label"] == 1) & (batch["num_regions"] == 0)).float()
        amap = batch["mask"].float() + unannotated[:, None, None]
        return ScoreOutput({"fused": label + 0.01 * torch.rand(len(label))}, amap)


def test_unannotated_anomalies_warn_once_and_skip_pixel_metrics(loco_root, caplog):
    shutil.rmtree(loco_root / "widgets" / "ground_truth" / "logical_anomalies")
    dm = LocoDataModule(str(loco_root), "widgets", k_shot=2, image_size=64, batch_size=4)
    with caplog.at_level("WARNING"):
        dm.setup()
        dm.setup()  # the splits are listed once per run: one warning
        module = MaskEcho()
        L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).test(module, datamodule=dm, verbose=False)
    said = [r.getMessage() for r in caplog.records if "no ground-truth masks" in r.getMessage()]
    assert len(said) == 1
    assert said[0].startswith("3 anomalous test images") and "logical_anomalies/000.png" in said[0]
    # counted as perfectly normal, the unannotated images would give 0.5 < AUROC < 1
    assert module.test_results.metrics["fused"]["pixel_auroc"] == 1.0
    assert module.test_results.metrics["fused"]["f1_max"] == 1.0  # still in the image metrics
    assert len(module.test_results.table) == 9 and np.isfinite(module.test_results.anomaly_maps).all()
