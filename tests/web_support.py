"""Helpers of the web app's tests: a small store, the app, a real server in a thread."""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from pathlib import Path

from click.testing import CliRunner

from ribin.cli import main
from ribin.web import ServeConfig, create_app

STORED = ["F01-1.x3p", "F01-2.x3p", "F04-1.x3p"]
QUERY = "F01-3.x3p"  # same firearm as F01-1 and F01-2, not stored
ODD_ID = "case 12#3?x%y &é"  # characters a URL must escape
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def build_store(path: Path, synthetic_dir: Path) -> Path:
    """Three BB exhibits (two of one firearm) and one under an ID that needs escaping."""
    runner = CliRunner()
    files = [str(synthetic_dir / name) for name in STORED]
    result = runner.invoke(main, ["ingest", str(path), *files, "--country", "BB"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        main,
        ["ingest", str(path), str(synthetic_dir / "F02-1.x3p"), "--country", "JM",
         "--exhibit-id", ODD_ID, "--caliber", "9mm"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return path


def app_for(store: Path, **options):
    app = create_app(ServeConfig(store=store, **options))
    app.testing = True
    return app


def csrf_of(client) -> str:
    """The session's CSRF token, as a page's form carries it."""
    page = client.get("/search")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found, page.get_data(as_text=True)[:500]
    return found.group(1)


def error_line(html: str) -> str | None:
    found = re.search(r'id="error"[^>]*>([^<]*)<', html)
    return found.group(1) if found else None


@contextmanager
def running_server(store: Path, **options):
    """The real app behind waitress on 127.0.0.1 and a free port, in a thread."""
    from ribin.web.server import bound_port, make_server

    app = create_app(ServeConfig(store=store, port=0, **options))
    server = make_server(app, "127.0.0.1", 0, app.config["MAX_CONTENT_LENGTH"])
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{bound_port(server)}"
    finally:
        server.close()
        thread.join(timeout=10)
