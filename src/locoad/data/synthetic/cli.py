"""``locoad-synth OUT``: write the synthetic LOCO-like data set to OUT."""

from __future__ import annotations

import argparse
import time

from .categories import CATEGORIES
from .generator import generate


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: sys.argv), generate, print a one-line summary."""
    parser = argparse.ArgumentParser(
        prog="locoad-synth", description="Generate synthetic MVTec-LOCO-like data.")
    parser.add_argument("out", help="root folder (one sub-folder per category)")
    parser.add_argument("--categories", nargs="+", choices=CATEGORIES, default=None,
                        help="categories to generate (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--n-train", type=int, default=16)
    parser.add_argument("--n-validation", type=int, default=4)
    parser.add_argument("--n-test-good", type=int, default=12)
    parser.add_argument("--n-logical", type=int, default=12)
    parser.add_argument("--n-structural", type=int, default=12)
    for kind in ("good", "logical", "structural"):
        parser.add_argument(f"--n-tune-{kind}", type=int, default=0,
                            help=f"{kind} images of the labelled tune split (data.eval_split=tune)")
    parser.add_argument("--capture", choices=["clean", "varied"], default="clean",
                        help="varied: photo-like captures at native LOCO sizes (--size is unused)")
    parser.add_argument("--size-factor", type=float, default=1.0,
                        help="--capture varied: native LOCO size times this")
    parser.add_argument("--defect-scale", type=float, default=1.0,
                        help="structural defects' size times this (0.4: small, faint ones)")
    parser.add_argument("--overwrite", action="store_true",
                        help="regenerate even if a complete data set with these parameters exists")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root = generate(args.out, categories=args.categories, seed=args.seed, image_size=args.size,
                    n_train=args.n_train, n_validation=args.n_validation,
                    n_test_good=args.n_test_good, n_logical=args.n_logical,
                    n_structural=args.n_structural, n_tune_good=args.n_tune_good,
                    n_tune_logical=args.n_tune_logical, n_tune_structural=args.n_tune_structural,
                    capture=args.capture, size_factor=args.size_factor,
                    defect_scale=args.defect_scale, overwrite=args.overwrite)
    print(f"synthetic data in {root} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
