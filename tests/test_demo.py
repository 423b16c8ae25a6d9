"""``ribin demo``: finds the committed synthetic set, or regenerates it, and lists it."""

from __future__ import annotations

from click.testing import CliRunner

import ribin.synthetic
from ribin.cli import main


def test_demo_lists_the_committed_set(tmp_path, synthetic_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository: found through the package's location
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["file", "firearm", "batch", "modality", "caliber"]
    rows = ribin.synthetic.load_manifest(synthetic_dir)
    assert len(lines) == len(rows) + 2
    assert lines[1].split()[:4] == [rows[0]["file"], rows[0]["firearm"], rows[0]["batch"],
                                    rows[0]["modality"]]  # fmt: skip
    assert lines[-1].startswith(f"{len(rows)} files")
    assert not (tmp_path / "demo").exists()


def test_demo_regenerates_when_no_set_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(ribin.synthetic, "find_committed_set", lambda start=None: None)
    tiny = {"firearms": 1, "shots": 1, "seed": 5, "pixel_size_um": 25.0}
    monkeypatch.setattr(ribin.synthetic, "COMMITTED_SET", tiny)
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "synthetic_casings" / "manifest.json").is_file()
    assert "F01-1.x3p" in result.output and result.output.strip().endswith("1 firearms")
