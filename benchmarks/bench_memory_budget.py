"""Peak memory and time of hostile and oversized inputs under the memory budget (issue 22).

    python benchmarks/bench_memory_budget.py [--skip-large]

Each input is built in a temporary directory, then read (or ingested, or imported) in a
fresh interpreter whose peak RSS (``resource.getrusage``) and wall time are printed and
recorded in ``benchmarks/results/memory_budget.{txt,json}``. The default budget
(``RIBIN_MEMORY_BUDGET`` unset: 2 GiB) applies unless a row says otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import h5py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402
from hostile_inputs import measure, x3p_declaring  # noqa: E402

from ribin.store import SignatureStore  # noqa: E402
from ribin.sync import (  # noqa: E402
    PAYLOAD,
    export_bundle,
    generate_key,
    load_private_key,
    public_key_b64,
    write_bundle,
)

RESULTS = Path(__file__).resolve().parent / "results"


def bundle_bomb(work: Path) -> tuple[Path, Path, Path]:
    """A signed bundle whose exhibit's breech face is a 20000^2 fill-value dataset."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_store import make_exhibit

    keys = {}
    lines = []
    for code in ("BB", "JM"):
        keys[code] = work / f"{code}.pem"
        public = generate_key(keys[code])
        lines += [f"[countries.{code}]", f'public_key = "{public}"', ""]
    network = work / "network.toml"
    network.write_text("\n".join(lines))
    bb, jm = work / "BB.ribin", work / "JM.ribin"
    with SignatureStore.open(bb, "x") as store:
        store.add(make_exhibit("BB-1", size=64), {"country": "BB"})
    SignatureStore.open(jm, "x").close()
    genuine = work / "genuine.zip"
    with SignatureStore.open(bb, "a") as store:
        export_bundle(store, genuine, keys["BB"], country="BB")
    import zipfile

    with zipfile.ZipFile(genuine) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        (work / "p.h5").write_bytes(zf.read(PAYLOAD))
    manifest.pop("files")
    with h5py.File(work / "p.h5", "r+") as f:
        group = f["exhibits"][next(iter(f["exhibits"]))]
        attrs = dict(group["breech_face"].attrs)
        del group["breech_face"]
        data = group.create_dataset(
            "breech_face", (20000, 20000), "<f4", chunks=(256, 256), compression="gzip"
        )
        for key, value in attrs.items():
            data.attrs[key] = value
    bomb = work / "bomb.zip"
    key = load_private_key(keys["BB"])
    assert public_key_b64(key)
    write_bundle(bomb, manifest, key, {PAYLOAD: work / "p.h5"})
    return bomb, jm, network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-large", action="store_true", help="skip the 10000^2 scan")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ribin-membench-"))
    rows = []
    try:
        cases = []
        bomb = x3p_declaring(work / "bomb.x3p", 16384, 16384)
        cases.append(("X3P 16384^2 int16 zeros (ingest)", bomb, "extract_file", None))
        huge = x3p_declaring(work / "huge.x3p", 100_000, 100_000, fill=None)
        cases.append(("X3P declaring 100000^2 (ingest)", huge, "extract_file", None))
        fine = x3p_declaring(work / "fine.x3p", 4096, 4096, noise=True, increment="1e-06")
        cases.append(("X3P 4096^2 int16 at 1 um (read)", fine, "read_x3p", None))
        cases.append(("same, budget 8G (read, full)", fine, "read_x3p", "8G"))
        if not args.skip_large:
            large = x3p_declaring(work / "large.x3p", 10000, 10000, noise=True)
            cases.append(("X3P 10000^2 int16 at 1.5 um (ingest)", large, "extract_file", None))
        for label, path, how, budget in cases:
            if how == "extract_file":
                code = f"from ribin.ingest import extract_file\nextract_file({str(path)!r})"
            else:
                code = f"from ribin.io import read_x3p\nread_x3p({str(path)!r})"
            env = None
            if budget:
                import os

                env = {**os.environ, "RIBIN_MEMORY_BUDGET": budget}
            result = measure(code, env=env, timeout=900)
            rows.append(_row(label, path, result))
        bundle, jm, network = bundle_bomb(work)
        code = (
            "from ribin.network import load_network\n"
            "from ribin.store import SignatureStore\n"
            "from ribin.sync import import_bundle\n"
            f"store = SignatureStore.open({str(jm)!r}, 'a')\n"
            f"import_bundle(store, {str(bundle)!r}, load_network({str(network)!r}), "
            "country='JM')"
        )
        rows.append(_row("bundle, 20000^2 fill-value surface (import)", bundle, measure(code)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [f"# memory budget benchmark; {machine()}", ""]
    for row in rows:
        lines.append(
            f"{row['input']:<44} {row['file_bytes']:>11} B  peak {row['peak_mb']:>6.0f} MB  "
            f"{row['seconds']:>6.2f} s  {row['outcome'][:110]}"
        )
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory_budget.txt").write_text(text + "\n")
    (RESULTS / "memory_budget.json").write_text(
        json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n"
    )


def _row(label: str, path: Path, result: dict) -> dict:
    if result["returncode"] != 0:
        raise SystemExit(f"{label}: the child failed:\n{result['stderr'][-2000:]}")
    return {
        "input": label,
        "file_bytes": path.stat().st_size,
        "peak_mb": result["peak_mb"],
        "seconds": result["seconds"],
        "outcome": result["outcome"],
    }


if __name__ == "__main__":
    main()
