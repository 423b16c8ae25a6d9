"""``ribin demo``: the whole job on the bundled synthetic casings."""

from __future__ import annotations

import click

from ribin.cli._common import user_errors


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
    for row in manifest:
        click.echo(f"{row['file']}\t{row['firearm']}\t{row['modality']}\t{row['caliber']}")
