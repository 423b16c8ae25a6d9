"""Exhibit pages: the list, one exhibit (metadata, quality, provenance), its images and report."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request

from ribin import report
from ribin.errors import InputError
from ribin.web.resources import ExhibitRef, resources

blueprint = Blueprint("exhibits", __name__)

PAGE = 100
IMAGE_SIZES = (160, 720)


def exhibit_rows(country: str | None = None, role: str | None = None) -> list[dict[str, Any]]:
    """The ``store list --json`` rows: country, exhibit_id, role, caliber, sharing, site, added.

    Read from the store's index; ``added`` (the time of ingest) from each exhibit's attributes.
    """
    res = resources()
    index = res.index()
    wanted = [
        (key, meta)
        for key, meta in index.items()
        if (not country or key[0] == country) and (not role or meta["role"] == role)
    ]
    added = _added(res.store(), {meta["content_id"] for _, meta in wanted})
    return [
        {
            "country": cc,
            "exhibit_id": exhibit_id,
            "role": meta["role"],
            "caliber": meta["caliber"],
            "sharing": meta["sharing"],
            "site": meta["site"],
            "added": added.get(meta["content_id"], ""),
        }
        for (cc, exhibit_id), meta in wanted
    ]


def _added(store, content_ids: set[str]) -> dict[str, str]:
    """Time of ingest by content ID: one attribute per exhibit, no surface read.

    Replace with the store's own listing once ``ribin store list`` provides one.
    """
    from ribin.store_format import open_segment

    out: dict[str, str] = {}
    for ref in store.segments():
        with open_segment(ref.path) as segment:
            exhibits = segment.get("exhibits")
            if exhibits is None:
                continue
            for content_id in content_ids.intersection(exhibits.keys()):
                value = exhibits[content_id].attrs.get("stored_at", "")
                out[content_id] = value.decode() if isinstance(value, bytes) else str(value)
    return out


@blueprint.get("/exhibits")
def listing():
    res = resources()
    country = (request.args.get("country") or "").upper() or None
    text = (request.args.get("q") or "").strip().lower()
    page = max(1, request.args.get("page", 1, type=int) or 1)
    keys = [
        (cc, exhibit_id, meta)
        for (cc, exhibit_id), meta in res.index().items()
        if (not country or cc == country) and (not text or text in exhibit_id.lower())
    ]
    shown = keys[(page - 1) * PAGE : page * PAGE]
    countries = sorted({cc for cc, _ in res.index()})
    return render_template(
        "exhibits.html",
        rows=shown,
        total=len(keys),
        page=page,
        pages=max(1, -(-len(keys) // PAGE)),
        country=country or "",
        q=text,
        countries=countries,
    )


@blueprint.get("/exhibits/<country>/<path:exhibit_id>")
def exhibit(country: str, exhibit_id: str):
    res = resources()
    ref = ExhibitRef(country.upper(), exhibit_id)
    stored = res.get_stored(ref)
    regions = []
    for region in ("breech_face", "firing_pin"):
        sig = stored.exhibit.signatures().get(region)
        regions.append(
            {
                "region": region,
                "name": report.REGION_NAMES[region],
                "signature": sig,
                "missing": stored.exhibit.missing.get(region),
                "params": (
                    {k: v for k, v in sig.params.items() if k != "detection"} if sig else {}
                ),
            }
        )
    return render_template(
        "exhibit.html",
        ref=ref,
        stored=stored,
        metadata=asdict(stored.metadata),
        regions=regions,
        detection=json.dumps(stored.exhibit.detection, indent=1, sort_keys=True, default=str),
    )


@blueprint.get("/exhibit/signature.png")
def signature_image():
    ref = ExhibitRef.parse(request.args.get("e"))
    region = request.args.get("region", "")
    size = request.args.get("size", 720, type=int)
    if size not in IMAGE_SIZES:
        raise InputError(None, f"image size must be one of {IMAGE_SIZES}")
    res = resources()
    loaded = res.get(ref)
    sig = loaded.exhibit.signatures().get(region)
    if sig is None:
        raise InputError(None, f"{ref.label}: no {region or 'such'} signature")

    def draw() -> bytes:
        return report.surface_png(sig.surface, size=size)  # no figure: needs no lock

    data = res.figures.get_or_make((loaded.key, region, "surface", size), draw)
    response = Response(data, mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=600"
    return response


@blueprint.get("/exhibit/report.html")
def exhibit_report():
    """The exhibit's self-contained HTML report, as a download."""
    ref = ExhibitRef.parse(request.args.get("e"))
    res = resources()
    stored = res.get_stored(ref)
    with res.draw_lock:
        document = report.exhibit_html(
            stored.exhibit,
            asdict(stored.metadata),
            stored={"content ID": stored.content_id, "stored at": stored.stored_at,
                    "segment": stored.segment, "store": res.config.store.name},
            parameters={"command": "ribin serve", "exhibit": ref.label},
        )  # fmt: skip
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stored.exhibit_id)[:80]
    return Response(
        document,
        mimetype="text/html",
        headers={
            "Content-Disposition": f'attachment; filename="ribin-exhibit-{ref.country}-{safe}.html"'
        },
    )


@blueprint.get("/api/exhibits")
def api_exhibits():
    """``{"exhibits": [...]}`` as ``ribin store list --json`` (``?country=``, ``?role=``)."""
    country = (request.args.get("country") or "").upper() or None
    role = request.args.get("role") or None
    return jsonify({"exhibits": exhibit_rows(country, role)})
