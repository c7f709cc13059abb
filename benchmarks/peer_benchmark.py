"""Side-by-side time per image: locoad's pipelines vs anomalib's AnomalyDINO and WinCLIP (k=4),
at batch 1 and 16, on the best device found.

locoad models (``LOCOAD``): ``locoad_anomalydino`` (experiment=anomalydino, ViT-S/14),
``locoad_seven_feature`` (all7, Felzenszwalb, ViT-S/14), ``locoad_seven_feature_vitg14`` (the
same with ViT-G/14) and ``locoad_seed_full`` (SAM vit_h + DeAOT + ViT-G/14 + seven scores).
Needs the optional extra ``bench`` (anomalib; WinCLIP also needs open_clip_torch). On a GPU
machine with the real weights in place:

    .venv/bin/python benchmarks/peer_benchmark.py --batch-sizes 1 16 --locoad-overrides backbone.dtype=bfloat16

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


# locoad pipelines, as Hydra overrides of the CLI's config (what `locoad <overrides>` runs).
LOCOAD = {
    # experiment=anomalydino: a foreground-only segmenter (border_colour, a few ms) instead of
    # the part segmenter it would not use.
    "locoad_anomalydino": ["features=anomalydino", "segmenter=border_colour", "backbone=dinov2_vits14"],
    "locoad_seven_feature": ["features=all7", "backbone=dinov2_vits14"],
    # The GPU targets: weight-free part segmenter + ViT-G/14 (vs WinCLIP), and the seed's
    # whole stack, SAM vit_h + DeAOT + ViT-G/14 + seven scores (at most 0.5 s per image).
    "locoad_seven_feature_vitg14": ["features=all7", "backbone=dinov2_vitg14"],
    "locoad_seed_full": ["features=all7", "backbone=dinov2_vitg14", "segmenter=sam", "segmenter.model_type=vit_h",
                         "segmenter.checkpoint=${paths.checkpoints}/sam_vit_h_4b8939.pth", "aligner=deaot"],
}
# What --random-weights adds: no checkpoint files, random initialisation everywhere.
RANDOM = {"backbone": ["backbone.pretrained=false"],
          "segmenter=sam": ["segmenter.checkpoint=null", "segmenter.allow_random_weights=true"],
          "aligner=deaot": ["aligner.checkpoint=null", "aligner.allow_random_weights=true"]}


def locoad_overrides(name: str, random_weights: bool, size: int, extra: list[str]) -> list[str]:
    overrides = [*LOCOAD[name], f"backbone.image_size={size}", "paths.root_dir=."]
    if random_weights:
        overrides += RANDOM["backbone"] + [o for key, more in RANDOM.items() if key in overrides for o in more]
    return overrides + extra


def locoad_model(overrides: list[str], device: torch.device, shots: torch.Tensor) -> Any:
    """locoad's torch model composed as the CLI composes it, fitted on ``shots``."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    conf = Path(__file__).resolve().parents[1] / "conf"
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
    p.add_argument("--models", default=",".join([*LOCOAD, "anomalib_anomalydino", "anomalib_winclip"]))
    p.add_argument("--locoad-overrides", nargs="*", default=[],
                   help="appended to every locoad model's overrides, e.g. backbone.dtype=bfloat16")
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
            elif name in LOCOAD:
                overrides = locoad_overrides(name, args.random_weights, size, args.locoad_overrides)
                result.setdefault("overrides", {})[name] = overrides
                model = locoad_model(overrides, device, shots)
            else:
                raise ValueError(f"unknown model {name!r}; known: {', '.join([*LOCOAD, 'anomalib_anomalydino', 'anomalib_winclip'])}")
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
