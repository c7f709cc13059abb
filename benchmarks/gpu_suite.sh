#!/usr/bin/env bash
# The GPU checks in one run (< 10 min on one GPU; about 4 on an H200): the `gpu`-marked tests,
# the per-stage GPU benchmark, then the demo on the CPU and on the GPU compared image by image
# (benchmarks/demo_devices.py). Writes benchmarks/results/gpu_suite.json (test outcomes, device,
# timings), gpu_tests.log (the tests' whole output, failures in full),
# benchmarks/results/stage_benchmark_gpu.json (saved after every section, so a timeout keeps
# what finished; "complete": true when all ran) and demo_devices.json.
#
#   benchmarks/gpu_suite.sh              # on a machine with CUDA
#   benchmarks/gpu_suite.sh --dry-run    # on a CPU: the same steps with the tests on the CPU, a
#                                        # tiny ViT in the benchmark and the demo twice on the CPU
#                                        # (checks the script, measures nothing)
#
# Uses .venv/bin/python unless PYTHON is set; run from anywhere.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=offline WANDB_SILENT=true
# Each step is a new Python process: with PYTHONDONTWRITEBYTECODE set each would compile every
# module it imports again (as the Makefile, let the first import write the .pyc).
unset PYTHONDONTWRITEBYTECODE

DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

if [ "$DRY" = 1 ]; then
  export LOCOAD_GPU_TESTS_DEVICE=cpu
  SUFFIX=_dryrun
  BENCH=(--device cpu --smoke --quick --only overhead)
  DEMO_TRAINER=cpu
  TEST_LIMIT=300 BENCH_LIMIT=300 DEMO_LIMIT=400
else
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_suite.sh: torch sees no CUDA device; run it on a GPU machine, or use --dry-run" >&2
    exit 2
  fi
  SUFFIX=
  BENCH=(--device cuda --only stages,overhead,scaling)
  DEMO_TRAINER=gpu
  TEST_LIMIT=150 BENCH_LIMIT=240 DEMO_LIMIT=170   # + start-up: within a 10-minute device call
fi

RESULTS=benchmarks/results
mkdir -p "$RESULTS"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

start=$(date +%s)
timeout "$TEST_LIMIT" "$PY" -m pytest -m gpu -q -p no:randomly tests/test_device.py \
  --junitxml="$TMP/gpu_tests.xml" 2>&1 | tee "$RESULTS/gpu_tests$SUFFIX.log" | tail -n 25
test_rc=${PIPESTATUS[0]}
test_s=$(( $(date +%s) - start ))

start=$(date +%s)
timeout "$BENCH_LIMIT" "$PY" benchmarks/stage_benchmark.py "${BENCH[@]}" --out "stage_benchmark_gpu$SUFFIX.json" 2>&1 | tail -n 40
bench_rc=${PIPESTATUS[0]}
bench_s=$(( $(date +%s) - start ))

start=$(date +%s)
timeout "$DEMO_LIMIT" "$PY" benchmarks/demo_devices.py --trainer "$DEMO_TRAINER" --out "demo_devices$SUFFIX.json" 2>&1 | tail -n 5
demo_rc=${PIPESTATUS[0]}
demo_s=$(( $(date +%s) - start ))

"$PY" - "$TMP/gpu_tests.xml" "$RESULTS/gpu_suite$SUFFIX.json" "$test_rc" "$test_s" "$bench_rc" "$bench_s" "$DRY" \
  "$RESULTS/stage_benchmark_gpu$SUFFIX.json" "$demo_rc" "$demo_s" <<'EOF'
import json, sys, platform, xml.etree.ElementTree as ET
from pathlib import Path
import torch

xml, out, test_rc, test_s, bench_rc, bench_s, dry, bench_json, demo_rc, demo_s = sys.argv[1:]
tests = []
if Path(xml).is_file():
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (node.get("message") or "").splitlines()[:1]
                break
        else:
            message = []
        tests.append({"test": case.get("name"), "outcome": outcome, "time_s": float(case.get("time", 0)),
                      **({"message": message[0][:300]} if message else {})})
bench = json.loads(Path(bench_json).read_text()) if Path(bench_json).is_file() else {}
report = {
    "dry_run": dry == "1",
    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
    "tests": {"exit_code": int(test_rc), "wall_s": int(test_s), "timed_out": int(test_rc) == 124, "cases": tests},
    "stage_benchmark": {"exit_code": int(bench_rc), "wall_s": int(bench_s), "timed_out": int(bench_rc) == 124,
                        "file": Path(bench_json).name, "complete": bool(bench.get("complete"))},
    "demo_devices": {"exit_code": int(demo_rc), "wall_s": int(demo_s), "timed_out": int(demo_rc) == 124,
                     "file": "demo_devices" + ("_dryrun" if dry == "1" else "") + ".json"},
}
Path(out).write_text(json.dumps(report, indent=2) + "\n")
n = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")}
print(f"wrote {out}: tests {n} in {test_s}s (exit {test_rc}); stage benchmark exit {bench_rc} in {bench_s}s, "
      f"complete={report['stage_benchmark']['complete']}; demo CPU vs {'CPU' if dry == '1' else 'GPU'} exit {demo_rc} in {demo_s}s")
EOF
[ "$test_rc" = 0 ] && [ "$bench_rc" = 0 ] && [ "$demo_rc" = 0 ]
