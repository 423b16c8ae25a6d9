"""Uploaded casing files: read by the CLI's own readers, never from a path in the request."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from ribin.errors import InputError
from ribin.exhibit import Exhibit

SUFFIXES = (".x3p", ".png", ".tif", ".tiff", ".jpg", ".jpeg")


def upload_name(upload: FileStorage | None) -> str:
    """A safe local name for an upload (its own name without folders or odd characters)."""
    name = secure_filename((upload.filename if upload else "") or "") or "upload"
    return name[-120:]


def extract_upload(
    upload: FileStorage | None, *, pixel_size_um: float | None = None, **options: Any
) -> Exhibit:
    """Extract the signatures of an uploaded casing file, as ``ribin search FILE`` does.

    The bytes go to a fresh private temporary folder under the upload's (sanitised) name, so
    a bad file gets the CLI's one-line message naming the file; the folder is removed after.

    Raises
    ------
    InputError
        No file, an empty file, or anything :func:`ribin.read_casing` /
        :func:`ribin.extract` refuse.
    """
    from ribin.ingest import extract_file

    if upload is None or not upload.filename:
        raise InputError(None, "choose a casing file (X3P, PNG, TIFF or JPEG) to upload")
    name = upload_name(upload)
    with tempfile.TemporaryDirectory(prefix="ribin-upload-") as folder:
        path = Path(folder) / name
        upload.save(path)
        if path.stat().st_size == 0:
            raise InputError(name, "the uploaded file is empty")
        return extract_file(path, pixel_size_um=pixel_size_um, **options)
