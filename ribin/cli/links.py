"""``ribin links``: exhibits joined by identifications (one firearm per group)."""

from __future__ import annotations

import click

from ribin.cli._common import echo_json, user_errors


@click.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--network",
    "network_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Network file (accepted for symmetry with the other commands).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@user_errors
def links(store: str, network_file: str | None, as_json: bool) -> None:
    """Linked groups of STORE: exhibits joined by identifications, own and received."""
    from ribin.workflow import Workflow

    with Workflow.open(store) as wf:
        groups = wf.links()
    if as_json:
        echo_json({"groups": [group.to_dict() for group in groups]})
        return
    if not groups:
        click.echo("no linked group (no identification recorded or received)")
    for number, group in enumerate(groups, start=1):
        click.echo(
            f"group {number}: {len(group.exhibits)} exhibits in {', '.join(group.countries)} "
            f"(leads {', '.join(map(str, group.leads))}; decided by {', '.join(group.decided_by)})"
        )
        for country, exhibit_id in group.exhibits:
            extra = group.details.get(f"{country}/{exhibit_id}", {})
            when = extra.get("acquired_at") or ""
            case = extra.get("case_ref") or ""
            click.echo(f"  {country}/{exhibit_id}\t{when}\t{case}".rstrip())
        for a, b in group.disputed:
            click.echo(f"  disputed: {'/'.join(a)} ~ {'/'.join(b)} was also eliminated")
