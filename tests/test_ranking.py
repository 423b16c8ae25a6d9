"""The combined ranking on a mixed store: 2D and 3D casings, a one-region exhibit, LRs for
some regions only (issue 24: a missing region or calibration never hides a true match)."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from ribin.calibration import models_for_store
from ribin.demo import build_demo_store
from ribin.ingest import ingest
from ribin.search import search
from ribin.store import SignatureStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, synthetic_dir):
    """The 2D demo store, plus 3D casings of two firearms (IDs ``...-3d``), one of them with
    its breech face only (``F02-2-3d``, a one-region exhibit)."""
    with open(synthetic_dir / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    path = tmp_path_factory.mktemp("mixed") / "store"
    build_demo_store(synthetic_dir, rows, path, modality="2d")
    chosen = [r for r in rows if r["modality"] == "3d" and r["firearm"] in ("F02", "F05")]
    with SignatureStore.open(path, "a") as store:
        for caliber in sorted({r["caliber"] for r in chosen}):
            group = [r for r in chosen if r["caliber"] == caliber]
            ingest(
                store,
                [synthetic_dir / r["file"] for r in group],
                {"country": "JM", "role": "known", "caliber": caliber},
                exhibit_ids=[f"{Path(r['file']).stem}-3d" for r in group],
                caliber=caliber,
            )
        one = store.get("F02-2-3d")
        exhibit = replace(one.exhibit, exhibit_id="F02-2-bf", firing_pin=None)
        store.add(exhibit, {"country": "BB", "role": "known", "caliber": one.metadata.caliber})
    with SignatureStore.open(path, "r") as reader:
        yield reader, rows


@pytest.fixture(scope="module")
def searched_2d(mixed):
    """Every 2D questioned casing searched at network scope: query -> (mates, candidates)."""
    store, rows = mixed
    models, _ = models_for_store(store.path)
    out = {}
    for row in rows:
        if row["modality"] == "2d" and row["shot"] == "3":
            query = Path(row["file"]).stem
            result = search(store, query, scope="network", top=50, calibration=models)
            out[query] = ({f"{row['firearm']}-1", f"{row['firearm']}-2"}, result.candidates)
    assert len(out) == 8
    return out


def test_2d_demo_example_of_the_issue_keeps_both_true_mates_in_its_top_2(searched_2d):
    """`ribin demo --modality 2d --top 2`: F06-2/F06-3 (0.17, with a synthetic 2D LR) used to
    rank above F01-1 (15.78, without one), hiding both true mates."""
    mates, candidates = searched_2d["F01-3"]
    assert {c.exhibit_id for c in candidates[:2]} == mates
    for c in candidates:
        # no 2D calibration ships: uncalibrated, never a synthetic LR
        assert c.log_lr is None and c.calibration is None and c.lr_regions == ()
        assert c.breech_face.calibration is None


def test_2d_queries_rank_by_score_and_a_mate_above_every_non_mate_is_in_the_top_2(searched_2d):
    for query, (mates, candidates) in searched_2d.items():
        assert all(c.exhibit_id.endswith(("-1", "-2", "-3")) for c in candidates)  # 2D only
        scores = [c.score for c in candidates]
        assert scores == sorted(scores, reverse=True), query
        best_other = max(c.score for c in candidates if c.exhibit_id not in mates)
        for rank, c in enumerate(candidates, start=1):
            if c.exhibit_id in mates and c.score > best_other:
                assert rank <= 2, (query, c.exhibit_id, rank)


def test_2d_demo_ranks_both_true_mates_of_every_query_in_its_top_2(searched_2d):
    for query, (mates, candidates) in searched_2d.items():
        assert {c.exhibit_id for c in candidates[:2]} == mates, query


def test_one_region_and_partly_calibrated_candidates(mixed):
    """3D query F02-3: the default calibrates the breech face only; the firing pin is
    uncalibrated; the one-region exhibit F02-2-bf (no firing pin) still ranks with its mates."""
    store, _ = mixed
    models, _ = models_for_store(store.path)
    result = search(store, "F02-3-3d", scope="network", top=10, calibration=models)
    ids = [c.exhibit_id for c in result.candidates]
    assert set(ids[:3]) == {"F02-1-3d", "F02-2-3d", "F02-2-bf"}
    assert all(i.endswith(("-3d", "-bf")) for i in ids)  # 3D only: 2D never compared
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    for c in result.candidates:
        assert c.lr_regions == ("breech_face",)
        assert c.calibration == models["breech_face/3d"].name
        assert c.log_lr == c.breech_face.log_lr
        if c.firing_pin is not None:
            assert c.firing_pin.log_lr is None and c.firing_pin.calibration is None
    bf_only = next(c for c in result.candidates if c.exhibit_id == "F02-2-bf")
    assert bf_only.firing_pin is None and bf_only.score == bf_only.breech_face.score
