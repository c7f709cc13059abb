"""Per-stage time and memory of the seven-feature pipeline at the real sizes (518 px, 37x37).

Stages: segmentation, alignment, feature extraction, the seven scores and fusion; the
non-model overhead at test time as a fraction of the ViT-S/14 forward; fit/score scaling of
the patch scores with k (exact vs greedy coreset) up to a 350-image bank; peak memory of a
350-image fit. Every model runs with RANDOM weights (this machine is offline): the times
are those of the real architectures, the scores are meaningless.

    .venv/bin/python benchmarks/stage_benchmark.py [--quick] [--only overhead,scaling,...]
    .venv/bin/python benchmarks/stage_benchmark.py --device cuda --only stages,overhead,scaling --out stage_benchmark_gpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, max_rss_gib, save_json, synthetic_images, timeit, to_tensor  # noqa: E402

from locoad.aligners.hungarian import HungarianAligner  # noqa: E402
from locoad.aligners.nearest import NearestAligner  # noqa: E402
from locoad.backbones.dinov2 import DinoV2Backbone  # noqa: E402
from locoad.backbones.handcrafted import HandcraftedBackbone  # noqa: E402
from locoad.components.coreset import greedy_coreset, random_projection  # noqa: E402
from locoad.features.base import PatchScore  # noqa: E402
from locoad.features.shared_patch_bank import SharedPatchBank  # noqa: E402
from locoad.models.seven_feature.torch_model import Encoded, SevenFeatureModel  # noqa: E402
from locoad.segmenters.felzenszwalb import FelzenszwalbSegmenter  # noqa: E402
from locoad.types import ParsedImage, SegmentedImage  # noqa: E402

GRID, WORK = 37, 256  # 518 px / 14; the pipeline's work_size
# --smoke: a 2-block, 48-dim ViT in place of every DINOv2 (checks the script, times nothing real)
SMOKE: dict[str, Any] = {}


def build_features(**patch_kwargs: Any) -> dict:
    """The ``all7`` feature set as configured in conf/feature_defaults (patch kwargs added)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf" / "feature_defaults"
    names = ["class_agnostic_patch", "class_aware_patch", "foreground_patch", "class_embedding",
             "class_histogram", "class_colour", "class_location"]
    out = {}
    for n in names:
        cfg = OmegaConf.load(conf / f"{n}.yaml")
        if n.endswith("_patch"):
            cfg = OmegaConf.merge(cfg, patch_kwargs)
        out[n] = instantiate(cfg)
    return out


def build_model(backbone: torch.nn.Module, **patch_kwargs: Any) -> SevenFeatureModel:
    from locoad.fusion.loo import LeaveOneOutSum

    return SevenFeatureModel(
        segmenter=FelzenszwalbSegmenter(), aligner=HungarianAligner(), backbone=backbone,
        features=build_features(**patch_kwargs), fusion=LeaveOneOutSum(), work_size=WORK,
    )


# -- stages -----------------------------------------------------------------------------------
def bench_segmentation(images: list[np.ndarray], quick: bool, device: torch.device) -> dict:
    out: dict[str, Any] = {}
    seg = FelzenszwalbSegmenter()
    t, _ = timeit(lambda: [seg(im) for im in images[:4]], repeat=1 if quick else 3)
    out["felzenszwalb_s_per_image"] = t / 4
    # CPU: vit_b on a reduced grid (minutes per image otherwise); GPU: the configs' 32x32 grid
    # for vit_b and the seed's vit_h.
    cuda = device.type == "cuda"
    pps = 32 if cuda else (8 if quick else 16)
    out["sam_points_per_side"] = pps
    for model_type in ("vit_b", "vit_h") if cuda else ("vit_b",):
        try:
            from locoad.segmenters.sam import SamSegmenter

            sam = SamSegmenter(model_type=model_type, checkpoint=None, allow_random_weights=True,
                               points_per_side=pps, points_per_batch=64, device=str(device))
            _ = sam.model  # build outside the timing
            t, _ = timeit(lambda sam=sam: sam(images[0]), repeat=1 if quick or not cuda else 3, warmup=int(cuda))
            out[f"sam_{model_type}_s_per_image"] = t
            x = torch.zeros(1, 3, 1024, 1024, device=device)
            with torch.no_grad():
                t, _ = timeit(lambda sam=sam, x=x: sam.model.image_encoder(x), repeat=1 if not cuda else 3, warmup=int(cuda))
            out[f"sam_{model_type}_image_encoder_s"] = t
            del sam
        except Exception as e:  # noqa: BLE001 - report why SAM could not run, keep the rest
            out[f"sam_{model_type}_error"] = repr(e)
    return out


def bench_alignment(encoded: list[Encoded], quick: bool, device: torch.device) -> dict:
    out: dict[str, Any] = {}
    ref, rest = encoded[0], encoded[1:5]
    aligners: dict[str, Callable[[], Any]] = {"hungarian": HungarianAligner, "nearest": NearestAligner}
    try:
        from locoad.aligners.deaot import DeAOTAligner

        aligners["deaot_t_465px"] = lambda: DeAOTAligner(variant="deaott", checkpoint=None,
                                                        allow_random_weights=True, device=str(device), input_size=465)
    except ImportError as e:
        out["deaot_error"] = repr(e)
    for name, make in aligners.items():
        try:
            al = make()
            al.fit(SegmentedImage(ref.rgb, ref.segments, ref.features))
            imgs = [SegmentedImage(e.rgb, e.segments, e.features) for e in rest]
            t, _ = timeit(lambda al=al, imgs=imgs: [al.align(i) for i in imgs], repeat=1 if quick else 3)
            out[f"{name}_s_per_image"] = t / len(imgs)
        except Exception as e:  # noqa: BLE001
            out[f"{name}_error"] = repr(e)
    return out


def bench_backbones(images: list[np.ndarray], quick: bool, device: torch.device) -> tuple[dict, dict[str, DinoV2Backbone]]:
    """DINOv2 forward per image at 518 px: ViT-S/B on a CPU; S/B/L/G at batch 1 and 16, float32
    and bf16 autocast, on a GPU (input already on the device: the forward alone)."""
    out: dict[str, Any] = {}
    keep = {}
    cuda = device.type == "cuda"
    variants = ("vits14", "vitb14", "vitl14", "vitg14") if cuda else ("vits14", "vitb14")
    if SMOKE:
        variants = ("vits14",)
    settings = [(b, d) for b in (1, 16) for d in ("float32", "bfloat16")] if cuda else [(1, "float32")]
    for variant in variants:
        for batch, dtype in settings:
            if variant not in keep:
                keep[variant] = DinoV2Backbone(variant, pretrained=False, image_size=518, **SMOKE).to(device)
            bb = keep[variant]
            bb.compute_dtype = getattr(torch, dtype)
            x = to_tensor(images[:batch], 518).to(device)
            with torch.no_grad():
                # ViT-S/14 at batch 1 is the overhead target's denominator: more repeats (its
                # median moved 0.80-1.03 s between idle runs with 2).
                reps = 5 if (variant, batch, dtype) == ("vits14", 1, "float32") else (2 if quick else 3)
                t, f = timeit(lambda bb=bb, x=x: bb(x), repeat=reps)
            suffix = f"_b{batch}" if dtype == "float32" else f"_bf16_b{batch}"
            out[f"dinov2_{variant}_s_per_image{suffix}"] = t / batch
            out[f"dinov2_{variant}_feature_shape"] = list(f.shape[1:])
            bb.compute_dtype = torch.float32
        if variant != "vits14":  # only ViT-S is needed later (overhead); free the rest
            del keep[variant]
            if cuda:
                torch.cuda.empty_cache()
    x1 = to_tensor(images[:1], 518).to(device)
    hc = HandcraftedBackbone(image_size=518).to(device)
    with torch.no_grad():
        t, f = timeit(lambda: hc(x1), repeat=3)
    out["handcrafted_s_per_image_b1"] = t
    out["handcrafted_feature_shape"] = list(f.shape[1:])
    return out, keep


@contextlib.contextmanager
def timed_methods(targets: list[tuple[object, str, str]], acc: dict[str, float]) -> Iterator[None]:
    """Wrap ``obj.method`` so each call adds its wall time to ``acc[label]``."""
    saved = []
    for obj, meth, label in targets:
        orig = getattr(obj, meth)

        def wrapper(*a: Any, _orig: Callable = orig, _label: str = label, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _orig(*a, **kw)
            finally:
                acc[_label] += time.perf_counter() - t0

        setattr(obj, meth, wrapper)
        saved.append((obj, meth))
    try:
        yield
    finally:
        for obj, meth in saved:
            delattr(obj, meth)  # the instance attribute shadowed the class method


def bench_overhead(images: list[np.ndarray], backbone: DinoV2Backbone, vits_forward_s: float,
                   ks: tuple[int, ...], n_test: int, coreset: tuple[float, ...] = (),
                   coreset_k: int = 8) -> dict:
    """Test-time non-model overhead (align, parse = LAB + class grid, the seven scores,
    fusion) per image for each k, against the ViT-S/14 forward measured in this run; then at
    ``coreset_k`` shots with each coreset ratio in ``coreset`` (keys ``"<k>@coreset<ratio>"``)."""
    model = build_model(backbone)
    kmax = max(ks)
    x = to_tensor(images[: kmax + n_test], 518)
    encoded = []
    for i in range(0, len(x), 4):  # batches of 4 keep peak memory low
        encoded += model.encode(x[i : i + 4])
    shots, tests = encoded[:kmax], encoded[kmax : kmax + n_test]
    out: dict[str, Any] = {"vits14_forward_s": vits_forward_s, "n_test": len(tests), "per_k": {}}
    runs = [(str(k), k, model) for k in ks]
    runs += [(f"{coreset_k}@coreset{r}", coreset_k, build_model(backbone, coreset_ratio=r)) for r in coreset]
    for label, k, model in runs:
        t0 = time.perf_counter()
        model.fit(shots[:k])
        fit_s = time.perf_counter() - t0
        acc: dict[str, float] = defaultdict(float)
        targets = [(model, "segmented", "normalise"), (model.aligner, "align", "align"),
                   (model, "parse", "parse_lab_classgrid")]
        targets += [(f, "score", f"score.{n}") for n, f in model.features.items()]
        targets += [(b, "score_batch", "score.shared_patch_bank(" + "+".join(b.features) + ")") for b in model.patch_banks]
        targets += [(model.fusion, "fuse", "fusion")]
        for e in tests:  # CIELAB is computed once per image and kept: time it in every run
            e._lab = None
        with timed_methods(targets, acc):
            t0 = time.perf_counter()
            scores, _, _ = model.score(tests)
            model.fuse(scores)
            total = time.perf_counter() - t0
        per_image = {name: v / len(tests) for name, v in acc.items()}
        overhead = total / len(tests)
        out["per_k"][label] = {
            "fit_s": fit_s,
            "overhead_s_per_image": overhead,
            "overhead_ratio_to_vits14_forward": overhead / vits_forward_s,
            "breakdown_s_per_image": per_image,
        }
        print(f"  k={label}: fit {fit_s:.2f}s, overhead {overhead * 1e3:.0f} ms/image = "
              f"{overhead / vits_forward_s:.1%} of ViT-S/14 forward", flush=True)
    return out


# -- scaling with k -----------------------------------------------------------------------------
def synthetic_parsed(template: list[ParsedImage], k: int, dim: int, seed: int = 0) -> list[ParsedImage]:
    """k ParsedImages with random (dim, 37, 37) features and the class grids of real images
    (cycled), so group sizes are realistic without running the backbone k times."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(k):
        t = template[i % len(template)]
        feats = torch.randn(dim, GRID, GRID, generator=g).to(t.class_grid.device)  # the template's device
        out.append(ParsedImage(t.rgb, t.lab, t.class_map, feats, t.class_grid, t.num_classes))
    return out


def bench_scaling(template: list[ParsedImage], ks: tuple[int, ...], coreset_ks: tuple[int, ...],
                  dim: int, ratio: float, vits_forward_s: float) -> dict:
    """fit/score seconds of the three patch scores vs k; exact, and coreset (ratio)."""
    test = synthetic_parsed(template, 1, dim, seed=999)[0]
    out: dict[str, Any] = {"dim": dim, "coreset_ratio": ratio, "exact": {}, "coreset": {}}
    names = ["class_agnostic_patch", "class_aware_patch", "foreground_patch"]
    for k in ks:
        shots = synthetic_parsed(template, k, dim)
        row: dict[str, Any] = {"bank_rows_class_agnostic": k * GRID * GRID}
        feats = build_features()
        for n in names:
            f = feats[n]
            t0 = time.perf_counter()
            state = f.fit(shots)
            row[f"{n}.fit_s"] = time.perf_counter() - t0
            row[f"{n}.score_s"], _ = timeit(lambda f=f, state=state: f.score(test, state), repeat=1, warmup=1 if k < 64 else 0)
            del state
        row["score_s_total"] = sum(row[f"{n}.score_s"] for n in names)
        row["class_agnostic_score_ratio_to_vits14_forward"] = row["class_agnostic_patch.score_s"] / vits_forward_s
        # What the model runs: one bank and one similarity product for the three scores.
        t0 = time.perf_counter()
        bank = SharedPatchBank({n: feats[n] for n in names}, shots)
        row["shared.fit_s"] = time.perf_counter() - t0
        row["shared.score_s"], _ = timeit(lambda bank=bank: bank.score(test), repeat=1, warmup=1 if k < 64 else 0)
        row["shared_score_ratio_to_vits14_forward"] = row["shared.score_s"] / vits_forward_s
        del bank
        out["exact"][str(k)] = row
        print(f"  exact k={k}: score {row['score_s_total']:.2f}s (3 patch scores), "
              f"class-agnostic {row['class_agnostic_patch.score_s']:.2f}s, shared bank {row['shared.score_s']:.2f}s", flush=True)
        del shots
    for k in coreset_ks:
        shots = synthetic_parsed(template, k, dim)
        row = {}
        feats = build_features(coreset_ratio=ratio)
        for n in names:
            f = feats[n]
            t0 = time.perf_counter()
            state = f.fit(shots)
            row[f"{n}.fit_s"] = time.perf_counter() - t0
            row[f"{n}.score_s"], _ = timeit(lambda f=f, state=state: f.score(test, state), repeat=1)
        row["score_s_total"] = sum(row[f"{n}.score_s"] for n in names)
        t0 = time.perf_counter()
        bank = SharedPatchBank({n: feats[n] for n in names}, shots)
        row["shared.fit_s"] = time.perf_counter() - t0
        row["shared.score_s"], _ = timeit(lambda bank=bank: bank.score(test), repeat=1)
        del bank
        out["coreset"][str(k)] = row
        print(f"  coreset k={k}: fit {sum(row[f'{n}.fit_s'] for n in names):.1f}s, "
              f"score {row['score_s_total']:.2f}s", flush=True)
    return out


def bench_coreset_350(template: list[ParsedImage], dim: int, ratio: float, steps: int) -> dict:
    """350-image bank: score against a bank of the coreset's size (the patches of ratio x 350
    shots: scoring cost depends only on the size) and the greedy selection's time extrapolated from
    ``steps`` measured steps (a full CPU run would take tens of minutes)."""
    k = 350
    shots = synthetic_parsed(template, k, dim)
    test = synthetic_parsed(template, 1, dim, seed=999)[0]
    out: dict[str, Any] = {"k": k, "dim": dim, "coreset_ratio": ratio}
    names = ["class_agnostic_patch", "class_aware_patch", "foreground_patch"]
    feats = build_features()
    total_rows = 0
    n_sub = max(1, int(np.ceil(ratio * k)))  # a bank of ratio * k shots: the coreset's size
    for n in names:
        f: PatchScore = feats[n]
        total_rows += sum(int((f.labels(p) >= 0).sum()) for p in shots)
        sub = f.fit(shots[:n_sub])
        out[f"{n}.score_s"], _ = timeit(lambda f=f, sub=sub: f.score(test, sub), repeat=1)
        out[f"{n}.coreset_rows"] = sub.n_used
        del sub
    out["score_s_total"] = sum(out[f"{n}.score_s"] for n in names)
    # Greedy selection cost: steps are uniform (one pass over the projected bank), so time
    # ``steps`` of them on the class-agnostic bank and scale to the full selection.
    bank = torch.cat([s.features.flatten(1).T for s in shots])
    t0 = time.perf_counter()
    proj = random_projection(bank, 128)
    out["projection_s"] = time.perf_counter() - t0
    del proj
    t0 = time.perf_counter()
    greedy_coreset(bank, n=steps + 1, projection_dim=128)
    per_step = (time.perf_counter() - t0 - out["projection_s"]) / steps
    out["greedy_s_per_step_class_agnostic"] = per_step
    out["greedy_estimated_fit_s_class_agnostic"] = per_step * ratio * len(bank)
    out["greedy_estimated_fit_s_all3"] = per_step * ratio * total_rows  # per-step cost ~ bank rows
    print(f"  coreset k=350: score {out['score_s_total']:.2f}s, greedy est. "
          f"{out['greedy_estimated_fit_s_class_agnostic'] / 60:.0f} min (class-agnostic bank)", flush=True)
    return out


# -- 350-image fit memory (own process, so ru_maxrss is this fit's peak) ------------------------
def fit350_child(dim: int, max_loo: int, half: bool) -> dict:
    """Fit the whole model on 350 encoded images (real segments of a few synthetic images,
    random features of the ViT's size) and report peak RSS and time."""
    with tempfile.TemporaryDirectory() as tmp:
        images = synthetic_images(Path(tmp), n=8)
    seg = FelzenszwalbSegmenter()
    base = [(im, seg(im)) for im in images]
    rss_before = max_rss_gib()
    g = torch.Generator().manual_seed(0)
    encoded = [Encoded(base[i % 8][0], base[i % 8][1], torch.randn(dim, GRID, GRID, generator=g)) for i in range(350)]
    model = build_model(torch.nn.Identity(), half=half)  # the backbone is never called by fit
    model.max_loo = max_loo
    t0 = time.perf_counter()
    model.fit(encoded)
    return {"k": 350, "dim": dim, "max_loo": max_loo, "half": half, "fit_s": time.perf_counter() - t0,
            "peak_rss_gib": max_rss_gib(), "rss_before_features_gib": rss_before,
            "features_gib": 350 * dim * GRID * GRID * 4 / 2**30}


def bench_fit350(dim: int, max_loo: int, half: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--fit350-child", str(dim), str(max_loo), str(int(half))]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return {"error": res.stderr[-2000:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


# -- F1-max cost of the coreset on the synthetic data --------------------------------------------
def bench_coreset_f1(categories: list[str], k: int, ratio: float, max_loo: int) -> dict:
    """F1-max (fused and per patch score) exact vs coreset, handcrafted backbone (weight-free,
    so these scores are real), via the Hydra config as ``locoad`` composes it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from locoad.run import run

    conf = Path(__file__).resolve().parents[1] / "conf"
    # max_loo bounds the LOO refits: with a coreset each refit reruns the greedy selection.
    out: dict[str, Any] = {"k": k, "coreset_ratio": ratio, "backbone": "handcrafted", "max_loo": max_loo, "runs": {}}
    for cat in categories:
        for label, extra in (("exact", []), (f"coreset{ratio}", [
            f"features.{n}.coreset_ratio={ratio}"
            for n in ("class_agnostic_patch", "class_aware_patch", "foreground_patch")])):
            tmp = Path(tempfile.mkdtemp(prefix="locoad_bench_"))
            overrides = [f"data.category={cat}", f"data.k_shot={k}", f"model.max_loo={max_loo}",
                         "logger=none", "callbacks=none", *extra]
            with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
                cfg = compose("config", overrides=overrides, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            with open_dict(cfg):
                cfg.paths.output_dir = str(tmp / "run")
                cfg.paths.root_dir = str(Path(__file__).resolve().parents[1])
                del cfg["hydra"]
            t0 = time.perf_counter()
            metrics = run(cfg)
            out["runs"][f"{cat}/{label}"] = {
                "seconds": time.perf_counter() - t0,
                **{n: metrics.get(n, {}).get("f1_max") for n in
                   ("fused", "class_agnostic_patch", "class_aware_patch", "foreground_patch")},
            }
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2-core budget: fewer repeats, smaller SAM grid")
    p.add_argument("--only", default="stages,overhead,scaling,coreset350,fit350,f1",
                   help="comma-separated sections to run")
    p.add_argument("--fit350-child", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--out", default="stage_benchmark.json")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cuda: stages and overhead on the GPU (ViT-S..G, SAM vit_b/vit_h at 32x32 points, DeAOT)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny random ViT instead of DINOv2: checks the script end to end in seconds (gpu_suite.sh --dry-run)")
    args = p.parse_args(argv)
    if args.smoke:
        SMOKE["model_kwargs"] = {"depth": 2, "embed_dim": 48, "num_heads": 3}
    if args.fit350_child:
        dim, max_loo, half = (int(v) for v in args.fit350_child)
        print(json.dumps(fit350_child(dim, max_loo, bool(half))))
        return {}
    only = set(args.only.split(","))
    torch.manual_seed(0)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device visible to torch")
    result: dict[str, Any] = {"machine": machine(), "weights": "random (offline machine)", "device": str(device),
                              "command": " ".join([Path(sys.executable).name, *sys.argv]), "quick": args.quick,
                              "smoke": args.smoke, "complete": False}
    with tempfile.TemporaryDirectory() as tmp:
        images = synthetic_images(Path(tmp), n=16)
    print(f"{len(images)} synthetic images {images[0].shape}", flush=True)
    backbones: dict[str, DinoV2Backbone] = {}
    if only & {"stages", "overhead", "scaling", "coreset350"}:
        print("feature extraction ...", flush=True)
        result["backbones"], backbones = bench_backbones(images, args.quick, device)
        print(f"  {result['backbones']}", flush=True)
        save_json(args.out, result)  # partial results survive a timeout
    vits = result.get("backbones", {}).get("dinov2_vits14_s_per_image_b1", float("nan"))
    if "stages" in only:
        print("segmentation ...", flush=True)
        result["segmentation"] = bench_segmentation(images, args.quick, device)
        print(f"  {result['segmentation']}", flush=True)
        save_json(args.out, result)  # partial results survive a timeout
        model = build_model(backbones["vits14"])
        enc = model.encode(to_tensor(images[:5], 518))
        print("alignment ...", flush=True)
        result["alignment"] = bench_alignment(enc, args.quick, device)
        print(f"  {result['alignment']}", flush=True)
        save_json(args.out, result)  # partial results survive a timeout
    if "overhead" in only or "scaling" in only or "coreset350" in only:
        print("overhead vs k ...", flush=True)
        result["overhead"] = bench_overhead(images, backbones["vits14"], vits, (1, 2, 4, 8), n_test=2 if args.quick else 4,
                                            coreset=(0.5, 0.25))
        save_json(args.out, result)
        template = build_model(backbones["vits14"])
        template.fit(template.encode(to_tensor(images[:4], 518)))
        parsed = template.parsed_shots
        if "scaling" in only:
            print("scaling with k ...", flush=True)
            result["scaling"] = bench_scaling(parsed, (1, 2, 4, 8, 32, 350), (8, 32), 384, 0.1, vits)
            save_json(args.out, result)
        if "coreset350" in only:
            print("coreset on a 350-image bank ...", flush=True)
            result["coreset350"] = bench_coreset_350(parsed, 384, 0.1, steps=100 if args.quick else 300)
            save_json(args.out, result)
    if "fit350" in only:
        print("350-image fit (own process) ...", flush=True)
        result["fit350"] = [bench_fit350(384, 2), bench_fit350(768, 2), bench_fit350(768, 2, half=True)]
        print(f"  {result['fit350']}", flush=True)
        save_json(args.out, result)  # partial results survive a timeout
    if "f1" in only:
        print("coreset F1 cost ...", flush=True)
        from locoad.data.synthetic import CATEGORIES

        result["coreset_f1"] = bench_coreset_f1(list(CATEGORIES)[:1 if args.quick else 2], 16, 0.1,
                                                max_loo=4 if args.quick else 16)
        print(f"  {result['coreset_f1']}", flush=True)
        save_json(args.out, result)  # partial results survive a timeout
    result["complete"] = True
    path = save_json(args.out, result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
