"""Safe by default: a token on every request off the loopback, CSRF tokens on every POST.

- **Token.** When the server has one (required for a non-loopback ``--host``), every request,
  static files included, carries it as ``Authorization: Bearer TOKEN`` or in the cookie set
  by opening any page once with ``?token=TOKEN`` (the app then redirects to the same page
  without it, so the token does not stay in the address bar or the history).
- **CSRF.** A POST carries the session's CSRF token: forms as the hidden field
  ``csrf_token``, scripts as the header ``X-CSRF-Token`` (``GET /api/csrf`` gives it). A
  request authenticated by its ``Authorization`` header needs none: browsers do not add
  that header on their own, so another site cannot forge it.
- **Host check.** On the loopback the ``Host`` header must name the loopback, so a web page
  whose domain is re-pointed at 127.0.0.1 (DNS rebinding) cannot read the app.
- Headers: a Content-Security-Policy that allows only the app's own scripts, styles and
  images, no framing, no referrer.
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from flask import Flask, abort, jsonify, redirect, request, session

if TYPE_CHECKING:
    from ribin.web.app import ServeConfig

TOKEN_COOKIE = "ribin_token"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def csrf_token() -> str:
    """The session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def _same(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _local_host_header() -> bool:
    host = request.host.lower()
    if host.startswith("["):
        name = host[: host.find("]") + 1]
    else:
        name = host.partition(":")[0]
    return name in {"127.0.0.1", "localhost", "[::1]"}


def install(app: Flask, config: ServeConfig) -> None:
    """Add the token, host and CSRF checks and the security headers to ``app``."""

    @app.before_request
    def check_request():
        if config.local and not _local_host_header():
            abort(403, f"host {request.host!r} refused: this server answers on the loopback only")
        bearer_ok = config.token is not None and _same(_bearer(), config.token)
        if config.token is not None and not bearer_ok:
            given = request.args.get("token")
            if request.method in SAFE_METHODS and _same(given, config.token):
                args = {k: v for k, v in request.args.items(multi=True) if k != "token"}
                # "/" + the path without leading slashes: never "//host", another site
                target = "/" + request.path.lstrip("/") + ("?" + urlencode(args) if args else "")
                response = redirect(target)
                response.set_cookie(
                    TOKEN_COOKIE, config.token, httponly=True, samesite="Strict",
                    secure=request.is_secure,
                )  # fmt: skip
                return response
            if not _same(request.cookies.get(TOKEN_COOKIE), config.token):
                return _refuse(401, "this server needs its token: open any page with ?token=...")
        if request.method not in SAFE_METHODS and not bearer_ok:
            sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
            if not _same(sent, session.get("csrf")):
                return _refuse(400, "CSRF token missing or wrong: reload the page and try again")
        return None

    @app.after_request
    def headers(response):
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if response.mimetype == "text/html" or request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/csrf")
    def api_csrf():
        """The session's CSRF token, for scripts that POST with the session cookie."""
        return jsonify({"csrf_token": csrf_token(), "header": CSRF_HEADER})


def _refuse(status: int, message: str):
    from flask import render_template

    if request.path.startswith("/api/"):
        return jsonify({"error": message}), status
    return render_template("error.html", status=status, message=message), status
