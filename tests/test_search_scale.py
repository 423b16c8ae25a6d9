"""Search at scale: the prefilter read segment by segment, and batches of queries.

The embedded search reads the store's features one segment at a time and joins the
segments' rankings; these tests hold it to the ranking over the whole feature table, and
:func:`ribin.search.search_batch` to one :func:`ribin.search.search` per query.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
from scipy import ndimage

from ribin import prefilter
from ribin.exhibit import Exhibit, Signature
from ribin.network import Scope, load_network
from ribin.search import Filters, SearchParams, search, search_batch
from ribin.shards import RegionQuery, ShardQuery, join_states, rank_shard
from ribin.store import FeatureTable, SignatureStore

SIZE = 96
COUNTRIES = ("BB", "JM", "BZ", "TT")


def _surface(seed: int, shot: int, size: int) -> np.ndarray:
    texture = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=(size, size)), 2.0)
    noise = np.random.default_rng([seed, shot]).normal(size=(size, size))
    surface = texture / texture.std() + 0.4 * noise
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    return np.where(np.hypot(yy, xx) < size / 2 - 2, surface, np.nan).astype(np.float32)


def _exhibit(name: str, firearm: int, shot: int) -> Exhibit:
    bf = Signature("breech_face", _surface(firearm, shot, SIZE), 12.5, "3d")
    fp = Signature("firing_pin", _surface(100 + firearm, shot, 48), 12.5, "3d")
    return Exhibit(name, bf, fp, f"{firearm:032x}{shot:032x}", f"{name}.x3p", "test")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """12 exhibits of 4 firearms in 3 segments (one add_many each), over 4 countries."""
    path = tmp_path_factory.mktemp("scale") / "store"
    with SignatureStore.open(path, "a") as writer:
        for segment in range(3):
            writer.add_many(
                [
                    (
                        _exhibit(f"E{4 * segment + i:02d}", i, segment),
                        {"country": COUNTRIES[(segment + i) % 4], "sharing": "network"},
                    )
                    for i in range(4)
                ]
            )
    with SignatureStore.open(path) as reader:
        assert len(reader.segments()) == 3
        yield reader


def _fields(table: FeatureTable) -> dict[str, np.ndarray]:
    return {k: v for k, v in vars(table).items() if k != "feature_version"}


def test_map_features_reads_what_features_reads(store):
    scope = Scope.from_network(load_network(), "cluster:ribin", "BB")
    for kinds, where in (
        (("breech_face", "firing_pin"), None),
        (("firing_pin",), scope),
    ):
        parts = store.map_features(lambda tables: tables, scope=where, kinds=kinds)
        assert parts and all(set(part) == set(kinds) for part in parts)
        for kind in kinds:
            whole = _fields(store.features(scope=where, kind=kind))
            for name, values in whole.items():
                joined = np.concatenate([getattr(part[kind], name) for part in parts])
                assert joined.dtype == values.dtype, name
                assert np.array_equal(joined, values), name


def _table(features: np.ndarray, countries: list[str]) -> FeatureTable:
    n = len(features)
    text = lambda value: np.array([value] * n, dtype=object)  # noqa: E731
    return FeatureTable(
        features=features,
        signature_id=np.array([f"sig{i}" for i in range(n)], dtype=object),
        content_id=np.array([f"{i:064x}" for i in range(n)], dtype=object),
        exhibit_id=np.array([f"E{i}" for i in range(n)], dtype=object),
        kind=text("breech_face"),
        modality=text("3d"),
        pixel_size_um=np.full(n, 12.5),
        country=np.array(countries, dtype=object),
        sharing=np.array(["network" if i % 5 else "local" for i in range(n)], dtype=object),
        segment=text("seg"),
        site=text(""),
        caliber=text("9mm"),
        role=text("known"),
        acquired_at=text(""),
    )


def test_joined_segment_rankings_equal_the_whole_table_ranking_ties_included():
    rng = np.random.default_rng(5)
    features = rng.normal(size=(60, prefilter.FEATURE_LENGTH)).astype(np.float32)
    features[[7, 30, 51]] = features[3]  # equal scores, in three different segments
    features[[12, 13]] = 0.0  # score 0 against everything
    countries = [COUNTRIES[i % 4] for i in range(60)]
    whole = _table(features, countries)
    query_surface = _surface(1, 0, SIZE)
    signature = Signature("breech_face", query_surface, 12.5, "3d")
    queries = [
        ShardQuery(
            f"Q{searcher}",
            Scope.from_network(load_network(), scope, searcher),
            None,
            (RegionQuery("breech_face", signature, vector),),
        )
        for searcher, scope, vector in (
            ("BB", "network", features[3]),
            ("JM", "cluster:ribin", prefilter.features(signature)),
        )
    ]
    expected = rank_shard({"breech_face": whole}, queries, Filters())
    bounds = [0, 11, 11, 40, 60]  # one segment with no row
    parts = [
        rank_shard(
            {
                "breech_face": FeatureTable(
                    **{k: v[a:b] for k, v in _fields(whole).items()},
                )
            },
            queries,
            Filters(),
        )
        for a, b in itertools.pairwise(bounds)
    ]
    joined = join_states(parts, ("breech_face",), queries)
    for want, got in zip(expected.rankings, joined.rankings, strict=True):
        assert np.array_equal(want["breech_face"].rows, got["breech_face"].rows)
        assert np.array_equal(want["breech_face"].scores, got["breech_face"].scores)
    for name, values in _fields(expected.tables["breech_face"]).items():
        if name != "features":
            assert np.array_equal(getattr(joined.tables["breech_face"], name), values)
    empty = join_states([], ("breech_face",), queries)
    assert all(len(r["breech_face"].rows) == 0 for r in empty.rankings)


def _document(result) -> dict:
    document = copy.deepcopy(result.to_json())
    document.pop("seconds")
    for key in ("searched_at", "batch_size"):
        document["provenance"].pop(key, None)
    return document


def test_search_batch_equals_one_search_per_query(store):
    short = SearchParams(shortlist_min=2, shortlist_fraction=0)
    queries = ["E00", "E05", _exhibit("fresh", 2, 7)]
    singles = [search(store, q, searcher="BB", params=short, top=3) for q in queries]
    batch = search_batch(store, queries, searcher="BB", params=short, top=3)
    assert [_document(r) for r in batch] == [_document(r) for r in singles]
    assert batch[0].provenance["batch_size"] == 3


def test_a_candidate_compared_in_its_other_region_beyond_the_listed_ones(store):
    """With ``top=1`` a region lists one candidate; one shortlisted in the other region is
    still compared here, at its place in this region's ranking (found past the list)."""
    short = SearchParams(shortlist_min=2, shortlist_fraction=0)
    # breech face of firearm 1, firing pin of firearm 2: the regions shortlist others
    bf = Signature("breech_face", _surface(1, 9, SIZE), 12.5, "3d")
    fp = Signature("firing_pin", _surface(102, 9, 48), 12.5, "3d")
    query = Exhibit("mixed", bf, fp, "f" * 64, "mixed.x3p", "test")
    narrow = search(store, query, searcher="BB", params=short, top=1)
    wide = search(store, query, searcher="BB", params=short, top=50)
    assert narrow.compared == wide.compared
    assert narrow.candidates[0] == wide.candidates[0]
    compared = [
        c
        for c in wide.candidates
        if any(m.score is not None for m in (c.breech_face, c.firing_pin))
    ]
    for candidate in compared:  # every compared candidate was compared in both regions
        assert candidate.breech_face.score is not None
        assert candidate.firing_pin.score is not None
    # some were past the two listed in one region: the narrow search had to look them up
    assert max(max(c.breech_face.prefilter_rank, c.firing_pin.prefilter_rank) for c in compared) > 2
