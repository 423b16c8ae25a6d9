"""The review web app over HTTP (Flask's test client): security, API, uploads, pages."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from PIL import Image
from web_support import ODD_ID, QUERY, app_for, build_store, csrf_of, error_line

from ribin.cli import main
from ribin.errors import InputError
from ribin.store import SignatureStore
from ribin.web import ServeConfig, create_app

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def store(tmp_path_factory, synthetic_dir) -> Path:
    return build_store(tmp_path_factory.mktemp("web") / "store", synthetic_dir)


@pytest.fixture(scope="module")
def app(store):
    return app_for(store)


@pytest.fixture()
def client(app):
    return app.test_client()


# -- safe by default ---------------------------------------------------------------------


def test_a_non_local_host_needs_a_token(store):
    with pytest.raises(InputError, match="--token"):
        create_app(ServeConfig(store=store, host="0.0.0.0"))
    result = CliRunner().invoke(main, ["serve", str(store), "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "--token" in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    with pytest.raises(InputError, match="at least 16"):
        create_app(ServeConfig(store=store, host="0.0.0.0", token="short"))


@pytest.mark.parametrize("url", ["/search", "/exhibits", "/api/exhibits", "/static/ribin.css"])
def test_token_is_checked_on_every_request(store, url):
    app = app_for(store, host="0.0.0.0", token=TOKEN)
    client = app.test_client()
    refused = client.get(url)
    assert refused.status_code == 401
    assert (
        client.get(url, headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code
        == 401
    )
    assert client.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    # a browser logs in once with ?token=, gets a cookie and a clean address
    login = client.get(f"{url}?token={TOKEN}")
    assert login.status_code == 302 and "token" not in login.headers["Location"]
    assert "ribin_token=" in login.headers["Set-Cookie"]
    assert "HttpOnly" in login.headers["Set-Cookie"]
    assert client.get(url).status_code == 200
    assert app.test_client().get(f"{url}?token=wrong").status_code == 401


def test_a_bearer_token_needs_no_csrf_but_a_cookie_does(store):
    app = app_for(store, host="0.0.0.0", token=TOKEN)
    scripted = app.test_client()
    answer = scripted.post(
        "/api/search", data={"exhibit": "BB/nosuch"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 404 and "nosuch" in answer.get_json()["error"]
    browser = app.test_client()
    browser.get(f"/search?token={TOKEN}")
    answer = browser.post("/api/search", data={"exhibit": "BB/nosuch"})
    assert answer.status_code == 400 and "CSRF" in answer.get_json()["error"]


def test_loopback_server_refuses_other_host_names(client):
    # DNS rebinding: another site's name pointed at 127.0.0.1
    assert client.get("/search", headers={"Host": "evil.example:8750"}).status_code == 403
    assert client.get("/search", headers={"Host": "127.0.0.1:8750"}).status_code == 200
    assert client.get("/search", headers={"Host": "localhost"}).status_code == 200
    assert client.get("/search", headers={"Host": "[::1]:8750"}).status_code == 200


def test_posts_need_the_csrf_token(client):
    form = {"exhibit": "BB/F01-1", "scope": "country"}
    missing = client.post("/search", data=form)
    assert missing.status_code == 400 and "CSRF" in error_line(missing.get_data(as_text=True))
    token = csrf_of(client)
    wrong = client.post("/search", data={**form, "csrf_token": token[::-1]})
    assert wrong.status_code == 400
    header = client.post(
        "/api/search", data={"exhibit": "BB/nosuch"}, headers={"X-CSRF-Token": token}
    )
    assert header.status_code == 404  # past the CSRF check, refused for the exhibit
    assert client.get("/api/csrf").get_json()["csrf_token"] == token
    # another client (no session) cannot reuse it
    other = client.application.test_client()
    assert other.post("/search", data={**form, "csrf_token": token}).status_code == 400


def test_security_headers(client):
    response = client.get("/search")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html  # no CDN, nothing from outside
    for asset in ("/static/ribin.css", "/static/ribin.js"):
        assert client.get(asset).status_code == 200


# -- uploads -------------------------------------------------------------------------------


def _upload(client, name: str, data: bytes, **fields):
    form = {"csrf_token": csrf_of(client), "scope": "country", "country": "BB", **fields}
    form["casing"] = (io.BytesIO(data), name)
    return client.post("/search", data=form, content_type="multipart/form-data")


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("broken.x3p", b"PK\x03\x04 not really a zip", "broken.x3p: "),
        ("notes.png", b"this is text, not an image", "notes.png: "),
        ("empty.tif", b"", "empty.tif: "),
        ("../../etc/passwd", b"root:x:0:0", "etc_passwd: "),
    ],
)
def test_a_bad_upload_gives_the_one_line_error(client, name, data, expected):
    response = _upload(client, name, data)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    line = error_line(html)
    assert line is not None and line.startswith(expected), line
    assert "\n" not in line and "Traceback" not in html


def test_upload_size_is_capped(store, synthetic_dir):
    app = app_for(store, max_upload_mb=0.05)
    client = app.test_client()
    data = (synthetic_dir / QUERY).read_bytes()
    assert len(data) > 0.05 * 1024 * 1024
    response = _upload(client, QUERY, data)
    assert response.status_code == 413
    assert "0.05 MB limit" in error_line(response.get_data(as_text=True))


@pytest.mark.slow
def test_search_by_upload_ranks_the_same_firearm_first(client, synthetic_dir):
    response = _upload(client, QUERY, (synthetic_dir / QUERY).read_bytes())
    html = response.get_data(as_text=True)
    assert response.status_code == 200, error_line(html)
    assert 'id="results"' in html
    first = html.index("<tbody>", html.index('class="ranked"'))
    top = html[first : first + 2000]
    assert "F01-1" in top or "F01-2" in top
    # the candidates link to the compare view with the uploaded query
    assert "/compare?a=upload%3A" in html or "/compare?a=upload:" in html


def test_api_search_equals_the_cli(client, store):
    token = csrf_of(client)
    answer = client.post(
        "/api/search",
        data={"exhibit": "BB/F01-1", "scope": "country", "top": "5"},
        headers={"X-CSRF-Token": token},
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    api = answer.get_json()
    result = CliRunner().invoke(
        main, ["search", str(store), "BB/F01-1", "--scope", "country", "--top", "5", "--json"]
    )
    assert result.exit_code == 0, result.output
    cli = json.loads(result.output)
    assert api["candidates"] == cli["candidates"]
    assert api["candidates"][0]["exhibit_id"] == "F01-2"
    assert {k for k in cli if k != "seconds"} <= set(api)


# -- exhibits ------------------------------------------------------------------------------


def test_api_exhibits_lists_the_store(client, store):
    rows = client.get("/api/exhibits").get_json()["exhibits"]
    with SignatureStore.open(store) as opened:
        expected = {}
        for stored in opened:
            m = stored.metadata
            expected[(m.country, stored.exhibit_id)] = {
                "country": m.country, "exhibit_id": stored.exhibit_id, "role": m.role,
                "caliber": m.caliber, "sharing": m.sharing, "site": m.site,
                "added": stored.stored_at,
            }  # fmt: skip
    assert {(r["country"], r["exhibit_id"]): r for r in rows} == expected
    only_jm = client.get("/api/exhibits?country=jm").get_json()["exhibits"]
    assert [r["exhibit_id"] for r in only_jm] == [ODD_ID]


def test_api_exhibits_equals_store_list_json(client, store):
    if "list" not in main.commands["store"].commands:
        pytest.skip("`ribin store list` is not in this branch yet")
    result = CliRunner().invoke(main, ["store", "list", str(store), "--json"])
    assert result.exit_code == 0, result.output
    assert client.get("/api/exhibits").get_json() == json.loads(result.output)


def test_exhibit_page_escapes_its_id(client, app):
    with app.test_request_context():
        from flask import url_for

        url = url_for("exhibits.exhibit", country="JM", exhibit_id=ODD_ID)
    assert "#" not in url and "?" not in url and " " not in url
    page = client.get(url)
    html = page.get_data(as_text=True)
    assert page.status_code == 200, error_line(html)
    assert "case 12#3?x%y &amp;é" in html
    image = client.get(
        "/exhibit/signature.png", query_string={"e": f"JM/{ODD_ID}", "region": "breech_face"}
    )
    assert image.status_code == 200 and image.data.startswith(PNG_MAGIC)
    # an ID holding "/" (lab case numbers) routes whole, "//" included
    adapter = app.url_map.bind("localhost")
    assert adapter.match("/exhibits/BB/2024/117//A") == (
        "exhibits.exhibit",
        {"country": "BB", "exhibit_id": "2024/117//A"},
    )
    with app.test_request_context():
        from flask import url_for

        assert url_for("exhibits.exhibit", country="BB", exhibit_id="2024/117") == (
            "/exhibits/BB/2024/117"
        )


def test_exhibit_page_shows_metadata_quality_provenance(client):
    html = client.get("/exhibits/BB/F01-1").get_data(as_text=True)
    for text in ("Metadata", "Provenance", "source SHA-256", "Quality", "valid fraction",
                 "Breech face", "Firing pin", "Download the exhibit report"):  # fmt: skip
        assert text in html, text
    report = client.get("/exhibit/report.html", query_string={"e": "BB/F01-1"})
    assert report.status_code == 200
    assert "attachment" in report.headers["Content-Disposition"]
    from test_report import check_self_contained

    check_self_contained(report.get_data(as_text=True))


@pytest.mark.parametrize(
    "url",
    [
        "/exhibit/signature.png?e=../../etc/passwd&region=breech_face",
        "/exhibit/signature.png?e=/etc/passwd&region=breech_face",
        "/exhibits/BB/..%2F..%2Fetc%2Fpasswd",
        "/exhibit/report.html?e=BB/../../store",
        "/compare?a=/etc/passwd&b=BB/F01-1",
        "/exhibit/signature.png?e=BB/F01-1&region=breech_face&size=100000",
    ],
)
def test_no_route_reads_a_path_from_the_request(client, url):
    response = client.get(url)
    assert response.status_code in (400, 404)
    assert b"root:" not in response.data


# -- compare view ------------------------------------------------------------------------


@pytest.mark.slow
def test_compare_view_draws_the_reports_figures(client, store):
    refs = {"a": "BB/F01-1", "b": "BB/F01-2"}
    page = client.get("/compare", query_string=refs)
    html = page.get_data(as_text=True)
    assert page.status_code == 200, error_line(html)
    for text in ("Overlay after registration", "Combined log10 LR", "Breech face", "Firing pin",
                 'class="congruent"'):  # fmt: skip
        assert text in html, text
    with SignatureStore.open(store) as opened:
        shape = opened.get("BB/F01-1").exhibit.breech_face.surface.shape
    for which in ("a", "b"):
        layer = client.get("/pair/layer.png", query_string={**refs, "region": "breech_face",
                                                            "which": which})  # fmt: skip
        assert layer.status_code == 200
        # both overlay layers lie on A's grid, pixel for pixel
        assert Image.open(io.BytesIO(layer.data)).size == (shape[1], shape[0])
    figure = client.get("/pair/figure.png", query_string={**refs, "region": "firing_pin",
                                                          "kind": "cells"})  # fmt: skip
    assert figure.status_code == 200 and figure.data.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(figure.data)).size[0] >= 800  # large enough to judge marks
    bad = client.get("/pair/figure.png", query_string={**refs, "region": "x", "kind": "cells"})
    assert bad.status_code == 400


# -- a writer at work --------------------------------------------------------------------


@pytest.mark.slow
def test_pages_are_served_while_an_ingest_writes(store, synthetic_dir, client):
    before = len(client.get("/api/exhibits").get_json()["exhibits"])
    ingest = subprocess.Popen(
        [sys.executable, "-m", "ribin", "ingest", str(store), str(synthetic_dir / "F02-2.x3p"),
         str(synthetic_dir / "F03-1.x3p"), "--country", "BZ"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    served = 0
    try:
        while ingest.poll() is None:
            for url in ("/exhibits/BB/F01-1", "/api/exhibits", "/exhibits"):
                assert client.get(url).status_code == 200, url
            served += 1
            time.sleep(0.2)
    finally:
        _, err = ingest.communicate(timeout=300)
    assert ingest.returncode == 0, err.decode()
    assert served > 0
    after = client.get("/api/exhibits").get_json()["exhibits"]
    assert len(after) == before + 2  # the committed write is seen without a restart
    assert client.get(f"/exhibits/BZ/{quote('F03-1')}").status_code == 200


def test_templates_and_static_files_are_package_data():
    """A non-editable install carries every template and static file (pyproject globs)."""
    import fnmatch
    import tomllib

    from conftest import REPO

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["ribin.web"]
    web = REPO / "ribin" / "web"
    files = [
        p.relative_to(web).as_posix()
        for d in ("templates", "static")
        for p in (web / d).rglob("*")
        if p.is_file()
    ]
    assert files
    for name in files:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_token_login_redirect_stays_on_this_server(store):
    app = app_for(store, host="0.0.0.0", token=TOKEN)
    answer = app.test_client().get(
        "/", query_string={"token": TOKEN}, environ_overrides={"PATH_INFO": "//evil.example/x"}
    )
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/evil.example/x"  # a path here, not another host


def test_ribin_serve_serves_until_stopped(store):
    """The command itself: waitress on the loopback, the URL on stdout, pages answered."""
    import urllib.request

    server = subprocess.Popen(
        [sys.executable, "-m", "ribin", "serve", str(store), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        assert line.startswith("ribin serve: ") and "http://127.0.0.1:" in line, line
        url = line.split(" at ", 1)[1].split()[0]
        with urllib.request.urlopen(url + "search", timeout=60) as page:
            assert page.status == 200 and b"Search the store" in page.read()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_every_template_compiles(app):
    """A broken template fails here, not in front of an examiner (lead pages included)."""
    names = app.jinja_env.list_templates()
    assert {"base.html", "lead.html", "queue.html", "links.html", "search.html"} <= set(names)
    for name in names:
        app.jinja_env.get_template(name)
    lead = (Path(app.root_path) / "templates" / "lead.html").read_text()
    assert len(lead.splitlines()) < 200
