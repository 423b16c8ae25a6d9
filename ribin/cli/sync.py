"""``ribin sync export|import``: signed, incremental bundles between sites."""

from __future__ import annotations

import click

from ribin.cli._common import echo_json, user_errors
from ribin.cli._correlation import NO_CORRELATE, export_with_notices, import_and_correlate


@click.group()
def sync() -> None:
    """Exchange signatures with other sites through signed bundles."""


_COUNTRY = click.option(
    "--country", help="This store's own country code (needed once; the store remembers)."
)
_SITE = click.option("--site", help="This store's site name (default: the country code).")


@sync.command("export")
@click.argument("store_path", metavar="STORE", type=click.Path(exists=True, file_okay=False))
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option(
    "--key",
    "keyfile",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="This site's private key (from `ribin keys generate`; mode 0600).",
)
@click.option("--since", type=click.IntRange(min=0), help="Cursor printed by the last export.")
@click.option(
    "--scope",
    default="network",
    show_default=True,
    help="network (exhibits shared network) or cluster[:NAME] (also those shared cluster).",
)
@click.option(
    "--network",
    "network_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Network file: checks the key is the one pinned for this site, and cluster names.",
)
@_COUNTRY
@_SITE
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@user_errors
def export_command(
    store_path: str,
    bundle: str,
    keyfile: str,
    since: int | None,
    scope: str,
    network_file: str | None,
    country: str | None,
    site: str | None,
    as_json: bool,
) -> None:
    """Write this site's exhibits added or removed since CURSOR as a signed BUNDLE.

    Prints the new cursor as the last line: give it as --since next time.
    """
    from ribin.network import load_network
    from ribin.store import SignatureStore
    from ribin.sync import export_bundle

    network = load_network(network_file) if network_file else None
    with SignatureStore.open(store_path, "a") as store:
        result, notices = export_with_notices(
            export_bundle,
            store,
            bundle,
            keyfile,
            since=since,
            scope=scope,
            country=country,
            site=site,
            network=network,
        )
    if as_json:
        echo_json({**result.to_dict(), "notices": notices})
        return
    click.echo(
        f"{bundle}: {result.exhibits} exhibits, {result.removals} removals, {notices} hit "
        f"notices from "
        f"{result.country}/{result.site} ({result.scope}), cursor {result.since} -> "
        f"{result.cursor}, {result.bytes} bytes",
        err=True,
    )
    click.echo(result.cursor)


@sync.command("import")
@click.argument("store_path", metavar="STORE", type=click.Path(exists=True, file_okay=False))
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option(
    "--network",
    "network_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Network file with the senders' pinned public keys.",
)
@_COUNTRY
@_SITE
@NO_CORRELATE
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@user_errors
def import_command(
    store_path: str,
    bundle: str,
    network_file: str,
    country: str | None,
    site: str | None,
    no_correlate: bool,
    as_json: bool,
) -> None:
    """Verify BUNDLE against the network file's pinned keys and merge it into STORE.

    Hit notices in the bundle are verified first and recorded as leads; the exhibits it
    brings are then correlated against this site's own exhibits (unless --no-correlate).
    """
    result, extra = import_and_correlate(
        store_path, bundle, network_file, country, site, no_correlate
    )
    if as_json:
        echo_json({**result.to_dict(), **extra.document})
        return extra.finish()
    if result.already_imported:
        click.echo(f"{bundle}: already imported, nothing changed")
    else:
        click.echo(
            f"{bundle}: from {result.country}/{result.site}, cursor {result.since} -> "
            f"{result.cursor}: {result.added} added, {result.unchanged} already here, "
            f"{result.removed} removed"
        )
    extra.finish(echo=True)
