"""Shared steps of the calibration scripts: stores of the Fadul subset and synthetic casings,
and the scores of every pair of their known exhibits (``ribin.calibrate.pair_scores``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from _common import FADUL_DIR, REPO

from ribin.calibrate import PairScores, pair_scores, read_truth
from ribin.ingest import ingest
from ribin.store import SignatureStore

SYNTHETIC_DIR = REPO / "data" / "synthetic_casings"
FADUL_NAME = "Fadul subset (NIST Ballistics Toolmark Database, Fadul et al. 2011, Ruger P95)"


def fadul_scanner(directory: Path = FADUL_DIR) -> str:
    """Instrument of the Fadul scans, as their X3P files record it."""
    from ribin.io import read_x3p

    first = sorted(directory.glob("*.x3p"))[0]
    meta = read_x3p(first).metadata
    inst = meta.get("instrument", {})
    scan = read_x3p(first)
    parts = [inst.get("manufacturer"), inst.get("model"), meta.get("comment")]
    text = " ".join(p for p in parts if p)
    return f"{text}, {scan.pixel_size_x_um:g} um lateral (X3P metadata of {first.name})"


def _ingest_groups(path: Path, groups: dict[str, list[Path]]) -> SignatureStore:
    done = path / "complete"
    if not done.exists():
        with SignatureStore.open(path, "a") as store:
            for caliber, files in sorted(groups.items()):
                ingest(
                    store,
                    files,
                    {"country": "BB", "role": "known", "caliber": caliber, "sharing": "network"},
                    caliber=caliber,
                )
        done.write_text("ok\n")
    return SignatureStore.open(path)


def fadul_scores(work: Path) -> tuple[dict[str, PairScores], dict[str, str]]:
    """Every pair of the 19 Fadul scans, ingested as 3D breech faces (default extraction)."""
    truth = read_truth(FADUL_DIR / "truth.csv")
    with open(FADUL_DIR / "truth.csv", newline="", encoding="utf-8-sig") as fh:
        files = [FADUL_DIR / r["file"] for r in csv.DictReader(fh)]
    store = _ingest_groups(work / "fadul.store", {"9mm Luger": files})
    with store:
        return pair_scores(store, truth), truth


def synthetic_scores(work: Path, modality: str) -> tuple[dict[str, PairScores], dict[str, str]]:
    """Every pair of the committed synthetic casings of one modality (both regions)."""
    with open(SYNTHETIC_DIR / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["modality"] == modality]
    groups: dict[str, list[Path]] = {}
    for r in rows:
        groups.setdefault(r["caliber"], []).append(SYNTHETIC_DIR / r["file"])
    truth = {Path(r["file"]).stem: r["firearm"] for r in rows}
    store = _ingest_groups(work / f"synthetic-{modality}.store", groups)
    with store:
        return pair_scores(store, truth), truth


def save_scores(path: Path, sets: dict[str, dict[str, PairScores]]) -> None:
    """Write every pair's score (for re-analysis without re-comparing)."""
    document = {
        name: {
            key: {
                "exhibits": list(d.exhibits),
                "firearms": list(d.firearms),
                "pairs": [list(p) for p in d.pairs],
                "scores": list(d.scores),
            }
            for key, d in per.items()
        }
        for name, per in sets.items()
    }
    path.write_text(json.dumps(document, indent=0) + "\n", encoding="utf-8")


def load_scores(path: Path) -> dict[str, dict[str, PairScores]]:
    """Inverse of :func:`save_scores`."""
    document = json.loads(path.read_text(encoding="utf-8"))
    return {
        name: {
            key: PairScores(
                key,
                tuple(d["exhibits"]),
                tuple(d["firearms"]),
                tuple(tuple(p) for p in d["pairs"]),
                tuple(d["scores"]),
            )
            for key, d in per.items()
        }
        for name, per in document.items()
    }
