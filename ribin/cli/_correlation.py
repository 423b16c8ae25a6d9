"""Correlation after ``ribin ingest`` / ``ribin sync import`` / ``ribin leads correlate``."""

from __future__ import annotations

import click

from ribin.cli._options import advance, progress_bar

NO_CORRELATE = click.option(
    "--no-correlate", is_flag=True, help="Do not search the new exhibits for leads."
)
NETWORK = click.option(
    "--network",
    "network_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Network file for correlation scopes (default: the site's, else the example).",
)


def run_correlation(store_path, keys, network_file, site_country, source):
    """Correlate ``keys`` ((country, exhibit_id, content_id)) of the store at ``store_path``."""
    from ribin.store import SignatureStore
    from ribin.workflow import Workflow, correlate
    from ribin.workflow.policy import site_network

    with Workflow.open(store_path) as wf, SignatureStore.open(store_path, "r") as store:
        network = site_network(wf, network_file)
        with progress_bar("correlating", len(keys)) as bar:
            return correlate(
                store,
                keys,
                workflow=wf,
                network=network,
                site_country=site_country,
                progress=advance(bar),
                source=source,
            )


class Outcome:
    """A correlation run's result or error, reported after the command's own output.

    The store write has committed before correlation starts, so a correlation error must
    not hide what was stored: the command prints its results, then :meth:`finish` reports
    the correlation (or fails with its one-line error, exit 1).
    """

    def __init__(self, result=None, error: str | None = None, skipped: bool = False):
        self.result = result
        self.error = error
        self.skipped = skipped

    @property
    def document(self) -> dict | None:
        if self.skipped:
            return None
        if self.error is not None:
            return {"error": self.error}
        return self.result.to_dict()

    def finish(self, echo: bool = False) -> None:
        if self.error is not None:
            raise click.ClickException(
                f"stored, but not correlated: {self.error} (rerun `ribin leads correlate`)"
            )
        if echo and self.result is not None:
            from ribin.cli.leads import describe

            click.echo(describe(self.result), err=True)


def correlate_ingested(store_path, results, country, *, no_correlate, network_file) -> Outcome:
    """Correlate the exhibits an ingest stored (or had stored but never correlated)."""
    from ribin.errors import RibinError

    if no_correlate:
        return Outcome(skipped=True)
    keys = [(country, r.exhibit_id, r.content_id) for r in results]
    try:
        return Outcome(run_correlation(store_path, keys, network_file, country, "ribin ingest"))
    except RibinError as exc:
        return Outcome(error=str(exc).splitlines()[0] if str(exc) else repr(exc))
