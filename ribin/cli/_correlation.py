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


def site_network_file(store_path, network_file):
    """``network_file`` if given, else the one the site's workflow database remembers (its
    last sync), else None (the example shipped with RIBIN).

    Writes nothing: the database is read as an immutable file, so checking an ingest's
    country never fails on a full disk before the ingest itself does. Only when that read
    finds nothing and a write-ahead log exists (a writer's last commit may sit there) is the
    database opened normally.
    """
    import contextlib
    import sqlite3
    from pathlib import Path

    from ribin.workflow import Workflow
    from ribin.workflow.db import DB_NAME

    path = Path(store_path) / DB_NAME
    if network_file is not None or not path.is_file():
        return network_file
    remembered = None
    with contextlib.suppress(sqlite3.Error):
        uri = f"{path.resolve().as_uri()}?immutable=1"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'network_file'").fetchone()
            remembered = row and row[0]
    if not remembered and path.with_name(DB_NAME + "-wal").is_file():
        with Workflow.open(store_path, create=False) as wf:
            remembered = wf.meta("network_file")
    return remembered if remembered and Path(remembered).is_file() else None


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


def export_with_notices(export_bundle, store, bundle, keyfile, **kwargs):
    """``export_bundle`` with the site's hit notices attached (``payload/notices.json``).

    Returns (ExportResult, number of notices carried).
    """
    import shutil
    import tempfile
    from pathlib import Path

    from ribin.sync import NOTICES
    from ribin.workflow import Workflow
    from ribin.workflow.notices import write_notices
    from ribin.workflow.policy import site_network

    store.refresh()
    identity = store.sync_state().get("identity") or {}
    country = identity.get("country") or kwargs.get("country")
    site = identity.get("site") or kwargs.get("site") or country
    if country is None:  # export_bundle says what is missing
        return export_bundle(store, bundle, keyfile, **kwargs), 0
    work = Path(tempfile.mkdtemp(prefix="ribin-notices-"))
    try:
        target = work / "notices.json"
        with Workflow.open(store.path) as wf:
            network = kwargs.get("network") or site_network(wf)
            scope = kwargs.get("scope", "network")
            count = write_notices(
                store, wf, target, scope=scope, network=network, sender=(country, site)
            )
        attachments = {NOTICES: target} if count else None
        result = export_bundle(store, bundle, keyfile, attachments=attachments, **kwargs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result, count


class ImportOutcome(Outcome):
    """The notices and correlation of a ``sync import``, reported after its own line."""

    def __init__(self, notices: int, ignored: int, result=None, error=None, skipped=False):
        super().__init__(result, error, skipped)
        self.notices = notices
        self.ignored = ignored

    @property
    def document(self) -> dict:
        return {
            "notices": self.notices,
            "notices_not_for_us": self.ignored,
            "correlation": super().document,
        }

    def finish(self, echo: bool = False) -> None:
        if echo:
            click.echo(f"{self.notices} new hit notices", err=True)
        super().finish(echo)


def import_and_correlate(store_path, bundle, network_file, country, site, no_correlate):
    """``sync import`` with hit notices checked and recorded, then correlation."""
    from ribin.errors import RibinError
    from ribin.network import load_network
    from ribin.store import SignatureStore
    from ribin.workflow.notices import import_with_notices

    network = load_network(network_file)
    with SignatureStore.open(store_path, "a") as store:
        result, checked, new = import_with_notices(
            store, bundle, network, country=country, site=site
        )
        store.refresh()
        held = set(store.keys())
        own = (store.sync_state().get("identity") or {}).get("country")
    keys = [k for k in checked.exhibits if (k[0], k[1]) in held]
    if no_correlate:
        return result, ImportOutcome(new, checked.ignored, skipped=True)
    try:
        done = run_correlation(store_path, keys, network_file, own, "ribin sync import")
    except RibinError as exc:
        return result, ImportOutcome(new, checked.ignored, error=str(exc).splitlines()[0])
    return result, ImportOutcome(new, checked.ignored, done)
