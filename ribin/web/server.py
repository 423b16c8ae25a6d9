"""Serving the app with waitress, a pure-Python production WSGI server."""

from __future__ import annotations

from flask import Flask

THREADS = 4
"""Requests answered at a time: pages of several images load in parallel."""


def make_server(app: Flask, host: str, port: int, max_upload_bytes: int):
    """A waitress server bound to ``host:port`` (port 0: a free one); ``.run()`` serves.

    The request-body limit is the upload limit plus room for the form's other fields, so
    waitress refuses a too-large upload before Flask reads it.
    """
    from waitress.server import create_server

    return create_server(
        app,
        host=host,
        port=port,
        threads=THREADS,
        max_request_body_size=max_upload_bytes + 1024 * 1024,
        ident="ribin",
        clear_untrusted_proxy_headers=True,
    )


def bound_port(server) -> int:
    """The port a server from :func:`make_server` listens on."""
    return int(server.effective_port)
