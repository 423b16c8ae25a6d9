"""``ribin demo``: the whole job on the bundled synthetic casings."""

from __future__ import annotations

import click

from ribin.cli._common import user_errors

_COLUMNS = ("file", "firearm", "batch", "modality", "caliber")


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="ribin-demo",
    show_default=True,
    help="Folder for what the demo writes.",
)
@user_errors
def demo(out: str) -> None:
    """List the bundled synthetic casings (later: ingest them and search)."""
    from ribin.synthetic import locate_or_generate

    manifest = locate_or_generate(out)
    rows = [[str(row[key]) for key in _COLUMNS] for row in manifest]
    widths = [max(len(name), *(len(r[i]) for r in rows)) for i, name in enumerate(_COLUMNS)]
    click.echo("  ".join(name.ljust(w) for name, w in zip(_COLUMNS, widths, strict=True)))
    for r in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    firearms = len({row["firearm"] for row in manifest})
    click.echo(f"{len(manifest)} files, {firearms} firearms")
