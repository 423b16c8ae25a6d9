"""The ``ribin`` command line: one thin module per command."""

from __future__ import annotations

import click

from ribin import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ribin")
def main() -> None:
    """RIBIN: ballistic image correlation for fired cartridge cases."""


def _register() -> None:
    from ribin.cli.demo import demo
    from ribin.cli.store import store

    main.add_command(demo)
    main.add_command(store)


_register()
