"""Write tests/data/store_v1/: a tiny store in format version 1, kept to test old stores open.

Run once when a format version is released (``python tests/data/make_store_v1.py``) and
commit the result; never regenerate it for an existing version, since the point is that
files written by that release keep reading.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from ribin.exhibit import Exhibit, Signature
from ribin.store import SignatureStore

HERE = Path(__file__).resolve().parent
OUT = HERE / "store_v1"


def exhibit(number: int, firing_pin: bool = True) -> Exhibit:
    rng = np.random.default_rng(number)
    surface = rng.normal(0.0, 0.5, (24, 24)).astype(np.float32)
    surface[:3, :3] = np.nan
    params = {"pixel_size_um": 6.25, "band_um": [16.0, 250.0], "seed": number}
    breech_face = Signature("breech_face", surface, 6.25, "3d", {"valid": 0.98}, params)
    pin = None
    if firing_pin:
        pin_surface = rng.normal(0.0, 1.0, (12, 12)).astype(np.float32)
        pin = Signature("firing_pin", pin_surface, 6.25, "3d", {"found": True}, {"seed": number})
    return Exhibit(
        exhibit_id=f"V1-{number:03d}",
        breech_face=breech_face,
        firing_pin=pin,
        source_sha256=f"{number:02x}" * 32,
        source_name=f"v1-{number:03d}.x3p",
        software_version="0.1.0",
        missing={} if firing_pin else {"firing_pin": "not found"},
        warnings=("low contrast",) if number == 2 else (),
        detection={"primer_centre_px": [12.0, 12.0], "mask": np.ones((4, 4), dtype=bool)},
    )


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    with SignatureStore.open(OUT, "x") as store:
        store.add_many(
            [
                (
                    exhibit(1),
                    {
                        "country": "JM",
                        "site": "Kingston",
                        "caliber": "9mm Luger",
                        "role": "known",
                        "case_ref": "C-1",
                        "acquired_at": "2024-03-01",
                    },
                ),
                (exhibit(2, firing_pin=False), {"country": "BB", "sharing": "cluster"}),
            ]
        )
        store.add(exhibit(3), {"country": "BZ", "role": "questioned", "sharing": "local"})
        store.remove("V1-003", reason="fixture: exercise tombstones")
    (OUT / ".lock").unlink()  # made by any writer; not part of the fixture
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
