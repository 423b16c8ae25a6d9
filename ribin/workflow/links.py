"""Linked groups: exhibits joined by identifications, one firearm each.

The groups are the connected components of the graph whose edges are identifications, the
site's own and those received as hit notices. An elimination is not an edge, so it never
merges groups; when an elimination and an identification disagree on a pair inside a
group, the group lists the pair under ``disputed`` for an examiner to resolve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ribin.workflow.leads import Workflow

Key = tuple[str, str]


@dataclass(frozen=True)
class LinkedGroup:
    """Exhibits linked by identifications (one firearm).

    Attributes
    ----------
    exhibits : tuple of (country, exhibit_id)
        Sorted by acquisition date where known, then by country and ID.
    countries : tuple of str
        Owning countries, sorted.
    leads : tuple of int
        The identification leads that join them.
    decided_by : tuple of str
        Countries whose examiners recorded those identifications.
    details : dict
        ``"CC/ID"`` -> ``role``, ``case_ref``, ``acquired_at`` for exhibits in this store.
    disputed : tuple of tuple
        Exhibit pairs of the group that some examiner eliminated.
    """

    exhibits: tuple[Key, ...]
    countries: tuple[str, ...]
    leads: tuple[int, ...]
    decided_by: tuple[str, ...]
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    disputed: tuple[tuple[Key, Key], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """One item of ``ribin links --json``."""
        return {
            "exhibits": [
                {"country": c, "exhibit_id": i, **self.details.get(f"{c}/{i}", {})}
                for c, i in self.exhibits
            ],
            "countries": list(self.countries),
            "leads": list(self.leads),
            "decided_by": list(self.decided_by),
            "disputed": [
                [{"country": a[0], "exhibit_id": a[1]}, {"country": b[0], "exhibit_id": b[1]}]
                for a, b in self.disputed
            ],
        }


def connected_groups(edges: list[tuple[Key, Key]]) -> list[list[Key]]:
    """Connected components of an undirected graph given as edges (union-find)."""
    parent: dict[Key, Key] = {}

    def find(node: Key) -> Key:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in edges:
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    groups: dict[Key, list[Key]] = {}
    for node in list(parent):
        groups.setdefault(find(node), []).append(node)
    return [sorted(members) for members in groups.values()]


def linked_groups(workflow: Workflow, *, with_metadata: bool = True) -> list[LinkedGroup]:
    """The linked groups of ``workflow``'s identifications, largest first.

    With ``with_metadata``, each exhibit held in the store gets its role, case reference
    and acquisition date (the store is opened read-only; exhibits not held stay bare).
    """
    edges = workflow.identification_edges()
    components = connected_groups([(a, b) for a, b, _, _ in edges])
    eliminated = workflow.eliminations()
    details = _metadata(workflow, {k for c in components for k in c}) if with_metadata else {}
    groups = []
    for members in components:
        inside = set(members)
        joined = [e for e in edges if e[0] in inside]
        disputed = tuple(sorted(tuple(sorted(pair)) for pair in eliminated if set(pair) <= inside))

        def order(key: Key) -> tuple[str, str, str]:
            when = details.get(f"{key[0]}/{key[1]}", {}).get("acquired_at") or "\uffff"
            return (when, key[0], key[1])

        groups.append(
            LinkedGroup(
                exhibits=tuple(sorted(members, key=order)),
                countries=tuple(sorted({c for c, _ in members})),
                leads=tuple(sorted({e[2] for e in joined})),
                decided_by=tuple(sorted({e[3] for e in joined if e[3]})),
                details={
                    f"{c}/{i}": details[f"{c}/{i}"] for c, i in members if f"{c}/{i}" in details
                },
                disputed=disputed,  # type: ignore[arg-type]
            )
        )
    groups.sort(key=lambda g: (-len(g.exhibits), g.exhibits))
    return groups


def _metadata(workflow: Workflow, keys: set[Key]) -> dict[str, dict[str, Any]]:
    from ribin.errors import RibinError
    from ribin.store import SignatureStore

    out: dict[str, dict[str, Any]] = {}
    if not keys:
        return out
    try:
        store = SignatureStore.open(workflow.store_path, "r")
    except RibinError:
        return out
    with store:
        held = set(store.keys())
        for country, exhibit_id in sorted(keys & held):
            try:
                meta = store.get(exhibit_id, country).metadata
            except (RibinError, KeyError):
                continue
            out[f"{country}/{exhibit_id}"] = {
                "role": meta.role,
                "case_ref": meta.case_ref,
                "acquired_at": meta.acquired_at,
            }
    return out
