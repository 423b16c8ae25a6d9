"""Child processes of ``test_workflow_crash.py``: run as ``python tests/workflow_child.py``.

Fresh interpreters rather than forks: correlation runs Numba's parallel kernels, and a fork
of a process whose OpenMP runtime has started may not use it again.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_store import make_exhibit

from ribin.store import SignatureStore
from ribin.workflow import Workflow, correlate

BATCH = 2


def say(line: str) -> None:
    print(line, flush=True)


def batch(number: int, country: str = "JM") -> list:
    """Two breech-face-only exhibits (3D: the search compares a shortlist, not everything)."""
    return [
        (make_exhibit(f"b{number:04d}-{j}", size=24, firing_pin=False), {"country": country})
        for j in range(BATCH)
    ]


def ingest_with_correlation(store: SignatureStore, number: int) -> None:
    """What ``ribin ingest`` does: one store write, then correlation of what it stored."""
    results = store.add_many(batch(number))
    store.refresh()
    correlate(store, [("JM", r.exhibit_id, r.content_id) for r in results], site_country="JM")


def warm_up(store: SignatureStore) -> None:
    """Load the comparison kernels (a read-only search) before the timed work."""
    from ribin.search import search

    search(store, store.get(store.exhibit_ids()[0]), scope="network")


def ingest_forever(path: str, first: str) -> None:
    store = SignatureStore.open(path, "a")
    warm_up(store)
    say("ready")
    number = int(first)
    while True:
        say(f"begin {number} {time.monotonic()}")
        ingest_with_correlation(store, number)
        say(f"done {number} {time.monotonic()}")
        number += 1


def ingest_some(path: str, first: str, count: str) -> None:
    with SignatureStore.open(path, "a") as store:
        warm_up(store)
        for number in range(int(first), int(first) + int(count)):
            ingest_with_correlation(store, number)
            say(f"done {number}")


def decide_many(path: str, name: str, lead_ids: str, seed: str) -> None:
    ids = [int(x) for x in lead_ids.split(",")]
    rng = random.Random(int(seed))
    conclusions = ("identification", "inconclusive", "elimination")
    with Workflow.open(path) as wf:
        for k in range(len(ids) * 3):
            lead = rng.choice(ids)
            wf.decide(lead, rng.choice(conclusions), name, note=f"{name} #{k}")
            say(f"decided {lead} {k}")


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
