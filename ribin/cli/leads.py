"""``ribin leads list|decide|correlate``: the examiner's queue of leads and their conclusions."""

from __future__ import annotations

import click

from ribin.cli._common import echo_json, user_errors

_NETWORK = click.option(
    "--network",
    "network_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Network file (default: the one the site last synced with, else the example).",
)


@click.group()
def leads() -> None:
    """Leads from automatic correlation, and the examiners' conclusions on them."""


@leads.command("list")
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--status",
    type=click.Choice(["open", "identification", "inconclusive", "elimination", "all"]),
    default="open",
    show_default=True,
)
@_NETWORK
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@user_errors
def list_command(store: str, status: str, network_file: str | None, as_json: bool) -> None:
    """List the leads of STORE with this status (received hit notices included)."""
    from ribin.workflow import Workflow

    with Workflow.open(store) as wf:
        found = wf.leads(status=status)
    if as_json:
        echo_json({"leads": [lead.to_dict() for lead in found]})
        return
    click.echo(format_leads(found))


def format_leads(found) -> str:
    """The human table of a list of :class:`ribin.workflow.Lead`."""
    lines = [
        f"{'id':>5}  {'status':<14} {'query':<22} {'candidate':<22} {'score':>6} "
        f"{'log10 LR':>8}  {'rank':>4}  {'origin':<6} examiner"
    ]
    for lead in found:
        lr = f"{lead.log_lr:+8.2f}" if lead.log_lr is not None else f"{'-':>8}"
        score = f"{lead.score:6.2f}" if lead.score is not None else f"{'-':>6}"
        rank = f"{lead.rank:>4}" if lead.rank is not None else f"{'-':>4}"
        lines.append(
            f"{lead.id:>5}  {lead.status:<14} {'/'.join(lead.query):<22} "
            f"{'/'.join(lead.candidate):<22} {score} {lr}  {rank}  {lead.origin or '-':<6} "
            f"{lead.examiner}"
        )
    if not found:
        lines.append("       (no lead)")
    return "\n".join(lines)


@leads.command("decide")
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.argument("lead_id")
@click.option(
    "--conclusion",
    required=True,
    help="identification, inconclusive or elimination (the AFTE range).",
)
@click.option("--examiner", required=True, help="Who decides (recorded in the audit log).")
@click.option("--note", default="", help="Why: what was seen under the microscope.")
@click.option("--json", "as_json", is_flag=True, help="Print the lead as recorded.")
@user_errors
def decide_command(
    store: str, lead_id: str, conclusion: str, examiner: str, note: str, as_json: bool
) -> None:
    """Record an examiner's CONCLUSION on lead LEAD_ID of STORE."""
    from ribin.workflow import Workflow

    with Workflow.open(store) as wf:
        lead = wf.decide(lead_id, conclusion, examiner, note=note, source="ribin leads decide")
    if as_json:
        echo_json(lead.to_dict())
        return
    click.echo(
        f"lead {lead.id}: {'/'.join(lead.query)} ~ {'/'.join(lead.candidate)}: "
        f"{lead.status} by {lead.examiner} at {lead.decided}"
    )


@leads.command("correlate")
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@_NETWORK
@click.option("--country", help="The site's own country (default: the one it already knows).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@user_errors
def correlate_command(
    store: str, network_file: str | None, country: str | None, as_json: bool
) -> None:
    """Correlate every exhibit of STORE not yet correlated (after a crash, or an old store)."""
    from ribin.cli._correlation import run_correlation
    from ribin.store import SignatureStore
    from ribin.workflow import Workflow, pending

    with SignatureStore.open(store, "r") as opened, Workflow.open(store) as wf:
        keys = pending(opened, wf)
    result = run_correlation(
        store, keys, network_file, country.upper() if country else None, "ribin leads correlate"
    )
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(describe(result))


def describe(result) -> str:
    """One line on a :class:`ribin.workflow.CorrelationResult`."""
    return (
        f"correlated {result.correlated} exhibits ({result.skipped} done before): "
        f"{len(result.leads)} new leads in {result.seconds:.1f} s"
    )
