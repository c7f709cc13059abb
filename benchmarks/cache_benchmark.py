"""Stage-cache benchmark: a 6-job sweep that differs only in aligner and fusion vs one job.

Runs the real CLI (``python -m locoad -m ...``) in a subprocess on one synthetic category
(default offline config: handcrafted backbone, Felzenszwalb segmenter, k=4), with a fresh,
empty stage cache for every measurement (``paths.cache_dir=<tmp>/...``). The synthetic data is
generated once beforehand into its own folder (``data.root=...``) so its generation is not timed.

    .venv/bin/python benchmarks/cache_benchmark.py            # all four measurements
    .venv/bin/python benchmarks/cache_benchmark.py --no-off-sweep   # skip the slowest one
    # expensive stages (random-weight DINOv2 ViT-S/14, offline), cache on only:
    .venv/bin/python benchmarks/cache_benchmark.py --only-on --tag _vits14 \
        backbone=dinov2_vits14 backbone.pretrained=false

Writes benchmarks/results/cache_sweep.json and cache_sweep.md (a section for RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, run_cli, save_json  # noqa: E402

ALIGNERS = "hungarian,nearest"
FUSIONS = "loo,gated,rank"
N_JOBS = 2 * 3


def count_entries(cache_dir: Path) -> dict:
    stages = cache_dir / "stages"
    return {s: len(list((stages / s).glob("*/??/*.*"))) for s in ("features", "segments")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--no-off-sweep", action="store_true", help="skip the sweep with the cache off")
    ap.add_argument("--category", default="breakfast_box")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--only-on", action="store_true", help="only one job and the sweep with the cache on")
    ap.add_argument("--tag", default="", help="suffix of the result files, e.g. _vits14")
    ap.add_argument("overrides", nargs="*", help="extra overrides for every run, e.g. backbone=dinov2_vits14")
    opts = ap.parse_args()

    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
    tmp = Path(tempfile.mkdtemp(prefix="locoad_cache_bench_"))
    from locoad.data.synthetic import generate

    data_root = tmp / "data"
    generate(data_root, categories=[opts.category], seed=0, image_size=256)
    n_test = sum(1 for _ in (data_root / opts.category / "test").glob("*/*.png"))
    common = ["data=synthetic", f"data.root={data_root}", f"data.category={opts.category}",
              f"data.k_shot={opts.k}", "logger=csv", *opts.overrides]
    sweep = [f"aligner={ALIGNERS}", f"fusion={FUSIONS}"]

    results: dict = {
        "machine": machine(),
        "setup": {
            "data": f"synthetic {opts.category}, 256 px, k={opts.k}, {n_test} test images",
            "config": "default offline config (backbone=handcrafted, segmenter=felzenszwalb, features=all7)"
            + (f" with {' '.join(opts.overrides)}" if opts.overrides else ""),
            "sweep": f"aligner={ALIGNERS} x fusion={FUSIONS} ({N_JOBS} jobs, Hydra basic launcher, one process)",
            "cache": "fresh empty cache dir per measurement (cold: the sweep's first job fills it)",
        },
        "wall_s": {},
    }
    out_json = f"cache_sweep{opts.tag}.json"

    def measure(name: str, args: list[str], cache_on: bool) -> None:
        cache_dir = tmp / f"cache_{name}"
        extra = [f"paths.cache_dir={cache_dir}", f"hydra.sweep.dir={tmp / 'out' / name}",
                 f"hydra.run.dir={tmp / 'out' / name}"]
        if not cache_on:
            extra.append("model.cache.enabled=false")
        load = [round(x, 2) for x in os.getloadavg()]
        wall = run_cli(args + common + extra, env)
        results["wall_s"][name] = {"wall_s": round(wall, 1), "load_avg_before": load,
                                   "cache_entries_after": count_entries(cache_dir)}
        print(f"{name}: {wall:.1f} s (load before {load})", flush=True)
        save_json(out_json, results)

    if not opts.only_on:
        measure("one_job_cache_off", [], cache_on=False)
    measure("one_job_cache_on", [], cache_on=True)
    measure("sweep6_cache_on", ["-m", *sweep], cache_on=True)
    if not (opts.no_off_sweep or opts.only_on):
        measure("sweep6_cache_off", ["-m", *sweep], cache_on=False)

    w = {k: v["wall_s"] for k, v in results["wall_s"].items()}
    one = w["one_job_cache_on"]
    ratios = {"sweep_on_over_one_job": round(w["sweep6_cache_on"] / one, 2)}
    if "one_job_cache_off" in w:
        ratios["one_job_on_over_off"] = round(one / w["one_job_cache_off"], 2)
    if "sweep6_cache_off" in w:
        ratios["sweep_off_over_one_job"] = round(w["sweep6_cache_off"] / w["one_job_cache_off"], 2)
        ratios["sweep_on_over_sweep_off"] = round(w["sweep6_cache_on"] / w["sweep6_cache_off"], 2)
    results["ratios"] = ratios
    results["machine_after"] = {"load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()]}
    save_json(out_json, results)
    (RESULTS / f"cache_sweep{opts.tag}.md").write_text(markdown(results))
    print(markdown(results))


def markdown(r: dict) -> str:
    w, m = r["wall_s"], r["machine"]
    rows = "\n".join(f"| {k} | {v['wall_s']:.1f} | {v['load_avg_before']} |" for k, v in w.items())
    ratios = "\n".join(f"* {k.replace('_', ' ')}: **{v}×**" for k, v in r["ratios"].items())
    return f"""## Stage cache: a sweep over aligner × fusion

`python benchmarks/cache_benchmark.py` — {r['setup']['data']}; {r['setup']['config']}.
Sweep: {r['setup']['sweep']}. {r['setup']['cache']}. Wall time of the whole CLI process
(imports, data loading, fit, test). Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']},
GPU {m['gpu']}, shared with other jobs (load average shown).

| measurement | wall s | load avg (1, 5, 15 min) before |
|---|---|---|
{rows}

{ratios}
"""


if __name__ == "__main__":
    main()
