"""Search: scopes, sharing, filters, ranking and the JSON contract, on small textures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ribin.calibration import fit_calibration, model_key
from ribin.errors import InputError
from ribin.exhibit import Exhibit, Signature
from ribin.search import Filters, search
from ribin.store import SignatureStore

PIXEL_UM = 12.5
SIZE = 160


def _texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(SIZE + 40, SIZE + 40)), 2.0)
    return field / field.std()


def _shot(texture: np.ndarray, seed: int, angle: float) -> np.ndarray:
    """A rotated, shifted, noisy view of ``texture``, NaN outside a disc."""
    rng = np.random.default_rng(seed)
    turned = ndimage.rotate(texture, angle, reshape=False, order=1, mode="nearest")
    dy, dx = rng.integers(-6, 7, size=2)
    view = turned[20 + dy : 20 + dy + SIZE, 20 + dx : 20 + dx + SIZE]
    view = view + 0.4 * rng.normal(size=view.shape)
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    view = np.where(np.hypot(yy, xx) < SIZE / 2 - 2, view, np.nan)
    return view.astype(np.float32)


def _exhibit(name: str, firearm: int, shot: int) -> Exhibit:
    surface = _shot(_texture(firearm), 1000 * firearm + shot, angle=37.0 * shot)
    signature = Signature("breech_face", surface, PIXEL_UM, "3d", params={"test": 1})
    # one scan file per shot: the SHA-256 differs (a search skips the query's own file)
    return Exhibit(name, signature, None, f"{firearm:032x}{shot:032x}", f"{name}.x3p", "test")


# (exhibit_id, firearm, shot, country, sharing, caliber, role, acquired_at)
ROWS = [
    ("BB-Q1", 1, 0, "BB", "network", "9mm", "questioned", "2026-03-01"),
    ("BB-K1", 1, 1, "BB", "network", "9mm", "known", "2026-01-10"),
    ("JM-K1", 1, 2, "JM", "cluster", "9mm", "known", "2025-06-01"),
    ("BZ-K2", 2, 1, "BZ", "network", "9mm", "known", "2026-02-01"),
    ("JM-K3", 3, 1, "JM", "local", "9mm", "known", "2026-02-01"),
    ("US-K1", 1, 3, "US", "network", ".40 S&W", "known", ""),
    ("TT-K4", 4, 1, "TT", "network", "9mm", "other", "2026-02-02"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("search") / "store"
    batch = [
        (
            _exhibit(name, firearm, shot),
            {
                "country": cc,
                "sharing": sharing,
                "caliber": caliber,
                "role": role,
                "acquired_at": date,
            },
        )
        for name, firearm, shot, cc, sharing, caliber, role, date in ROWS
    ]
    with SignatureStore.open(path, "a") as writer:
        writer.add_many(batch)
    with SignatureStore.open(path, "r") as reader:
        yield reader


def _ids(result) -> list[str]:
    return [c.exhibit_id for c in result.candidates]


def test_true_matches_rank_first(store):
    result = search(store, "BB-Q1", scope="network", exhaustive=True)
    top3 = set(_ids(result)[:3])
    assert top3 == {"BB-K1", "JM-K1", "US-K1"}
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    assert result.candidates[0].breech_face.cmc_count > result.candidates[-1].breech_face.cmc_count


def test_query_is_never_its_own_candidate(store):
    result = search(store, "BB-Q1", scope="network", exhaustive=True)
    assert "BB-Q1" not in _ids(result)
    # the same exhibit searched as a fresh (unstored) exhibit is not found either
    fresh = store.get("BB-Q1").exhibit
    again = search(store, fresh, searcher="BB", scope="network", exhaustive=True)
    assert "BB-Q1" not in _ids(again)


@pytest.mark.parametrize(
    ("searcher", "scope", "expected"),
    [
        ("BB", "country", {"BB-K1"}),
        ("BB", "cluster:ribin", {"BB-K1", "JM-K1", "BZ-K2"}),  # JM-K3 is JM-local
        ("JM", "cluster:ribin", {"BB-K1", "JM-K1", "BZ-K2", "JM-K3"}),
        ("US", "network", {"BB-K1", "BZ-K2", "TT-K4", "US-K1"}),  # JM-K1: cluster only
        ("TT", "JM", {"JM-K1"}),  # TT shares the caricom cluster with JM
    ],
)
def test_scope_and_sharing(store, searcher, scope, expected):
    query = store.get("BB-Q1").exhibit
    result = search(store, query, searcher=searcher, scope=scope, exhaustive=True, top=50)
    assert set(_ids(result)) == expected


def test_filters(store):
    result = search(
        store,
        "BB-Q1",
        scope="network",
        exhaustive=True,
        filters=Filters(caliber="9MM", role="known", acquired_from="2026-01-01"),
    )
    assert set(_ids(result)) == {"BB-K1", "BZ-K2"}
    dated = search(
        store, "BB-Q1", scope="network", exhaustive=True, filters=Filters(acquired_to="2026-02-01")
    )
    # US-K1 has no acquisition date: a date range keeps it unless told otherwise
    assert set(_ids(dated)) == {"BB-K1", "JM-K1", "BZ-K2", "US-K1"}
    strict = search(
        store,
        "BB-Q1",
        scope="network",
        exhaustive=True,
        filters=Filters(acquired_to="2026-02-01", include_undated=False),
    )
    assert set(_ids(strict)) == {"BB-K1", "JM-K1", "BZ-K2"}


def test_shortlist_limits_full_comparisons(store):
    from ribin.search import SearchParams

    result = search(
        store, "BB-Q1", scope="network", params=SearchParams(shortlist_min=2, shortlist_fraction=0)
    )
    assert result.compared == 2
    assert len(result.candidates) == 2
    assert result.considered == 5


def test_calibrated_log_lr_and_json_contract(store):
    model = fit_calibration([10.0, 14.0, 20.0], [0.5, 1.0, 2.0, 3.0])
    result = search(
        store,
        "BB-Q1",
        scope="network",
        exhaustive=True,
        top=3,
        calibration={model_key("breech_face", "3d"): model},
    )
    document = result.to_json()
    assert set(document) >= {"query", "scope", "candidates", "compared", "seconds"}
    first = document["candidates"][0]
    assert set(first) >= {"rank", "exhibit_id", "country", "score", "breech_face", "log_lr"}
    assert first["rank"] == 1 and first["firing_pin"] is None
    assert first["log_lr"] == pytest.approx(float(model.log10_lr(first["score"])))
    lrs = [c["log_lr"] for c in document["candidates"]]
    assert lrs == sorted(lrs, reverse=True)
    assert document["provenance"]["query_content_id"] == store.get("BB-Q1").content_id
    assert len(document["candidates"]) == 3


def test_errors(store):
    fresh = store.get("BB-Q1").exhibit
    with pytest.raises(InputError, match="which country is searching"):
        search(store, fresh, scope="network")
    with pytest.raises(InputError, match="unknown cluster"):
        search(store, "BB-Q1", scope="cluster:atlantis")
    with pytest.raises(KeyError):
        search(store, "NOPE", scope="network")


def test_a_candidate_shortlisted_in_one_region_is_compared_in_both(tmp_path):
    """BF and FP shortlists of one: A leads the BF ranking, B the FP one; both get both."""
    from ribin.search import SearchParams

    def exhibit(name: str, bf: int, fp: int, shot: int) -> Exhibit:
        bf_sig = Signature(
            "breech_face", _shot(_texture(bf), 10 * bf + shot, 20.0 * shot), 12.5, "3d"
        )
        fp_surface = _shot(_texture(fp), 10 * fp + shot, 20.0 * shot)[40:120, 40:120]
        fp_sig = Signature("firing_pin", np.ascontiguousarray(fp_surface), 12.5, "3d")
        return Exhibit(name, bf_sig, fp_sig, f"{bf:032x}{fp:032x}", f"{name}.x3p", "test")

    rows = [("Q", 1, 11, 0), ("A", 1, 21, 1), ("B", 2, 11, 1), ("C", 3, 31, 1), ("D", 4, 41, 1)]
    with SignatureStore.open(tmp_path / "store", "a") as writer:
        writer.add_many([(exhibit(*row), {"country": "BB"}) for row in rows])
    with SignatureStore.open(tmp_path / "store", "r") as reader:
        result = search(
            reader, "Q", scope="country", params=SearchParams(shortlist_min=1, shortlist_fraction=0)
        )
    by_id = {c.exhibit_id: c for c in result.candidates}
    assert set(by_id) == {"A", "B"}
    assert by_id["A"].breech_face.prefilter_rank == 1
    assert by_id["B"].firing_pin.prefilter_rank == 1
    for candidate in by_id.values():
        assert candidate.breech_face.score is not None
        assert candidate.firing_pin.score is not None
    assert result.compared == 4


def test_shortlist_size_and_modalities():
    from ribin.search import SearchParams

    params = SearchParams()
    assert params.shortlist(5) == 5
    assert params.shortlist(10_000) == 10
    assert params.shortlist(100_000) == 100
    # the prefilter is not trusted to shortlist 2D: every candidate is compared
    assert params.shortlist(10_000, "2d") == 10_000
    assert SearchParams(exhaustive=True).shortlist(10_000) == 10_000


# ------------------------------------------------------------ the combined ranking (issue 24)


def _match(score: float | None, log_lr: float | None = None, name: str | None = None):
    from ribin.search import RegionMatch

    return RegionMatch(
        rank=1,
        score=score,
        cmc_count=None if score is None else int(score),
        log_lr=log_lr,
        prefilter_rank=1,
        prefilter_score=0.0,
        calibration=name if log_lr is not None else None,
    )


def _row(key: str):
    from ribin.search import CandidateRow

    fields = CandidateRow.__dataclass_fields__
    values = {name: key if name in ("exhibit_id", "content_id") else "" for name in fields}
    return CandidateRow(**values)


def test_a_candidate_without_an_lr_is_never_ranked_below_a_weaker_one_with_one():
    """The bug of `ribin demo --modality 2d`: F06-2 (score 0.17, with an LR) above F01-1
    (15.78, without one). Ranking is by score; the LR is shown beside it."""
    from ribin.search import _combine

    per_region = {
        "breech_face": {
            "F01-1": _match(15.78),  # uncalibrated
            "F06-2": _match(0.17, -1.2, "cal"),
            "F06-3": _match(0.17, -1.2, "cal"),
        }
    }
    rows = {key: _row(key) for key in per_region["breech_face"]}
    ranked = _combine(per_region, rows, top=2)
    assert [c.exhibit_id for c in ranked] == ["F01-1", "F06-2"]
    assert ranked[0].log_lr is None and ranked[0].calibration is None
    assert ranked[1].log_lr == -1.2 and ranked[1].calibration == "cal"
    assert ranked[1].lr_regions == ("breech_face",)


def test_combined_lr_covers_the_calibrated_regions_only():
    from ribin.search import _combine

    per_region = {
        "breech_face": {"A": _match(20.5, 2.0, "bf cal"), "B": _match(25.0, 2.1, "bf cal")},
        "firing_pin": {"A": _match(9.5), "B": _match(1.2, -0.5, "fp cal")},
    }
    rows = {key: _row(key) for key in ("A", "B")}
    a, b = sorted(_combine(per_region, rows, top=5), key=lambda c: c.exhibit_id)
    assert a.score == pytest.approx(30.0) and b.score == pytest.approx(26.2)
    assert (a.log_lr, a.calibration, a.lr_regions) == (2.0, "bf cal", ("breech_face",))
    assert b.log_lr == pytest.approx(1.6) and b.calibration == "bf cal + fp cal"
    assert b.lr_regions == ("breech_face", "firing_pin")


def test_missing_region_or_calibration_never_pushes_a_candidate_below_a_weaker_one():
    """Random candidates with random regions, scores and calibrations: whenever A scores at
    least as high as B in every region B was compared in, A ranks above B; and the order
    does not change when the LRs are removed."""
    from ribin.search import _combine

    rng = np.random.default_rng(24)
    for _ in range(200):
        n = int(rng.integers(2, 9))
        per_region: dict[str, dict] = {"breech_face": {}, "firing_pin": {}}
        plain: dict[str, dict] = {"breech_face": {}, "firing_pin": {}}
        for i in range(n):
            regions = [r for r in per_region if rng.random() < 0.7] or ["breech_face"]
            for region in regions:
                score = float(rng.integers(0, 30) + rng.random())
                lr = float(rng.normal()) if rng.random() < 0.5 else None
                per_region[region][f"E{i}"] = _match(score, lr, "cal")
                plain[region][f"E{i}"] = _match(score)
        rows = {f"E{i}": _row(f"E{i}") for i in range(n)}
        ranked = _combine(per_region, rows, top=n)
        assert [c.exhibit_id for c in ranked] == [
            c.exhibit_id for c in _combine(plain, rows, top=n)
        ]
        position = {c.exhibit_id: k for k, c in enumerate(ranked)}
        scores = {
            key: {r: per_region[r][key].score for r in per_region if key in per_region[r]}
            for key in rows
        }
        for a in rows:
            for b in rows:
                if a == b:
                    continue
                dominates = all(
                    region in scores[a] and scores[a][region] > s for region, s in scores[b].items()
                )
                if dominates:
                    assert position[a] < position[b], (scores[a], scores[b])
