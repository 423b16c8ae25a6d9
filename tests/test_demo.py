"""``ribin demo``: ingest the synthetic casings as BB/BZ/JM and search at three scopes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import ribin.synthetic
from ribin.cli import main


def _tables(output: str) -> dict[str, list[list[str]]]:
    """Scope -> rows (split) of each ranked table the demo printed."""
    tables: dict[str, list[list[str]]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith("query "):
            current = line.split("scope ")[1].split(" ")[0]
            tables[current] = []
        elif current and line.strip() and line.split()[0].isdigit():
            tables[current].append(line.split())
        elif not line.strip():
            current = None
    return tables


@pytest.mark.slow  # the whole demo (README's first command runs it too)
def test_demo_does_the_whole_job_on_a_regenerated_set(tmp_path, monkeypatch):
    monkeypatch.setattr(ribin.synthetic, "find_committed_set", lambda start=None: None)
    tiny = {"firearms": 3, "shots": 2, "seed": 11, "pixel_size_um": 12.5}
    monkeypatch.setattr(ribin.synthetic, "COMMITTED_SET", tiny)
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "synthetic_casings" / "manifest.json").is_file()
    assert "3d casings" in result.output and "(6 new)" in result.output
    tables = _tables(result.output)
    assert list(tables) == ["country", "cluster:ribin", "network"]
    # the questioned casing F01-2 is Barbadian; its mate F01-1 was ingested by Jamaica
    assert "F01-1" not in [row[1] for row in tables["country"]]
    assert tables["cluster:ribin"][0][1] == "F01-1"
    assert tables["network"][0][1] == "F01-1"
    assert "not a conclusion" in result.output


@pytest.mark.slow
def test_demo_on_the_committed_set(tmp_path, synthetic_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # found through the package's location, not the cwd
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert str(synthetic_dir) in result.output
    assert not (tmp_path / "demo" / "synthetic_casings").exists()
    tables = _tables(result.output)
    # F01-3 is the questioned casing (BZ); BB and JM hold F01-1 and F01-2
    for scope in ("cluster:ribin", "network"):
        assert {row[1] for row in tables[scope][:2]} == {"F01-1", "F01-2"}
