"""Shared fixtures: where the real scans and the bundled synthetic casings live."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FADUL_DIR = REPO.parent / "shared" / "data" / "fadul_subset"
SYNTHETIC_DIR = REPO / "data" / "synthetic_casings"


@pytest.fixture(scope="session")
def fadul_dir() -> Path:
    """The 19 real breech-face scans beside the project (skips when absent)."""
    if not (FADUL_DIR / "truth.csv").is_file():
        pytest.skip(f"real scans not found at {FADUL_DIR}")
    return FADUL_DIR


@pytest.fixture(scope="session")
def synthetic_dir() -> Path:
    """The committed synthetic casings with their ground-truth manifest."""
    return SYNTHETIC_DIR


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels() -> None:
    """Compile the comparison kernels once, before the first test, when the cache lacks them.

    A command's first comparison otherwise compiles them and says so on stderr, which
    CliRunner mixes into the output the CLI tests parse; and the compile time would be
    charged to whichever test happens to run first.
    """
    from ribin.warmup import ensure_compiled

    ensure_compiled(lambda message: None)
