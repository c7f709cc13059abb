"""ULSAD CPU cost on the synthetic data: training seconds per epoch and test images per second.

    .venv/bin/python benchmarks/ulsad_benchmark.py [--image-size 256] [--epochs 2] [--threads N]

Uses the paper's architecture (WideResNet-50-2 layer2+layer3, 384-channel features, 1536-channel
local branch) with random backbone weights (offline: the cost is the same as with ImageNet
weights). Writes benchmarks/results/ulsad_cpu.json and prints a markdown table row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import lightning as L
import torch
from common import REPO

from locoad.backbones.cnn import TimmCNNBackbone
from locoad.data.datamodule import LocoDataModule
from locoad.models.ulsad import ULSADModule


class EpochTimer(L.Callback):
    """Wall time of each training epoch (the loop itself: no checkpointing, no logging)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # pl_module's hook (map quantiles on the last epoch) runs after callbacks: not counted
        self.times.append(time.perf_counter() - self._t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--category", default=None, help="synthetic category (default: the first)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--k-shot", type=int, default=0, help="0 = all training images (full-shot)")
    p.add_argument("--backbone", default="wide_resnet50_2")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ulsad_cpu.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from locoad.data.synthetic import CATEGORIES

    category = args.category or CATEGORIES[0]
    root = REPO / ".cache" / "synthetic" / f"seed0_{args.image_size}px"
    dm = LocoDataModule(str(root), category, k_shot=args.k_shot or None, image_size=args.image_size,
                        batch_size=args.batch_size, synthetic={"seed": 0, "image_size": args.image_size})
    dm.setup("fit")
    L.seed_everything(0)
    # the backbone as conf/model/ulsad.yaml configures it: stride-8 grid at the image size, no pooling
    backbone = TimmCNNBackbone(model_name=args.backbone, pretrained=False, image_size=args.image_size,
                               patch_size=8, pool_size=1)
    model = ULSADModule(backbone=backbone, image_size=args.image_size)
    timer = EpochTimer()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=args.epochs, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[timer])
    trainer.fit(model, datamodule=dm)
    n_test = len(dm.splits["test"])
    t0 = time.perf_counter()
    trainer.test(model, datamodule=dm, verbose=False)
    test_s = time.perf_counter() - t0
    # first epoch includes warm-up; report the later ones when there are any
    epochs = timer.times[1:] or timer.times
    result = {
        "model": "ulsad", "backbone": args.backbone, "pretrained": False,
        "image_size": args.image_size, "category": category, "batch_size": args.batch_size,
        "train_images": len(dm.splits["train"]), "test_images": n_test,
        "epochs": args.epochs, "epoch_seconds": timer.times,
        "train_seconds_per_epoch": sum(epochs) / len(epochs),
        "test_images_per_second": n_test / test_s,
        "fused_auroc": model.test_results.metrics["fused"]["auroc"],
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| model | image size | train images | s / epoch | test img/s | threads |")
    print("|---|---|---|---|---|---|")
    print(f"| ULSAD ({args.backbone}, CPU) | {args.image_size} | {result['train_images']} | "
          f"{result['train_seconds_per_epoch']:.1f} | {result['test_images_per_second']:.2f} | "
          f"{result['torch_threads']} |")


if __name__ == "__main__":
    main()
