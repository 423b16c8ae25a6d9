"""``python -m ribin.synthetic``: generate a set of synthetic casings with ground truth."""

from __future__ import annotations

import argparse
import sys
import time

from ribin.synthetic import COMMITTED_SET, DEFAULT_PIXEL_SIZE_UM, MODALITIES, generate_set


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, generate the set, print one summary line."""
    parser = argparse.ArgumentParser(prog="python -m ribin.synthetic", description=__doc__)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--firearms", type=int, default=COMMITTED_SET["firearms"])
    parser.add_argument("--shots", type=int, default=COMMITTED_SET["shots"])
    parser.add_argument("--seed", type=int, default=COMMITTED_SET["seed"])
    parser.add_argument(
        "--pixel-size",
        type=float,
        default=DEFAULT_PIXEL_SIZE_UM,
        help=f"um per pixel (default {DEFAULT_PIXEL_SIZE_UM})",
    )
    parser.add_argument(
        "--modality", default="3d,2d", help="comma-separated: 3d, 2d (default both)"
    )
    args = parser.parse_args(argv)
    modalities = [m.strip().lower() for m in args.modality.split(",") if m.strip()]
    if not modalities or any(m not in MODALITIES for m in modalities):
        parser.error(f"--modality takes a comma-separated list of {', '.join(MODALITIES)}")
    start = time.perf_counter()
    rows = generate_set(
        args.out,
        firearms=args.firearms,
        shots=args.shots,
        seed=args.seed,
        pixel_size_um=args.pixel_size,
        modalities=modalities,
    )
    seconds = time.perf_counter() - start
    print(f"{len(rows)} files in {args.out} ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
