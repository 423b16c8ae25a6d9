"""File formats: X3P topographies, 2D micrographs, and one reader for any casing file."""

from __future__ import annotations

from ribin.io.casing import Casing, read_casing
from ribin.io.image import Image2D, read_image, write_image
from ribin.io.x3p import X3P, read_x3p, write_x3p

__all__ = [
    "X3P",
    "Casing",
    "Image2D",
    "read_casing",
    "read_image",
    "read_x3p",
    "write_image",
    "write_x3p",
]
