"""``ribin store info|verify|list|remove``: look into a signature store, check it, tidy it."""

from __future__ import annotations

import click

from ribin.cli._common import echo_json, user_errors


@click.group()
def store() -> None:
    """Inspect, check and tidy a signature store."""


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


@store.command(name="list")
@click.argument("store_path", metavar="STORE", type=click.Path(exists=True))
@click.option("--country", help="Only exhibits owned by this country.")
@click.option("--role", type=click.Choice(["known", "questioned", "other"]))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@user_errors
def list_exhibits(store_path: str, country: str | None, role: str | None, as_json: bool) -> None:
    """The live exhibits of STORE: country, exhibit ID, role, caliber, sharing, site, added."""
    from ribin.store import SignatureStore

    with SignatureStore.open(store_path, "r") as signature_store:
        rows = signature_store.listing(country=country.upper() if country else None, role=role)
    if as_json:
        echo_json({"exhibits": rows})
        return
    columns = ("country", "exhibit_id", "role", "caliber", "sharing", "site", "added")
    widths = {c: max([len(c), *(len(r[c]) for r in rows)]) for c in columns}
    click.echo("  ".join(f"{c:<{widths[c]}}" for c in columns).rstrip())
    for row in rows:
        click.echo("  ".join(f"{row[c]:<{widths[c]}}" for c in columns).rstrip())
    click.echo(f"{len(rows)} exhibit(s)")


@store.command()
@click.argument("store_path", metavar="STORE", type=click.Path(exists=True))
@click.argument("exhibit")
@click.option("--reason", required=True, help="Why it is removed (kept in the audit trail).")
@click.option("--country", help="Owning country, when EXHIBIT does not start with CC/.")
@click.option(
    "--examiner",
    help="Who decided the removal (recorded besides the login name; default: none).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the audit record as JSON.")
@user_errors
def remove(
    store_path: str,
    exhibit: str,
    reason: str,
    country: str | None,
    examiner: str | None,
    as_json: bool,
) -> None:
    """Remove EXHIBIT ([CC/]ID) from STORE's live view, recording who, when and why.

    The bytes stay in their segment until ``compact``; the audit record stays for good. The
    same casing can be ingested again afterwards. An ID that itself contains ``/``
    (``2026/0412``) is found as written; ``CC/ID`` names country CC's exhibit ID.
    """
    from ribin.store import SignatureStore

    if not reason.strip():
        raise click.ClickException("--reason must say why the exhibit is removed")
    with SignatureStore.open(store_path, "a") as signature_store:
        record = signature_store.remove(
            exhibit, reason, country=country.upper() if country else None, examiner=examiner
        )
    if as_json:
        echo_json(record)
        return
    click.echo(
        f"removed {record['country']}/{record['exhibit_id']} "
        f"(audit record: {record['time']}, {record.get('examiner') or record['user']})"
    )
