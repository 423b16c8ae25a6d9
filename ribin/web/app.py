"""The app factory: configuration, blueprints, security hooks and error pages."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ribin import __version__
from ribin.errors import InputError, RibinError
from ribin.web import security
from ribin.web.resources import Resources

DEFAULT_MAX_UPLOAD_MB = 200
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

log = logging.getLogger("ribin.web")


@dataclass(frozen=True)
class ServeConfig:
    """How ``ribin serve`` runs.

    Attributes
    ----------
    store : Path
        The store directory served (read for pages; its workflow database is written by
        decisions).
    host, port : str, int
        Where the server listens. A host other than the loopback needs ``token``.
    token : str or None
        Shared secret checked on every request (``Authorization: Bearer`` or a cookie set
        by visiting any page with ``?token=``).
    network_file : Path or None
        Network file (default: the example shipped with RIBIN).
    max_upload_mb : float
        Largest accepted upload; a larger one is refused with HTTP 413 before it is read.
    """

    store: Path
    host: str = "127.0.0.1"
    port: int = 8750
    token: str | None = None
    network_file: Path | None = None
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB

    @property
    def local(self) -> bool:
        """True when the server listens on the loopback only."""
        return self.host in LOCAL_HOSTS

    def check(self) -> ServeConfig:
        """Refuse settings that would be unsafe or cannot work, with one line."""
        if not self.store.is_dir():
            raise InputError(self.store, "no such store directory")
        if not self.local and not self.token:
            raise InputError(
                None,
                f"--host {self.host} serves beyond this machine: give a --token (or set "
                "RIBIN_SERVE_TOKEN) so that every request must carry it",
            )
        if self.token is not None and len(self.token) < 16:
            raise InputError(None, "the token must be at least 16 characters")
        if not 0 < self.max_upload_mb <= 10_000:
            raise InputError(None, "the upload limit must be between 0 and 10000 MB")
        return self


def create_app(config: ServeConfig) -> Flask:
    """Build the review app for one store.

    Parameters
    ----------
    config : ServeConfig

    Returns
    -------
    flask.Flask
        A WSGI application (serve it with :func:`ribin.web.server.serve`).
    """
    config.check()
    app = Flask(__name__)
    app.config.update(
        # a fresh key each start: sessions (CSRF tokens, the examiner's name) end with it
        SECRET_KEY=secrets.token_bytes(32),
        MAX_CONTENT_LENGTH=int(config.max_upload_mb * 1024 * 1024),
        SESSION_COOKIE_NAME="ribin_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        JSON_SORT_KEYS=False,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.json.sort_keys = False
    # exhibit IDs may hold "//": keep them as they are instead of redirecting
    app.url_map.merge_slashes = False
    app.extensions["ribin"] = Resources(config)

    from ribin.web import compare_view, exhibits, leads, search_page

    for module in (exhibits, search_page, compare_view, leads):
        app.register_blueprint(module.blueprint)

    security.install(app, config)
    _install_errors(app)

    @app.context_processor
    def globals_():
        return {
            "version": __version__,
            "store_name": config.store.name,
            "csrf_token": security.csrf_token,
            "workflow_available": leads.available(),
        }

    @app.route("/")
    def home():
        from flask import redirect, url_for

        return redirect(url_for("leads.queue" if leads.available() else "search.form"))

    @app.route("/favicon.ico")
    def favicon():
        return "", 204  # browsers ask for one; none is needed

    return app


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _error(status: int, message: str):
    if _wants_json():
        return jsonify({"error": message}), status
    return render_template("error.html", status=status, message=message), status


def _install_errors(app: Flask) -> None:
    @app.errorhandler(RibinError)
    def ribin_error(exc: RibinError):
        # the one-line message of the CLI (user_errors), never a traceback
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        status = 404 if isinstance(exc, KeyError) else 400
        return _error(status, text)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        limit = app.extensions["ribin"].config.max_upload_mb
        return _error(413, f"upload refused: larger than the {limit:g} MB limit of this server")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        g.failed = True
        return _error(500, f"internal error ({type(exc).__name__}); see the server's log")


def default_token() -> str | None:
    """The token from ``RIBIN_SERVE_TOKEN``, if set and not empty."""
    return os.environ.get("RIBIN_SERVE_TOKEN") or None
