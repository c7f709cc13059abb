"""``locoad-cache [--root DIR] info|prune|clear``: inspect and trim the on-disk stage cache.

``info`` lists every configuration folder (stage, what produced it, entries, size); ``prune
--max-gb N`` deletes least recently used entries until the cache fits in N GB (what
``model.cache.max_gb`` does after each run); ``clear [--stage S]`` deletes one stage or all.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

from locoad.cache import STAGES, StageCache, disk

DEFAULT_ROOT = Path(".cache/stages")  # ${paths.cache_dir}/stages run from the project root


def describe(config_json: Path) -> str:
    """One line about what produced a config folder: the segmenter/backbone class and its key."""
    try:
        doc = json.loads(config_json.read_text())
    except (OSError, ValueError):
        return "(no readable config.json)"
    name = str(doc.get("class", doc.get("stage", "?"))).rsplit(".", 1)[-1]
    key = doc.get("key") or doc.get("state") or {}
    if isinstance(key, dict):
        shown = {k: v for k, v in key.items() if isinstance(v, (str, int, float, bool)) and k != "version"}
        detail = ", ".join(f"{k}={v}" for k, v in list(shown.items())[:4])
        return f"{name}({detail})" if detail else name
    return name


def info(root: Path) -> list[dict]:
    rows = []
    for stage in STAGES:
        stage_dir = root / stage
        if not stage_dir.is_dir():
            continue
        for cfg_dir in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
            files = [p for p in disk.files(cfg_dir) if p.name != "config.json" and not p.name.endswith(".tmp")]
            rows.append({"stage": stage, "config": cfg_dir.name, "what": describe(cfg_dir / "config.json"),
                         "entries": len(files), "bytes": sum(disk.size(p) for p in files)})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="locoad-cache", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"the cache folder (default: {DEFAULT_ROOT})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="list configuration folders, entries and sizes")
    prune = sub.add_parser("prune", help="delete least recently used entries beyond a size")
    prune.add_argument("--max-gb", type=float, required=True)
    clear = sub.add_parser("clear", help="delete a stage (or everything)")
    clear.add_argument("--stage", choices=STAGES, default=None, help="default: every stage")
    args = parser.parse_args(argv)
    if args.command == "prune" and not 0 < args.max_gb < math.inf:  # inf failed converting to bytes
        parser.exit(2, f"locoad-cache: --max-gb must be a positive, finite size in GB, got {args.max_gb}\n")

    root: Path = args.root.expanduser()
    if not root.is_dir():
        parser.exit(1, f"locoad-cache: no cache at {root} (nothing cached yet, or pass --root "
                       "<paths.cache_dir>/stages)\n")
    if args.command == "info":
        rows = info(root)
        for r in rows:
            print(f"{r['stage']:<9} {r['config']}  {r['entries']:>7} entries  {r['bytes'] / 1e9:8.3f} GB  {r['what']}")
        free = disk.free_bytes(root)
        print(f"total: {sum(r['entries'] for r in rows)} entries, {sum(r['bytes'] for r in rows) / 1e9:.3f} GB in {root}"
              + (f" ({free / 1e9:.1f} GB free on its disk)" if free is not None else ""))
    elif args.command == "prune":
        deleted, freed = StageCache(root, max_gb=args.max_gb).prune()
        print(f"deleted {deleted} files, freed {freed / 1e9:.3f} GB; {root} now holds "
              f"{sum(StageCache(root).usage().values()) / 1e9:.3f} GB")
    else:
        for stage in [args.stage] if args.stage else STAGES:
            shutil.rmtree(root / stage, ignore_errors=True)
        print(f"cleared {args.stage or 'every stage'} in {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
