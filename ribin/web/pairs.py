"""Two exhibits compared for a page: one comparison per pair, figures drawn on demand.

The figures are the HTML report's own (:func:`ribin.report.region_figure`,
:func:`ribin.report.surface_png`), drawn at a larger resolution so marks can be judged on
screen. A pair is compared once and kept (with its figures) in small caches, so the page and
its images do not compare it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ribin import report
from ribin.report import PairReport
from ribin.web.resources import ExhibitRef, Loaded, Resources, calibration_note

FIGURE_DPI = 110
"""Resolution of the web app's figures: about 900-1150 pixels wide, readable labels."""


@dataclass(frozen=True)
class Pair:
    """A compared pair as pages use it."""

    first: Loaded
    second: Loaded
    report: PairReport
    calibration_source: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.first.key, self.second.key, self.calibration_source)

    def summary(self) -> list[dict[str, Any]]:
        """Per-region figures for the page's tables."""
        rows = []
        for rp in self.report.regions:
            r = rp.result
            rows.append(
                {
                    "region": rp.region,
                    "name": report.REGION_NAMES[rp.region],
                    "score": r.score,
                    "cmc": r.cmc_count,
                    "forward": f"{r.forward.cmc_count} of {r.forward.n_cells}",
                    "backward": f"{r.backward.cmc_count} of {r.backward.n_cells}",
                    "log_lr": rp.log_lr,
                    "rotation": r.registration.rotation_deg,
                    "dx_um": r.registration.dx_um,
                    "dy_um": r.registration.dy_um,
                    "overall_corr": r.overall_corr,
                    "modality": rp.first.modality,
                    "pixel_size_um": rp.first.pixel_size_um,
                    "shape": rp.first.surface.shape,
                    "cells": report.cell_boxes(rp),
                    "calibration": _calibration_facts(rp),
                }
            )
        return rows

    def combined_log_lr(self) -> float | None:
        values = [rp.log_lr for rp in self.report.regions if rp.log_lr is not None]
        return float(sum(values)) if values else None

    def calibration(self) -> dict[str, Any]:
        return calibration_note(self.calibration_source)


def _calibration_facts(rp) -> dict[str, Any] | None:
    c = rp.calibration
    if c is None:
        return None
    return {
        "model": c.model,
        "n_match": c.n_match,
        "n_nonmatch": c.n_nonmatch,
        "lower": c.lower,
        "upper": c.upper,
        "source": c.source,
    }


def compare(res: Resources, first: Loaded, second: Loaded) -> Pair:
    """The comparison of ``first`` (reference) and ``second``, made once and kept."""
    models, source = res.calibration()

    def make() -> Pair:
        from ribin.compare import DEFAULT_PARAMS, compare_many

        a, b = first.exhibit.signatures(), second.exhibit.signatures()
        shared = [r for r in a if r in b and a[r].modality == b[r].modality]
        with res.compare_lock:  # one pair at a time: its regions already fill the cores
            # both regions at once, as a search compares them (compare_pair alone would
            # compare them one after the other)
            results = compare_many([(a[r], b[r], DEFAULT_PARAMS[r]) for r in shared])
            pair_report = report.compare_pair(
                first.exhibit,
                second.exhibit,
                models,
                first_metadata=first.metadata,
                second_metadata=second.metadata,
                calibration_source=source,
                results=dict(zip(shared, results, strict=True)),
            )
        return Pair(first, second, pair_report, source)

    return res.pairs.get_or_make((first.key, second.key, source), make)


def draw_ahead(res: Resources, first: ExhibitRef, second: ExhibitRef) -> None:
    """Compare a pair and draw its overlay layers and figures in the background."""

    def job() -> None:
        pair = compare(res, res.get(first), res.get(second))
        for rp in pair.report.regions:
            for which in ("a", "b"):
                layer(res, pair, rp.region, which)
        for rp in pair.report.regions:
            for kind in report.FIGURE_KINDS:
                figure(res, pair, rp.region, kind)

    res.ahead(job)


def figure(res: Resources, pair: Pair, region: str, kind: str) -> bytes:
    """One report figure of the pair as PNG bytes (cached)."""
    rp = _region(pair, region)
    key = (*pair.key, region, kind)

    def draw() -> bytes:
        with res.draw_lock:
            return report.region_figure(
                rp, kind, pair.first.exhibit.exhibit_id, pair.second.exhibit.exhibit_id,
                dpi=FIGURE_DPI,
            )  # fmt: skip

    return res.figures.get_or_make(key, draw)


def layer(res: Resources, pair: Pair, region: str, which: str) -> bytes:
    """A bare image for the overlay viewer, on A's grid and one colour scale.

    ``which``: ``"a"`` (the reference) or ``"b"`` (the target registered onto A).
    """
    rp = _region(pair, region)
    key = (*pair.key, region, "layer", which)

    def draw() -> bytes:
        a = rp.first.surface
        b = report.registered_target(rp)
        limits = report.surface_limits(a, b)
        # no figure, no lock: a colour-mapped array written by Pillow
        return report.surface_png(a if which == "a" else b, limits)

    if which not in ("a", "b"):
        raise ValueError(which)
    return res.figures.get_or_make(key, draw)


def _region(pair: Pair, region: str):
    from ribin.errors import InputError

    for rp in pair.report.regions:
        if rp.region == region:
            return rp
    raise InputError(None, f"region {region!r} was not compared for this pair")
