"""The pictures in ``docs/img/``: synthetic casings next to a real Fadul scan.

Run ``python -m ribin.synthetic.figures docs/img [FADUL_DIR]``. Colour maps come from
OpenCV (viridis for heights), so no plotting library is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from ribin.synthetic.dataset import master_pixel_for
from ribin.synthetic.firearm import make_batch, make_firearm
from ribin.synthetic.realism import bandpass
from ribin.synthetic.shot import make_casing, render_casing
from ribin.synthetic.truth import to_breech_frame, truth_masks

PIXEL_UM = 6.25
_WHITE = 255


def colour_heights(heights: np.ndarray, low: float, high: float) -> np.ndarray:
    """Viridis picture (BGR uint8) of heights clipped to [low, high]; NaN is white."""
    scaled = np.clip((np.nan_to_num(heights, nan=low) - low) / (high - low), 0, 1)
    picture = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    picture[~np.isfinite(heights)] = _WHITE
    return picture


def _level(heights_um: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Subtract the plane fitted to `heights_um` over `where` (finite pixels)."""
    rows, cols = np.nonzero(where & np.isfinite(heights_um))
    design = np.column_stack([cols, rows, np.ones(rows.size)])
    coef = np.linalg.lstsq(design, heights_um[rows, cols], rcond=None)[0]
    yy, xx = np.indices(heights_um.shape)
    return heights_um - (coef[0] * xx + coef[1] * yy + coef[2])


def _label(picture: np.ndarray, text: str) -> np.ndarray:
    out = picture.copy()
    scale = out.shape[1] / 800
    for colour, thickness in (((0, 0, 0), 5), ((255, 255, 255), 2)):
        cv2.putText(
            out,
            text,
            (int(24 * scale), int(64 * scale)),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.6 * scale,
            colour,
            max(1, int(thickness * scale * 1.5)),
            cv2.LINE_AA,
        )
    return out


def _row(pictures: list[np.ndarray], side: int) -> np.ndarray:
    tiles = [cv2.resize(p, (side, side), interpolation=cv2.INTER_AREA) for p in pictures]
    gap = np.full((side, 8, 3), _WHITE, np.uint8)
    parts = []
    for tile in tiles:
        parts += [tile if tile.ndim == 3 else cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR), gap]
    return np.hstack(parts[:-1])


def _guns():
    rng = np.random.default_rng(7)
    master = master_pixel_for(PIXEL_UM)
    specs = (("9mm", "round", "milling"), (".40 S&W", "rectangular", "cross_hatch"),
             (".45 ACP", "elliptical", "arcs"))  # fmt: skip
    for k, (caliber, shape, pattern) in enumerate(specs):
        batch = make_batch(rng, f"B{k + 1}", caliber, shape, pattern=pattern,
                           master_pixel_um=master)  # fmt: skip
        yield make_firearm(rng, batch, f"F{k + 1:02d}"), rng


def make_figures(out_dir: str | Path, fadul_dir: str | Path | None = None) -> list[Path]:
    """Write the figures; return their paths. The Fadul figure needs `fadul_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    heights_tiles, grey_tiles, pair = [], [], []
    for gun, rng in _guns():
        casing = make_casing(gun, rng)
        image, truth = render_casing(casing, rng, "3d", PIXEL_UM)
        masks = truth_masks(truth)
        levelled = _level(image * 1e6, masks["breech_face"])
        face = float(np.nanmedian(levelled[masks["breech_face"]]))
        tile = colour_heights(levelled, face - 8, face + 6)
        heights_tiles.append(_label(tile, f"{gun.caliber.name}, {gun.firing_pin.shape} pin"))
        grey, lit = render_casing(casing, rng, "2d", PIXEL_UM)
        grey_tiles.append(_label(cv2.cvtColor((grey * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR),
                                 f"exposure {lit['exposure']:.2f}"))  # fmt: skip
        if not pair:
            for shot_image, shot_truth in (
                (image, truth),
                render_casing(make_casing(gun, rng), rng, "3d", PIXEL_UM),
            ):
                pair.append(_breech_face_signature(shot_image, shot_truth))
    paths = [out / "synthetic_3d.png", out / "synthetic_2d.png"]
    _save(paths[0], _row(heights_tiles, 340))
    _save(paths[1], _row(grey_tiles, 340))
    if fadul_dir is not None and Path(fadul_dir).is_dir():
        from ribin.io import read_x3p

        real = [read_x3p(Path(fadul_dir) / f"Fadul 1-{k}.x3p").heights * 1e6 for k in (1, 2)]
        tiles = [_label(colour_heights(h, -5, 5), f"real: Fadul 1-{k}")
                 for k, h in zip((1, 2), real, strict=True)]  # fmt: skip
        tiles += [_label(colour_heights(s, -5, 5), f"synthetic: F01 shot {k}")
                  for k, s in enumerate(pair, 1)]  # fmt: skip
        paths.append(out / "fadul_vs_synthetic.png")
        _save(paths[-1], _row(tiles, 330))
    return paths


def _save(path: Path, picture: np.ndarray) -> None:
    """PNG small enough for the docs: grey when grey, else a 256-colour palette."""
    from PIL import Image

    rgb = cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)
    if (rgb == rgb[..., :1]).all():
        image = Image.fromarray(np.ascontiguousarray(rgb[..., 0]))
    else:
        image = Image.fromarray(rgb).quantize(256, method=Image.Quantize.MEDIANCUT)
    image.save(path, optimize=True)


def _breech_face_signature(image: np.ndarray, truth: dict) -> np.ndarray:
    """Band-passed breech face (16-500 um, as the Fadul scans), in the breech frame and
    cropped to the same field as a Fadul scan (545 px at 6.25 um)."""
    masks = truth_masks(truth)
    inner = ndimage.binary_erosion(masks["breech_face"], iterations=int(150 / PIXEL_UM))
    heights = np.where(inner, _level(image * 1e6, inner), np.nan)
    aligned = to_breech_frame(bandpass(heights, PIXEL_UM), truth)
    centre = (aligned.shape[0] - 1) // 2
    return aligned[centre - 272 : centre + 273, centre - 272 : centre + 273]


if __name__ == "__main__":
    for path in make_figures(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None):
        print(path)
