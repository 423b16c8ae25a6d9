"""Regenerate the example comparison reports of the Fadul subset in docs/examples/.

    python docs/examples/make_examples.py [--data ../shared/data/fadul_subset]

Writes a known match and a known non-match (HTML report, and a PNG screenshot of its
top when headless Chromium is installed) and prints each report's size and timing.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from PIL import Image

from ribin import report
from ribin.calibration import models_for_store
from ribin.ingest import extract_file

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1].parent / "shared" / "data" / "fadul_subset"
# (output name, questioned casing, known test fire): F is firearm 1, 2-1 is firearm 2.
EXAMPLES = [
    ("fadul-match", "Fadul F.x3p", "Fadul 1-1.x3p"),
    ("fadul-nonmatch", "Fadul F.x3p", "Fadul 2-1.x3p"),
]
SCREEN = (1100, 2200)


def screenshot(html: Path, png: Path) -> bool:
    """A PNG of the report's first screen, by headless Chromium; False when it is absent."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return False
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                f"--screenshot={png}", f"--window-size={SCREEN[0]},{SCREEN[1]}", html.as_uri(),
            ],
            capture_output=True, timeout=120, check=True,
        )  # fmt: skip
    if not png.is_file():
        return False
    # a palette PNG: a third of the size, no visible difference for a page of text and figures
    with Image.open(png) as shot:
        quantized = shot.convert("RGB").quantize(colors=128, dither=Image.Dither.NONE)
    quantized.save(png, format="PNG", optimize=True)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="Fadul subset folder.")
    parser.add_argument("--out", type=Path, default=HERE, help="Where to write the examples.")
    args = parser.parse_args()
    with open(args.data / "truth.csv", newline="") as handle:
        truth = {row["file"]: row for row in csv.DictReader(handle)}
    models, source = models_for_store(None)
    for name, first, second in EXAMPLES:
        started = time.perf_counter()
        exhibits = [extract_file(args.data / f) for f in (first, second)]
        extracted = time.perf_counter()
        metadata = [
            {"role": truth[f]["role"], "firearm (ground truth)": truth[f]["firearm"]}
            for f in (first, second)
        ]
        pair = report.compare_pair(
            *exhibits,
            models,
            first_metadata=metadata[0],
            second_metadata=metadata[1],
            calibration_source=source,
        )
        compared = time.perf_counter()
        document = report.compare_html(
            pair,
            parameters={"made_by": "docs/examples/make_examples.py", "files": [first, second]},
        )
        html = args.out / f"{name}.html"
        report.write_report(html, document)
        drawn = time.perf_counter()
        png = args.out / f"{name}.png"
        shot = f"; screenshot {png.stat().st_size / 1e3:.0f} kB" if screenshot(html, png) else ""
        region = pair.regions[0]
        print(
            f"{name}: {first} vs {second}: CMC {region.result.cmc_count}, score "
            f"{region.result.score:.2f}, log10 LR {region.log_lr:+.2f}; {html.name} "
            f"{html.stat().st_size / 1e3:.0f} kB; extract {extracted - started:.1f} s, "
            f"compare {compared - extracted:.1f} s, report {drawn - compared:.1f} s" + shot
        )


if __name__ == "__main__":
    main()
