"""Comparison and search reports: one self-contained HTML file an examiner can read.

A report holds everything in one file (figures embedded as ``data:`` URIs, no script, no
network): the exhibits' metadata and provenance, and for each region the two signatures
side by side, the second registered onto the first, the congruent cells drawn on both,
and the score, CMC count and log10 likelihood ratio against the calibration behind it.

Figures are drawn with matplotlib's Agg canvas on :class:`matplotlib.figure.Figure`
objects (no pyplot, no global state) with perceptually uniform colour maps, and stay
readable in grayscale: cells are told apart by outline style and numbers, not by colour.
"""

from __future__ import annotations

from ribin.report.figures import (
    FIGURE_KINDS,
    cell_boxes,
    pair_figures,
    region_figure,
    registered_target,
    surface_limits,
    surface_png,
    thumbnail,
)
from ribin.report.html_pages import (
    compare_html,
)
from ribin.report.output import (
    check_writable,
    write_figures,
    write_report,
    write_search_report,
)
from ribin.report.pairs import (
    DPI,
    HEIGHT_CMAP,
    REGION_NAMES,
    PairReport,
    RegionPair,
    compare_pair,
)
from ribin.report.search_page import (
    SearchEntry,
    exhibit_html,
    search_entries,
    search_html,
)

__all__ = [
    "DPI",
    "FIGURE_KINDS",
    "HEIGHT_CMAP",
    "REGION_NAMES",
    "PairReport",
    "RegionPair",
    "SearchEntry",
    "cell_boxes",
    "check_writable",
    "compare_html",
    "compare_pair",
    "exhibit_html",
    "pair_figures",
    "region_figure",
    "registered_target",
    "search_entries",
    "search_html",
    "surface_limits",
    "surface_png",
    "thumbnail",
    "write_figures",
    "write_report",
    "write_search_report",
]
