"""A lab's first week (issue 20): kernel cache, validation before work, store list/remove,
--keep-going, self-match by content hash, clear messages."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numba
import pytest
from click.testing import CliRunner

import ribin
from ribin.cli import main
from ribin.errors import InputError
from ribin.ingest import extract_file
from ribin.search import Filters
from ribin.store import SignatureStore

REPO = Path(__file__).resolve().parents[1]
FILES = ["F01-1.x3p", "F01-2.x3p", "F04-1.x3p"]


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory, synthetic_dir, runner):
    path = tmp_path_factory.mktemp("firstweek") / "store"
    files = [str(synthetic_dir / name) for name in FILES]
    result = runner.invoke(
        main, ["ingest", str(path), *files, "--country", "BB", "--role", "known"]
    )
    assert result.exit_code == 0, result.output
    return path


def _one_line_error(result, message: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    assert len(errors) == 1, result.output
    assert message in errors[0], result.output
    assert "<example>" not in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------- kernel cache


def _dispatchers():
    import ribin.kernels as kernels

    for module_name in ("cmc", "ncc", "resample"):
        module = getattr(kernels, module_name)
        for name in dir(module):
            value = getattr(module, name)
            if isinstance(value, numba.core.registry.CPUDispatcher):
                yield f"{module_name}.{name}", value


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="about the Numba cache")
def test_kernels_cache_outside_the_package():
    from ribin.kernels import config

    package = Path(config.__file__).resolve().parent
    found = list(_dispatchers())
    assert len(found) > 5
    for name, dispatcher in found:
        if not config.CACHE:
            assert dispatcher._cache.__class__.__name__ == "NullCache", name
            continue
        where = Path(dispatcher._cache._cache_path).resolve()
        assert config.CACHE_DIR.resolve() in where.parents, (name, where)
        assert package not in where.parents and where != package / "__pycache__", name
    # the global Numba setting is left as the user had it
    assert numba.config.CACHE_DIR == os.environ.get("NUMBA_CACHE_DIR", "")


def _cache_dir_in(env_changes: dict[str, str | None]) -> str:
    env = {k: v for k, v in os.environ.items() if k not in env_changes}
    env.update({k: v for k, v in env_changes.items() if v is not None})
    code = "from ribin.kernels import config; print(config.CACHE_DIR)"
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_kernel_cache_folder_follows_the_environment(tmp_path):
    assert _cache_dir_in(
        {"NUMBA_CACHE_DIR": None, "RIBIN_CACHE_DIR": str(tmp_path / "r"), "XDG_CACHE_HOME": None}
    ) == str(tmp_path / "r" / "numba")
    assert _cache_dir_in(
        {"NUMBA_CACHE_DIR": None, "RIBIN_CACHE_DIR": None, "XDG_CACHE_HOME": str(tmp_path / "x")}
    ) == str(tmp_path / "x" / "ribin" / "numba")
    assert _cache_dir_in(
        {"NUMBA_CACHE_DIR": str(tmp_path / "n"), "RIBIN_CACHE_DIR": str(tmp_path / "r")}
    ) == str(tmp_path / "n")


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="about compiling kernels")
def test_compilation_is_announced_once():
    from ribin.warmup import ensure_compiled

    said: list[str] = []
    ensure_compiled(said.append)  # compiles (and says so) unless the cache has them
    assert not said or said[0].startswith("compiling the comparison kernels, first run only")
    again: list[str] = []
    assert ensure_compiled(again.append) is None
    assert again == []


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="about compiling kernels")
def test_warm_up_compiles_what_a_search_needs(store, synthetic_dir):
    from ribin.warmup import warm_up

    def compiled_types():
        return {name: set(map(str, d.signatures)) for name, d in _dispatchers()}

    warm_up()
    before = compiled_types()
    query = extract_file(synthetic_dir / "F01-3.x3p")
    with SignatureStore.open(store) as opened:
        ribin.search(opened, query, searcher="BB", scope="network", top=3)
        ribin.search(opened, "F01-1", scope="network", top=3)
    after = compiled_types()
    # nothing compiled after the warm-up: the first search's progress is the search's own
    assert {k: v - before[k] for k, v in after.items() if v - before[k]} == {}


def test_an_empty_cache_is_not_taken_for_a_compiled_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["RIBIN_CACHE_DIR"] = str(tmp_path)
    code = "from ribin.warmup import compiled; print(compiled())"
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ("True" if numba.config.DISABLE_JIT else "False")


# ------------------------------------------------------------------ validation first


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--from", "last-week"], "--from 'last-week' is not an ISO 8601 date"),
        (["--from", "2026-13-45"], "--from '2026-13-45' is not an ISO 8601 date"),
        (["--to", "garbage"], "--to 'garbage' is not an ISO 8601 date"),
        (["--filter-caliber", "9mn"], "unknown caliber '9mn'"),
        (["--country", "XX"], "unknown country 'XX'"),
        (["--country", "DE"], "unknown country 'DE'"),
        (["--scope", "cluster:nowhere"], "unknown cluster 'nowhere'"),
        (["--scope", "somewhere"], "unknown scope 'somewhere'"),
    ],
)
def test_search_options_are_checked_before_any_work(runner, tmp_path, options, message):
    # an empty folder as STORE: an error about the store would mean the options came later
    empty = tmp_path / "empty"
    empty.mkdir()
    scope = [] if "--scope" in options else ["--scope", "network"]
    started = time.perf_counter()
    result = runner.invoke(main, ["search", str(empty), "Q-1", *scope, *options])
    _one_line_error(result, message)
    assert time.perf_counter() - started < 5


def test_a_file_query_without_country_fails_before_extraction(runner, tmp_path, synthetic_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    query = str(synthetic_dir / "F01-3.x3p")
    result = runner.invoke(main, ["search", str(empty), query, "--scope", "network"])
    _one_line_error(result, "needs the searching country: --country CC")


def test_filters_check_dates_and_keep_undated_exhibits():
    assert Filters(acquired_from="2026-03-01").acquired_from == "2026-03-01"
    with pytest.raises(InputError, match="ISO 8601"):
        Filters(acquired_to="01/03/2026")
    with pytest.raises(InputError, match="unknown caliber"):
        Filters(caliber="9mn")
    assert Filters(caliber="9MM").caliber == "9MM"

    import numpy as np

    class Table:
        modality = np.array(["3d"] * 3, dtype=object)
        caliber = np.array([""] * 3, dtype=object)
        role = np.array(["known"] * 3, dtype=object)
        acquired_at = np.array(["", "2026-01-05", "2026-03-05"], dtype=object)

    kept = Filters(acquired_from="2026-02-01").mask(Table, "3d")
    assert kept.tolist() == [True, False, True]
    strict = Filters(acquired_from="2026-02-01", include_undated=False).mask(Table, "3d")
    assert strict.tolist() == [False, False, True]
    assert Filters(acquired_to="2026-01-05").mask(Table, "3d").tolist() == [True, True, False]


@pytest.mark.parametrize("country", ["XX", "DE"])
def test_ingest_refuses_a_country_outside_the_network_and_creates_nothing(
    runner, tmp_path, synthetic_dir, country
):
    path = tmp_path / "new.store"
    result = runner.invoke(
        main, ["ingest", str(path), str(synthetic_dir / "F01-1.x3p"), "--country", country]
    )
    _one_line_error(result, f"unknown country '{country}'")
    assert not path.exists()


def test_ingest_refuses_an_empty_exhibit_id(runner, tmp_path, synthetic_dir):
    path = tmp_path / "new.store"
    result = runner.invoke(
        main,
        [
            "ingest",
            str(path),
            str(synthetic_dir / "F01-1.x3p"),
            "--country",
            "JM",
            "--exhibit-id",
            "",
        ],
    )
    _one_line_error(result, "exhibit_id must be non-empty")
    assert not path.exists()


# ------------------------------------------------------------------ store list / remove


def test_store_list_json_and_filters(runner, store):
    result = runner.invoke(main, ["store", "list", str(store), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["exhibits"]
    assert [r["exhibit_id"] for r in rows] == ["F01-1", "F01-2", "F04-1"]
    assert set(rows[0]) == {"country", "exhibit_id", "role", "caliber", "sharing", "site", "added"}
    assert rows[0]["country"] == "BB" and rows[0]["role"] == "known"
    assert rows[0]["added"].startswith("20")

    result = runner.invoke(main, ["store", "list", str(store), "--country", "JM", "--json"])
    assert json.loads(result.output)["exhibits"] == []
    result = runner.invoke(main, ["store", "list", str(store), "--role", "questioned"])
    assert result.exit_code == 0 and result.output.splitlines()[-1] == "0 exhibit(s)"
    result = runner.invoke(main, ["store", "list", str(store)])
    assert result.output.splitlines()[0].split() == [
        "country", "exhibit_id", "role", "caliber", "sharing", "site", "added"
    ]  # fmt: skip
    assert result.output.splitlines()[-1] == "3 exhibit(s)"


def test_ids_with_a_slash_store_list_search_and_remove(runner, tmp_path, synthetic_dir):
    path = tmp_path / "slash.store"
    scan = str(synthetic_dir / "F01-1.x3p")
    for exhibit_id, country in (("2026/0412", "JM"), ("JM/7", "BB")):
        result = runner.invoke(
            main, ["ingest", str(path), scan, "--country", country, "--exhibit-id", exhibit_id]
        )
        assert result.exit_code == 0, result.output
    with SignatureStore.open(path) as opened:
        assert opened.get("2026/0412").metadata.country == "JM"
        assert opened.get("JM/2026/0412").exhibit_id == "2026/0412"
        assert opened.get("JM/7").metadata.country == "BB"  # the ID itself, JM holds no "7"
        assert "2026/0412" in opened and "BB/JM/7" in opened and "JM/8" not in opened
    result = runner.invoke(main, ["store", "list", str(path), "--json"])
    assert {r["exhibit_id"] for r in json.loads(result.output)["exhibits"]} == {"2026/0412", "JM/7"}

    result = runner.invoke(main, ["store", "remove", str(path), "JM/2026/0412", "--reason", "typo"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("removed JM/2026/0412")
    with SignatureStore.open(path) as opened:
        assert opened.exhibit_ids() == ["JM/7"]


def test_remove_records_who_when_why_and_allows_reingest(runner, tmp_path, synthetic_dir):
    path = tmp_path / "rm.store"
    scan = str(synthetic_dir / "F04-1.x3p")
    assert runner.invoke(main, ["ingest", str(path), scan, "--country", "JM"]).exit_code == 0

    result = runner.invoke(main, ["store", "remove", str(path), "F04-1"])
    assert result.exit_code == 2 and "--reason" in result.output  # a reason is required
    result = runner.invoke(main, ["store", "remove", str(path), "F04-1", "--reason", "  "])
    _one_line_error(result, "--reason must say why")
    result = runner.invoke(
        main,
        [
            "store", "remove", str(path), "JM/F04-1", "--reason", "wrong casing scanned",
            "--examiner", "A. Examiner", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["reason"] == "wrong casing scanned" and record["examiner"] == "A. Examiner"
    assert record["user"] and record["time"] and record["exhibit_id"] == "F04-1"
    with SignatureStore.open(path) as opened:
        assert len(opened) == 0
        assert opened.audit_log()[-1]["reason"] == "wrong casing scanned"

    result = runner.invoke(main, ["store", "remove", str(path), "F04-1", "--reason", "again"])
    _one_line_error(result, "no exhibit 'F04-1'")

    result = runner.invoke(main, ["ingest", str(path), scan, "--country", "JM", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["exhibits"][0]["added"] is True
    with SignatureStore.open(path) as opened:
        assert opened.exhibit_ids() == ["F04-1"]


# ----------------------------------------------------------------------- --keep-going


def test_keep_going_stores_the_good_files_and_lists_the_bad(runner, tmp_path, synthetic_dir):
    bad = tmp_path / "bad.x3p"
    bad.write_bytes(b"PK\x03\x04 truncated")
    good = str(synthetic_dir / "F04-1.x3p")
    path = tmp_path / "kept.store"

    result = runner.invoke(main, ["ingest", str(path), str(bad), good, "--country", "JM"])
    _one_line_error(result, "bad.x3p: ")
    assert not path.exists()  # a refused batch leaves no (empty) store behind

    result = runner.invoke(
        main, ["ingest", str(path), str(bad), good, "--country", "JM", "--keep-going"]
    )
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {bad}: ")
    assert any(line.startswith("F04-1\tadded") for line in lines)
    assert lines[-1] == "Error: 1 of 2 files failed; the others were stored"
    with SignatureStore.open(path) as opened:
        assert opened.exhibit_ids() == ["F04-1"]


# -------------------------------------------------------------- self-match by content


def test_a_file_query_is_never_its_own_candidate_from_the_api(store, synthetic_dir):
    exhibit = extract_file(synthetic_dir / "F01-1.x3p")
    # the same scan extracted with other options: other signature IDs, the same SHA-256
    changed = {
        region: dataclasses.replace(sig, surface=sig.surface * 1.001)
        for region, sig in exhibit.signatures().items()
    }
    query = dataclasses.replace(exhibit, exhibit_id="new-scan", **changed)
    with SignatureStore.open(store) as opened:
        result = ribin.search(opened, query, searcher="BB", scope="country", exhaustive=True)
    ids = [c.exhibit_id for c in result.candidates]
    assert "F01-1" not in ids
    assert ids[0] == "F01-2"


# --------------------------------------------------------------------- clear messages


def test_a_missing_casing_file_is_not_taken_for_an_id(runner, store):
    result = runner.invoke(main, ["search", str(store), "nosuch.x3p", "--scope", "network"])
    _one_line_error(result, "nosuch.x3p: file not found")
    result = runner.invoke(main, ["compare", "nosuch.png", "F01-1", "--store", str(store)])
    _one_line_error(result, "nosuch.png: file not found")


def test_store_info_on_a_text_file_is_one_line():
    result = CliRunner().invoke(main, ["store", "info", str(REPO / "README.md")])
    _one_line_error(result, "README.md: not an HDF5 file")
    assert "synchronously" not in result.output


def test_compare_report_says_where_it_wrote(runner, store, tmp_path):
    out = tmp_path / "pair.html"
    result = runner.invoke(
        main, ["compare", "F01-1", "F01-2", "--store", str(store), "--report", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"report written to {out}" in result.output
    assert out.is_file()
