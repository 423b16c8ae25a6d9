"""Sync bundle speed and size: export and import rates, bytes per exhibit, verification time.

    python benchmarks/bench_sync.py [--exhibits 10000] [--size 64]

A sending store (BB) gets ``--exhibits`` synthetic exhibits (a ``--size`` square breech
face and a half-size firing pin, band-limited texture; small surfaces by default so the run
takes a few minutes: the figures per exhibit scale with surface bytes), ingested in batches
of 1000 (not timed). Then, timed:

- export: the whole store as one network bundle (bytes per exhibit, exhibits/s);
- verification alone: zip checks, Ed25519 signature, payload SHA-256, and recomputing every
  signature ID and content ID from the surfaces (what ``import`` does before writing);
- import into an empty JM store (verification + prefilter features + one segment commit);
- a repeat of the import (already imported: a no-op) and an incremental round (1% new).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine
from bench_store import exhibit

from ribin.network import load_network
from ribin.store import SignatureStore
from ribin.sync import (
    DEFAULT_LIMITS,
    MANIFEST,
    PAYLOAD,
    SIGNATURE,
    _Bundle,
    _open_payload,
    _parse_manifest,
    _read_payload,
    _verify_signature,
    export_bundle,
    generate_key,
    import_bundle,
)


def build(path: Path, first: int, count: int, size: int) -> None:
    with SignatureStore.open(path, "a") as store:
        for start in range(first, first + count, 1000):
            batch = []
            for number in range(start, min(start + 1000, first + count)):
                item, meta = exhibit(number, size)
                batch.append((item, {**meta, "country": "BB", "sharing": "network"}))
            store.add_many(batch)


def verify_only(bundle_path: Path, store: SignatureStore, network) -> float:
    start = time.perf_counter()
    bundle = _Bundle(bundle_path, DEFAULT_LIMITS)
    work = Path(tempfile.mkdtemp())
    try:
        body = bundle.read(MANIFEST)
        signer = _verify_signature(bundle, body, bundle.read(SIGNATURE), network)
        manifest = _parse_manifest(bundle, body, signer)
        digest, _ = bundle.extract(PAYLOAD, work / "p.h5")
        assert digest == manifest["files"][PAYLOAD]["sha256"]
        handle = _open_payload(bundle, work / "p.h5")
        try:
            items = _read_payload(bundle, store, handle, manifest, "BB", "JM", network)
        finally:
            handle.close()
        assert len(items) == len(manifest["exhibits"])
    finally:
        bundle.close()
        shutil.rmtree(work)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exhibits", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    n = args.exhibits
    print(f"machine: {machine()}")
    print(f"{n} exhibits, breech face {args.size}x{args.size}, firing pin half size, float32")
    root = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    try:
        keys = {code: root / f"{code}.pem" for code in ("BB", "JM")}
        public = {code: generate_key(path) for code, path in keys.items()}
        (root / "network.toml").write_text(
            "".join(f'[countries.{c}]\npublic_key = "{k}"\n' for c, k in public.items())
        )
        network = load_network(root / "network.toml")
        bb, jm = root / "bb.ribin", root / "jm.ribin"
        t = time.perf_counter()
        build(bb, 0, n, args.size)
        print(f"setup: ingest {n} exhibits {time.perf_counter() - t:.1f} s (not counted)")
        store_bytes = sum(p.stat().st_size for p in (bb / "segments").iterdir())

        with SignatureStore.open(bb, "a") as store:
            t = time.perf_counter()
            result = export_bundle(store, root / "full.zip", keys["BB"], country="BB")
            seconds = time.perf_counter() - t
        print(
            f"export: {seconds:.2f} s, {n / seconds:,.0f} exhibits/s; bundle "
            f"{result.bytes / 1e6:.1f} MB = {result.bytes / n / 1024:.1f} KiB/exhibit "
            f"(store segments {store_bytes / n / 1024:.1f} KiB/exhibit)"
        )

        with SignatureStore.open(jm, "x") as store:
            seconds = verify_only(root / "full.zip", store, network)
        print(
            f"verify only (signature, hashes, every ID recomputed): {seconds:.2f} s, "
            f"{n / seconds:,.0f} exhibits/s"
        )
        with SignatureStore.open(jm, "a") as store:
            t = time.perf_counter()
            imported = import_bundle(store, root / "full.zip", network, country="JM")
            seconds = time.perf_counter() - t
        assert imported.added == n
        print(
            f"import (verify + merge, one commit): {seconds:.2f} s, {n / seconds:,.0f} exhibits/s"
        )
        with SignatureStore.open(jm, "a") as store:
            t = time.perf_counter()
            again = import_bundle(store, root / "full.zip", network)
            seconds = time.perf_counter() - t
        assert again.already_imported
        print(f"repeat import (no-op after signature check): {seconds * 1000:.0f} ms")

        extra = max(1, n // 100)
        build(bb, n, extra, args.size)
        with SignatureStore.open(bb, "a") as store:
            t = time.perf_counter()
            inc = export_bundle(store, root / "inc.zip", keys["BB"], since=result.cursor)
            export_s = time.perf_counter() - t
        with SignatureStore.open(jm, "a") as store:
            t = time.perf_counter()
            merged = import_bundle(store, root / "inc.zip", network)
            import_s = time.perf_counter() - t
        assert merged.added == extra == inc.exhibits
        print(
            f"incremental ({extra} new on {n}): export {export_s:.2f} s, import {import_s:.2f} s, "
            f"bundle {inc.bytes / 1e6:.2f} MB"
        )
        digest = hashlib.sha256((root / "full.zip").read_bytes()).hexdigest()[:16]
        print(f"bundle sha256 (file) {digest}…")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
