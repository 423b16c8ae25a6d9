"""The ``ribin`` command line: one thin module per command."""

from __future__ import annotations

import click

from ribin import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ribin")
def main() -> None:
    """RIBIN: ballistic image correlation for fired cartridge cases."""


def _register() -> None:
    from ribin.cli.calibrate import calibrate
    from ribin.cli.compare import compare
    from ribin.cli.demo import demo
    from ribin.cli.ingest import ingest
    from ribin.cli.keys import keys
    from ribin.cli.leads import leads
    from ribin.cli.links import links
    from ribin.cli.search import search
    from ribin.cli.serve import serve
    from ribin.cli.store import store
    from ribin.cli.sync import sync

    main.add_command(demo)
    main.add_command(ingest)
    main.add_command(search)
    main.add_command(compare)
    main.add_command(calibrate)
    main.add_command(store)
    main.add_command(keys)
    main.add_command(sync)
    main.add_command(leads)
    main.add_command(links)
    main.add_command(serve)


_register()
