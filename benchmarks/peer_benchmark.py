"""Side-by-side time per image: locoad (``anomalydino`` preset, seven-feature pipeline) vs
anomalib's AnomalyDINO and WinCLIP, at batch 1 and 16, on the best device found.

Needs the optional extra ``bench`` (anomalib; WinCLIP also needs open_clip_torch). On a GPU
machine with the real weights downloaded:

    .venv/bin/python benchmarks/peer_benchmark.py --batch-sizes 1 16

Offline (no weights), ``--random-weights`` builds every model with random weights: timings
of the real architectures, meaningless scores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save_json, sync, synthetic_images, to_tensor  # noqa: E402

K_SHOT = 4


def time_per_image(fn: Any, x: torch.Tensor, repeat: int) -> float:
    with torch.no_grad():
        fn(x)  # warm-up (cudnn autotune, lazy builds)
        sync()
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn(x)
        sync()
    return (time.perf_counter() - t0) / (repeat * x.shape[0])


def force_random_weights() -> None:
    """Make timm and open_clip build models without downloading weights."""
    import timm

    orig = timm.create_model

    def create_model(*a: Any, **kw: Any) -> Any:
        kw["pretrained"] = False
        return orig(*a, **kw)

    timm.create_model = create_model
    try:
        import open_clip

        orig_clip = open_clip.create_model_and_transforms

        def create_clip(*a: Any, **kw: Any) -> Any:
            kw["pretrained"] = None
            return orig_clip(*a, **kw)

        open_clip.create_model_and_transforms = create_clip
    except ImportError:
        pass


def anomalib_anomalydino(device: torch.device, shots: torch.Tensor) -> Any:
    from anomalib.models.image.anomaly_dino.torch_model import AnomalyDINOModel

    m = AnomalyDINOModel(encoder_name="vit_small_patch14_dinov2", masking=False).to(device)
    m.train()
    with torch.no_grad():
        m(shots)
    m.fit()
    m.eval()
    return m


def anomalib_winclip(device: torch.device, shots: torch.Tensor) -> Any:
    from anomalib.models.image.winclip.torch_model import WinClipModel

    m = WinClipModel().to(device)
    m.setup("object", shots)
    m.eval()
    return m


def locoad_model(preset: str, device: torch.device, shots: torch.Tensor, random_weights: bool, size: int) -> Any:
    """locoad's torch model composed as the CLI composes it (experiment=anomalydino, or features=all7)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    conf = Path(__file__).resolve().parents[1] / "conf"
    # The anomalydino preset runs as experiment=anomalydino does: a foreground-only
    # segmenter (border_colour, a few ms) instead of the part segmenter it would not use.
    segmenter = ["segmenter=border_colour"] if preset == "anomalydino" else []
    overrides = [f"features={preset}", *segmenter, "backbone=dinov2_vits14", f"backbone.image_size={size}",
                 f"backbone.pretrained={str(not random_weights).lower()}", "paths.root_dir=."]
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    from locoad.models.seven_feature.torch_model import SevenFeatureModel

    parts = {k: instantiate(cfg.model[k]) for k in ("segmenter", "aligner", "backbone", "fusion")}
    features = {n: instantiate(c) for n, c in cfg.model.features.items()}
    m = SevenFeatureModel(features=features, work_size=cfg.model.work_size, **parts).to(device)
    m.fit(m.encode(shots))
    return lambda x: m.score(m.encode(x))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    p.add_argument("--image-size", type=int, default=518, help="locoad/AnomalyDINO input (multiple of 14)")
    p.add_argument("--winclip-size", type=int, default=240, help="WinCLIP input (ViT-B-16-plus-240)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--random-weights", action="store_true", help="offline: no weight downloads")
    p.add_argument("--models", default="locoad_anomalydino,locoad_seven_feature,anomalib_anomalydino,anomalib_winclip")
    p.add_argument("--out", default="peer_benchmark.json")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.random_weights:
        force_random_weights()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # real-looking scenes: the segmenter needs parts
        images = synthetic_images(Path(tmp), n=K_SHOT + max(args.batch_sizes))
    result: dict[str, Any] = {"machine": machine(), "device": str(device), "k_shot": K_SHOT,
                              "weights": "random" if args.random_weights else "pretrained",
                              "command": " ".join(["python", *sys.argv]), "image_size": args.image_size,
                              "seconds_per_image": {}, "errors": {}}
    for name in args.models.split(","):
        size = args.winclip_size if name == "anomalib_winclip" else args.image_size
        shots = to_tensor(images[:K_SHOT], size)
        try:
            if name == "anomalib_anomalydino":
                model = anomalib_anomalydino(device, shots.to(device))
            elif name == "anomalib_winclip":
                model = anomalib_winclip(device, shots.to(device))
            else:
                preset = "anomalydino" if name == "locoad_anomalydino" else "all7"
                model = locoad_model(preset, device, shots, args.random_weights, size)
            for bs in args.batch_sizes:
                x = to_tensor(images[K_SHOT : K_SHOT + bs], size)
                x = x if name.startswith("locoad") else x.to(device)
                t = time_per_image(model, x, args.repeat)
                result["seconds_per_image"][f"{name}/b{bs}"] = t
                print(f"{name} batch {bs}: {t * 1e3:.0f} ms/image", flush=True)
        except Exception as e:  # noqa: BLE001 - one peer failing must not hide the others
            result["errors"][name] = repr(e)
            print(f"{name}: {e!r}", flush=True)
    print(f"wrote {save_json(args.out, result)}")
    return result


if __name__ == "__main__":
    main()
