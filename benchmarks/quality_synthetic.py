"""F1-max / AUROC of the offline configuration on the synthetic data, per feature and fused,
for 1/2/4/8 shots and each aligner, plus alignment accuracy.

The expensive stages (backbone, segmenter) run once per image: every training image is
encoded once and each (k, data.seed) shot set is drawn from them exactly as ``select_shots``
draws it, and every aligner / fusion variant reuses the encodings. Fitting and scoring are the
same ``SevenFeatureModel`` calls ``locoad`` makes. Few-shot results vary a lot with which shots
are drawn, so results are averaged over several ``data.seed`` values. ``--device cuda`` runs the
models on the GPU (the segmenter and the class scores stay on the host; every score as on the CPU
within 1e-3, a ``gpu`` test in tests/test_device.py).

    .venv/bin/python benchmarks/quality_synthetic.py [--categories ...] [--shots 1 2 4 8] [--seeds 0 1 2]
        [--variant clean|varied] [--generator-seed N] [--size-factor F] [--device cuda]

``--variant varied`` generates photo-like captures (native LOCO sizes, not square, camera and
lighting variation, a new layout per generator seed; ``generate(capture="varied")``).
``--generator-seed`` draws a whole new data set: seed 0 is the one the defaults were developed
on; HELD_OUT_GENERATOR_SEEDS are for reporting only -- never tune anything on them.
``--variant heldout`` measures on the independently written scene family of
``locoad.data.heldout`` (other categories, shapes, defects, renderer; photo-like captures,
``--variant heldout_clean`` the same scenes captured cleanly): report only, NEVER tune on it.
``--variant workbench`` / ``workbench_clean``: a third independent family (``locoad.data.workbench``;
other objects, rules, defects, a signed-distance renderer): report only, NEVER tune on it. ``--render FILE... [--by-score K]`` prints the fused table (and, where the data names its defects, the fused AUROC
per category and defect) of saved result files without recomputing; ``--by-score K`` instead
every score's AUROC per category and defect at K shots (which score sees which anomaly):

    .venv/bin/python benchmarks/quality_synthetic.py --render benchmarks/results/<file>.json ... [--by-score 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from common import REPO
from hydra import compose, initialize_config_dir

from locoad.components.capture_jitter import light_ramp
from locoad.data.datamodule import LocoDataModule, select_shots
from locoad.data.generated import MARKER
from locoad.data.synthetic import CATEGORIES, generate
from locoad.metrics import f1_floor, image_metrics
from locoad.metrics.alignment import alignment_accuracy, reference_part_lut
from locoad.metrics.loco import per_defect_auroc
from locoad.models.seven_feature.torch_model import resize_nearest
from locoad.utils import build

# Generator seeds kept for reporting how the method generalises: never tune on these.
HELD_OUT_GENERATOR_SEEDS = (101,)


def compose_config(overrides: list[str], hydra: bool = False):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=["logger=none", "callbacks=none", f"paths.root_dir={REPO}", *overrides],
                       return_hydra_config=hydra)


def only_features(overrides: list[str], names: list[str]) -> list[str]:
    """Hydra overrides that leave only the features ``names`` in the config ``overrides`` compose:
    a feature scored alone on a grid's images, its dump joined to the grid's own dumps with
    ``benchmarks/refuse_grid.py`` (each feature's score depends only on its own settings)."""
    present = list(compose_config(overrides).features)
    unknown = sorted(set(names) - set(present))
    if unknown:
        raise ValueError(f"--only {' '.join(unknown)}: not among this config's features ({', '.join(present)}); "
                         "name features the config composes, or add them with --overrides")
    return [f"~features.{n}" for n in present if n not in names]


def compose_model(overrides: list[str], device: torch.device | str = "cpu"):
    """The torch model inside the LightningModule, on ``device`` with its components following
    (as the Lightning module does on a trainer's device)."""
    model = build(compose_config(overrides).model).model.to(device)
    model.follow(torch.device(device))
    return model


# Nuisance variation that real captures have and the generator does not: per-image exposure
# gain, a linear illumination gradient, sensor noise and a small camera shift. Applied to every
# image (shots and test alike) with a fixed random stream, to check that the offline pipeline's
# scores come from the parts, not from pixel-exact repetition. Fractions of the image / range.
# ``tone``: only a tone-curve change, every image raised to an exponent in [0.85, 1.15] (per-channel
# gains, which white balancing undoes, cannot make it).
NUISANCE = {"none": None, "mild": dict(gain=0.10, gradient=0.10, noise=0.02, shift=0.03),
            "strong": dict(gain=0.20, gradient=0.20, noise=0.04, shift=0.06),
            "tone": dict(gain=0.0, gradient=0.0, noise=0.0, shift=0.0, gamma=0.15)}


def perturb(images: torch.Tensor, level: dict, seed: int) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """(B, 3, H, W) in [0, 1] -> the same with gain, gradient, tone (``gamma``, if the level has
    it), noise and shift drawn per image, and each image's content shift (dy, dx) as fractions of
    its size."""
    g = torch.Generator().manual_seed(seed)
    b, _, h, w = images.shape
    u = lambda *shape: torch.rand(*shape, generator=g) * 2 - 1  # noqa: E731 - uniform in [-1, 1]
    # The scene moves first (reflected border: more of the same background, not smeared rows),
    # then the light changes and the sensor adds noise.
    s = max(1, round(level["shift"] * h)) if level["shift"] else 0
    padded = torch.nn.functional.pad(images, (s, s, s, s), mode="reflect") if s else images
    dy, dx = (torch.randint(0, 2 * s + 1, (2, b), generator=g)).tolist()
    x = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    ramp = light_ramp(h, w, u(b) * torch.pi)[:, None]
    x = x * (1 + level["gain"] * u(b, 1, 1, 1)) * (1 + level["gradient"] * ramp)
    if level.get("gamma"):
        x = x.clamp(0, 1) ** (1 + level["gamma"] * u(b, 1, 1, 1))
    x = x + level["noise"] * torch.randn(x.shape, generator=g)
    return x.clamp(0, 1), [((s - dy[i]) / h, (s - dx[i]) / w) for i in range(b)]


def shift_labels(parts: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Move a true part map with its image (parts never touch the border: zeros fill in)."""
    h, w = parts.shape
    oy, ox = round(dy * h), round(dx * w)
    out = np.zeros_like(parts)
    out[max(oy, 0) : h + min(oy, 0), max(ox, 0) : w + min(ox, 0)] = parts[max(-oy, 0) : h - max(oy, 0),
                                                                         max(-ox, 0) : w - max(ox, 0)]
    return out


def encode_split(model, dm: LocoDataModule, split: str, nuisance: dict | None = None, device: str = "cpu"):
    enc, meta = [], {"label": [], "type": [], "parts": []}
    for i, batch in enumerate(torch.utils.data.DataLoader(dm.dataset(split), batch_size=8)):
        images, parts = batch["image"], list(batch["parts"].numpy())
        if nuisance is not None:  # drawn on the host: the same images on every device
            images, shifts = perturb(images, nuisance, zlib.crc32(f"{split}/{i}".encode()))
            parts = [shift_labels(p, dy, dx) if (p >= 0).all() else p for p, (dy, dx) in zip(parts, shifts)]
        enc += model.encode(images.to(device), shots=split == "train", aspects=batch["aspect"])  # as training_step encodes shots
        meta["label"] += batch["label"].tolist()
        meta["type"] += list(batch["anomaly_type"])
        meta["parts"] += parts
    return enc, meta


def images_crc(samples) -> np.ndarray:
    """The CRC-32 of each sample's image file, in order: which images a dump's scores are of."""
    return np.array([zlib.crc32(Path(sample.path).read_bytes()) for sample in samples], dtype=np.uint32)


def read_dumps(paths: list[str]) -> tuple[dict, dict]:
    """What ``--dump`` wrote: per run (category, aligner, fusion, k, seed) its test and LOO scores
    per feature ({"score": {...}, "loo": {...}}, the fused score left out), and per category its
    "labels", "types" and "defects" ("+"-joined names per image) and, in dumps written since
    2026-12-07, "images" and "train_images" (each file's CRC-32)."""
    runs: dict[tuple, dict] = {}
    data: dict[str, dict] = {}
    for path in paths:
        npz = np.load(path)
        for key in npz.files:
            parts = key.split("/")
            if len(parts) == 2:
                held = data.setdefault(parts[0], {})
                if parts[1] in held and not np.array_equal(held[parts[1]], npz[key]):
                    # joined dumps must score the same test images, or one side's scores get the other's labels
                    raise ValueError(f"{path}: its {key} differ from the dump joined before it; join only dumps "
                                     "of the same data (variant, generator seed, size, test images)")
                held[parts[1]] = npz[key]
            elif len(parts) == 7 and parts[6] != "fused":
                cat, aligner, fusion, k, seed, kind, name = parts
                run = runs.setdefault((cat, aligner, fusion, int(k), int(seed)), {"score": {}, "loo": {}})
                run[kind][name] = npz[key]
    return runs, data


def prepare_data(variant: str, generator_seed: int, size_factor: float, root: str | None = None,
                 defect_scale: float = 1.0, test_images: int = 12) -> tuple[str, list[str]]:
    """Generate a variant's data (kept when complete) and return its folder and categories;
    ``test_images``: good, logical and structural test images each (the generators' default 12)."""
    if test_images < 1:
        raise ValueError(f"--test-images must be >= 1 (images of each test type), got {test_images}")
    counts = {"n_test_good": test_images, "n_logical": test_images, "n_structural": test_images}
    if defect_scale != 1.0 and variant not in ("clean", "varied"):
        raise ValueError(f"--defect-scale applies to --variant clean / varied, not {variant}; drop it")
    if root is None:  # the clean seed-0 folder keeps its old name (and its stage cache hits)
        name = f"seed{generator_seed}_256px" if variant == "clean" else f"{variant}/seed{generator_seed}_x{size_factor}"
        name += f"_d{defect_scale}" if defect_scale != 1.0 else ""
        name += f"_t{test_images}" if test_images != 12 else ""
        root = str(REPO / ".cache/synthetic" / name)
    if variant.startswith("heldout"):
        from locoad.data import heldout

        heldout.generate_heldout(root, seed=generator_seed, size_factor=size_factor,
                                 capture="clean" if variant == "heldout_clean" else "photo", **counts)
        return root, list(heldout.CATEGORIES)
    if variant.startswith("workbench"):
        from locoad.data import workbench

        workbench.generate_workbench(root, seed=generator_seed, size_factor=size_factor,
                                     capture="clean" if variant == "workbench_clean" else "photo", **counts)
        return root, list(workbench.CATEGORIES)
    gen = {"seed": generator_seed, "image_size": 256, "defect_scale": defect_scale, **counts}
    if variant == "varied":
        gen.update(capture="varied", size_factor=size_factor)
    generate(root, **gen)
    return root, list(CATEGORIES)


def data_version(root: str, categories: list[str]) -> str:
    """Which generator and version made a data folder (its first category's completion marker):
    figures of one variant made with two versions are of different data."""
    marker = json.loads((Path(root) / categories[0] / MARKER).read_text())
    return f"{marker.get('generator') or marker.get('family')} version {marker['version']}"


def size_factor_of(variant: str, size_factor: float) -> float | None:
    """The size factor a variant's images were made with (the clean set is 256 px squares: none)."""
    return None if variant == "clean" else size_factor


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=None, help="data folder (default: .cache/synthetic/<variant>...)")
    ap.add_argument("--variant", default="clean", choices=["clean", "varied", "heldout", "heldout_clean", "workbench", "workbench_clean"],
                    help="clean: 256 px squares, one camera; varied: photo-like captures; "
                         "heldout: the independent scene family, photo-like captures (never tune on it); "
                         "heldout_clean: the same scenes, still camera, no light, blur, noise or JPEG; "
                         "workbench / workbench_clean: a third independent family, photo / clean (never tune on it)")
    ap.add_argument("--generator-seed", type=int, default=0,
                    help=f"synthetic data seed (0: development data; held out, never tune on: {HELD_OUT_GENERATOR_SEEDS}, "
                         "and every seed of --variant heldout* / workbench*)")
    ap.add_argument("--size-factor", type=float, default=0.5, help="varied / heldout* / workbench*: native size x this")
    ap.add_argument("--defect-scale", type=float, default=1.0,
                    help="clean / varied: structural defects' size times this (0.4: small, faint ones)")
    ap.add_argument("--test-images", type=int, default=12,
                    help="good, logical and structural test images each (default 12, 3 per logical defect kind): more "
                         "narrow the paired_bootstrap intervals; a new data folder (..._t<N>)")
    ap.add_argument("--categories", nargs="*", default=None, help="default: every category of the variant")
    ap.add_argument("--shots", nargs="*", type=int, default=[1, 2, 4, 8])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--aligners", nargs="*", default=["hungarian", "nearest"])
    ap.add_argument("--fusions", nargs="*", default=None, help="default: the one the config picks")
    ap.add_argument("--overrides", nargs="*", default=[], help="extra Hydra overrides, e.g. features=competition")
    ap.add_argument("--only", nargs="*", default=None,
                    help="score only these features (the others left out): a feature run alone, its --dump joined "
                         "to a grid's dumps with benchmarks/refuse_grid.py")
    ap.add_argument("--nuisance", default="none", choices=list(NUISANCE),
                    help="perturb every image (exposure, illumination gradient, noise, shift; tone: a tone curve only)")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/quality_synthetic.json"))
    ap.add_argument("--device", default="cpu",
                    help="torch device of the models, e.g. cuda (the segmenter and the class scores stay on the host)")
    ap.add_argument("--dump", default=None,
                    help="also write every run's raw per-feature test and LOO scores to this .npz (fusion studies)")
    args = ap.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch sees no CUDA device here; drop --device (the CPU) or run on a GPU machine")
    check_overrides(args.overrides)  # before any data is generated or read
    if args.only:
        try:
            args.overrides = [*args.overrides, *only_features(args.overrides, args.only)]
        except ValueError as err:
            ap.error(str(err))
    # Hydra resolves the defaults list (and --overrides), so "the default" stays the default.
    cfg = compose_config(args.overrides, hydra=True)
    args.fusions = args.fusions or [cfg.hydra.runtime.choices.fusion]
    torch.manual_seed(0)
    args.root, every = prepare_data(args.variant, args.generator_seed, args.size_factor, args.root,
                                    args.defect_scale, args.test_images)
    args.categories = args.categories or every
    dump: dict[str, np.ndarray] = {}
    results: list[dict] = []
    for cat in args.categories:
        t0 = time.time()
        encoder = compose_model(args.overrides, args.device)
        # Images are read at the backbone's input size, as ``data.image_size`` does in a run.
        dm = LocoDataModule(args.root, cat, k_shot=None, seed=0, image_size=getattr(encoder.backbone, "image_size", 518))
        dm.setup()
        train, train_meta = encode_split(encoder, dm, "train", NUISANCE[args.nuisance], args.device)
        test, meta = encode_split(encoder, dm, "test", NUISANCE[args.nuisance], args.device)
        labels, types = np.array(meta["label"]), np.array(meta["type"])
        # The defects in each test image (defects_config.json names the ground truth's pixel
        # values; the test dataset and the ground truth list the same samples in one order).
        gt = dm.ground_truth()
        defects = [gt.defect_names(i) for i in range(len(gt.samples))]
        if args.dump:  # per category, once: what every run of it scored
            dump[f"{cat}/labels"], dump[f"{cat}/types"] = labels, types.astype(str)
            dump[f"{cat}/defects"] = np.array(["+".join(d) for d in defects])
            # which files were scored: dumps joined or paired must hold the same images
            # (a generator's new version can keep every label and defect name)
            dump[f"{cat}/images"] = images_crc(dm.dataset("test").samples)
            dump[f"{cat}/train_images"] = images_crc(dm.dataset("train").samples)
        t_enc = time.time() - t0
        for aligner in args.aligners:
            for fusion in args.fusions:
                for k, seed in ((k, s) for k in args.shots for s in args.seeds):
                    idx = select_shots(list(range(len(train))), k, seed)
                    model = compose_model([f"aligner={aligner}", f"fusion={fusion}", *args.overrides], args.device)
                    model.fit([train[i] for i in idx])
                    scores, _, class_maps = model.score(test)
                    scores["fused"] = model.fuse(scores)
                    ref_parts = train_meta["parts"][idx[model.shot_order[0]]]
                    lut = reference_part_lut(model.parsed_shots[0].class_map, resize_nearest(ref_parts, model.work_size),
                                             model.aligner.unmatched_id) if model.aligned and (ref_parts >= 0).all() else None
                    acc = [
                        alignment_accuracy(cm, resize_nearest(p, model.work_size), lut)
                        for cm, p in zip(class_maps, meta["parts"])
                    ] if lut is not None else []
                    row = {
                        "category": cat, "aligner": aligner, "fusion": fusion, "k": k, "seed": seed,
                        "f1_floor": f1_floor(labels),
                        "f1_floor_per_type": {
                            t: f1_floor(labels[(types == "good") | (types == t)])
                            for t in ("logical_anomalies", "structural_anomalies")
                        },
                        "alignment_accuracy": float(np.nanmean(acc)) if acc else None,
                        "metrics": {n: image_metrics(v, labels, types) for n, v in scores.items()},
                    }
                    if any(defects):
                        for n, v in scores.items():
                            row["metrics"][n]["per_defect"] = per_defect_auroc(v, labels, defects)
                    results.append(row)
                    if args.dump:
                        tag = f"{cat}/{aligner}/{fusion}/{k}/{seed}"
                        dump.update({f"{tag}/score/{n}": np.asarray(v) for n, v in scores.items()})
                        dump.update({f"{tag}/loo/{n}": np.asarray(v) for n, v in model.loo_scores.items()})
                    m = row["metrics"]["fused"]
                    print(f"{cat:20s} {aligner:9s} {fusion:6s} k={k} s={seed} fused F1 {m['f1_max']:.3f} AUROC {m['auroc']:.3f} "
                          f"logical {m['logical']['f1_max']:.3f}/{m['logical']['auroc']:.3f} "
                          f"structural {m['structural']['f1_max']:.3f}/{m['structural']['auroc']:.3f} "
                          f"align {row['alignment_accuracy'] if acc else float('nan'):.3f}", flush=True)
        print(f"{cat}: encoding {t_enc:.0f}s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.dump:
        np.savez_compressed(args.dump, **dump)
    Path(args.out).write_text(json.dumps({"command": "benchmarks/quality_synthetic.py " + " ".join(sys.argv[1:] if argv is None else argv),
                                          "overrides": args.overrides, "nuisance": args.nuisance,
                                          "variant": args.variant, "generator_seed": args.generator_seed,
                                          "size_factor": size_factor_of(args.variant, args.size_factor),
                                          "defect_scale": args.defect_scale, "test_images": args.test_images,
                                          "device": args.device, "data": data_version(args.root, args.categories),
                                          "results": results}, indent=1))
    # The models wrote their stages to the stage cache: keep it within model.cache.max_gb, as a run does.
    cache = build(cfg.model.cache)
    if cache.enabled:
        cache.prune()
    print(markdown(results))
    print()
    print(markdown_by_category(results))
    print()
    print(markdown_fused(results))
    print()
    print(markdown_per_defect(results))


def markdown(results: list[dict]) -> str:
    """Mean over categories per (aligner, fusion, k): fused and per-feature F1-max/AUROC."""
    lines = []
    keys = sorted({(r["aligner"], r["fusion"], r["k"]) for r in results}, key=lambda t: (t[0], t[1], t[2]))
    names = list(results[0]["metrics"])
    lines.append("| aligner | fusion | k | " + " | ".join(names) + " | align. acc. |")
    lines.append("|---|---|---|" + "---|" * (len(names) + 1))
    for key in keys:
        rows = [r for r in results if (r["aligner"], r["fusion"], r["k"]) == key]
        cells = [f"{np.mean([r['metrics'][n]['f1_max'] for r in rows]):.3f} / {np.mean([r['metrics'][n]['auroc'] for r in rows]):.3f}" for n in names]
        accs = [r["alignment_accuracy"] for r in rows if r["alignment_accuracy"] is not None]
        acc = np.mean(accs) if accs else float("nan")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + f" | {acc:.3f} |")
    return "\n".join(lines)


def markdown_by_category(results: list[dict]) -> str:
    """Fused F1-max (mean ± std over seeds) per category, aligner and k, next to the
    all-anomalous floor 2p/(1+p); one table per fusion."""
    if len({r["fusion"] for r in results}) > 1:
        return by_configuration(results, markdown_by_category)
    lines = ["| category | aligner | k | F1-max | logical F1-max | structural F1-max | AUROC | floor (all / logical/structural) |",
             "|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["category"], r["aligner"], r["k"]) for r in results})
    for cat, aligner, k in keys:
        rows = [r["metrics"]["fused"] for r in results if (r["category"], r["aligner"], r["k"]) == (cat, aligner, k)]
        first = next(r for r in results if r["category"] == cat)
        floor = first["f1_floor"]
        per_type = "/".join(f"{v:.3f}" for v in first.get("f1_floor_per_type", {}).values())

        def ms(vals: list[float]) -> str:
            return f"{np.mean(vals):.3f} ± {np.std(vals):.3f}"

        lines.append(
            f"| {cat} | {aligner} | {k} | {ms([m['f1_max'] for m in rows])} | "
            f"{ms([m['logical']['f1_max'] for m in rows])} | {ms([m['structural']['f1_max'] for m in rows])} | "
            f"{ms([m['auroc'] for m in rows])} | {floor:.3f} / {per_type} |"
        )
    return "\n".join(lines)


def check_overrides(overrides: list[str]) -> None:
    """Overrides this script would not apply as a run does: the data are read here, not by
    ``data.*`` (shot draw, image size, split), and the aligner and fusion come from
    ``--aligners`` / ``--fusions`` (an override would fit with one and label the rows with another)."""
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        if key.startswith("data.") or key == "data":
            raise SystemExit(f"--overrides {o}: this script reads the data itself (numpy shot draw, the backbone's "
                             "input size, the test split); run `python -m locoad` for data settings")
        if key in ("aligner", "fusion"):
            raise SystemExit(f"--overrides {o}: choose the {key} with --{key}s (the rows are labelled by it)")


def by_configuration(results: list[dict], table) -> str:
    """``table(rows)`` of each (aligner, fusion) in ``results``, headed by it where there are
    several: their rows are never averaged together."""
    configs = sorted({(r["aligner"], r["fusion"]) for r in results})
    if len(configs) == 1:
        return table(results)
    return "\n\n".join(f"aligner={a}, fusion={f}:\n\n" + table([r for r in results if (r["aligner"], r["fusion"]) == (a, f)])
                        for a, f in configs)


def markdown_fused(results: list[dict]) -> str:
    """Fused F1-max and AUROC (overall, logical, structural), mean over seeds, per category and
    k, then the mean over categories; one table per aligner and fusion."""
    if len({(r["aligner"], r["fusion"]) for r in results}) > 1:
        return by_configuration(results, markdown_fused)
    lines = ["| category | k | seeds | F1-max | logical F1 | structural F1 | AUROC | logical AUROC | structural AUROC |",
             "|---|---|---|---|---|---|---|---|---|"]
    cats = sorted({r["category"] for r in results})
    ks = sorted({r["k"] for r in results})

    def cells(rows: list[dict]) -> str:
        m = [r["metrics"]["fused"] for r in rows]
        vals = [[x["f1_max"] for x in m], [x["logical"]["f1_max"] for x in m], [x["structural"]["f1_max"] for x in m],
                [x["auroc"] for x in m], [x["logical"]["auroc"] for x in m], [x["structural"]["auroc"] for x in m]]
        return " | ".join(f"{np.mean(v):.3f}" for v in vals)

    for cat in [*cats, "mean"]:
        for k in ks:
            rows = [r for r in results if r["k"] == k and cat in ("mean", r["category"])]
            seeds = sorted({r["seed"] for r in rows})
            name = "**mean**" if cat == "mean" else cat
            lines.append(f"| {name} | {k} | {seeds[0]}–{seeds[-1]} | {cells(rows)} |")
    return "\n".join(lines)


def _defect_cells(results: list[dict], column) -> tuple[dict, dict]:
    """Per (category, defect): the AUROCs of each table column, ``column(row, score)`` naming a
    row's score's column (None: not in the table); and each defect's number of images."""
    cells: dict[tuple[str, str], dict] = {}
    counts: dict[tuple[str, str], int] = {}
    for r in results:
        for score, m in r["metrics"].items():
            col = column(r, score)
            if col is None:
                continue
            for name, d in m.get("per_defect", {}).items():
                cells.setdefault((r["category"], name), {}).setdefault(col, []).append(d["auroc"])
                counts[(r["category"], name)] = d["n"]
    return cells, counts


def _defect_markdown(cells: dict, counts: dict, columns: list, headers: list[str]) -> str:
    """One row per (category, defect), the mean of each column's AUROCs; empty without cells."""
    if not cells:
        return ""
    lines = [f"| category | defect | images | {' | '.join(headers)} |", "|---|---|---|" + "---|" * len(columns)]
    for (cat, name), by_col in sorted(cells.items()):
        vals = " | ".join(f"{np.nanmean(by_col[c]):.2f}" if c in by_col else "" for c in columns)
        lines.append(f"| {cat} | {name} | {counts[(cat, name)]} | {vals} |")
    return "\n".join(lines)


def markdown_per_defect(results: list[dict], score: str = "fused") -> str:
    """AUROC of one score per category and defect (its images against the good ones), mean over
    seeds, one column per k: which kinds of anomaly a configuration misses. Empty for results
    without ``per_defect`` (data without defects_config.json)."""
    ks = sorted({r["k"] for r in results})
    cells, counts = _defect_cells(results, lambda r, s: r["k"] if s == score else None)
    return _defect_markdown(cells, counts, ks, [f"{score} AUROC k={k}" for k in ks])


def markdown_defect_by_score(results: list[dict], k: int) -> str:
    """At ``k`` shots, the AUROC of every score per category and defect (its images against the
    good ones), mean over seeds and aligners: which score sees which kind of anomaly. Empty
    without ``per_defect`` or runs at ``k``."""
    cells, counts = _defect_cells(results, lambda r, s: s if r["k"] == k else None)
    scores = sorted({s for by_score in cells.values() for s in by_score}, key=lambda s: (s == "fused", s))  # fused last
    return _defect_markdown(cells, counts, scores, scores)


def render(argv: list[str]) -> None:
    """Print the fused tables of saved result files (no recomputation); ``--by-score K``: instead,
    every score's AUROC per defect at K shots."""
    ap = argparse.ArgumentParser(prog="quality_synthetic.py --render")
    ap.add_argument("files", nargs="+", help="quality_synthetic.py result files (.json)")
    ap.add_argument("--by-score", type=int, metavar="K", help="every score's AUROC per category and defect at K shots")
    args = ap.parse_args(argv)
    for path in args.files:
        data = json.loads(Path(path).read_text())
        print(f"{path}: {data.get('command', '')}\n")
        if args.by_score is not None:
            table = markdown_defect_by_score(data["results"], args.by_score)
            print((table or f"no per-defect AUROC at k = {args.by_score} in this file") + "\n")
            continue
        print(markdown_fused(data["results"]) + "\n")
        per_defect = markdown_per_defect(data["results"])
        if per_defect:
            print(per_defect + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--render"]:
        render(sys.argv[2:])
    else:
        main()
