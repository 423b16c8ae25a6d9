"""Region detection accuracy and extraction time on synthetic casings with ground truth.

Prints, for 3D and 2D: primer-centre error (% of the primer radius; share of casings under
2 %), firing-pin and breech-face mask IoU against the generator's truth (median and 5th
percentile), failures, and the time to extract one casing (3D 545 x 545, 2D 2592 x 1944).

    python benchmarks/bench_extraction.py [--firearms N] [--shots N] [--seed S]
    python benchmarks/bench_extraction.py --modalities 2d --exposure 2.5 \
        --name extraction_glare --skip-timing      # 2D under glare (high ring light)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import FADUL_DIR, machine
from results import record

from ribin.errors import InputError
from ribin.io.casing import Casing
from ribin.preprocess import detect_regions
from ribin.signatures import extract
from ribin.synthetic.firearm import CALIBERS, FP_SHAPES, make_batch, make_firearm
from ribin.synthetic.shot import field_of_view_um, make_casing, render_casing
from ribin.synthetic.truth import truth_masks

PIXEL_UM = 6.25  # the generator's default (a typical confocal / micrograph pixel)


def as_casing(image: np.ndarray, modality: str, pixel_um: float, name: str) -> Casing:
    surface = image * 1e6 if modality == "3d" else image.astype(np.float32)
    return Casing(
        surface=surface,
        modality=modality,
        pixel_size_um=pixel_um,
        mask=np.isfinite(surface),
        source=name,
    )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else float("nan")


def accuracy(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    rows: dict[str, list[dict]] = {m: [] for m in args.modalities}
    failures: dict[str, list[str]] = {m: [] for m in args.modalities}
    for caliber in CALIBERS:
        for shape in FP_SHAPES:
            batch = make_batch(rng, f"{caliber}-{shape}", caliber, shape)
            for k in range(args.firearms):
                firearm = make_firearm(rng, batch, f"F{k}")
                for shot in range(args.shots):
                    casing = make_casing(firearm, rng, shot)
                    for modality in args.modalities:
                        exposure = args.exposure if modality == "2d" else None
                        image, truth = render_casing(
                            casing, rng, modality, PIXEL_UM, exposure=exposure
                        )
                        name = f"{caliber} {shape} F{k} shot {shot} {modality}"
                        c = as_casing(image, modality, PIXEL_UM, name)
                        t0 = time.perf_counter()
                        try:
                            det = detect_regions(c.surface, c.mask, modality, PIXEL_UM)
                        except InputError as exc:
                            failures[modality].append(f"{name}: {exc}")
                            continue
                        seconds = time.perf_counter() - t0
                        masks = truth_masks(truth)
                        tx, ty = truth["primer_centre_px"]
                        err = math.hypot(det.primer_center[0] - tx, det.primer_center[1] - ty)
                        fp_iou = (
                            iou(det.firing_pin_mask, masks["firing_pin"])
                            if det.firing_pin_mask is not None
                            else 0.0
                        )
                        rows[modality].append(
                            {
                                "centre_pct": 100 * err / truth["primer_radius_px"],
                                "radius_pct": 100
                                * (det.primer_radius / truth["primer_radius_px"] - 1),
                                "fp_iou": fp_iou,
                                "bf_iou": iou(det.breech_face_zone, masks["breech_face"]),
                                "fp_shape_ok": det.firing_pin is not None
                                and det.firing_pin.shape == truth["fp_shape"],
                                "seconds": seconds,
                                "name": name,
                            }
                        )
    print(
        f"\nDetection on synthetic casings ({PIXEL_UM} um pixels; {len(CALIBERS)} calibers x "
        f"{len(FP_SHAPES)} pin shapes x {args.firearms} firearms x {args.shots} shots)"
    )
    header = (
        f"{'':4}{'n':>4}{'fail':>5}{'centre err % r':>16}{'<2 %':>7}{'radius err %':>14}"
        f"{'FP IoU med/p5':>16}{'BF IoU med/p5':>16}{'shape ok':>9}{'detect s':>9}"
    )
    print(header)
    for modality, items in rows.items():
        if not items:
            print(f"{modality:4}{0:>4}{len(failures[modality]):>5}")
            continue
        c = np.array([r["centre_pct"] for r in items])
        rad = np.array([r["radius_pct"] for r in items])
        fp = np.array([r["fp_iou"] for r in items])
        bf = np.array([r["bf_iou"] for r in items])
        ok = np.mean([r["fp_shape_ok"] for r in items])
        sec = np.median([r["seconds"] for r in items])
        print(
            f"{modality:4}{len(items):>4}{len(failures[modality]):>5}"
            f"{np.median(c):>8.2f} / {c.max():5.2f}{100 * np.mean(c < 2):>6.0f}%"
            f"{np.median(rad):>7.2f} / {np.abs(rad).max():4.1f}"
            f"{np.median(fp):>9.3f} / {np.percentile(fp, 5):.3f}"
            f"{np.median(bf):>9.3f} / {np.percentile(bf, 5):.3f}"
            f"{100 * ok:>8.0f}%{sec:>9.2f}"
        )
        ROWS.append(
            [
                modality,
                len(items),
                len(failures[modality]),
                f"{np.median(c):.2f} / {c.max():.2f}",
                f"{100 * np.mean(c < 2):.0f} %",
                f"{np.median(bf):.3f} / {np.percentile(bf, 5):.3f}",
                f"{np.median(fp):.3f} / {np.percentile(fp, 5):.3f}",
                f"{100 * ok:.0f} %",
            ]
        )
        worst = sorted(items, key=lambda r: r["fp_iou"])[:3]
        print("     lowest FP IoU: " + "; ".join(f"{r['name']} {r['fp_iou']:.2f}" for r in worst))
    for items in failures.values():
        for line in items:
            print(f"  FAILED {line}")
    print(
        "  (centre err: median / max; radius err: median / max |.|; BF IoU: detected "
        "breech-face zone vs truth, before the signature's rim and edge trim)"
    )


ROWS: list[list] = []


def timing(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed + 1)
    batch = make_batch(rng, "T", "9mm", "rectangular")
    firearm = make_firearm(rng, batch)
    casing = make_casing(firearm, rng)
    fov = field_of_view_um(firearm)
    cases = []
    px3 = fov / 545
    img3, _ = render_casing(casing, rng, "3d", px3)
    cases.append(("3D synthetic, full head", as_casing(img3, "3d", px3, "t3d")))
    px2 = fov / 1944
    img2, _ = render_casing(casing, rng, "2d", px2)
    pad = (2592 - img2.shape[1]) // 2
    img2 = np.pad(img2, ((0, 0), (pad, 2592 - img2.shape[1] - pad)), mode="reflect")
    cases.append(("2D synthetic, full head", as_casing(img2, "2d", px2, "t2d")))
    fadul = sorted(FADUL_DIR.glob("*.x3p"))
    if fadul:
        from ribin.io import read_casing

        cases.append(("3D Fadul, cropped BF", read_casing(fadul[0])))
    print("\nExtraction time per casing (detection + both signatures, default settings)")
    for label, c in cases:
        extract(c)  # warm caches
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            ex = extract(c)
            times.append(time.perf_counter() - t0)
        shapes = {k: v.surface.shape for k, v in ex.signatures().items()}
        print(
            f"  {label:26} {c.surface.shape[0]:>5} x {c.surface.shape[1]:<5} "
            f"{c.pixel_size_um:6.2f} um  {min(times):6.2f} s (best of {args.repeat}; "
            f"median {np.median(times):.2f} s)  signatures {shapes}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firearms", type=int, default=1, help="firearms per caliber x shape")
    parser.add_argument("--shots", type=int, default=3, help="shots per firearm")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--modalities", nargs="+", default=["3d", "2d"], choices=["3d", "2d"])
    parser.add_argument(
        "--exposure",
        type=float,
        default=None,
        help="2D: fixed ring-light exposure (1 nominal; 2.5 = glare); default drawn per shot",
    )
    parser.add_argument("--name", default="extraction", help="name of the recorded table")
    args = parser.parse_args()
    print(machine() + ("" if args.exposure is None else f"; 2D exposure {args.exposure:g}"))
    if not args.skip_accuracy:
        accuracy(args)
        glare = "" if args.exposure is None else f", 2D ring-light exposure {args.exposure:g}"
        record(
            args.name,
            "Region detection on synthetic casings with known regions" + glare,
            [
                "modality",
                "casings",
                "failed",
                "centre error % of primer radius, median / max",
                "centre error < 2 %",
                "breech-face IoU median / 5th pct",
                "firing-pin IoU median / 5th pct",
                "pin shape right",
            ],
            ROWS,
            "Synthetic casings of every caliber and pin shape (round, elliptical, rectangular), "
            "rendered at 6.25 um with per-shot pose, dropouts, tilt and, in 2D, ring-light "
            "variation; IoU of the detected zone against the generator's truth"
            + (
                f" (2D exposure fixed at {args.exposure:g} times nominal: glare)"
                if args.exposure is not None
                else ""
            )
            + ".",
        )
    if not args.skip_timing:
        timing(args)


if __name__ == "__main__":
    main()
