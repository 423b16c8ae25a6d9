"""Shared helpers of the comparison benchmarks: machine line, data sets, ROC figures."""

from __future__ import annotations

import csv
import itertools
import os
import platform
from collections.abc import Iterator
from pathlib import Path

import numba
import numpy as np

from ribin.exhibit import Signature

REPO = Path(__file__).resolve().parents[1]
FADUL_DIR = REPO.parent / "shared" / "data" / "fadul_subset"


def machine() -> str:
    """One line naming the CPU, the cores Numba uses and the library versions."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}; {os.cpu_count()} logical CPUs; numba {numba.__version__} "
        f"({numba.get_num_threads()} threads); numpy {np.__version__}"
    )


def fadul_signatures(directory: Path = FADUL_DIR) -> tuple[list[str], list[int], list[Signature]]:
    """The Fadul breech faces as 3D signatures (heights in micrometres), with firearm labels."""
    from ribin.io import read_x3p

    with open(directory / "truth.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names, labels, sigs = [], [], []
    for row in rows:
        scan = read_x3p(directory / row["file"])
        surface = (np.asarray(scan.heights) * 1e6).astype(np.float32)
        names.append(Path(row["file"]).stem)
        labels.append(int(row["firearm"]))
        sigs.append(Signature("breech_face", surface, float(scan.pixel_size_x_um), "3d"))
    return names, labels, sigs


def all_pairs(n: int) -> Iterator[tuple[int, int]]:
    return itertools.combinations(range(n), 2)


def roc_auc(scores: np.ndarray, is_match: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    pos = scores[is_match]
    neg = scores[~is_match]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def equal_error_rate(scores: np.ndarray, is_match: np.ndarray) -> float:
    """Equal error rate: where the false-match and false-non-match rates cross."""
    pos = scores[is_match]
    neg = scores[~is_match]
    best = 1.0
    for t in np.unique(scores):
        fmr = float((neg >= t).mean())
        fnmr = float((pos < t).mean())
        best = min(best, max(fmr, fnmr))
    return best
