"""Correlation on entry: search each new exhibit within the site's policy, record leads.

An exhibit of the site's own country is searched in each scope of the policy, as that
country. An exhibit that arrived from another country (by sync) is searched against the
site's own exhibits only (scope ``country``, as the site): that is how a site learns that
another country's new casing matches one of its old cases. The query is the stored exhibit,
so it is never its own candidate.

Each exhibit's leads, and the fact that it was correlated, are recorded in one transaction
after the store write committed: a crash in between leaves the exhibit stored and not yet
correlated, and the next correlation (rerunning the ingest, or ``ribin leads correlate``)
picks it up. A pair of exhibits has one lead whichever way round it was found.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ribin.calibration import Calibration, models_for_store
from ribin.network import Network, load_network
from ribin.store import SignatureStore, StoredExhibit
from ribin.workflow.leads import NewLead, Workflow
from ribin.workflow.policy import Policy, load_policy

Progress = Callable[[int, int], None]
Key = tuple[str, str, str]  # country, exhibit_id, content_id

CHUNK = 16
"""Exhibits searched per :func:`ribin.search.search_batch` call (one read of the features)."""

_ALL = 1_000_000  # the search's list length: every fully compared candidate


@dataclass(frozen=True)
class CorrelationResult:
    """What one correlation run did.

    Attributes
    ----------
    correlated : int
        Exhibits searched now.
    skipped : int
        Exhibits already correlated before (nothing done).
    leads : tuple of int
        IDs of the leads added.
    candidates : int
        Candidates that met the policy (some may already have had a lead).
    seconds : float
        Wall time.
    policy : dict
        The policy applied.
    """

    correlated: int
    skipped: int
    leads: tuple[int, ...]
    candidates: int
    seconds: float
    policy: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["leads"] = list(self.leads)
        out["seconds"] = round(self.seconds, 3)
        return out


def pending(store: SignatureStore, workflow: Workflow) -> list[Key]:
    """Live exhibits of ``store`` never correlated, in store order."""
    done = workflow.correlated_keys()
    out: dict[Key, None] = {}
    for kind in ("breech_face", "firing_pin"):
        table = store.features(kind=kind)
        for country, exhibit_id, content_id in zip(
            table.country, table.exhibit_id, table.content_id, strict=True
        ):
            key = (str(country), str(exhibit_id), str(content_id))
            if key not in done:
                out[key] = None
    return list(out)


def correlate(
    store: SignatureStore,
    exhibits: Iterable[Key | StoredExhibit],
    *,
    workflow: Workflow | None = None,
    policy: Policy | None = None,
    network: Network | None = None,
    site_country: str | None = None,
    calibration: Mapping[str, Calibration] | None = None,
    calibration_source: str | None = None,
    progress: Progress | None = None,
    source: str = "ingest",
) -> CorrelationResult:
    """Search each exhibit within the site's policy and record its leads.

    Parameters
    ----------
    store : SignatureStore
        The store holding the exhibits (its snapshot must include them).
    exhibits : iterable
        ``(country, exhibit_id, content_id)`` keys or stored exhibits. Those already
        correlated are skipped.
    workflow : Workflow, optional
        The store's workflow database (default: opened here).
    policy : Policy, optional
        Default: :func:`ribin.workflow.load_policy` of the store and network file.
    network : Network, optional
        Default: the example network shipped with RIBIN.
    site_country : str, optional
        The site's own country; default the workflow's, else the first exhibit's. Exhibits
        of other countries are searched against the site's own exhibits.
    calibration : mapping, optional
        Calibration models (default: the store's, else RIBIN's default).
    calibration_source : str, optional
        Where ``calibration`` came from, recorded with each lead.
    progress : callable, optional
        ``progress(done, total)`` in exhibits.
    source : str
        The command that triggered it, for the audit log.

    Returns
    -------
    CorrelationResult
    """
    started = time.perf_counter()
    if workflow is None:
        with Workflow.open(store.path) as opened:
            return correlate(
                store,
                exhibits,
                workflow=opened,
                policy=policy,
                network=network,
                site_country=site_country,
                calibration=calibration,
                calibration_source=calibration_source,
                progress=progress,
                source=source,
            )
    network = network or load_network()
    if policy is None:
        network_file = None if network.source.startswith("<") else network.source
        policy = load_policy(store.path, network_file)
    if calibration is None:
        calibration, calibration_source = models_for_store(store.path)
    calibration_source = calibration_source or ("<given>" if calibration else "none")
    keys = [_key(item) for item in exhibits]
    done = workflow.correlated_keys()
    todo = [k for k in dict.fromkeys(keys) if k not in done]
    site = site_country or workflow.country or (todo[0][0] if todo else None)
    if site and workflow.country is None:
        workflow.set_meta("country", site, overwrite=False)
        site = workflow.country
    added: list[int] = []
    candidates = 0
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        found = _search_chunk(store, chunk, site, policy, network, calibration)
        for key in chunk:
            leads = [
                _new_lead(key, candidate, scope, calibration_source, provenance)
                for scope, candidate, provenance in found[key]
            ]
            candidates += len(leads)
            scopes = ",".join(dict.fromkeys(scope for scope, _, _ in found[key])) or "-"
            added += workflow.record_correlation(
                key, leads, scopes, source=source, details={"policy": policy.source}
            )
        if progress is not None:
            progress(min(start + CHUNK, len(todo)), len(todo))
    return CorrelationResult(
        correlated=len(todo),
        skipped=len(keys) - len(todo),
        leads=tuple(added),
        candidates=candidates,
        seconds=time.perf_counter() - started,
        policy=policy.to_dict(),
    )


def _key(item: Key | StoredExhibit) -> Key:
    if isinstance(item, StoredExhibit):
        return (item.metadata.country, item.exhibit_id, item.content_id)
    country, exhibit_id, content_id = item
    return (str(country), str(exhibit_id), str(content_id))


def _search_chunk(
    store: SignatureStore,
    chunk: Sequence[Key],
    site: str | None,
    policy: Policy,
    network: Network,
    calibration: Mapping[str, Calibration],
) -> dict[Key, list[tuple[str, Any, dict[str, Any]]]]:
    """(scope, candidate, provenance) meeting the policy, per exhibit (first scope wins)."""
    from ribin.search import search_batch

    plans: dict[tuple[str, str], list[Key]] = {}
    for key in chunk:
        if site is None or key[0] == site:
            for scope in policy.scopes:
                plans.setdefault((key[0], scope), []).append(key)
        else:  # arrived from another country: against the site's own exhibits
            plans.setdefault((site, "country"), []).append(key)
    found: dict[Key, list[tuple[str, Any, dict[str, Any]]]] = {key: [] for key in chunk}
    seen: dict[Key, set[tuple[str, str]]] = {key: set() for key in chunk}
    for (searcher, scope), keys in plans.items():
        queries = [store.get(exhibit_id, country) for country, exhibit_id, _ in keys]
        results = search_batch(
            store,
            queries,
            scope=scope,
            searcher=searcher,
            top=_ALL,
            network=network,
            calibration=calibration,
        )
        for key, result in zip(keys, results, strict=True):
            provenance = {
                k: result.provenance.get(k)
                for k in (
                    "software_version",
                    "searched_at",
                    "store_sequence",
                    "prefilter_version",
                    "search_params",
                    "network",
                )
            }
            provenance["searcher"] = searcher
            for candidate in result.candidates:
                pair = (candidate.country, candidate.exhibit_id)
                if pair in seen[key] or not _meets(candidate, policy):
                    continue
                seen[key].add(pair)
                found[key].append((scope, candidate, provenance))
    return found


def _meets(candidate: Any, policy: Policy) -> bool:
    for match in (candidate.breech_face, candidate.firing_pin):
        if match is not None and match.score is not None and match.rank <= policy.top:
            return True
    threshold = policy.log_lr_threshold
    return threshold is not None and candidate.log_lr is not None and candidate.log_lr >= threshold


def _new_lead(
    key: Key, candidate: Any, scope: str, calibration_source: str, provenance: dict[str, Any]
) -> NewLead:
    regions = {}
    for name in ("breech_face", "firing_pin"):
        match = getattr(candidate, name)
        if match is not None and match.score is not None:
            regions[name] = {
                "rank": match.rank,
                "score": match.score,
                "cmc_count": match.cmc_count,
                "log_lr": match.log_lr,
                "rotation_deg": match.rotation_deg,
                "dx_um": match.dx_um,
                "dy_um": match.dy_um,
            }
    return NewLead(
        query=key,
        candidate=(candidate.country, candidate.exhibit_id, candidate.content_id),
        score=candidate.score,
        log_lr=candidate.log_lr,
        rank=candidate.rank,
        scope=scope,
        regions=regions,
        calibration=calibration_source if candidate.log_lr is not None else "uncalibrated",
        provenance=provenance,
    )
