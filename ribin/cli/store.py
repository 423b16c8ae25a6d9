"""``ribin store info|verify``: look into a signature store and check it."""

from __future__ import annotations

import click

from ribin.cli._common import echo_json, user_errors


@click.group()
def store() -> None:
    """Inspect and check a signature store."""


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@store.command()
@click.argument("store_path", metavar="STORE", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@user_errors
def info(store_path: str, as_json: bool) -> None:
    """Counts per country, region, modality and caliber; size; format version."""
    from ribin.store import SignatureStore

    with SignatureStore.open(store_path, "r") as signature_store:
        summary = signature_store.info()
    if as_json:
        echo_json(summary.to_dict())
        return
    click.echo(f"store           {summary.path}")
    click.echo(f"format version  {summary.format_version} (created by {summary.created_by})")
    click.echo(f"sequence        {summary.sequence}")
    click.echo(f"exhibits        {summary.exhibits}")
    click.echo(f"signatures      {summary.signatures}")
    click.echo(f"removed         {summary.removed}")
    click.echo(f"segments        {summary.segments}")
    click.echo(f"size            {_size(summary.bytes)} ({summary.bytes} bytes)")
    for title, counts in (
        ("country", summary.by_country),
        ("region", summary.by_region),
        ("modality", summary.by_modality),
        ("caliber", summary.by_caliber),
        ("sharing", summary.by_sharing),
    ):
        click.echo(f"\nby {title}")
        for key, count in counts.items():
            click.echo(f"  {key or '(none)':<20} {count:>8}")


@store.command()
@click.argument("store_path", metavar="STORE", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@user_errors
def verify(store_path: str, as_json: bool) -> None:
    """Recompute every content ID and checksum; exit 1 listing any mismatch."""
    from ribin.store import SignatureStore
    from ribin.workflow.verify import verify_workflow

    with SignatureStore.open(store_path, "r") as signature_store:
        report = signature_store.verify()
        verify_workflow(signature_store, report)
    if as_json:
        echo_json(report.to_dict())
    else:
        for note in report.notes:
            click.echo(f"note: {note}")
        for problem in report.problems:
            click.echo(f"MISMATCH: {problem}")
        if report.ok:
            click.echo(
                f"ok: {report.exhibits} exhibits, {report.signatures} signatures, "
                f"{report.segments} segments verified"
            )
    if not report.ok:
        raise click.ClickException(
            f"{store_path}: {len(report.problems)} problem(s) found by verify"
        )
