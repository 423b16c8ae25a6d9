"""Store speed and size: ingest rate, bytes per exhibit, prefilter load and open times.

    python benchmarks/bench_store.py [--ingest 400] [--size 256] [--features 10000 100000]

- ingest: ``--ingest`` synthetic exhibits (a ``--size`` square breech face and a half-size
  firing pin, band-limited texture, NaN outside the regions) added in batches of 100 (one
  segment each) and one by one (one commit each); signature generation is not timed;
- bytes per exhibit of that store;
- prefilter load: stores of 10^4 and 10^5 signatures (small surfaces: only the feature rows
  matter), timed for open (manifest only), first index load and ``features()``.
  The 10^4 store is built through ``add_many``. The 10^5 store is assembled from segments
  written in parallel by :class:`ribin.store_format.SegmentWriter` plus a manifest written
  as ``docs/formats.md`` describes, because one writer would take minutes to ingest it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ribin import prefilter
from ribin.exhibit import Exhibit, Signature, canonical_json
from ribin.store import CREATED_BY, MANIFEST, SEGMENTS, SignatureStore
from ribin.store_format import (
    ExhibitMetadata,
    SegmentRecord,
    SegmentWriter,
    exhibit_content_id,
    file_sha256,
    utc_now,
)

COUNTRIES = ("BB", "BZ", "JM", "TT", "GY")


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Band-limited noise in a disc (NaN outside), like a filtered casing surface."""
    spectrum = np.fft.rfft2(rng.normal(size=(size, size)))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    spectrum *= np.exp(-(((np.hypot(fy, fx) - 0.06) / 0.04) ** 2))
    surface = np.fft.irfft2(spectrum, s=(size, size)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    surface[np.hypot(yy, xx) > size / 2] = np.nan
    return surface


def exhibit(number: int, size: int) -> tuple[Exhibit, dict]:
    rng = np.random.default_rng(number)
    params = {"band_um": [16.0, 250.0], "pixel_size_um": 3.125, "n": number}
    breech_face = Signature("breech_face", texture(rng, size), 3.125, "3d", {"valid": 0.9}, params)
    pin = Signature("firing_pin", texture(rng, max(size // 2, 4)), 3.125, "3d", {}, params)
    meta = {
        "country": COUNTRIES[number % len(COUNTRIES)],
        "caliber": "9mm Luger",
        "role": "known" if number % 3 else "questioned",
    }
    return (
        Exhibit(f"X-{number:07d}", breech_face, pin, f"{number:064x}", f"{number}.x3p", "0.1.0"),
        meta,
    )


def store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_ingest(root: Path, count: int, size: int) -> None:
    items = [exhibit(n, size) for n in range(count)]
    raw = sum(s.surface.nbytes for e, _ in items for s in e.signatures().values()) / count
    path = root / "ingest"
    with SignatureStore.open(path, "x") as store:
        start = time.perf_counter()
        for first in range(0, count, 100):
            store.add_many(items[first : first + 100])
        seconds = time.perf_counter() - start
    size_per = store_bytes(path) / count
    print(f"ingest, batches of 100   {count / seconds:8.1f} exhibits/s  ({count} exhibits)")
    print(f"bytes per exhibit        {size_per:8.0f}  (float32 surfaces: {raw:.0f} raw)")

    singles = [exhibit(n, size) for n in range(count, count + 40)]
    with SignatureStore.open(path, "a") as store:
        start = time.perf_counter()
        for item in singles:
            store.add(*item)
        seconds = time.perf_counter() - start
    print(f"ingest, one per commit   {len(singles) / seconds:8.1f} exhibits/s")


def _write_segment(job: tuple[Path, int, int, int]) -> None:
    path, first, count, sequence = job
    writer = SegmentWriter(
        path,
        sequence=sequence,
        created_by=CREATED_BY,
        feature_version=prefilter.FEATURE_VERSION,
        feature_length=prefilter.FEATURE_LENGTH,
    )
    stored_at = utc_now()
    for number in range(first, first + count):
        item, meta = exhibit(number, 16)
        signatures = item.signatures()
        content_id = exhibit_content_id(item.exhibit_id, {k: s.id for k, s in signatures.items()})
        vectors = {k: prefilter.features(s) for k, s in signatures.items()}
        writer.add(
            SegmentRecord(item, ExhibitMetadata.from_mapping(meta), content_id, stored_at, vectors)
        )
    writer.finish()


def assemble(path: Path, n_exhibits: int, n_segments: int) -> None:
    """A store of ``n_exhibits`` small exhibits in ``n_segments`` segments, written in parallel."""
    SignatureStore.open(path, "x").close()
    per = -(-n_exhibits // n_segments)
    jobs = []
    for index in range(n_segments):
        first = index * per
        count = min(per, n_exhibits - first)
        name = f"seg-{index + 1:08d}-{secrets.token_hex(4)}.h5"
        jobs.append((path / SEGMENTS / name, first, count, index + 1))
    with multiprocessing.get_context("spawn").Pool(os.cpu_count()) as pool:
        pool.map(_write_segment, jobs)
    manifest = json.loads((path / MANIFEST).read_text())
    for job in jobs:
        digest, size = file_sha256(job[0], fsync=True)
        manifest["segments"].append(
            {
                "name": job[0].name,
                "sequence": job[3],
                "sha256": digest,
                "bytes": size,
                "exhibits": job[2],
                "signatures": 2 * job[2],
                "feature_version": prefilter.FEATURE_VERSION,
            }
        )
    manifest["sequence"] = n_segments
    tmp = path / "manifest.bench.tmp"
    tmp.write_text(canonical_json(manifest) + "\n")
    os.replace(tmp, path / MANIFEST)


def bench_features(root: Path, n_signatures: int) -> None:
    n_exhibits = n_signatures // 2
    path = root / f"features-{n_signatures}"
    start = time.perf_counter()
    if n_signatures <= 10_000:
        with SignatureStore.open(path, "x") as store:
            for first in range(0, n_exhibits, 1000):
                store.add_many(
                    [exhibit(n, 16) for n in range(first, min(first + 1000, n_exhibits))]
                )
        how = "add_many, 1000 per segment"
    else:
        assemble(path, n_exhibits, 10)
        how = "10 segments written in parallel"
    built = time.perf_counter() - start

    start = time.perf_counter()
    store = SignatureStore.open(path)
    opened = time.perf_counter() - start
    start = time.perf_counter()
    info = store.info()
    indexed = time.perf_counter() - start
    start = time.perf_counter()
    table = store.features()
    first = time.perf_counter() - start
    start = time.perf_counter()
    table = store.features()
    again = time.perf_counter() - start
    store.close()
    assert len(table) == n_signatures == info.signatures, (len(table), info.signatures)
    print(
        f"{n_signatures:>7} signatures: open {opened * 1e3:6.1f} ms, "
        f"index {indexed * 1e3:7.1f} ms, features {first * 1e3:7.1f} ms "
        f"(again {again * 1e3:6.1f} ms), "
        f"{table.features.nbytes / 2**20:.1f} MiB; built in {built:.0f} s ({how})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingest", type=int, default=400, help="exhibits for the ingest rate")
    parser.add_argument("--size", type=int, default=256, help="breech-face side in pixels")
    parser.add_argument("--features", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--workdir", type=Path, default=None, help="keep the stores here")
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="ribin-bench-store-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"RIBIN store benchmark ({CREATED_BY}, {os.cpu_count()} CPUs), in {root}")
    try:
        if args.ingest:
            bench_ingest(root, args.ingest, args.size)
        for n in args.features:
            bench_features(root, n)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
