"""Shared fixtures: a hand-made LOCO-layout folder and config composition helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
# The benchmark scripts are plain files, not a package: tests import them by name from here.
sys.path.insert(0, str(REPO / "benchmarks"))


def _scene(rng: np.random.Generator, size: int, n_discs: int = 2, colour=(200, 40, 40)) -> tuple[np.ndarray, np.ndarray]:
    """Grey background with ``n_discs`` coloured discs at fixed slots; returns (rgb, parts)."""
    img = np.full((size, size, 3), 90, np.uint8) + rng.integers(0, 6, (size, size, 3), dtype=np.uint8)
    parts = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n_discs):
        cy, cx = size * 0.5, size * (0.3 + 0.4 * i)
        m = (yy - cy) ** 2 + (xx - cx) ** 2 < (size * 0.12) ** 2
        img[m] = colour
        parts[m] = 1
    return img, parts


def make_loco(root: Path, category: str = "widgets", size: int = 64, n_train: int = 5, n_test: int = 3) -> Path:
    """A tiny LOCO-layout category: good images have two red discs; logical anomalies one;
    structural anomalies a dark scratch. Ground-truth masks and part labels included."""
    rng = np.random.default_rng(0)
    cdir = root / category

    def save(path: Path, a: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(path)

    for split, n in (("train", n_train), ("validation", 2)):
        for i in range(n):
            img, parts = _scene(rng, size)
            save(cdir / split / "good" / f"{i:03d}.png", img)
            save(cdir / "part_labels" / split / "good" / f"{i:03d}.png", parts)
    for i in range(n_test):
        img, parts = _scene(rng, size)
        save(cdir / "test" / "good" / f"{i:03d}.png", img)
        save(cdir / "part_labels" / "test" / "good" / f"{i:03d}.png", parts)
        img, parts = _scene(rng, size, n_discs=1)
        save(cdir / "test" / "logical_anomalies" / f"{i:03d}.png", img)
        save(cdir / "part_labels" / "test" / "logical_anomalies" / f"{i:03d}.png", parts)
        gt = np.zeros((size, size), np.uint8)
        yy, xx = np.mgrid[0:size, 0:size]
        gt[(yy - size * 0.5) ** 2 + (xx - size * 0.7) ** 2 < (size * 0.12) ** 2] = 255
        save(cdir / "ground_truth" / "logical_anomalies" / f"{i:03d}" / "000.png", gt)
        img, parts = _scene(rng, size)
        img[size // 2 - 1 : size // 2 + 1, size // 5 : size // 2] = 10
        save(cdir / "test" / "structural_anomalies" / f"{i:03d}.png", img)
        save(cdir / "part_labels" / "test" / "structural_anomalies" / f"{i:03d}.png", parts)
        gt = np.zeros((size, size), np.uint8)
        gt[size // 2 - 1 : size // 2 + 1, size // 5 : size // 2] = 255
        save(cdir / "ground_truth" / "structural_anomalies" / f"{i:03d}" / "000.png", gt)
        save(cdir / "ground_truth" / "structural_anomalies" / f"{i:03d}" / "001.png", gt[::-1].copy())
    return root


@pytest.fixture
def loco_root(tmp_path: Path) -> Path:
    return make_loco(tmp_path / "loco")


def train_images(root: Path, n: int, image_size: int = 112):
    """The first ``n`` train images of ``widgets`` under ``root`` (a :func:`make_loco` tree), read at
    ``image_size`` as a run reads them, stacked: (n, 3, image_size, image_size)."""
    import torch

    from locoad.data.datamodule import LocoDataModule

    dm = LocoDataModule(str(root), "widgets", k_shot=None, image_size=image_size)
    dm.setup()
    train = dm.dataset("train")
    return torch.stack([train[i]["image"] for i in range(n)])


def compose_cfg(overrides: list[str], output_dir: Path):
    """Compose the root config as the CLI would, with ${hydra:...} resolvable."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        if cfg.paths.root_dir is None or "root_dir" not in " ".join(overrides):
            cfg.paths.root_dir = str(output_dir.parent)
        del cfg["hydra"]  # the CLI's job config holds no hydra node either
    return cfg


def plant_twins(root: Path, category: str = "widgets") -> None:
    """Make every test anomaly the twin of the good test image with its number: the same pixels
    with a planted defect (structural: a dark scratch across the left disc; logical: the right
    disc painted over with background), so a score can be checked pair by pair."""
    cdir = root / category
    for good in sorted((cdir / "test" / "good").glob("*.png")):
        img = np.asarray(Image.open(good)).copy()
        size = img.shape[0]
        scratch = img.copy()
        scratch[size // 2 - 1 : size // 2 + 1, size // 5 : size // 2] = 10
        Image.fromarray(scratch).save(cdir / "test" / "structural_anomalies" / good.name)
        missing = img.copy()
        yy, xx = np.mgrid[0:size, 0:size]
        disc = (yy - size * 0.5) ** 2 + (xx - size * 0.7) ** 2 < (size * 0.12 + 1) ** 2
        missing[disc] = 92  # the background's grey (90 + noise 0..5)
        Image.fromarray(missing).save(cdir / "test" / "logical_anomalies" / good.name)
        parts = np.asarray(Image.open(cdir / "part_labels" / "test" / "good" / good.name)).copy()
        parts[disc] = 0
        Image.fromarray(parts).save(cdir / "part_labels" / "test" / "logical_anomalies" / good.name)


def nn_cosine_distance(queries, bank, chunk_size: int = 4096, half: bool = False):
    """1 - max cosine similarity of each query to the bank: the live search
    (``grouped_nn_cosine_distance``) with one group holding every row."""
    import torch

    from locoad.components.knn import grouped_nn_cosine_distance

    ql = torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device)
    bl = torch.zeros(bank.shape[0], dtype=torch.long, device=bank.device)
    return grouped_nn_cosine_distance(queries, bank, [ql], [bl], chunk_size=chunk_size, half=half)[0]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run only where torch sees a CUDA device (or, for a dry run of
    benchmarks/gpu_suite.sh, on the CPU with LOCOAD_GPU_TESTS_DEVICE=cpu)."""
    import torch

    if torch.cuda.is_available() or os.environ.get("LOCOAD_GPU_TESTS_DEVICE", "cuda") != "cuda":
        return
    skip = pytest.mark.skip(reason="needs CUDA (run benchmarks/gpu_suite.sh on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def ulsad_overrides(root, accelerator: str = "cpu") -> list[str]:
    """Tiny ULSAD on the first synthetic category at 64 px: two epochs of one batch, data and
    outputs under ``root``."""
    from locoad.data.synthetic import CATEGORIES

    cat = CATEGORIES[0]
    return ["model=ulsad_tiny", "data=synthetic", "data.synthetic.image_size=64", f"data.category={cat}",
            f"+data.synthetic.categories=[{cat}]", "data.k_shot=4", "data.num_workers=0",
            "trainer.max_epochs=2", "trainer.limit_train_batches=1", f"trainer.accelerator={accelerator}",
            "logger=csv", f"paths.root_dir={root}"]
