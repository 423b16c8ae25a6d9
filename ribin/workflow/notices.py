"""Hit notices: a site's identifications that involve other countries' exhibits, carried
in its signed sync bundles and recorded, once each, by the countries concerned.

Export (:func:`write_notices`) takes the site's own identifications that name an exhibit
of another country, keeps those whose foreign exhibits every possible receiver of the
bundle may see (a notice never tells a country about an exhibit its sharing hides from
it), and writes them as ``payload/notices.json``, which the bundle's signed manifest lists
with its SHA-256. Import (:func:`check_notices`, before the bundle is merged) verifies the
signature and sender like the exhibits', then every notice: well formed, decided by the
sender's country, and naming only exhibits of the receiving country that the sender could
have seen (held here, same content, shared with the sender, or removed after being shared
so). A bundle with one bad notice is refused whole; nothing changes. The checked notices
that concern the receiving country are recorded once each (:meth:`Workflow.record_notices`):
importing the same bundle again is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ribin import __version__
from ribin.errors import RibinError, StoreError
from ribin.exhibit import canonical_json
from ribin.network import Network
from ribin.store import SignatureStore
from ribin.sync import NOTICES, BundleError, read_signed
from ribin.workflow.leads import CONCLUSIONS, Lead, Workflow

FORMAT = "ribin-hit-notices"
FORMAT_VERSION = 1
MAX_NOTICES = 100_000


@dataclass(frozen=True)
class CheckedNotices:
    """What :func:`check_notices` found in a bundle.

    ``notices`` are the verified notices that concern this country (ready for
    :meth:`Workflow.record_notices`); ``ignored`` counts the valid ones that concern other
    countries only; ``exhibits`` lists the bundle's exhibits as (country, exhibit_id,
    content_id), for correlation after the merge.
    """

    sender: tuple[str, str]
    bundle_sha256: str
    notices: list[dict[str, Any]] = field(default_factory=list)
    ignored: int = 0
    exhibits: list[tuple[str, str, str]] = field(default_factory=list)


def notice_id(sender: str, body: Mapping[str, Any]) -> str:
    """The notice's identity: SHA-256 of its sender and canonical body."""
    return hashlib.sha256(canonical_json({"sender": sender, **body}).encode()).hexdigest()


def _receivers(scope: str, network: Network, sender: str) -> set[str]:
    """Countries that may import a bundle of ``scope`` from ``sender``."""
    if scope == "network":
        return set(network.countries) - {sender}
    name = scope.partition(":")[2]
    if name:
        return set(network.clusters.get(name, ())) - {sender}
    return {c for c in network.countries if c != sender and network.visible(sender, "cluster", c)}


def notices_for_export(
    store: SignatureStore, workflow: Workflow, scope: str, network: Network, sender: str
) -> list[dict[str, Any]]:
    """Bodies of the notices a bundle of ``scope`` from ``sender`` may carry."""
    receivers = _receivers(scope, network, sender)
    out = []
    sharing_of: dict[tuple[str, str], str | None] = {}
    for lead in workflow.identifications_for_export():
        foreign = [x for x in (lead.query, lead.candidate) if x[0] != sender]
        if not foreign:
            continue
        allowed = True
        for owner, exhibit_id in foreign:
            if (owner, exhibit_id) not in sharing_of:
                try:
                    stored = store.get(exhibit_id, owner)
                    sharing_of[owner, exhibit_id] = stored.metadata.sharing
                except (RibinError, KeyError):
                    sharing_of[owner, exhibit_id] = None  # no longer held: cannot vouch
            sharing = sharing_of[owner, exhibit_id]
            if sharing is None or not all(
                network.visible(owner, sharing, r) for r in receivers if r != owner
            ):
                allowed = False
        if allowed:
            out.append(_body(lead, workflow))
    return out


def _body(lead: Lead, workflow: Workflow) -> dict[str, Any]:
    row = workflow._db.execute(
        "SELECT query_content, candidate_content FROM leads WHERE id = ?", (lead.id,)
    ).fetchone()
    return {
        "lead": lead.id,
        "query": {
            "country": lead.query[0],
            "exhibit_id": lead.query[1],
            "content_id": row["query_content"],
        },
        "candidate": {
            "country": lead.candidate[0],
            "exhibit_id": lead.candidate[1],
            "content_id": row["candidate_content"],
        },
        "conclusion": lead.status,
        "examiner": lead.examiner,
        "decided": lead.decided,
        "score": lead.score,
        "log_lr": lead.log_lr,
        "rank": lead.rank,
        "scope": lead.scope,
        "regions": lead.regions,
        "calibration": lead.calibration,
        "software_version": __version__,
    }


def write_notices(
    store: SignatureStore,
    workflow: Workflow,
    target: str | os.PathLike,
    *,
    scope: str,
    network: Network,
    sender: tuple[str, str],
) -> int:
    """Write the notices a bundle of ``scope`` may carry to ``target``; returns how many.

    Nothing is written when there is none (a bundle without notices stays readable by
    RIBIN versions that predate them).
    """
    bodies = notices_for_export(store, workflow, scope, network, sender[0])
    if bodies:
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "sender": {"country": sender[0], "site": sender[1]},
            "notices": bodies,
        }
        Path(target).write_text(canonical_json(document) + "\n", encoding="utf-8")
    return len(bodies)


def check_notices(
    store: SignatureStore,
    bundle_path: str | os.PathLike,
    network: Network,
    *,
    country: str | None = None,
) -> CheckedNotices:
    """Verify a bundle's hit notices against this store, before the bundle is merged.

    Parameters
    ----------
    store : SignatureStore
        The receiving store.
    bundle_path : path-like
        The bundle.
    network : Network
        Its pinned keys verify the signature; its clusters decide what the sender could see.
    country : str, optional
        This store's own country (default: the store's sync identity).

    Raises
    ------
    BundleError
        Bad signature or sender, a notices file that does not match the signed manifest, a
        malformed notice, or one naming an exhibit here that the sender could not have seen.
    """
    manifest, signer, bundle_sha256, data = read_signed(bundle_path, network, NOTICES)
    sender = signer[0]
    exhibits = []
    for item in manifest.get("exhibits", []):
        if isinstance(item, Mapping):
            exhibits.append(
                (str(item.get("country")), str(item.get("exhibit_id")), str(item.get("content_id")))
            )
    result = CheckedNotices(signer, bundle_sha256, exhibits=exhibits)
    if data is None:
        return result
    own = country or (store.sync_state().get("identity") or {}).get("country")
    if own is None:
        raise StoreError(
            f"{store.path.name}: the store does not know its own country yet; "
            "give --country CC (and --site NAME) once"
        )

    def fail(problem: str) -> BundleError:
        return BundleError(bundle_path, f"{NOTICES}: {problem}")

    try:
        document = json.loads(data)
    except ValueError:
        raise fail("not valid JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise fail(f"not a {FORMAT} document")
    version = document.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise fail(f"format_version {version!r} is not one this RIBIN reads ({FORMAT_VERSION})")
    claimed = document.get("sender") or {}
    if not isinstance(claimed, dict) or (claimed.get("country"), claimed.get("site")) != signer:
        raise fail(f"says it comes from {claimed!r}, but the bundle is signed by {signer}")
    bodies = document.get("notices")
    if not isinstance(bodies, list) or len(bodies) > MAX_NOTICES:
        raise fail(f"notices must be a list of at most {MAX_NOTICES}")
    removed = _removed(store)
    ignored = 0
    for number, body in enumerate(bodies, start=1):
        _check_body(body, number, fail)
        involved = [body["query"], body["candidate"]]
        mine = [x for x in involved if x["country"] == own]
        for exhibit in mine:
            _check_seen(store, exhibit, sender, network, removed, number, fail)
        if not mine:
            ignored += 1
            continue
        result.notices.append(
            {
                "notice_id": notice_id(sender, body),
                "sender": sender,
                "bundle_sha256": bundle_sha256,
                "body": body,
            }
        )
    return CheckedNotices(signer, bundle_sha256, result.notices, ignored, exhibits)


def _check_body(body: Any, number: int, fail) -> None:
    if not isinstance(body, dict):
        raise fail(f"notice {number} is not an object")
    for side in ("query", "candidate"):
        exhibit = body.get(side)
        if not isinstance(exhibit, dict) or not all(
            isinstance(exhibit.get(k), str) and exhibit.get(k)
            for k in ("country", "exhibit_id", "content_id")
        ):
            raise fail(f"notice {number}: {side} lacks country, exhibit_id or content_id")
        if len(exhibit["country"]) != 2 or "/" in exhibit["exhibit_id"]:
            raise fail(f"notice {number}: {side} is not a country code and exhibit ID")
    if body.get("conclusion") not in CONCLUSIONS:
        raise fail(f"notice {number}: conclusion {str(body.get('conclusion'))[:40]!r} is unknown")
    examiner = body.get("examiner")
    if not isinstance(examiner, str) or not examiner.strip() or len(examiner) > 200:
        raise fail(f"notice {number}: no examiner")
    if not isinstance(body.get("decided"), str) or not body["decided"]:
        raise fail(f"notice {number}: no decision time")
    for key in ("score", "log_lr"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise fail(f"notice {number}: {key} is not a number")
    if body.get("regions") is not None and not isinstance(body.get("regions"), dict):
        raise fail(f"notice {number}: regions is not an object")


def _removed(store: SignatureStore) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in store.audit_log():
        if entry.get("action") == "remove":
            key = (str(entry.get("country")), str(entry.get("exhibit_id")))
            out.setdefault(key, []).append(entry)
    return out


def _check_seen(
    store: SignatureStore,
    exhibit: Mapping[str, str],
    sender: str,
    network: Network,
    removed: Mapping[tuple[str, str], Iterable[Mapping[str, Any]]],
    number: int,
    fail,
) -> None:
    """Refuse a notice naming an exhibit here the sender could not have seen."""
    country, exhibit_id, content_id = (
        exhibit["country"],
        exhibit["exhibit_id"],
        exhibit["content_id"],
    )
    name = f"{country}/{exhibit_id}"
    try:
        stored = store.get(exhibit_id, country)
    except (RibinError, KeyError):
        stored = None
    if stored is not None and stored.content_id == content_id:
        sharing = stored.metadata.sharing
    else:
        gone = [
            e for e in removed.get((country, exhibit_id), ()) if e.get("content_id") == content_id
        ]
        if not gone:
            raise fail(f"notice {number} names {name}, which this store never held")
        sharing = str(gone[-1].get("sharing", "local"))
    if not network.visible(country, sharing, sender):
        raise fail(
            f"notice {number} names {name}, shared {sharing}: {sender} could not have seen it"
        )


def import_with_notices(
    store: SignatureStore,
    bundle_path: str | os.PathLike,
    network: Network,
    *,
    country: str | None = None,
    site: str | None = None,
    workflow: Workflow | None = None,
):
    """:func:`ribin.sync.import_bundle`, with the bundle's hit notices checked first and
    recorded after the merge.

    Returns (ImportResult, CheckedNotices, number of notices new here). Recording is
    idempotent, so rerunning after a crash between the merge and the recording completes
    it.
    """
    from ribin.sync import import_bundle

    checked = check_notices(store, bundle_path, network, country=country)
    result = import_bundle(store, bundle_path, network, country=country, site=site)
    own_workflow = workflow is None
    wf = Workflow.open(store.path) if own_workflow else workflow
    try:
        identity = store.sync_state().get("identity") or {}
        if identity.get("country"):
            wf.set_meta("country", identity["country"], overwrite=False)
        if not network.source.startswith("<"):
            wf.set_meta("network_file", str(Path(network.source).resolve()))
        new = wf.record_notices(checked.notices, source="ribin sync import")
    finally:
        if own_workflow:
            wf.close()
    return result, checked, new
