"""The Dask engine: same results as the embedded one, retries, no partial answers, batches."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import ndimage

from ribin.calibration import fit_calibration, model_key
from ribin.cli import main
from ribin.exhibit import Exhibit, Signature
from ribin.search import SearchParams, search, search_batch
from ribin.store import SignatureStore

distributed = pytest.importorskip("distributed")

from ribin.distributed import ShardError  # noqa: E402
from ribin.distributed import search as dask_search  # noqa: E402

PIXEL_UM = 12.5
BF_SIZE, FP_SIZE = 112, 56
COUNTRIES = ("BB", "JM", "BZ", "TT")
SHARING = ("network", "cluster", "local")
# a short shortlist, so that the global choice across segments matters
SHORT = SearchParams(shortlist_min=3, shortlist_fraction=0.0)
CLI_SEARCH = ("search", "--scope", "network")
MODEL = fit_calibration([10.0, 14.0, 20.0], [0.5, 1.0, 2.0, 3.0])


def _view(seed: int, shot: int, size: int) -> np.ndarray:
    """A rotated, shifted, noisy view of firearm ``seed``'s texture, NaN outside a disc."""
    texture = ndimage.gaussian_filter(
        np.random.default_rng(seed).normal(size=(size + 24, size + 24)), 2.0
    )
    rng = np.random.default_rng(1000 * seed + shot)
    turned = ndimage.rotate(texture, 29.0 * shot, reshape=False, order=1, mode="nearest")
    dy, dx = rng.integers(-4, 5, size=2)
    view = turned[12 + dy : 12 + dy + size, 12 + dx : 12 + dx + size]
    view = view / texture.std() + 0.4 * rng.normal(size=view.shape)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    return np.where(np.hypot(yy, xx) < size / 2 - 2, view, np.nan).astype(np.float32)


def _exhibit(number: int) -> Exhibit:
    firearm = number % 5
    bf = Signature("breech_face", _view(firearm, number, BF_SIZE), PIXEL_UM, "3d")
    fp = (
        Signature("firing_pin", _view(50 + firearm, number, FP_SIZE), PIXEL_UM, "3d")
        if number % 3
        else None  # some exhibits lack a firing pin
    )
    return Exhibit(f"E{number:02d}", bf, fp, f"{number:064x}", f"E{number:02d}.x3p", "test")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """16 exhibits in 4 segments, one of them removed (a tombstone)."""
    path = tmp_path_factory.mktemp("distributed") / "store"
    with SignatureStore.open(path, "a") as writer:
        for first in range(0, 16, 4):
            writer.add_many(
                [
                    (
                        _exhibit(n),
                        {"country": COUNTRIES[n % 4], "sharing": SHARING[n % 3], "role": "known"},
                    )
                    for n in range(first, first + 4)
                ]
            )
        writer.remove("E06", "test: a tombstoned exhibit is never a candidate")
    return path


@pytest.fixture(scope="module")
def store(store_path):
    with SignatureStore.open(store_path, "r") as reader:
        yield reader


@pytest.fixture(scope="module")
def client():
    """A small cluster of two single-threaded worker processes, shared by the tests."""
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as connected,
    ):
        yield connected


def _document(result) -> dict:
    """The JSON document less what differs between runs and engines."""
    document = copy.deepcopy(result.to_json())
    document.pop("seconds")
    for key in ("searched_at", "engine", "scheduler", "workers", "shards", "batch_size"):
        document["provenance"].pop(key, None)
    return document


CASES = [
    ("E01", {"params": SHORT}),
    ("E05", {"exhaustive": True, "top": 50}),
    ("E07", {"params": SHORT, "scope": "cluster:ribin", "top": 2}),
    ("E10", {"params": SHORT, "calibrated": True}),
]


def _options(case: dict) -> dict:
    options = {"scope": "network", **case}
    if options.pop("calibrated", False):
        options["calibration"] = {model_key("breech_face", "3d"): MODEL}
    return options


@pytest.mark.parametrize(("query", "case"), CASES)
def test_same_ranking_and_scores_as_embedded(store, client, query, case):
    embedded = search(store, query, **_options(case))
    dask = search(store, query, scheduler=client, **_options(case))
    assert embedded.candidates, "the case should rank something"
    assert _document(dask) == _document(embedded)  # ranks, scores, LRs: exactly equal
    assert dask.provenance["engine"] == "dask"
    assert dask.provenance["scheduler"] == client.scheduler.address
    assert dask.provenance["shards"] == [ref.name for ref in store.segments()]
    assert embedded.provenance["engine"] == "embedded"
    assert "E06" not in [c.exhibit_id for c in dask.candidates]


def test_batch_equals_single_searches(store, client):
    queries = ["E01", "E05", store.get("E10").exhibit]
    singles = [search(store, q, searcher="BB", params=SHORT) for q in queries]
    for engine_options in ({"scheduler": client}, {"engine": "embedded"}):
        batch = search_batch(store, queries, searcher="BB", params=SHORT, **engine_options)
        assert [_document(r) for r in batch] == [_document(r) for r in singles]
        assert batch[0].provenance["batch_size"] == 3


class _KillOnce(distributed.WorkerPlugin):
    """Kills its worker process when the first comparison task starts (once per marker)."""

    def __init__(self, marker: str):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and "ribin-compare" in str(key):
            if not os.path.exists(self.marker):
                open(self.marker, "w").close()
                os._exit(1)


@pytest.mark.slow
def test_killed_worker_is_rerun(store, client, tmp_path):
    marker = tmp_path / "killed"
    client.register_plugin(_KillOnce(str(marker)), name="kill-once")
    try:
        result = search(store, "E01", scheduler=client, params=SHORT)
    finally:
        client.unregister_worker_plugin("kill-once")
    assert marker.exists(), "a worker should have been killed"
    assert _document(result) == _document(search(store, "E01", params=SHORT))


def test_unreadable_segment_fails_the_whole_search(store_path, client, tmp_path):
    copy_path = tmp_path / "store"
    shutil.copytree(store_path, copy_path)
    with SignatureStore.open(copy_path, "r") as damaged:
        query = damaged.get("E01").exhibit
        bad = damaged.segments()[2]
        bad.path.write_bytes(b"not an HDF5 file")
        with pytest.raises(ShardError) as caught:
            dask_search(damaged, query, searcher="BB", scheduler=client, retries=1)
    message = str(caught.value)
    assert "\n" not in message
    assert bad.name in message and "1 of 4 segments" in message
    assert all(ref.name not in message for ref in damaged.segments() if ref != bad)

    address = client.scheduler.address
    result = CliRunner().invoke(
        main,
        [*CLI_SEARCH, str(copy_path), "E01", "--country", "BB", "--scheduler", address],
    )
    # the client itself reads the segment indices to find a stored query: either way, one line
    assert result.exit_code == 1
    assert bad.name in result.output and len(result.output.strip().splitlines()) == 1


def test_cli_engine_dask(store_path, client):
    runner = CliRunner()
    command = [*CLI_SEARCH, str(store_path), "E01", "--top", "5", "--json"]
    embedded = runner.invoke(main, command)
    dask = runner.invoke(main, [*command, "--scheduler", client.scheduler.address])
    assert embedded.exit_code == 0, embedded.output
    assert dask.exit_code == 0, dask.output
    one, other = json.loads(embedded.output), json.loads(dask.output)
    assert other["provenance"]["engine"] == "dask"
    assert other["candidates"] == one["candidates"]
    assert other["by_region"] == one["by_region"]

    wrong = runner.invoke(main, [*command, "--engine", "spark"])
    assert wrong.exit_code == 2


@pytest.mark.slow
def test_dask_engine_starts_a_local_cluster(store):
    result = dask_search(store, "E01", workers=1, params=SHORT)
    assert result.provenance["engine"] == "dask" and result.provenance["workers"] == 1
    assert _document(result) == _document(search(store, "E01", params=SHORT))


def test_importing_ribin_does_not_import_dask():
    code = (
        "import sys, ribin, ribin.search, ribin.cli; "
        "assert not {'dask', 'distributed'} & set(sys.modules), 'dask imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
