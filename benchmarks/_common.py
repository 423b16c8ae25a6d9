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

from ribin.exhibit import Exhibit, Signature

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


# --------------------------------------------------------------------- search benchmarks

#: Countries of the example network (``ribin/data/network.toml``), for spreading exhibits.
NETWORK_COUNTRIES = ("BB", "BZ", "JM", "TT", "GY", "CO", "US", "GB", "FR")


def shortlist_params(parser) -> None:
    """Add ``--shortlist-min`` and ``--shortlist-fraction`` (defaults: SearchParams')."""
    from ribin.search import SearchParams

    defaults = SearchParams()
    parser.add_argument(
        "--shortlist-min",
        type=int,
        default=defaults.shortlist_min,
        help=f"shortlist per region: max(MIN, ceil(FRACTION n)) (default {defaults.shortlist_min})",
    )
    parser.add_argument(
        "--shortlist-fraction",
        type=float,
        default=defaults.shortlist_fraction,
        help=f"(default {defaults.shortlist_fraction})",
    )


# Signatures made directly (no rendering, no extraction) for the search-speed benchmark:
# the default extraction's sizes at 12.5 um (breech face 333 x 333 px with a firing-pin
# hole, firing pin 78 x 78 px), band-passed over 30-600 um like the signatures.
DIRECT_PIXEL_UM = 12.5
DIRECT_BF_SIZE = 333
DIRECT_FP_SIZE = 78


def _bandpassed(rng: np.random.Generator, size: int, pixel_um: float) -> np.ndarray:
    """Random surface with power only between 30 and 600 um wavelength, unit variance."""
    spectrum = np.fft.rfft2(rng.normal(size=(size, size)))
    f = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None, :]) / pixel_um
    spectrum *= (f > 1 / 600) & (f < 1 / 30)
    spectrum /= np.maximum(f, 1 / 600) ** 0.5  # rough marks dominate, as on a breech face
    surface = np.fft.irfft2(spectrum, s=(size, size))
    return surface / surface.std()


def _disc(size: int, hole: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    radius = np.hypot(yy, xx)
    return (radius <= size / 2) & (radius >= hole)


def direct_firearm(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A firearm's own marks (breech face, firing pin): the part every shot shares."""
    rng = np.random.default_rng([seed, 0])
    return (
        _bandpassed(rng, DIRECT_BF_SIZE, DIRECT_PIXEL_UM),
        _bandpassed(rng, DIRECT_FP_SIZE, DIRECT_PIXEL_UM),
    )


def direct_exhibit(
    number: int, firearm: tuple[np.ndarray, np.ndarray], shot_seed: int, noise: float = 0.8
):
    """Exhibit ``D-<number>``: the firearm's marks plus per-shot band-passed noise."""
    import ribin
    from ribin.exhibit import Exhibit

    rng = np.random.default_rng([shot_seed, 1])
    signatures = []
    for kind, shared, hole in (
        ("breech_face", firearm[0], 0.27 * DIRECT_BF_SIZE / 2),
        ("firing_pin", firearm[1], 0.0),
    ):
        size = shared.shape[0]
        surface = shared + noise * _bandpassed(rng, size, DIRECT_PIXEL_UM)
        surface[~_disc(size, hole)] = np.nan
        params = {"direct": True, "n": number}
        signatures.append(
            Signature(kind, surface.astype(np.float32), DIRECT_PIXEL_UM, "3d", {}, params)
        )
    return Exhibit(
        f"D-{number:07d}",
        signatures[0],
        signatures[1],
        f"{number:064x}",
        f"D-{number:07d}.x3p",
        ribin.__version__,
    )


def direct_metadata(number: int) -> dict[str, str]:
    return {
        "country": NETWORK_COUNTRIES[number % len(NETWORK_COUNTRIES)],
        "caliber": "9mm Luger",
        "role": "known",
        "sharing": "network",
    }


def write_direct_store(path: Path, groups, features) -> None:
    """A store written segment by segment with given feature vectors (no recomputation).

    ``groups`` yields lists of (exhibit, metadata); ``features(exhibit)`` returns the
    region -> vector mapping to store. The manifest is written as ``docs/formats.md``
    describes (as ``bench_store.py`` does): a store far faster to fill than through
    :meth:`~ribin.store.SignatureStore.add_many`, which computes every vector.
    """
    import json
    import secrets

    from ribin import prefilter
    from ribin.exhibit import canonical_json
    from ribin.store import CREATED_BY, MANIFEST, SEGMENTS, SignatureStore
    from ribin.store_format import (
        ExhibitMetadata,
        SegmentRecord,
        SegmentWriter,
        exhibit_content_id,
        file_sha256,
        utc_now,
    )

    SignatureStore.open(path, "x").close()
    manifest = json.loads((path / MANIFEST).read_text())
    for sequence, items in enumerate(groups, start=1):
        name = path / SEGMENTS / f"seg-{sequence:08d}-{secrets.token_hex(4)}.h5"
        writer = SegmentWriter(
            name,
            sequence=sequence,
            created_by=CREATED_BY,
            feature_version=prefilter.FEATURE_VERSION,
            feature_length=prefilter.FEATURE_LENGTH,
        )
        stored_at = utc_now()
        signatures = 0
        for exhibit, meta in items:
            sigs = exhibit.signatures()
            signatures += len(sigs)
            content_id = exhibit_content_id(exhibit.exhibit_id, {k: s.id for k, s in sigs.items()})
            writer.add(
                SegmentRecord(
                    exhibit,
                    ExhibitMetadata.from_mapping(meta),
                    content_id,
                    stored_at,
                    features(exhibit),
                )
            )
        writer.finish()
        digest, size = file_sha256(name, fsync=True)
        manifest["segments"].append(
            {
                "name": name.name,
                "sequence": sequence,
                "sha256": digest,
                "bytes": size,
                "exhibits": len(items),
                "signatures": signatures,
                "feature_version": prefilter.FEATURE_VERSION,
            }
        )
        manifest["sequence"] = sequence
    tmp = path / "manifest.bench.tmp"
    tmp.write_text(canonical_json(manifest) + "\n")
    os.replace(tmp, path / MANIFEST)


def thin_exhibit(number: int) -> Exhibit:
    """A 16 x 16 px exhibit ``D-NNNNNNN``: a feature row whose surfaces are too small to compare.

    Fills large benchmark stores cheaply; the benchmarks count any that reach the full
    comparison.
    """
    rng = np.random.default_rng(number)
    sigs = [
        Signature(kind, rng.normal(size=(16, 16)).astype(np.float32), 12.5, "3d", {}, {"n": number})
        for kind in ("breech_face", "firing_pin")
    ]
    return Exhibit(
        f"D-{number:07d}", sigs[0], sigs[1], f"{number:064x}", f"D-{number:07d}.x3p", "bench"
    )
