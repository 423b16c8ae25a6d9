"""The comparison report's HTML: one self-contained page (figures as ``data:`` URIs, no
script, no network) and the small writer the other pages share."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from ribin import __version__
from ribin.calibration import model_key
from ribin.exhibit import REGIONS, Exhibit, Signature
from ribin.report.figures import pair_figures
from ribin.report.pairs import DPI, REGION_NAMES, PairReport, RegionPair

if TYPE_CHECKING:
    pass


_CSS = """
body{font-family:Helvetica,Arial,sans-serif;color:#111;background:#fff;margin:0}
main{max-width:1040px;margin:0 auto;padding:16px 24px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;border-bottom:2px solid #111;
padding-bottom:2px;margin-top:28px}h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #888;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums}
code,.hash{font-family:Menlo,Consolas,monospace;font-size:11px;word-break:break-all}
figure{margin:8px 0 14px}figure img{max-width:100%;height:auto;border:1px solid #ccc}
figcaption{font-size:12px;color:#333;margin-top:2px}
.note{font-size:12px;color:#333;border-left:3px solid #888;padding:2px 8px}
.big{font-size:15px;font-weight:bold}.congruent{font-weight:bold}
tr.congruent td:first-child::before{content:"\\25A0 "}
pre{font-size:11px;background:#f6f6f6;padding:6px;white-space:pre-wrap;border:1px solid #ddd}
table.params td{font-size:11px;font-family:Menlo,Consolas,monospace}
img.thumb{width:72px;height:auto;border:1px solid #999}
@media print{h2{page-break-before:auto}figure{page-break-inside:avoid}a{color:#000}}
"""


class _Html:
    """A small builder that escapes every text and closes every tag it opens."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def raw(self, text: str) -> None:
        self.parts.append(text)

    def tag(self, name: str, text: Any = "", **attrs: Any) -> None:
        self.parts.append(f"<{name}{_attrs(attrs)}>{_esc(text)}</{name}>")

    def open(self, name: str, **attrs: Any) -> None:
        self.parts.append(f"<{name}{_attrs(attrs)}>")

    def close(self, name: str) -> None:
        self.parts.append(f"</{name}>")

    def table(self, header: Sequence[str], rows: Iterable[Sequence[Any]], **attrs: Any) -> None:
        self.open("table", **attrs)
        self.open("thead")
        self.raw("<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>")
        self.close("thead")
        self.open("tbody")
        for row in rows:
            row_attrs = {}
            if isinstance(row, _Row):
                row_attrs, row = row.attrs, row.cells
            self.raw(f"<tr{_attrs(row_attrs)}>" + "".join(_cell(v) for v in row) + "</tr>")
        self.close("tbody")
        self.close("table")

    def figure(self, png: bytes, alt: str, caption: str) -> None:
        self.open("figure")
        self.raw(f'<img src="{_data_uri(png)}" alt="{_esc(alt)}">')
        self.tag("figcaption", caption)
        self.close("figure")

    def text(self) -> str:
        return "".join(self.parts)


@dataclass(frozen=True)
class _Row:
    cells: Sequence[Any]
    attrs: dict[str, Any]


@dataclass(frozen=True)
class _Markup:
    """Text already escaped (a link, an image)."""

    html: str


def _esc(value: Any) -> str:
    if isinstance(value, _Markup):
        return value.html
    return html.escape("" if value is None else str(value), quote=True)


def _attrs(attrs: Mapping[str, Any]) -> str:
    return "".join(
        f' {name.rstrip("_").replace("_", "-")}="{_esc(value)}"'
        for name, value in attrs.items()
        if value is not None
    )


def _cell(value: Any) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f'<td class="num">{_esc(value)}</td>'
    return f"<td>{_esc(value)}</td>"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(value: float | None, spec: str = ".2f") -> str:
    if value is None or not math.isfinite(value):
        return "–"
    text = format(value, spec)
    # no "-0.00": a value that rounds to zero has no sign worth printing
    return text.lstrip("-") if not text.strip("+-0.") else text


def _document(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="RIBIN {_esc(__version__)}">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_LR_NOTE = (
    "The log10 likelihood ratio compares how probable this score is for pairs fired by the "
    "same firearm and by different firearms, as learnt from the known-match and known-"
    "non-match scores of the calibration named here. It supports the examiner's own "
    "comparison; it is not a conclusion, and it is only as good as those calibration data."
)


def compare_html(
    pair: PairReport,
    *,
    dpi: int = DPI,
    parameters: Mapping | None = None,
    figures: Mapping[str, bytes] | None = None,
) -> str:
    """A self-contained HTML report of a pairwise comparison.

    Parameters
    ----------
    pair : PairReport
    dpi : int
        Resolution of the embedded figures.
    parameters : mapping, optional
        How the report was asked for (command, options), recorded in its provenance.
    figures : mapping, optional
        :func:`pair_figures` of ``pair``, when already drawn.

    Returns
    -------
    str
        The HTML document.
    """
    out = _Html()
    title = f"RIBIN comparison: {pair.first.exhibit_id} vs {pair.second.exhibit_id}"
    out.tag("h1", title)
    out.tag("p", f"Report generated {_now()} by RIBIN {__version__}.", class_="note")
    figures = figures if figures is not None else pair_figures(pair, dpi)
    _pair_body(out, pair, figures=figures, anchor="", level=2)
    _provenance_section(out, {"report": dict(parameters or {})})
    return _document(title, out.text())


def _pair_body(out: _Html, pair: PairReport, figures: Mapping[str, bytes], anchor: str, level: int):
    h, h_sub = f"h{level}", f"h{level + 1}"
    out.tag(h, "Summary", id=f"{anchor}summary")
    rows = []
    for rp in pair.regions:
        r = rp.result
        rows.append(
            [
                _Markup(f'<a href="#{anchor}{rp.region}">{_esc(REGION_NAMES[rp.region])}</a>'),
                _fmt(r.score),
                f"{r.cmc_count} (A in B {r.forward.cmc_count} of {r.forward.n_cells}; "
                f"B in A {r.backward.cmc_count} of {r.backward.n_cells})",
                _lr_cell(rp.log_lr, rp.calibration.name if rp.calibration else None),
                f"{r.registration.rotation_deg:+.1f}°",
                f"({r.registration.dx_um:+.0f}, {r.registration.dy_um:+.0f})",
                _fmt(r.overall_corr),
            ]
        )
    for region, reason in pair.skipped.items():
        rows.append([REGION_NAMES[region], "not compared", reason, "–", "–", "–", "–"])
    out.table(
        [
            "region",
            "score",
            "CMC count",
            "log10 LR",
            "rotation of B",
            "shift of B (µm)",
            "overall corr.",
        ],
        rows,
    )
    out.tag(
        "p",
        "CMC count: cells whose best match agrees on one rotation and translation with "
        "correlation ≥ "
        + ", ".join(f"{rp.result.params.corr_min:g}" for rp in pair.regions[:1])
        + "; the pair's count is the smaller of the two directions. Calibration: "
        + pair.calibration_source
        + ". "
        + _LR_NOTE,
        class_="note",
    )
    cautions = [f"{REGION_NAMES[rp.region]}: {w}" for rp in pair.regions for w in rp.warnings]
    if cautions:
        out.tag("p", "Warnings: " + "; ".join(cautions) + ".", class_="note")
    out.tag(h, "Exhibits", id=f"{anchor}exhibits")
    _exhibits_table(out, pair)
    for rp in pair.regions:
        out.tag(h, f"{REGION_NAMES[rp.region]}", id=f"{anchor}{rp.region}")
        out.tag(h_sub, "Signatures")
        out.figure(
            figures[f"{rp.region}-signatures.png"],
            f"{rp.region} signatures of A and B",
            "Both signatures as measured, on one colour scale (cividis: lighter is higher).",
        )
        out.tag(h_sub, "Registration")
        out.figure(
            figures[f"{rp.region}-registered.png"],
            f"{rp.region}: B registered onto A",
            "B rotated and shifted by the registration the comparison found. Right: A and "
            "registered B in alternating squares; where they agree, marks run on across the "
            "squares' edges.",
        )
        out.tag(h_sub, "Congruent cells")
        out.figure(
            figures[f"{rp.region}-cells.png"],
            f"{rp.region}: cells of A and where they match in B",
            "A's grid of cells, numbered as in the table below. Congruent cells (solid "
            "outline, number in a box) are drawn again in B where they match; their "
            "outlines show B's rotation.",
        )
        _cells_table(out, rp)
        out.tag(h_sub, "Score and likelihood ratio")
        out.figure(
            figures[f"{rp.region}-score.png"],
            f"{rp.region}: score against the calibration",
            "Left: congruent cells at each rotation searched at full resolution (A's cells in "
            "B). Right: the "
            "score (dash-dot line) with the calibration's known-match (solid grey) and "
            "known-non-match (hatched) scores where the calibration keeps them, and the "
            "fitted log10 LR curve.",
        )
        _calibration_note(out, rp)
    _parameters_table(out, pair, h, anchor)


_HOW_TO_CALIBRATE = (
    "To calibrate, a laboratory scans test fires of its own firearms (several shots from "
    "each of several firearms) on its own instrument, ingests them into a store and runs "
    "`ribin calibrate STORE --truth test-fires.csv` (a CSV of exhibit_id and firearm); the "
    "command fits the model, validates it leaving one firearm out and writes a validation "
    "page. See docs/examiner-guide.md."
)


def _lr_cell(log_lr: float | None, calibration: str | None) -> str:
    """A log10 LR with the calibration it came from, or "uncalibrated"."""
    if log_lr is None:
        return "uncalibrated"
    return f"{_fmt(log_lr, '+.2f')} ({calibration})" if calibration else _fmt(log_lr, "+.2f")


def _calibration_note(out: _Html, rp: RegionPair) -> None:
    """Which calibration produced the region's LR, its provenance and validation figures."""
    key = model_key(rp.region, rp.first.modality)
    c = rp.calibration
    if c is None:
        out.tag(
            "p",
            f"Uncalibrated: no calibration for {key} is in use (RIBIN ships none for it: no "
            "real scans to fit one on), so this region gives a score and a rank but no "
            "likelihood ratio. " + _HOW_TO_CALIBRATE,
            class_="note",
        )
        return
    src = c.source
    rows = [
        ["calibration", f"{c.name or key} ({key})"],
        [
            "whose",
            "RIBIN's shipped default, not this laboratory's instrument or firearms: "
            "read its LR with caution. " + _HOW_TO_CALIBRATE
            if c.is_default
            else "the laboratory's own (ribin calibrate)",
        ],
        ["data", src.get("data", "–")],
        ["scanner", src.get("scanner", "–")],
        ["pairs", f"{c.n_match} same-source, {c.n_nonmatch} different-source"],
        ["method", f"{c.model}; log10 LR bounded (ELUB) to [{c.lower:+.2f}, {c.upper:+.2f}]"],
        ["fitted", f"{src.get('fitted_at', '–')}, RIBIN {src.get('software_version', '–')}"],
    ]
    for label, key_ in (
        ("leave one firearm out", "leave_one_firearm_out"),
        ("in sample", "in_sample"),
    ):
        v = c.validation.get(key_) or {}
        if "cllr" in v:
            rows.append(
                [
                    f"validation, {label}",
                    f"Cllr {v['cllr']:.3f}, Cllr_min {v['cllr_min']:.3f}, misleading "
                    f"evidence RMEP {v['rmep']:.3f} / RMED {v['rmed']:.3f} "
                    f"({v['n_match']} same-source, {v['n_nonmatch']} different-source LRs)",
                ]
            )
    out.table(["", ""], rows)


def _exhibits_table(out: _Html, pair: PairReport) -> None:
    a, b = pair.first, pair.second
    keys = ["country", "site", "caliber", "role", "case_ref", "acquired_at", "sharing"]
    rows: list[list[Any]] = [
        ["exhibit ID", a.exhibit_id, b.exhibit_id],
        ["source file", a.source_name, b.source_name],
        [
            "source SHA-256",
            _Markup(f'<span class="hash">{_esc(a.source_sha256)}</span>'),
            _Markup(f'<span class="hash">{_esc(b.source_sha256)}</span>'),
        ],
        ["extracted by", f"RIBIN {a.software_version}", f"RIBIN {b.software_version}"],
    ]
    extra = sorted((set(pair.first_metadata) | set(pair.second_metadata)) - set(keys))
    for key in keys + extra:
        va, vb = pair.first_metadata.get(key), pair.second_metadata.get(key)
        if va or vb:
            rows.append([key.replace("_", " "), va or "–", vb or "–"])
    for region in REGIONS:
        sa, sb = a.signatures().get(region), b.signatures().get(region)
        rows.append(
            [f"{REGION_NAMES[region]} signature", _sig_summary(a, sa, region),
             _sig_summary(b, sb, region)]
        )  # fmt: skip
    rows.append(["warnings", "; ".join(a.warnings) or "none", "; ".join(b.warnings) or "none"])
    out.table(["", f"A: {a.exhibit_id}", f"B: {b.exhibit_id}"], rows)


def _parameters_table(out: _Html, pair: PairReport, heading: str, anchor: str) -> None:
    """Extraction and comparison parameters, one column per signature."""
    columns, values = [], []
    for rp in pair.regions:
        short = "BF" if rp.region == "breech_face" else "FP"
        for side, sig in (("A", rp.first), ("B", rp.second)):
            columns.append(f"{short} {side}")
            values.append({k: v for k, v in sig.params.items() if k != "detection"})
        columns.append(f"{short} comparison")
        values.append(asdict(rp.result.params))
    if not columns:
        return
    out.tag(heading, "Parameters", id=f"{anchor}parameters")
    keys = sorted({k for v in values for k in v})
    rows = []
    for key in keys:
        row = [key]
        for v in values:
            row.append(json.dumps(v[key], default=str) if key in v else "")
        rows.append(row)
    out.table(["parameter", *columns], rows, class_="params")


def _sig_summary(exhibit: Exhibit, sig: Signature | None, region: str) -> Any:
    if sig is None:
        return f"none ({exhibit.missing.get(region, 'not extracted')})"
    quality = ", ".join(f"{k} {_short(v)}" for k, v in sig.quality.items())
    return _Markup(
        f"{_esc(sig.modality.upper())}, {sig.surface.shape[1]} × {sig.surface.shape[0]} px at "
        f"{sig.pixel_size_um:g} µm; {_esc(quality)}<br>ID "
        f'<span class="hash">{_esc(sig.id)}</span>'
    )


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cells_table(out: _Html, rp: RegionPair) -> None:
    mm = rp.first.pixel_size_um
    rows = []
    for cell in sorted(rp.result.cells, key=lambda c: (not c.congruent, -np.nan_to_num(c.corr))):
        rows.append(
            _Row(
                [
                    cell.index + 1,
                    f"{cell.grid_row + 1}, {cell.grid_col + 1}",
                    "yes" if cell.congruent else "no",
                    _fmt(cell.corr),
                    f"{cell.rotation_deg:+.0f}",
                    _fmt(cell.dx_px * mm, "+.0f"),
                    _fmt(cell.dy_px * mm, "+.0f"),
                    f"{cell.valid_fraction:.0%}",
                ],
                {"class_": "congruent"} if cell.congruent else {},
            )
        )
    out.table(
        [
            "cell",
            "row, col",
            "congruent",
            "correlation",
            "rotation (°)",
            "dx (µm)",
            "dy (µm)",
            "valid",
        ],
        rows,
    )


def _provenance_section(out: _Html, provenance: Mapping[str, Any]) -> None:
    out.tag("h2", "Provenance", id="provenance")
    record = {"software": f"RIBIN {__version__}", "generated_at": _now(), **provenance}
    out.tag("pre", json.dumps(record, indent=1, sort_keys=True, default=str))
