#!/usr/bin/env bash
# `make demo` on a fresh clone of this repository's HEAD, install included (target: < 3 min):
# prints the seconds of the install and of the demo run, then deletes the clone.
#   bash benchmarks/fresh_clone_demo.sh [REPO]   (default: this repository)
set -euo pipefail
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
git clone -q "$repo" "$dir/locoad"
cd "$dir/locoad"
echo "commit $(git rev-parse --short HEAD), load average $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s.%N)
make install > install.log 2>&1 || { tail -20 install.log; exit 1; }
t1=$(date +%s.%N)
make demo > demo.log 2>&1 || { tail -20 demo.log; exit 1; }
t2=$(date +%s.%N)
grep -E '^\| fused' demo.log
python3 -c "import sys; a, b, c = map(float, sys.argv[1:]); print(f'install {b - a:.0f} s, demo {c - b:.0f} s, total {c - a:.0f} s')" "$t0" "$t1" "$t2"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
