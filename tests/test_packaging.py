"""The installed package layout matches the source tree."""

from __future__ import annotations

import tomllib

from conftest import REPO


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {
        ".".join(("ribin", *init.parent.relative_to(REPO / "ribin").parts))
        for init in (REPO / "ribin").rglob("__init__.py")
    }
    on_disk.add("ribin.kernels")
    assert on_disk == listed


def test_kernels_install_as_ribin_kernels():
    import ribin.kernels.config as config

    assert config.__file__.endswith("kernels/config.py")
