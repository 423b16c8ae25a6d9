"""Lead queue, lead page, decisions and linked groups, over :mod:`ribin.workflow`.

The workflow package (leads, conclusions, audit log in ``STORE/workflow.sqlite``) is imported
on first use, so the rest of the app runs without it. Decisions go through
:meth:`ribin.workflow.Workflow.decide` with ``source="web"``: the same rules and the same
audit log as ``ribin leads decide``.
"""

from __future__ import annotations

import importlib.util
import sqlite3
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from ribin.errors import InputError, StoreError
from ribin.web.resources import ExhibitRef, calibration_note, resources

blueprint = Blueprint("leads", __name__)

STATUSES = ("open", "identification", "inconclusive", "elimination", "all")
CONCLUSIONS = ("identification", "inconclusive", "elimination")
SORTS = {
    "score": lambda lead: _num(lead.get("score")),
    "lr": lambda lead: _num(lead.get("log_lr")),
    "date": lambda lead: lead.get("created") or "",
    "rank": lambda lead: -_num(lead.get("rank")),
}


def available() -> bool:
    """True when :mod:`ribin.workflow` is installed with this RIBIN."""
    return importlib.util.find_spec("ribin.workflow") is not None


def _num(value: Any) -> float:
    return float("-inf") if value is None else float(value)


def _workflow():
    if not available():
        abort(404, "the lead workflow is not part of this RIBIN installation")
    from ribin.workflow import Workflow

    return Workflow.open(resources().config.store)


def _busy(exc: sqlite3.OperationalError) -> StoreError:
    return StoreError(
        "the workflow database is busy (another program is writing to it); nothing was "
        f"recorded: try again in a moment ({exc})"
    )


def lead_rows(status: str) -> list[dict[str, Any]]:
    """``leads list --json`` items with the exhibits' caliber and dates from the store."""
    if status not in STATUSES:
        raise InputError(None, f"status must be one of {', '.join(STATUSES)}")
    with _workflow() as wf:
        items = [lead.to_dict() for lead in wf.leads(status=status)]
    index = resources().index()
    for item in items:
        for side in ("query", "candidate"):
            meta = index.get((item[side]["country"], item[side]["exhibit_id"]), {})
            item[side].setdefault("caliber", meta.get("caliber", ""))
            item[side].setdefault("acquired_at", meta.get("acquired_at", ""))
    return items


def _filtered(items: list[dict[str, Any]], args) -> list[dict[str, Any]]:
    country = (args.get("country") or "").upper()
    caliber = (args.get("caliber") or "").strip().lower()
    scope = (args.get("scope") or "").strip()
    out = []
    for item in items:
        sides = (item["query"], item["candidate"])
        if country and country not in {s["country"] for s in sides}:
            continue
        if caliber and caliber not in {(s.get("caliber") or "").lower() for s in sides}:
            continue
        if scope and item.get("scope") != scope:
            continue
        out.append(item)
    sort = args.get("sort", "score")
    key = SORTS.get(sort, SORTS["score"])
    out.sort(key=key, reverse=args.get("order", "desc") != "asc")
    return out


@blueprint.get("/leads")
def queue():
    status = request.args.get("status", "open")
    items = lead_rows(status)
    shown = _filtered(items, request.args)
    return render_template(
        "queue.html",
        leads=shown,
        total=len(items),
        status=status,
        statuses=STATUSES,
        args=request.args,
        countries=sorted({s["country"] for i in items for s in (i["query"], i["candidate"])}),
        calibers=sorted(
            {s.get("caliber") for i in items for s in (i["query"], i["candidate"])} - {"", None}
        ),
        scopes=sorted({i.get("scope") for i in items} - {None, ""}),
    )


@blueprint.get("/leads/<lead_id>")
def lead(lead_id: str):
    from ribin.web.compare_view import pair_context

    with _workflow() as wf:
        record = wf.lead(_lead_id(lead_id)).to_dict()
        history = wf.audit(lead_id=record["id"])
    query = ExhibitRef(record["query"]["country"], record["query"]["exhibit_id"])
    candidate = ExhibitRef(record["candidate"]["country"], record["candidate"]["exhibit_id"])
    context = pair_context(query, candidate)
    next_id = _next_open(record["id"])
    if next_id is not None:  # compared and drawn while this lead is examined
        _draw_next_ahead(next_id)
    at_correlation = str(record.get("calibration") or "")
    return render_template(
        "lead.html",
        lead=record,
        lead_calibration=(
            calibration_note(at_correlation)
            if at_correlation not in ("", "uncalibrated")
            else {"label": "none (uncalibrated)", "own": False, "caution": None}
        ),
        history=history,
        conclusions=CONCLUSIONS,
        examiner=session.get("examiner", ""),
        next_id=next_id,
        **context,
    )


def _draw_next_ahead(lead_id: Any) -> None:
    from ribin.web.pairs import draw_ahead

    with _workflow() as wf:
        following = wf.lead(lead_id).to_dict()
    refs = [
        ExhibitRef(following[s]["country"], following[s]["exhibit_id"])
        for s in ("query", "candidate")
    ]
    draw_ahead(resources(), *refs)


def _lead_id(text: str) -> Any:
    return int(text) if text.isdigit() else text


def _next_open(current: Any) -> Any:
    """The next open lead in the queue's default order (best score first), else None."""
    with _workflow() as wf:
        ids = [lead.to_dict() for lead in wf.leads(status="open")]
    ids.sort(key=SORTS["score"], reverse=True)
    order = [item["id"] for item in ids]
    if current in order:
        position = order.index(current)
        order = order[position + 1 :] + order[:position]
    return order[0] if order else None


def decide(lead_id: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Record a conclusion through the workflow (audit-logged, source ``web``)."""
    conclusion = str(payload.get("conclusion") or "").strip()
    examiner = str(payload.get("examiner") or "").strip()
    note = str(payload.get("note") or "").strip()
    if conclusion not in CONCLUSIONS:
        raise InputError(None, f"conclusion must be one of {', '.join(CONCLUSIONS)}")
    if not examiner:
        raise InputError(None, "give the examiner's name")
    try:
        with _workflow() as wf:
            return wf.decide(lead_id, conclusion, examiner, note=note, source="web").to_dict()
    except sqlite3.OperationalError as exc:
        raise _busy(exc) from None


@blueprint.post("/leads/<lead_id>/decision")
def decide_form(lead_id: str):
    ident = _lead_id(lead_id)
    try:
        decided = decide(ident, request.form)
    except (InputError, StoreError) as exc:
        flash(str(exc).splitlines()[0], "error")
        return redirect(url_for("leads.lead", lead_id=lead_id)), 303
    session["examiner"] = decided.get("examiner") or request.form.get("examiner", "")
    flash(f"Lead {decided['id']}: {decided['status']} recorded by {decided['examiner']}.", "ok")
    following = _next_open(decided["id"])
    if following is None:
        flash("No open lead left in the queue.", "ok")
        return redirect(url_for("leads.queue")), 303
    return redirect(url_for("leads.lead", lead_id=following)), 303


@blueprint.get("/links")
def links():
    index = resources().index()
    with _workflow() as wf:
        groups = [group.to_dict() for group in wf.links()]
    for group in groups:
        for item in group["exhibits"]:
            meta = index.get((item["country"], item["exhibit_id"]), {})
            item.setdefault("acquired_at", meta.get("acquired_at", ""))
            item.setdefault("caliber", meta.get("caliber", ""))
        group["exhibits"].sort(
            key=lambda e: (e["country"], e.get("acquired_at") or "", e["exhibit_id"])
        )
    return render_template("links.html", groups=groups)


# -- JSON API -------------------------------------------------------------------------------


@blueprint.get("/api/leads")
def api_leads():
    """The ``ribin leads list --json`` object (``?status=``, default open)."""
    status = request.args.get("status", "open")
    if status not in STATUSES:
        raise InputError(None, f"status must be one of {', '.join(STATUSES)}")
    with _workflow() as wf:
        return jsonify({"leads": [lead.to_dict() for lead in wf.leads(status=status)]})


@blueprint.post("/api/leads/<lead_id>/decision")
def api_decide(lead_id: str):
    """JSON ``{"conclusion", "examiner", "note"}``; answers the decided lead."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise InputError(None, 'send a JSON object {"conclusion", "examiner", "note"}')
    return jsonify(decide(_lead_id(lead_id), payload))


@blueprint.get("/api/links")
def api_links():
    """The ``ribin links --json`` object."""
    with _workflow() as wf:
        return jsonify({"groups": [group.to_dict() for group in wf.links()]})
