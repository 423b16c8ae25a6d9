"""The demo network: the bundled synthetic casings spread over Barbados, Belize and Jamaica."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ribin.ingest import ingest
from ribin.store import AddResult, SignatureStore

COUNTRIES = ("BB", "BZ", "JM")
SCOPES = ("country", "cluster:ribin", "network")


def demo_assignment(row: dict[str, Any], shots: int) -> dict[str, str]:
    """Country, role and sharing of one casing of the demo.

    Shots of one firearm go to different countries (so a wider scope finds more of them);
    each firearm's last shot is the questioned casing from a scene, the others test fires.
    """
    firearm = int(str(row["firearm"]).lstrip("F"))
    shot = int(row["shot"])
    return {
        "country": COUNTRIES[(firearm + shot) % len(COUNTRIES)],
        "role": "questioned" if shot == shots else "known",
        "caliber": str(row["caliber"]),
        "sharing": "network",
        "case_ref": f"DEMO-{row['firearm']}",
    }


def build_demo_store(
    casings: str | os.PathLike,
    rows: list[dict[str, Any]],
    store_path: str | os.PathLike,
    *,
    modality: str = "3d",
    progress: Callable[[int, int], None] | None = None,
) -> list[AddResult]:
    """Ingest the casings of one modality into ``store_path``, one batch per country.

    Re-running it is a no-op: the store already holds every exhibit.
    """
    shots = max(int(r["shot"]) for r in rows)
    chosen = [r for r in rows if r["modality"] == modality]
    results: list[AddResult] = []
    done = 0
    with SignatureStore.open(store_path, "a") as store:
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for row in chosen:
            key = tuple(sorted(demo_assignment(row, shots).items()))
            groups.setdefault(key, []).append(row)
        for key, members in sorted(groups.items()):
            metadata = dict(key)
            caliber = metadata["caliber"]
            files = [Path(casings) / r["file"] for r in members]
            results += ingest(store, files, metadata, caliber=caliber)
            done += len(members)
            if progress is not None:
                progress(done, len(chosen))
    return results


def questioned_casing(rows: list[dict[str, Any]], modality: str = "3d") -> str:
    """Exhibit ID of the demo's query: the first firearm's questioned casing."""
    shots = max(int(r["shot"]) for r in rows)
    first = min(r["firearm"] for r in rows)
    for row in rows:
        if row["firearm"] == first and int(row["shot"]) == shots and row["modality"] == modality:
            return Path(row["file"]).stem
    raise LookupError(f"no questioned {modality} casing in the demo set")
