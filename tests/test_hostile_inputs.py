"""Inflating and malformed inputs (issue 22): refused early, in one line, in bounded memory.

Peak memory is measured in a fresh child process (``resource.getrusage``), so the figure is
the input's alone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ribin.cli import main
from ribin.errors import InputError
from ribin.io import read_casing, read_x3p
from ribin.io.x3p import X3P, write_x3p
from ribin.memory import memory_budget
from ribin.network import load_network

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile_inputs import measure, x3p_declaring


@pytest.fixture(scope="module")
def x3p_bomb(tmp_path_factory) -> Path:
    """523 kB on disk, 16384 x 16384 int16 points (512 MiB) declared and present."""
    return x3p_declaring(tmp_path_factory.mktemp("bomb") / "bomb.x3p", 16384, 16384)


def test_x3p_bomb_refused_quickly_in_little_memory(x3p_bomb) -> None:
    assert x3p_bomb.stat().st_size < 1 << 20
    result = measure(
        f"from ribin.ingest import extract_file\nextract_file({str(x3p_bomb)!r})", timeout=60
    )
    assert result["returncode"] == 0, result["stderr"]
    print(f"x3p bomb: {result['outcome'][:90]} peak {result['peak_mb']} MB {result['seconds']} s")
    assert result["outcome"].startswith("REFUSED bomb.x3p: bindata/data.bin expands")
    assert result["peak_mb"] < 2048 and result["seconds"] < 10


@pytest.mark.parametrize("side", [100_000, 16384 * 4])
def test_huge_declared_surface_is_one_line(tmp_path, side) -> None:
    path = x3p_declaring(tmp_path / "huge.x3p", side, side, fill=None)
    with pytest.raises(InputError, match=r"huge\.x3p: surface of .* exceeds the limit"):
        read_x3p(path)


def test_over_budget_scan_is_refused_or_averaged_while_streaming(tmp_path, monkeypatch) -> None:
    """A scan whose ingest would pass the budget: averaged while read when the coarser
    pixel stays fine enough, else refused in one line; never held whole."""
    path = x3p_declaring(tmp_path / "fine.x3p", 2048, 2048, noise=True, increment="5e-07")
    monkeypatch.setenv("RIBIN_MEMORY_BUDGET", "64M")
    assert memory_budget() == 64 << 20
    scan = read_x3p(path)
    block = 2048 // scan.heights.shape[0]
    assert block >= 3 and scan.pixel_size_x_um == pytest.approx(0.5 * block)
    assert any("averaged" in w for w in scan.metadata["warnings"])
    assert np.isfinite(scan.heights).all()
    coarse = x3p_declaring(tmp_path / "coarse.x3p", 2048, 2048, noise=True, increment="4e-06")
    with pytest.raises(InputError, match=r"over the budget of 64 MiB .*RIBIN_MEMORY_BUDGET"):
        read_x3p(coarse)
    code = f"from ribin.io import read_x3p\nread_x3p({str(path)!r})"
    result = measure(code, env={**os.environ, "RIBIN_MEMORY_BUDGET": "64M"})
    assert result["returncode"] == 0, result["stderr"]
    full = measure(code, env={**os.environ, "RIBIN_MEMORY_BUDGET": "8G"})
    print(f"2048^2 int16 read: averaged peak {result['peak_mb']} MB, full {full['peak_mb']} MB")
    assert result["peak_mb"] < full["peak_mb"]


def test_averaging_matches_block_means(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(1)
    heights = rng.normal(0, 1e-6, (600, 900))
    heights[:10, :] = np.nan
    path = tmp_path / "s.x3p"
    write_x3p(path, X3P(heights=heights, pixel_size_x_um=0.5, pixel_size_y_um=0.5))
    monkeypatch.setenv("RIBIN_MEMORY_BUDGET", "20M")
    scan = read_x3p(path)
    k = 600 // scan.heights.shape[0]
    assert k > 1
    cells = heights[: 600 // k * k, : 900 // k * k].reshape(600 // k, k, 900 // k, k)
    count = np.isfinite(cells).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.nansum(cells, axis=(1, 3)) / count
    expected[count * 2 < k * k] = np.nan
    np.testing.assert_allclose(scan.heights, expected, rtol=1e-9, equal_nan=True)


def test_memory_budget_variable(monkeypatch) -> None:
    monkeypatch.setenv("RIBIN_MEMORY_BUDGET", "8G")
    assert memory_budget() == 8 << 30
    monkeypatch.setenv("RIBIN_MEMORY_BUDGET", "lots")
    with pytest.raises(InputError, match="RIBIN_MEMORY_BUDGET"):
        memory_budget()


@pytest.mark.parametrize("increment", ["1e300", "1e-300", "inf", "0"])
def test_absurd_increment_is_one_line(tmp_path, increment) -> None:
    path = x3p_declaring(tmp_path / "inc.x3p", 64, 64, noise=True, increment=increment)
    with pytest.raises(InputError, match=r"inc\.x3p: X increment"):
        read_casing(path)
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "s"), str(path), "--country", "JM"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_huge_image_is_one_line(tmp_path) -> None:
    """A PNG declaring 100000 x 100000 pixels: refused from its header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    path = tmp_path / "huge.png"
    path.write_bytes(png + chunk(b"IEND", b""))
    code = f"from ribin.io import read_casing\nread_casing({str(path)!r}, pixel_size_um=3)"
    result = measure(code)
    assert result["returncode"] == 0, result["stderr"]
    assert result["outcome"].startswith("REFUSED huge.png:"), result["outcome"]
    assert result["peak_mb"] < 500


def test_network_file_with_sites_not_a_table(tmp_path) -> None:
    path = tmp_path / "net.toml"
    path.write_text('[countries.JM]\npublic_key = "x"\nsites = 5\n')
    with pytest.raises(InputError, match=r"net\.toml"):
        load_network(path)
