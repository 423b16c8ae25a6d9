"""The signature store: round trip, identity rules, removal, scope, verify, versions, bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ribin import prefilter
from ribin.cli import main
from ribin.errors import FormatVersionError, InputError, StoreError
from ribin.exhibit import Exhibit, Signature
from ribin.store import (
    ExhibitConflictError,
    ExhibitNotFoundError,
    Scope,
    SignatureStore,
    StoreLockedError,
    _WriterLock,
)
from ribin.store_format import FORMAT_VERSION, exhibit_content_id

DATA = Path(__file__).resolve().parent / "data"


def make_exhibit(
    name: str | int,
    *,
    size: int = 24,
    firing_pin: bool = True,
    salt: int = 0,
    detection: bool = True,
) -> Exhibit:
    """A small deterministic exhibit; the same arguments give the same content."""
    seed = abs(hash((str(name), salt))) % (2**32)
    rng = np.random.default_rng(seed)
    surface = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    surface[:2, :] = np.nan
    breech_face = Signature(
        "breech_face",
        surface,
        6.25,
        "3d",
        {"valid": 0.9, "noise": np.float64(0.1), "focus": float("nan")},
        {"band_um": [16.0, 250.0], "seed": seed},
    )
    pin = None
    if firing_pin:
        pin = Signature(
            "firing_pin", rng.normal(size=(size // 2, size // 2)), 6.25, "2d", {}, {"seed": seed}
        )
    return Exhibit(
        exhibit_id=str(name),
        breech_face=breech_face,
        firing_pin=pin,
        source_sha256=f"{seed:064x}"[-64:],
        source_name=f"{name}.x3p",
        software_version="0.1.0",
        missing={} if firing_pin else {"firing_pin": "no pin impression found"},
        warnings=("low contrast",),
        detection={"centre_px": (12.0, 11.5), "radius_px": 9, "mask": np.eye(4, dtype=bool)}
        if detection
        else {},
    )


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "lab.ribin"


@pytest.fixture
def filled(store_path: Path) -> Path:
    with SignatureStore.open(store_path, "x") as store:
        store.add_many(
            [
                (make_exhibit("JM-1"), {"country": "JM", "caliber": "9mm", "role": "known"}),
                (make_exhibit("JM-2", firing_pin=False), {"country": "JM", "sharing": "local"}),
                (make_exhibit("BB-1"), {"country": "BB", "caliber": ".40", "sharing": "cluster"}),
            ]
        )
        store.add(make_exhibit("BZ-1"), {"country": "BZ", "caliber": "9mm"})
    return store_path


# ----------------------------------------------------------------------------- round trip


def test_round_trip_keeps_everything(store_path: Path) -> None:
    original = make_exhibit("A-1")
    meta = {
        "country": "JM",
        "site": "São Paulo",
        "caliber": "9mm Luger",
        "role": "questioned",
        "case_ref": "K-2024/17",
        "acquired_at": "2024-05-02T10:30:00",
        "sharing": "cluster",
    }
    with SignatureStore.open(store_path, "a") as store:
        result = store.add(original, meta)
        assert result.added
    with SignatureStore.open(store_path) as store:
        stored = store.get("A-1")
    back = stored.exhibit
    assert stored.metadata.as_dict() == meta
    assert stored.content_id == result.content_id
    assert stored.stored_at.endswith("Z")
    for kind, signature in original.signatures().items():
        copy = back.signatures()[kind]
        np.testing.assert_array_equal(copy.surface, signature.surface.astype(np.float32))
        assert copy.surface.dtype == np.float32
        assert copy.id == signature.id
        assert copy.params == signature.params
        assert copy.pixel_size_um == signature.pixel_size_um
        assert copy.modality == signature.modality
    assert back.breech_face.quality["noise"] == 0.1
    assert np.isnan(back.breech_face.quality["focus"])
    assert (back.source_sha256, back.source_name, back.software_version) == (
        original.source_sha256,
        original.source_name,
        original.software_version,
    )
    assert back.warnings == ("low contrast",)
    assert back.missing == {}
    assert back.detection["centre_px"] == [12.0, 11.5]
    assert back.detection["radius_px"] == 9
    np.testing.assert_array_equal(back.detection["mask"], np.eye(4, dtype=bool))


def test_plain_h5py_reads_the_documented_layout(filled: Path) -> None:
    with SignatureStore.open(filled) as store:
        paths = store.segment_paths()
        content_id = store.get("JM-1").content_id
    manifest = json.loads((filled / "manifest.json").read_text())
    assert manifest["format"] == "ribin-store"
    assert manifest["format_version"] == FORMAT_VERSION
    with h5py.File(paths[0], "r") as f:
        assert f.attrs["format"] == "ribin-store"
        assert f.attrs["encoding-type"] == "ribin-segment"
        group = f["exhibits"][content_id]
        assert group.attrs["exhibit_id"] == "JM-1"
        assert group.attrs["country"] == "JM"
        surface = group["breech_face"]
        assert surface.dtype == np.float32 and surface.compression == "gzip"
        assert json.loads(surface.attrs["params"])["band_um"] == [16.0, 250.0]
        features = f["prefilter/features"]
        assert features.chunks is None  # contiguous
        assert features.shape[0] == len(f["prefilter/signature_id"])
        for element in (f["index"], f["prefilter"], group, surface, features):
            assert "encoding-type" in element.attrs and "encoding-version" in element.attrs


def test_same_exhibit_twice_is_a_noop_that_says_so(filled: Path) -> None:
    with SignatureStore.open(filled, "a") as store:
        sequence = store.info().sequence
        result = store.add(
            make_exhibit("JM-1"), {"country": "JM", "caliber": "9mm", "role": "known"}
        )
        assert not result.added
        assert "already in the store" in result.message
        assert store.info().sequence == sequence  # nothing written
        # in a batch: the stored one is a no-op, the new one lands
        results = store.add_many(
            [
                (make_exhibit("BZ-1"), {"country": "BZ", "caliber": "9mm"}),
                (make_exhibit("BZ-2"), {"country": "BZ"}),
                (make_exhibit("BZ-2"), {"country": "BZ"}),
            ]
        )
        assert [r.added for r in results] == [False, True, False]
        assert len(store) == 5


def test_same_exhibit_id_other_content_is_an_error(filled: Path) -> None:
    other = make_exhibit("JM-1", salt=1)
    with SignatureStore.open(filled, "a") as store:
        with pytest.raises(
            ExhibitConflictError, match="'JM-1' is already stored with other content"
        ):
            store.add(other, {"country": "JM"})
        with pytest.raises(ExhibitConflictError, match="same signatures but other details"):
            store.add(make_exhibit("JM-1"), {"country": "JM", "caliber": ".38"})
        with pytest.raises(ExhibitConflictError, match="twice in the batch"):
            store.add_many(
                [
                    (make_exhibit("N"), {"country": "JM"}),
                    (make_exhibit("N", salt=2), {"country": "JM"}),
                ]
            )
        assert "N" not in store  # the batch wrote nothing


def test_signature_reused_under_another_exhibit_id_is_an_error(filled: Path) -> None:
    original = make_exhibit("JM-1")
    renamed = Exhibit(
        "JM-1-again", original.breech_face, None, original.source_sha256, "copy.x3p", "0.1.0"
    )
    with (
        SignatureStore.open(filled, "a") as store,
        pytest.raises(ExhibitConflictError, match="already stored as part of exhibit 'JM-1'"),
    ):
        store.add(renamed, {"country": "JM"})


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({}, "needs a country"),
        ({"country": "jm"}, "not an ISO 3166"),
        ({"country": "JAM"}, "not an ISO 3166"),
        ({"country": "JM", "sharing": "world"}, "sharing 'world'"),
        ({"country": "JM", "role": "suspect"}, "role 'suspect'"),
        ({"country": "JM", "acquired_at": "yesterday"}, "not an ISO 8601 date"),
        ({"country": "JM", "colour": "red"}, "unknown metadata field"),
        ({"country": "JM", "caliber": 9}, "must be text"),
    ],
)
def test_bad_metadata_is_a_one_line_input_error(store_path: Path, meta, message) -> None:
    with SignatureStore.open(store_path, "a") as store:
        with pytest.raises(InputError, match=message) as info:
            store.add(make_exhibit("X"), meta)
        assert "\n" not in str(info.value)
        assert len(store) == 0


@pytest.mark.parametrize("exhibit_id", ["", "a\\b", " padded", "x" * 200, "tab\there"])
def test_bad_exhibit_id_is_refused(store_path: Path, exhibit_id: str) -> None:
    base = make_exhibit("X")
    bad = Exhibit(exhibit_id, base.breech_face, None, base.source_sha256, "x.x3p", "0.1.0")
    with SignatureStore.open(store_path, "a") as store, pytest.raises(InputError):
        store.add(bad, {"country": "JM"})


def test_exhibit_without_signatures_or_with_bad_params_is_refused(store_path: Path) -> None:
    empty = Exhibit("E", None, None, "", "e.png", "0.1.0", missing={"breech_face": "blurred"})
    nan_params = Signature("breech_face", np.zeros((4, 4)), 1.0, "2d", {}, {"x": float("nan")})
    with SignatureStore.open(store_path, "a") as store:
        with pytest.raises(InputError, match="no signature"):
            store.add(empty, {"country": "JM"})
        with pytest.raises(InputError, match="params"):
            store.add(Exhibit("F", nan_params, None, "", "f.png", "0.1.0"), {"country": "JM"})


# ----------------------------------------------------------------------------- removal


def test_remove_needs_a_reason_and_leaves_an_audit_record(filled: Path) -> None:
    with SignatureStore.open(filled, "a") as store:
        with pytest.raises(InputError, match="needs a reason"):
            store.remove("JM-1", "")
        with pytest.raises(ExhibitNotFoundError, match="no exhibit 'nope'"):
            store.remove("nope", "typo")
        record = store.remove("JM-1", "duplicate of K-17")
        assert record["action"] == "remove" and record["reason"] == "duplicate of K-17"
    with SignatureStore.open(filled) as store:
        assert "JM-1" not in store
        with pytest.raises(ExhibitNotFoundError):
            store.get("JM-1")
        assert [e.exhibit_id for e in store.iter()] == ["JM-2", "BB-1", "BZ-1"]
        assert store.info().removed == 1
        assert store.audit_log()[-1]["content_id"] == record["content_id"]
        assert store.verify().ok


def test_readd_after_remove_and_compact(filled: Path) -> None:
    with SignatureStore.open(filled, "a") as store:
        store.remove("BB-1", "re-scan")
        assert store.add(make_exhibit("BB-1"), {"country": "BB"}).added
        assert len(store.features()) == 7
        assert store.compact() == 3
        assert len(store.segment_paths()) == 1
        assert store.info().removed == 0
        assert store.get("BB-1").metadata.sharing == "network"
        assert [a["action"] for a in store.audit_log()] == [
            "create",
            "add",
            "add",
            "remove",
            "add",
            "compact",
        ]
        report = store.verify()
        assert report.ok and report.exhibits == 4 and not report.notes
        assert len(list((filled / "segments").iterdir())) == 1


# ----------------------------------------------------------------------------- reading


def test_scope_applies_sharing(filled: Path) -> None:
    with SignatureStore.open(filled) as store:

        def seen(scope):
            return sorted(e.exhibit_id for e in store.iter(scope))

        assert seen(None) == ["BB-1", "BZ-1", "JM-1", "JM-2"]
        assert seen(Scope("JM")) == ["BZ-1", "JM-1", "JM-2"]  # BB-1 is cluster-only
        assert seen(Scope("BZ")) == ["BZ-1", "JM-1"]  # JM-2 is local
        assert seen(Scope("BZ", partners=frozenset({"BB"}))) == ["BB-1", "BZ-1", "JM-1"]
        assert seen(Scope("JM", countries=frozenset({"JM"}))) == ["JM-1", "JM-2"]
        table = store.features(Scope("BZ"), kind="breech_face")
        assert sorted(table.exhibit_id) == ["BZ-1", "JM-1"]
        assert table.features.shape == (2, prefilter.FEATURE_LENGTH)
        assert table.features.dtype == np.float32


def test_scope_from_the_network_file(filled: Path) -> None:
    from ribin.network import load_network

    network = load_network()  # the example: BB, BZ, JM in cluster "ribin"
    with SignatureStore.open(filled) as store:
        for scope, searcher, expected in [
            ("network", "BZ", ["BB-1", "BZ-1", "JM-1"]),
            ("country", "BZ", ["BZ-1"]),
            ("network", "JM", ["BB-1", "BZ-1", "JM-1", "JM-2"]),
            ("JM", "BB", ["JM-1"]),
        ]:
            found = store.iter(Scope.from_network(network, scope, searcher))
            assert sorted(e.exhibit_id for e in found) == expected, (scope, searcher)


def test_features_and_info(filled: Path) -> None:
    with SignatureStore.open(filled) as store:
        table = store.features()
        assert len(table) == 7
        assert set(table.kind) == {"breech_face", "firing_pin"}
        assert np.isfinite(table.features).all()
        info = store.info()
    assert (info.exhibits, info.signatures, info.segments) == (4, 7, 2)
    assert info.by_country == {"JM": 2, "BB": 1, "BZ": 1}
    assert info.by_region == {"breech_face": 4, "firing_pin": 3}
    assert info.by_modality == {"3d": 4, "2d": 3}
    assert info.by_caliber == {"9mm": 2, "": 1, ".40": 1}
    assert info.bytes > 0 and info.format_version == FORMAT_VERSION


def test_single_segment_file_opens_read_only(filled: Path) -> None:
    with SignatureStore.open(filled) as store:
        first = store.segment_paths()[0]
    with SignatureStore.open(first) as single:
        assert sorted(single.exhibit_ids()) == ["BB-1", "JM-1", "JM-2"]
        assert single.verify().ok
        assert single.get("JM-1").exhibit.exhibit_id == "JM-1"
    with pytest.raises(StoreError, match="read-only"):
        SignatureStore.open(first, "a")


def test_modes(store_path: Path, filled: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such store"):
        SignatureStore.open(tmp_path / "missing")
    with pytest.raises(StoreError, match="already exists"):
        SignatureStore.open(filled, "x")
    with SignatureStore.open(filled) as store, pytest.raises(StoreError, match="read-only"):
        store.add(make_exhibit("Z"), {"country": "JM"})
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="not empty"):
        SignatureStore.open(busy, "a")


def test_writer_lock_times_out(filled: Path) -> None:
    with (
        _WriterLock(filled / ".lock", 1.0),
        SignatureStore.open(filled, "a", lock_timeout=0.1) as store,
    ):
        with pytest.raises(StoreLockedError, match="another process is writing"):
            store.add(make_exhibit("late"), {"country": "JM"})


def test_content_id_is_exhibit_id_and_signature_ids() -> None:
    exhibit = make_exhibit("C")
    ids = {k: s.id for k, s in exhibit.signatures().items()}
    assert exhibit_content_id("C", ids) == exhibit_content_id("C", dict(reversed(ids.items())))
    assert exhibit_content_id("C", ids) != exhibit_content_id("D", ids)


# ----------------------------------------------------------------------------- verify


def test_verify_finds_a_changed_surface(filled: Path) -> None:
    with SignatureStore.open(filled) as store:
        content_id = store.get("BB-1").content_id
        segment = store.get("BB-1").segment
    with h5py.File(filled / "segments" / segment, "r+") as f:
        data = f["exhibits"][content_id]["breech_face"]
        data[5, 5] = data[5, 5] + 1.0
    with SignatureStore.open(filled) as store:
        report = store.verify()
    assert not report.ok
    assert any("SHA-256" in p for p in report.problems)
    assert any("stored signature_id" in p and "breech_face" in p for p in report.problems)
    assert any("content_id recomputes" in p for p in report.problems)
    result = CliRunner().invoke(main, ["store", "verify", str(filled)])
    assert result.exit_code == 1
    assert "MISMATCH" in result.output and "problem(s) found" in result.output


def test_verify_reports_orphans_and_next_writer_cleans_them(filled: Path) -> None:
    (filled / "segments" / "seg-00000099-deadbeef.h5").write_bytes(b"half a segment")
    (filled / ".manifest-0000.tmp").write_text("{")
    with SignatureStore.open(filled) as store:
        report = store.verify()
        assert report.ok and len(report.notes) == 2
        assert len(store) == 4  # readers ignore them
    with SignatureStore.open(filled, "a") as store:
        store.add(make_exhibit("new"), {"country": "JM"})
        assert store.verify().notes == []


# ----------------------------------------------------------------------------- versions


def test_store_written_by_format_1_still_opens(tmp_path: Path) -> None:
    store_v1 = tmp_path / "store_v1"
    shutil.copytree(DATA / "store_v1", store_v1)
    with SignatureStore.open(store_v1) as store:
        report = store.verify()
        assert report.ok, report.problems
        assert sorted(store.exhibit_ids()) == ["V1-001", "V1-002"]
        stored = store.get("V1-001")
        assert stored.metadata.site == "Kingston"
        assert stored.exhibit.firing_pin is not None
        assert store.get("V1-002").exhibit.missing == {"firing_pin": "not found"}
        assert store.audit_log()[-1]["action"] == "remove"
    with SignatureStore.open(store_v1, "a") as store:  # and takes new writes
        store.add(make_exhibit("after"), {"country": "JM"})
        assert store.verify().ok


def test_newer_format_is_refused_naming_both_versions(filled: Path) -> None:
    manifest_path = filled / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(FormatVersionError) as info:
        SignatureStore.open(filled)
    message = str(info.value)
    assert f"format {FORMAT_VERSION + 1}" in message and f"reads format {FORMAT_VERSION}" in message
    assert "manifest.json" in message and "\n" not in message


def test_newer_segment_or_unknown_encoding_is_refused(filled: Path) -> None:
    with SignatureStore.open(filled) as store:
        first, second = store.segment_paths()
    with h5py.File(first, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with h5py.File(second, "r+") as f:
        f["prefilter"].attrs["encoding-version"] = "9"
    with (
        SignatureStore.open(filled) as store,
        pytest.raises(FormatVersionError, match=f"written by store format {FORMAT_VERSION + 1}"),
    ):
        store.info()
    with pytest.raises(StoreError, match="unknown encoding 'ribin-prefilter' version '9'"):
        SignatureStore.open(second)


# ----------------------------------------------------------------------------- bad files


def _one_line_store_error(path: Path, match: str) -> None:
    with pytest.raises(StoreError, match=match) as info:
        with SignatureStore.open(path) as store:
            store.info()
    assert "\n" not in str(info.value)


def test_bad_files(tmp_path: Path, filled: Path) -> None:
    not_hdf5 = tmp_path / "notes.h5"
    not_hdf5.write_text("hello")
    _one_line_store_error(not_hdf5, "notes.h5: not an HDF5 file")

    with SignatureStore.open(filled) as store:
        segment = store.segment_paths()[0]
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(segment.read_bytes()[: segment.stat().st_size // 2])
    _one_line_store_error(truncated, "truncated.h5: ")

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "anndata"
        f.attrs["format_version"] = 1
    _one_line_store_error(other, "format is 'anndata'")

    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as f:
        f.create_dataset("x", data=[1])
    _one_line_store_error(bare, "no 'format' attribute")

    missing = tmp_path / "missing.h5"
    shutil.copy(segment, missing)
    with h5py.File(missing, "r+") as f:
        del f["index"]["country"]
    _one_line_store_error(missing, "missing.h5: index: missing dataset 'country'")

    no_attr = tmp_path / "no_attr.h5"
    shutil.copy(segment, no_attr)
    with h5py.File(no_attr, "r+") as f:
        del f.attrs["created_by"]
    _one_line_store_error(no_attr, "missing attribute 'created_by'")

    for name, make in (("bad_text.h5", "S"), ("bad_vlen.h5", "T")):
        bad_text = tmp_path / name  # a column of bytes that are not UTF-8
        shutil.copy(segment, bad_text)
        with h5py.File(bad_text, "r+") as f:
            n = len(f["index"]["site"])
            del f["index"]["site"]
            dtype = "S4" if make == "S" else h5py.string_dtype("utf-8")
            f["index"].create_dataset(
                "site", data=np.array([b"\xff\xfe"] * n, dtype="S4"), dtype=dtype
            )
        _one_line_store_error(bad_text, f"{name}: index/site: text that is not valid UTF-8")

    broken = tmp_path / "broken"
    shutil.copytree(filled, broken)
    (broken / "manifest.json").write_text('{"format": "ribin-store", "format_v')
    _one_line_store_error(broken, "manifest.json: not valid JSON")
    (broken / "manifest.json").unlink()
    _one_line_store_error(broken, "no manifest.json")


def test_missing_segment_is_reported(filled: Path) -> None:
    with SignatureStore.open(filled) as store:
        segment = store.segment_paths()[-1]
    segment.unlink()
    _one_line_store_error(filled, "listed in manifest.json but missing")


# ----------------------------------------------------------------------------- CLI


def test_cli_info_table_and_json(filled: Path) -> None:
    runner = CliRunner()
    table = runner.invoke(main, ["store", "info", str(filled)])
    assert table.exit_code == 0, table.output
    assert "exhibits        4" in table.output and "by caliber" in table.output
    as_json = runner.invoke(main, ["store", "info", str(filled), "--json"])
    data = json.loads(as_json.output)
    assert data["exhibits"] == 4 and data["by_region"] == {"breech_face": 4, "firing_pin": 3}
    assert data["format_version"] == FORMAT_VERSION


def test_cli_verify_ok_and_bad_file(filled: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["store", "verify", str(filled)])
    assert ok.exit_code == 0 and ok.output.startswith("ok: 4 exhibits")
    report = json.loads(runner.invoke(main, ["store", "verify", str(filled), "--json"]).output)
    assert report["ok"] and report["signatures"] == 7
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\0" * 100)
    bad = runner.invoke(main, ["store", "info", str(junk)])
    assert bad.exit_code == 1
    lines = bad.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: junk.h5: not an HDF5 file")


def test_an_exhibit_stored_twice_is_reported_and_counted_once(filled: Path) -> None:
    manifest_path = filled / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = dict(manifest["segments"][-1])
    copy = "seg-00000099-0000beef.h5"
    shutil.copy(filled / "segments" / entry["name"], filled / "segments" / copy)
    manifest["segments"].append({**entry, "name": copy})
    manifest_path.write_text(json.dumps(manifest))
    with SignatureStore.open(filled) as store:
        assert len(store) == 4
        report = store.verify()
    assert report.problems == [f"{copy}: BZ/BZ-1 is stored twice"]
