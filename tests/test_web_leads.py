"""Lead queue, lead page, decisions and linked groups of the web app (needs ribin.workflow).

Leads come from the real automatic correlation of ``ribin ingest``; decisions made through
the app must show in ``ribin leads list`` and the audit log exactly as the CLI's do.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from web_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    app_for,
    csrf_of,
    error_line,
    running_server,
)

from ribin.cli import main

pytest.importorskip("ribin.workflow", reason="ribin.workflow (the leads issue) not installed")

EXAMINER = "A. Examiner"


def _leads(store: Path, status: str = "all") -> list[dict]:
    result = CliRunner().invoke(main, ["leads", "list", str(store), "--status", status, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["leads"]


@pytest.fixture()
def store(tmp_path, synthetic_dir) -> Path:
    """BB holds F01-1 and F04-1; ingesting F01-2 (F01-1's firearm) makes leads."""
    path = tmp_path / "store"
    runner = CliRunner()
    first = [str(synthetic_dir / n) for n in ("F01-1.x3p", "F04-1.x3p")]
    for files in (first, [str(synthetic_dir / "F01-2.x3p")]):
        result = runner.invoke(main, ["ingest", str(path), *files, "--country", "BB"])
        assert result.exit_code == 0, result.output
    assert _leads(path), "ingest made no lead"
    return path


@pytest.fixture()
def client(store):
    return app_for(store).test_client()


def _best(store: Path) -> dict:
    return max(_leads(store, "open"), key=lambda lead: lead["score"] or 0)


def test_api_leads_equals_the_cli(client, store):
    for status in ("open", "all", "identification"):
        assert client.get(f"/api/leads?status={status}").get_json() == {
            "leads": _leads(store, status)
        }
    assert client.get("/api/leads?status=nonsense").status_code == 400


def test_a_decision_through_the_api_is_the_clis(client, store):
    lead = _best(store)
    url = f"/api/leads/{lead['id']}/decision"
    body = {"conclusion": "identification", "examiner": EXAMINER, "note": "BF and FP agree"}
    refused = client.post(url, json=body)
    assert refused.status_code == 400 and "CSRF" in refused.get_json()["error"]
    assert _leads(store, "identification") == []  # nothing recorded
    headers = {"X-CSRF-Token": csrf_of(client)}
    bad = client.post(url, json={**body, "conclusion": "match"}, headers=headers)
    assert bad.status_code == 400 and "\n" not in bad.get_json()["error"]
    missing = client.post("/api/leads/99999/decision", json=body, headers=headers)
    assert missing.status_code in (400, 404) and "99999" in missing.get_json()["error"]
    decided = client.post(url, json=body, headers=headers)
    assert decided.status_code == 200, decided.get_json()
    assert decided.get_json()["status"] == "identification"
    listed = _leads(store, "identification")
    assert [(x["id"], x["examiner"], x["note"]) for x in listed] == [
        (lead["id"], EXAMINER, "BF and FP agree")
    ]
    from ribin.workflow import Workflow

    with Workflow.open(store) as wf:
        audit = wf.audit(lead_id=lead["id"])
    assert audit[-1]["who"] == EXAMINER and audit[-1]["source"] == "web"


def test_queue_lead_and_form_decision(client, store):
    queue = client.get("/leads")
    html = queue.get_data(as_text=True)
    assert queue.status_code == 200
    open_ids = [lead["id"] for lead in _leads(store, "open")]
    for lead_id in open_ids:
        assert f"/leads/{lead_id}" in html
    by_lr = client.get("/leads?sort=lr&order=asc").get_data(as_text=True)
    assert "data-queue" in by_lr
    lead = _best(store)
    page = client.get(f"/leads/{lead['id']}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200, error_line(text)
    for part in ("Overlay after registration", "Combined log10 LR", "Record a conclusion",
                 lead["candidate"]["exhibit_id"]):  # fmt: skip
        assert part in text
    token = re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)
    form = {"csrf_token": token, "conclusion": "elimination", "examiner": EXAMINER, "note": ""}
    answer = client.post(f"/leads/{lead['id']}/decision", data=form)
    assert answer.status_code == 303
    others = [i for i in open_ids if i != lead["id"]]
    if others:
        assert re.search(r"/leads/(\d+)$", answer.headers["Location"])
    else:
        assert answer.headers["Location"].endswith("/leads")
    assert [x["id"] for x in _leads(store, "elimination")] == [lead["id"]]
    again = client.get(f"/leads/{lead['id']}").get_data(as_text=True)
    assert "Audit log of this lead" in again and EXAMINER in again and "elimination" in again
    assert len(again) < 200_000  # the page, not a runaway template
    empty = client.post(f"/leads/{lead['id']}/decision", data={**form, "examiner": " "})
    assert empty.status_code == 303  # back to the lead, with the one-line message
    assert _leads(store, "elimination")[0]["examiner"] == EXAMINER  # unchanged


def test_links_page_shows_the_group(client, store):
    lead = _best(store)
    headers = {"X-CSRF-Token": csrf_of(client)}
    body = {"conclusion": "identification", "examiner": EXAMINER}
    assert (
        client.post(f"/api/leads/{lead['id']}/decision", json=body, headers=headers).status_code
        == 200
    )
    html = client.get("/links").get_data(as_text=True)
    for side in ("query", "candidate"):
        assert lead[side]["exhibit_id"] in html
    result = CliRunner().invoke(
        main, ["links", str(client.application.extensions["ribin"].config.store), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert client.get("/api/links").get_json() == json.loads(result.output)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"headless Chromium not at {CHROMIUM}")
def test_review_a_lead_in_the_browser(store, tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    shots = Path(os.environ.get("RIBIN_WEB_SCREENSHOTS") or tmp_path)
    best = _best(store)
    with running_server(store) as url, playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(f"{url}/leads")
        page.wait_for_selector("table.queue")
        _shoot(page, shots / "web-queue.png")
        # the queue is sorted by score: the first row is the best lead; j/k move, Enter opens
        page.keyboard.press("j")
        page.keyboard.press("k")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(rf"/leads/{best['id']}$"), timeout=300_000)
        deadline = time.monotonic() + 240
        while not page.eval_on_selector_all(".stage img", "els => els.every(e => e.complete)"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        widths = page.eval_on_selector_all(".stage img", "els => els.map(e => e.naturalWidth)")
        assert len(widths) >= 2 and all(w > 0 for w in widths)  # both signatures drawn
        _shoot(page, shots / "web-lead.png")
        page.check("input[name=conclusion][value=identification]")
        page.fill("#examiner", EXAMINER)
        page.fill("#note", "breech face and firing pin agree under the microscope")
        page.click("#decide")
        page.wait_for_selector(".flash")
        assert "identification recorded" in page.inner_text(".flash")
        page.goto(f"{url}/links")
        _shoot(page, shots / "web-links.png")
        browser.close()
    listed = _leads(store, "identification")
    assert [(x["id"], x["examiner"]) for x in listed] == [(best["id"], EXAMINER)]


def _shoot(page, path: Path) -> None:
    from PIL import Image

    page.screenshot(path=str(path))
    with Image.open(path) as shot:
        small = shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def test_a_decision_waits_for_another_writer(client, store):
    """The workflow database held by another writer: the decision waits, then lands once."""
    import sqlite3
    import threading

    lead = _best(store)
    headers = {"X-CSRF-Token": csrf_of(client)}
    other = sqlite3.connect(store / "workflow.sqlite", check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # what an ingest's correlation holds while it writes
    release = threading.Timer(2.0, other.rollback)
    release.start()
    start = time.monotonic()
    answer = client.post(
        f"/api/leads/{lead['id']}/decision",
        json={"conclusion": "inconclusive", "examiner": EXAMINER},
        headers=headers,
    )
    waited = time.monotonic() - start
    release.join()
    other.close()
    assert answer.status_code == 200, answer.get_json()
    assert waited >= 1.5
    assert [x["id"] for x in _leads(store, "inconclusive")] == [lead["id"]]
