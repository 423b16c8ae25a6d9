"""Options shared by the commands that read casing files."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click


def _point(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        x, y = (float(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not X,Y (pixels)") from None
    return x, y


def extraction_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --pixel-size, --caliber and the manual primer / firing-pin circle options."""
    options = [
        click.option("--pixel-size", type=float, help="Pixel size (um) of 2D images without one."),
        click.option("--caliber", help="Caliber (9mm, .40 S&W, .45 ACP); also a detection hint."),
        click.option("--primer-center", help="Manual primer centre X,Y in image pixels."),
        click.option("--primer-radius", type=float, help="Manual primer radius (pixels)."),
        click.option("--fp-center", help="Manual firing-pin centre X,Y in image pixels."),
        click.option("--fp-radius", type=float, help="Manual firing-pin radius (pixels)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def extract_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Pop the extraction options from a command's parameters, ready for ``extract``."""
    out = {
        "caliber": params.pop("caliber", None),
        "primer_center": _point(params.pop("primer_center", None)),
        "primer_radius": params.pop("primer_radius", None),
        "fp_center": _point(params.pop("fp_center", None)),
        "fp_radius": params.pop("fp_radius", None),
    }
    return {key: value for key, value in out.items() if value is not None}


def progress_bar(label: str, total: int):
    """A progress bar on stderr, shown only on a terminal."""
    return click.progressbar(
        length=total, label=label, file=sys.stderr, hidden=not sys.stderr.isatty()
    )


def advance(bar) -> Callable[[int, int], None]:
    """A library ``progress(done, total)`` callback that moves ``bar`` to ``done`` of ``total``."""

    def step(done: int, total: int) -> None:
        bar.length = total
        bar.update(done - bar.pos)

    return step


#: File name endings of casing files (X3P topographies and 2D images).
CASING_SUFFIXES = (".x3p", ".png", ".tif", ".tiff", ".jpg", ".jpeg")


def is_casing_file(query: str) -> bool:
    """Whether a QUERY names a casing file rather than a stored exhibit ID.

    An existing file is a file. A name ending like a casing file (``nosuch.x3p``) that does
    not exist is a missing file, not an exhibit ID: raises a one-line ``click`` error.
    Anything else is an exhibit ID (which may contain ``/``, as in ``2026/0412``).
    """
    from pathlib import Path

    path = Path(query)
    if path.is_file():
        return True
    if path.suffix.lower() in CASING_SUFFIXES:
        raise click.ClickException(f"{query}: file not found")
    return False


def say(message: str) -> None:
    """A status line on stderr (stdout stays for results and JSON)."""
    click.echo(message, err=True)


def kernels_ready() -> None:
    """Compile the comparison kernels now if needed, announcing it on stderr."""
    from ribin.warmup import ensure_compiled

    ensure_compiled(say)


def kernels_soon() -> None:
    """Start compiling the comparison kernels (if needed) while the command reads its input.

    :func:`kernels_ready` before the first comparison finishes the compilation.
    """
    from ribin.warmup import start_compiling

    start_compiling(say)
