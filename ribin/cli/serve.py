"""``ribin serve``: the review web app over a store (lead queue, leads, search, exhibits)."""

from __future__ import annotations

from pathlib import Path

import click

from ribin.cli._common import user_errors


@click.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but the loopback needs --token.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8750, show_default=True)
@click.option(
    "--token",
    envvar="RIBIN_SERVE_TOKEN",
    show_envvar=True,
    help="Secret every request must carry (Bearer header, or open a page with "
    "?token=...); required off the loopback.",
)
@click.option(
    "--network",
    "network_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Network file (default: the example shipped with RIBIN).",
)
@click.option(
    "--max-upload-mb",
    type=float,
    default=200,
    show_default=True,
    help="Largest casing file the search page accepts.",
)
@user_errors
def serve(store: str, host: str, port: int, token: str | None, network_file: str | None,
          max_upload_mb: float) -> None:  # fmt: skip
    """Serve the review web app for STORE until interrupted (Ctrl-C)."""
    from ribin.web import ServeConfig, create_app
    from ribin.web.server import bound_port, make_server

    config = ServeConfig(
        store=Path(store),
        host=host,
        port=port,
        token=token or None,
        network_file=Path(network_file) if network_file else None,
        max_upload_mb=max_upload_mb,
    )
    app = create_app(config)
    server = make_server(app, host, port, app.config["MAX_CONTENT_LENGTH"])
    where = f"http://{'[' + host + ']' if ':' in host else host}:{bound_port(server)}/"
    click.echo(f"ribin serve: {store} at {where}" + (" (token required)" if token else ""))
    click.echo("press Ctrl-C to stop", err=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
