"""The ingest, search, compare and calibrate commands through click's CliRunner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ribin.cli import main

FILES = ["F01-1.x3p", "F01-2.x3p", "F01-3.x3p", "F04-1.x3p"]


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory, synthetic_dir, runner):
    path = tmp_path_factory.mktemp("cli") / "store"
    files = [str(synthetic_dir / name) for name in FILES]
    result = runner.invoke(
        main, ["ingest", str(path), *files[:3], "--country", "BB", "--role", "known", "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert [e["exhibit_id"] for e in document["exhibits"]] == ["F01-1", "F01-2", "F01-3"]
    assert all(e["added"] for e in document["exhibits"])
    for entry in document["exhibits"]:
        # full synthetic casings: both regions, mostly valid, nothing missing
        assert set(entry["quality"]) == {"breech_face", "firing_pin"}
        assert entry["quality"]["breech_face"]["valid_fraction"] > 0.8
        assert entry["missing"] == {}
    result = runner.invoke(
        main, ["ingest", str(path), files[3], "--country", "JM", "--sharing", "local"]
    )
    assert result.exit_code == 0, result.output
    assert "F04-1\tadded\tBF " in result.output and "% valid" in result.output
    return path


def test_ingest_twice_is_a_no_op(runner, store, synthetic_dir):
    result = runner.invoke(
        main,
        [
            "ingest",
            str(store),
            str(synthetic_dir / "F04-1.x3p"),
            "--country",
            "JM",
            "--sharing",
            "local",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("F04-1\t")
    assert "already" in result.output and "\tadded" not in result.output


def test_search_table_and_json(runner, store):
    result = runner.invoke(main, ["search", str(store), "F01-1", "--scope", "network"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "searched by BB, scope network" in lines[0]
    ranked = [line.split()[1] for line in lines[2:]]
    assert set(ranked[:2]) == {"F01-2", "F01-3"}
    assert "F04-1" not in ranked  # JM-local: BB never sees it

    result = runner.invoke(
        main, ["search", str(store), "F01-1", "--scope", "network", "--country", "JM", "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["searcher"] == "JM"
    assert [c["exhibit_id"] for c in document["candidates"]][:2] in (
        ["F01-2", "F01-3"],
        ["F01-3", "F01-2"],
    )
    assert "F04-1" in [c["exhibit_id"] for c in document["candidates"]]
    assert document["compared"] >= 3


def test_search_with_a_file_query(runner, store, synthetic_dir):
    result = runner.invoke(
        main,
        [
            "search",
            str(store),
            str(synthetic_dir / "F01-2.x3p"),
            "--scope",
            "country",
            "--country",
            "BB",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    ids = [c["exhibit_id"] for c in json.loads(result.output)["candidates"]]
    assert "F01-2" not in ids  # the same data already stored is not its own candidate
    assert set(ids) == {"F01-1", "F01-3"}


def test_compare_json(runner, store, synthetic_dir):
    result = runner.invoke(main, ["compare", "F01-1", "F01-2", "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    match = json.loads(result.output)["regions"]["breech_face"]
    result = runner.invoke(
        main,
        ["compare", "F01-1", str(synthetic_dir / "F04-1.x3p"), "--store", str(store), "--json"],
    )
    assert result.exit_code == 0, result.output
    non_match = json.loads(result.output)["regions"]["breech_face"]
    assert match["cmc_count"] > non_match["cmc_count"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "{store}", "F01-1", "--scope", "cluster:nowhere"], "unknown cluster"),
        (["search", "{store}", "NOPE", "--scope", "network"], "no exhibit 'NOPE'"),
        (["compare", "{bad}", "F01-1", "--store", "{store}"], "bad.x3p: "),
        (["ingest", "{store}", "{bad}", "--country", "BB"], "bad.x3p: "),
        (["ingest", "{store}", "{bad}", "--country", "Jamaica"], "not an ISO 3166"),
        (["compare", "A", "B"], "no such file"),
    ],
)
def test_errors_are_one_line_exit_1(runner, store, tmp_path, args, message):
    bad = tmp_path / "bad.x3p"
    bad.write_bytes(b"PK\x03\x04 truncated")
    argv = [a.format(store=store, bad=bad) for a in args]
    result = runner.invoke(main, argv)
    assert result.exit_code == 1, result.output
    assert message in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_calibrate_writes_a_model_search_then_uses(runner, store, tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text("file,firearm\nF01-1.x3p,F01\nF01-2.x3p,F01\nF01-3.x3p,F01\nF04-1.x3p,F04\n")
    result = runner.invoke(
        main,
        ["calibrate", str(store), "--truth", str(truth), "--source", "BB test fires", "--json"],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert "breech_face/3d" in document["models"]
    assert document["models"]["breech_face/3d"]["source"]["data"] == "BB test fires"
    result = runner.invoke(main, ["search", str(store), "F01-1", "--scope", "country", "--json"])
    candidates = json.loads(result.output)["candidates"]
    assert candidates[0]["log_lr"] is not None and candidates[0]["log_lr"] > 0
