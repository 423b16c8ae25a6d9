"""The search page: upload a casing (or name a stored exhibit), choose the scope, rank."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, render_template, request, session

from ribin.errors import InputError
from ribin.web.resources import ExhibitRef, calibration_note, resources
from ribin.web.uploads import extract_upload

blueprint = Blueprint("search", __name__)

DEFAULT_TOP = 20


def _choices() -> dict[str, Any]:
    network = resources().network
    countries = sorted(network.countries)
    scopes = ["country", *[f"cluster:{name}" for name in sorted(network.clusters)], "network"]
    return {"countries": countries, "scopes": scopes}


def _float(name: str) -> float | None:
    text = (request.form.get(name) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(None, f"{name.replace('_', ' ')} {text!r} is not a number") from None
    if not value > 0:
        raise InputError(None, f"{name.replace('_', ' ')} must be positive")
    return value


def _int(name: str, default: int, high: int) -> int:
    text = (request.form.get(name) or "").strip()
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= high:
        raise InputError(None, f"{name} must be a whole number from 1 to {high}")
    return int(text)


def run_search() -> dict[str, Any]:
    """Parse the search form (or JSON-less multipart API call) and search."""
    from ribin.search import Filters, search

    res = resources()
    form = request.form
    searcher = (form.get("country") or "").strip().upper() or None
    scope = (form.get("scope") or "").strip() or "country"
    top = _int("top", DEFAULT_TOP, 200)
    caliber = (form.get("caliber") or "").strip() or None
    stored = (form.get("exhibit") or "").strip()
    models, source = res.calibration()
    store = res.store()
    if stored:
        ref = ExhibitRef.parse(stored)
        query: Any = res.get_stored(ref)
        query_ref = ref
        exhibit = query.exhibit
        searcher = searcher or ref.country
    else:
        options = {"caliber": caliber} if caliber else {}
        exhibit = extract_upload(
            request.files.get("casing"), pixel_size_um=_float("pixel_size"), **options
        )
        query = exhibit
        query_ref = ExhibitRef(None, "", upload=res.hold_upload(exhibit))
    if searcher is None:
        raise InputError(None, "choose the searching country")
    result = search(
        store,
        query,
        scope=scope,
        searcher=searcher,
        top=top,
        network=res.network,
        filters=Filters(caliber=(form.get("filter_caliber") or "").strip() or None),
        calibration=models,
    )
    session["country"] = searcher
    document = result.to_json()
    document["provenance"]["calibration_file"] = source
    return {
        "result": result,
        "document": document,
        "query_ref": query_ref,
        "query": exhibit,
        "calibration_source": source,
        "calibration": calibration_note(source),
    }


@blueprint.get("/search")
def form():
    return render_template(
        "search.html", **_choices(), chosen=_defaults(), outcome=None, error=None
    )


def _defaults() -> dict[str, str]:
    form = request.form if request.method == "POST" else request.args
    return {
        "country": form.get("country") or session.get("country", ""),
        "scope": form.get("scope") or "country",
        "top": form.get("top") or str(DEFAULT_TOP),
        "exhibit": form.get("exhibit") or "",
        "caliber": form.get("caliber") or "",
        "filter_caliber": form.get("filter_caliber") or "",
        "pixel_size": form.get("pixel_size") or "",
    }


@blueprint.post("/search")
def submit():
    try:
        outcome = run_search()
    except InputError as exc:
        message = str(exc).splitlines()[0]
        return render_template(
            "search.html", **_choices(), chosen=_defaults(), outcome=None, error=message
        ), 400
    return render_template(
        "search.html", **_choices(), chosen=_defaults(), outcome=outcome, error=None
    )


@blueprint.post("/api/search")
def api_search():
    """Multipart form as the page's (``casing`` file or ``exhibit``); ``search --json``."""
    outcome = run_search()
    document = outcome["document"]
    document["query_ref"] = outcome["query_ref"].label
    return jsonify(document)
