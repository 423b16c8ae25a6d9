"""Search and exhibit reports: the ranked candidates of a search as one HTML page."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ribin import __version__
from ribin.calibration import Calibration
from ribin.exhibit import REGIONS, Exhibit
from ribin.report.figures import pair_figures, surface_png, thumbnail
from ribin.report.html_pages import (
    _LR_NOTE,
    _data_uri,
    _document,
    _esc,
    _fmt,
    _Html,
    _lr_cell,
    _Markup,
    _now,
    _pair_body,
    _provenance_section,
    _short,
)
from ribin.report.pairs import DPI, REGION_NAMES, PairReport, compare_pair

if TYPE_CHECKING:
    from ribin.search import Candidate, SearchResult
    from ribin.store import SignatureStore


@dataclass(frozen=True)
class SearchEntry:
    """One listed candidate of a search report.

    Attributes
    ----------
    candidate : ribin.search.Candidate
    thumbnail : bytes or None
        PNG of its breech-face signature (else its first region).
    pair : PairReport or None
        Its full comparison with the query, for the first candidates only.
    """

    candidate: Candidate
    thumbnail: bytes | None = None
    pair: PairReport | None = None


def search_entries(
    store: SignatureStore,
    result: SearchResult,
    query: Exhibit,
    calibration: Mapping[str, Calibration] | None = None,
    *,
    top: int = 5,
    calibration_source: str = "none",
    query_metadata: Mapping[str, Any] | None = None,
) -> list[SearchEntry]:
    """Read the listed candidates back from the store and compare the first ``top``.

    Parameters
    ----------
    store : SignatureStore
        The open store that was searched.
    result : SearchResult
    query : Exhibit
        The query exhibit itself.
    calibration : mapping, optional
        Models by :func:`~ribin.calibration.model_key`.
    top : int
        How many candidates get a full comparison section.
    calibration_source : str
    query_metadata : mapping, optional

    Returns
    -------
    list of SearchEntry
    """
    entries = []
    for candidate in result.candidates:
        stored = store.get(candidate.exhibit_id, country=candidate.country)
        signatures = stored.exhibit.signatures()
        first = signatures.get("breech_face") or next(iter(signatures.values()), None)
        pair = None
        if candidate.rank <= top:
            pair = compare_pair(
                query,
                stored.exhibit,
                calibration,
                first_metadata=query_metadata,
                second_metadata=asdict(stored.metadata),
                calibration_source=calibration_source,
            )
        entries.append(SearchEntry(candidate, thumbnail(first) if first else None, pair))
    return entries


def search_html(
    result: SearchResult,
    query: Exhibit,
    entries: Sequence[SearchEntry],
    *,
    dpi: int = DPI,
    parameters: Mapping | None = None,
    figures: dict[str, bytes] | None = None,
) -> str:
    """A self-contained HTML report of a search: the ranked list and the top comparisons.

    Parameters
    ----------
    result : SearchResult
    query : Exhibit
    entries : sequence of SearchEntry
        From :func:`search_entries`.
    dpi : int
    parameters : mapping, optional
        How the report was asked for, recorded in its provenance.
    figures : dict, optional
        Filled with every figure drawn, named ``"rank01-breech_face-cells.png"`` and so on.

    Returns
    -------
    str
    """
    out = _Html()
    title = f"RIBIN search: {result.query}, scope {result.scope}"
    out.tag("h1", title)
    out.tag(
        "p",
        f"Searched by {result.searcher} over {', '.join(result.countries)}: "
        f"{result.compared} full comparisons of {result.considered} candidates in "
        f"{result.seconds:.1f} s. Report generated {_now()} by RIBIN {__version__}.",
        class_="note",
    )
    query_sig = query.signatures().get("breech_face") or next(iter(query.signatures().values()))
    out.open("p")
    out.raw(f'<img class="thumb" src="{_data_uri(thumbnail(query_sig))}" alt="query signature"> ')
    out.tag("span", f"Query {query.exhibit_id} ({query.source_name}), SHA-256 ")
    out.tag("span", query.source_sha256, class_="hash")
    out.close("p")
    out.tag("h2", "Ranked candidates", id="ranked")
    rows = []
    for entry in entries:
        c = entry.candidate
        anchor = f"rank{c.rank}-"
        thumb = (
            f'<img class="thumb" src="{_data_uri(entry.thumbnail)}" alt="{_esc(c.exhibit_id)}">'
            if entry.thumbnail
            else ""
        )
        if entry.pair is not None:
            thumb = f'<a href="#{anchor}summary">{thumb or _esc(c.exhibit_id)}</a>'
            name = _Markup(f'<a href="#{anchor}summary">{_esc(c.exhibit_id)}</a>')
        else:
            name = c.exhibit_id
        rows.append(
            [
                c.rank,
                _Markup(thumb),
                name,
                c.country,
                _fmt(c.score),
                _lr_cell(c.log_lr, getattr(c, "calibration", None)),
                _region_cell(c.breech_face),
                _region_cell(c.firing_pin),
            ]
        )
    out.table(
        [
            "rank",
            "signature",
            "exhibit",
            "country",
            "score",
            "log10 LR",
            "BF rank / score / CMC",
            "FP rank / score / CMC",
        ],
        rows,
    )
    n_full = sum(e.pair is not None for e in entries)
    out.tag(
        "p",
        f"The first {n_full} candidates are compared in full below (follow the links). "
        "Candidates are ranked by score (the sum of the regions' scores), which every "
        "candidate has; the log10 LR beside it sums the calibrated regions' LRs, treating "
        "them as independent evidence (an approximation), and names the calibration; "
        "'uncalibrated' means no LR exists for that region and modality. " + _LR_NOTE,
        class_="note",
    )
    for entry in entries:
        if entry.pair is None:
            continue
        c = entry.candidate
        anchor = f"rank{c.rank}-"
        pair_figs = pair_figures(entry.pair, dpi)
        if figures is not None:
            figures.update({f"rank{c.rank:02d}-{k}": v for k, v in pair_figs.items()})
        out.open("section", id=f"rank{c.rank}")
        out.tag("h2", f"Rank {c.rank}: {query.exhibit_id} vs {c.exhibit_id}")
        out.raw('<p><a href="#ranked">back to the ranked list</a></p>')
        _pair_body(out, entry.pair, pair_figs, anchor=anchor, level=3)
        out.close("section")
    _provenance_section(out, {"search": result.provenance, "report": dict(parameters or {})})
    return _document(title, out.text())


def exhibit_html(
    exhibit: Exhibit,
    metadata: Mapping[str, Any] | None = None,
    *,
    stored: Mapping[str, Any] | None = None,
    parameters: Mapping | None = None,
) -> str:
    """A self-contained HTML report of one exhibit: metadata, signatures, quality, provenance.

    Parameters
    ----------
    exhibit : Exhibit
    metadata : mapping, optional
        What the lab recorded (country, site, caliber, role, ...).
    stored : mapping, optional
        Where the store keeps it (content ID, segment, time of ingest).
    parameters : mapping, optional
        How the report was asked for, recorded in its provenance.

    Returns
    -------
    str
        The HTML document.
    """
    out = _Html()
    title = f"RIBIN exhibit: {exhibit.exhibit_id}"
    out.tag("h1", title)
    out.tag("p", f"Report generated {_now()} by RIBIN {__version__}.", class_="note")
    out.tag("h2", "Exhibit", id="exhibit")
    rows: list[list[Any]] = [["exhibit ID", exhibit.exhibit_id]]
    rows += [[k.replace("_", " "), v] for k, v in (metadata or {}).items() if v]
    rows += [[k.replace("_", " "), v] for k, v in (stored or {}).items() if v]
    rows += [
        ["source file", exhibit.source_name],
        ["source SHA-256", _Markup(f'<span class="hash">{_esc(exhibit.source_sha256)}</span>')],
        ["extracted by", f"RIBIN {exhibit.software_version}"],
        ["warnings", "; ".join(exhibit.warnings) or "none"],
    ]
    out.table(["", ""], rows)
    for region in REGIONS:
        sig = exhibit.signatures().get(region)
        out.tag("h2", REGION_NAMES[region], id=region)
        if sig is None:
            out.tag("p", f"Not extracted: {exhibit.missing.get(region, 'no reason recorded')}")
            continue
        out.figure(
            surface_png(sig.surface, size=480),
            f"{region} signature of {exhibit.exhibit_id}",
            f"{sig.modality.upper()} signature, {sig.surface.shape[1]} × {sig.surface.shape[0]} "
            f"px at {sig.pixel_size_um:g} µm (cividis: lighter is higher).",
        )
        out.table(["quality figure", "value"], [[k, _short(v)] for k, v in sig.quality.items()])
        out.tag("p", f"Signature ID {sig.id}", class_="note")
        params = {k: v for k, v in sig.params.items() if k != "detection"}
        out.tag("pre", json.dumps(params, indent=1, sort_keys=True, default=str))
    provenance = {"exhibit": {"detection": exhibit.detection}, "report": dict(parameters or {})}
    _provenance_section(out, provenance)
    return _document(title, out.text())


def _region_cell(match: Any) -> str:
    if match is None or match.score is None:
        return "–"
    return f"{match.rank} / {match.score:.2f} / {match.cmc_count}"
