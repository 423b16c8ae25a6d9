"""The compare view: two exhibits side by side, overlaid after registration, cells, scores.

The lead page shows the same pair view (``_pair.html``) with the lead's record and the
decision form around it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, render_template, request

from ribin import report
from ribin.errors import InputError
from ribin.web import pairs
from ribin.web.resources import ExhibitRef, Resources, resources

blueprint = Blueprint("compare", __name__)


def _compared(first: ExhibitRef, second: ExhibitRef) -> tuple[Resources, pairs.Pair]:
    """The app's resources and the (cached) comparison of ``first`` with ``second``."""
    res = resources()
    return res, pairs.compare(res, res.get(first), res.get(second))


def pair_context(first: ExhibitRef, second: ExhibitRef) -> dict[str, Any]:
    """What ``_pair.html`` needs: the compared pair, its tables, image URLs' arguments."""
    res, pair = _compared(first, second)
    pairs.draw_ahead(res, first, second)  # the figures below the fold, while the page loads
    return {
        "pair": pair,
        "a": first.label,
        "b": second.label,
        "regions": pair.summary(),
        "skipped": {report.REGION_NAMES[k]: v for k, v in pair.report.skipped.items()},
        "calibration": pair.calibration(),
        "combined_log_lr": pair.combined_log_lr(),
        "figure_kinds": report.FIGURE_KINDS,
    }


def _refs() -> tuple[ExhibitRef, ExhibitRef]:
    return ExhibitRef.parse(request.args.get("a")), ExhibitRef.parse(request.args.get("b"))


@blueprint.get("/compare")
def compare():
    first, second = _refs()
    return render_template("compare.html", **pair_context(first, second))


def _png(data: bytes) -> Response:
    response = Response(data, mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=600"
    return response


@blueprint.get("/pair/figure.png")
def figure():
    first, second = _refs()
    kind = request.args.get("kind", "")
    if kind not in report.FIGURE_KINDS:
        raise InputError(None, f"unknown figure {kind!r}")
    res, pair = _compared(first, second)
    return _png(pairs.figure(res, pair, request.args.get("region", ""), kind))


@blueprint.get("/pair/layer.png")
def layer():
    first, second = _refs()
    which = request.args.get("which", "")
    if which not in ("a", "b"):
        raise InputError(None, f"unknown layer {which!r}")
    res, pair = _compared(first, second)
    return _png(pairs.layer(res, pair, request.args.get("region", ""), which))


@blueprint.get("/pair/report.html")
def pair_report():
    """The comparison's self-contained HTML report (the same as ``ribin compare --report``)."""
    first, second = _refs()
    res, pair = _compared(first, second)
    with res.draw_lock:
        document = report.compare_html(
            pair.report, parameters={"command": "ribin serve", "a": first.label, "b": second.label}
        )
    names = (_safe(pair.first.exhibit.exhibit_id), _safe(pair.second.exhibit.exhibit_id))
    name = f"ribin-compare-{names[0]}-{names[1]}.html"
    return Response(
        document,
        mimetype="text/html",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:60]
