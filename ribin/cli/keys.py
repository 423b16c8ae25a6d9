"""``ribin keys generate``: a site's Ed25519 signing key for sync bundles."""

from __future__ import annotations

import click

from ribin.cli._common import user_errors


@click.group()
def keys() -> None:
    """Manage the site key that signs sync bundles."""


@keys.command()
@click.argument("keyfile", type=click.Path(dir_okay=False))
@user_errors
def generate(keyfile: str) -> None:
    """Write a new private key to KEYFILE (mode 0600) and print its public key.

    The last line printed is the public key (base64 of the raw 32 bytes): put it in the
    network file as the site's public_key. KEYFILE is never overwritten.
    """
    from ribin.sync import generate_key

    public = generate_key(keyfile)
    click.echo(f"wrote private key {keyfile} (mode 0600; keep it secret, back it up)", err=True)
    click.echo("public key for the network file:", err=True)
    click.echo(public)
