"""Comparison and search reports: self-contained, valid HTML; figures; safe writes."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ribin import report
from ribin.calibration import Calibration, fit_calibration
from ribin.cli import main
from ribin.errors import InputError

FILES = ["F01-1.x3p", "F01-2.x3p", "F04-1.x3p"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class StrictChecker(HTMLParser):
    """Balanced tags, unique ids, links only to anchors inside, images only data: URIs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.ids: list[str] = []
        self.links: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        self._check(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self._check(tag, attrs)

    def handle_endtag(self, tag):
        if tag in VOID:
            self.problems.append(f"end tag of void element </{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def _check(self, tag, attrs):
        if tag in ("script", "iframe", "object", "embed", "link", "base"):
            self.problems.append(f"<{tag}> in a self-contained report")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"event handler {name} on <{tag}>")
            if name == "id":
                self.ids.append(value)
            if name == "href":
                self.links.append(value)
                if not value.startswith("#"):
                    self.problems.append(f"link out of the file: {value[:60]}")
            if name == "src":
                self.images.append(value)
                if not value.startswith("data:image/png;base64,"):
                    self.problems.append(f"<{tag}> source is not a data: URI: {value[:60]}")


def check_self_contained(document: str) -> StrictChecker:
    """Parse ``document`` strictly; fail on anything that reaches outside the file."""
    assert document.startswith("<!DOCTYPE html>")
    lowered = document.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert "url(" not in lowered and "@import" not in lowered  # nothing fetched by CSS
    checker = StrictChecker()
    checker.feed(document)
    checker.close()
    assert checker.problems == []
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    assert len(checker.ids) == len(set(checker.ids)), "duplicate ids"
    missing = {link[1:] for link in checker.links} - set(checker.ids)
    assert not missing, f"links to missing anchors: {missing}"
    assert checker.images, "no figure embedded"
    for src in checker.images:
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG_MAGIC)
    return checker


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory, synthetic_dir, runner):
    path = tmp_path_factory.mktemp("report") / "store"
    files = [str(synthetic_dir / name) for name in FILES]
    result = runner.invoke(main, ["ingest", str(path), *files, "--country", "BB"])
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def compare_outputs(tmp_path_factory, store, runner):
    """``ribin compare --json --report --png`` of a known match, run once."""
    out = tmp_path_factory.mktemp("compare-report")
    argv = ["compare", "F01-1", "F01-2", "--store", str(store), "--json"]
    result = runner.invoke(
        main, [*argv, "--report", str(out / "match.html"), "--png", str(out / "figs")]
    )
    assert result.exit_code == 0, result.output
    # where it wrote goes to stderr; stdout stays the JSON document alone
    assert f"report written to {out / 'match.html'}" in result.stderr
    return out, result.stdout


def test_compare_report_is_self_contained_and_valid(compare_outputs):
    out, _ = compare_outputs
    document = (out / "match.html").read_text("utf-8")
    checker = check_self_contained(document)
    # four figures per region, both regions of the synthetic casings
    assert len(checker.images) == 8
    for needed in ("summary", "exhibits", "breech_face", "firing_pin", "provenance"):
        assert needed in checker.ids
    assert "F01-1" in document and "F01-2" in document
    assert "log10 LR" in document and "SHA-256" in document
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_compare_png_writes_the_figures(compare_outputs):
    out, _ = compare_outputs
    names = sorted(p.name for p in (out / "figs").iterdir())
    assert names == sorted(
        f"{region}-{kind}.png"
        for region in ("breech_face", "firing_pin")
        for kind in ("signatures", "registered", "cells", "score")
    )
    for name in names:
        assert (out / "figs" / name).read_bytes().startswith(PNG_MAGIC)


def test_compare_output_unchanged_by_report(compare_outputs, store, runner):
    _, with_report = compare_outputs
    plain = runner.invoke(main, ["compare", "F01-1", "F01-2", "--store", str(store), "--json"])
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.output) == json.loads(with_report)


def test_search_report_links_ranked_list_to_comparisons(store, runner, tmp_path):
    path = tmp_path / "search.html"
    argv = ["search", str(store), "F01-1", "--scope", "network", "--json"]
    result = runner.invoke(main, [*argv, "--report", str(path), "--report-top", "1"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert f"report written to {path}" in result.stderr
    assert document["candidates"][0]["exhibit_id"] == "F01-2"
    checker = check_self_contained(path.read_text("utf-8"))
    assert "rank1-summary" in checker.ids and "#rank1-summary" in checker.links
    assert "rank2-summary" not in checker.ids  # only the first candidate compared in full
    # thumbnails of the query and of every listed candidate, plus one comparison's figures
    n_listed = len(document["candidates"])
    assert len(checker.images) == 1 + n_listed + 8


def test_unwritable_report_is_one_line_and_writes_nothing(store, runner, tmp_path):
    missing = tmp_path / "no-such-folder" / "r.html"
    result = runner.invoke(
        main, ["compare", "F01-1", "F04-1", "--store", str(store), "--report", str(missing)]
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "does not exist" in errors[0]
    assert "Traceback" not in result.output
    assert not missing.parent.exists()

    result = runner.invoke(
        main, ["search", str(store), "F01-1", "--scope", "network", "--report", str(tmp_path)]
    )
    assert result.exit_code == 2  # click refuses a folder as --report before any work
    assert "is a directory" in result.output


def test_write_report_never_leaves_half_a_file(tmp_path, monkeypatch):
    path = tmp_path / "r.html"
    path.write_text("old report")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(InputError, match=r"r\.html: cannot write: No space left on device"):
        report.write_report(path, "<!DOCTYPE html><html></html>")
    assert path.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    with pytest.raises(InputError, match="cannot write figures"):
        report.write_figures(tmp_path / "figs", {"a.png": PNG_MAGIC})
    assert list((tmp_path / "figs").iterdir()) == []


def test_score_figure_uses_kept_calibration_scores(compare_outputs, store):
    from ribin.store import SignatureStore

    with SignatureStore.open(store, "r") as opened:
        a, b = opened.get("F01-1").exhibit, opened.get("F04-1").exhibit
    rng = np.random.default_rng(1)
    model = fit_calibration(
        rng.normal(20, 4, 30), rng.normal(2, 1, 200), name="Lab X test fires 2026"
    )
    assert len(model.match_scores) == 30 and len(model.nonmatch_scores) == 200
    pair = report.compare_pair(a, b, {"breech_face/3d": model}, calibration_source="test")
    pair = replace(pair, regions=pair.regions[:1])
    assert pair.regions[0].log_lr is not None and pair.regions[0].log_lr < 0
    figures = report.pair_figures(pair)
    assert figures["breech_face-score.png"].startswith(PNG_MAGIC)
    page = report.compare_html(pair, figures=figures)
    check_self_contained(page)
    # which calibration produced the LR, whose it is, and its validation figures
    assert "Lab X test fires 2026" in page and "the laboratory&#x27;s own" in page
    assert "Cllr" in page and "ELUB" in page
    uncalibrated = report.compare_html(
        replace(pair, regions=(replace(pair.regions[0], calibration=None),)), figures=figures
    )
    assert "uncalibrated" in uncalibrated and "ribin calibrate" in uncalibrated


def test_calibration_keeps_scores_and_reads_older_files():
    model = fit_calibration([10.0, 12.0, 14.0], [1.0, 2.0, 0.5])
    again = Calibration.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again == model and again.match_scores == (10.0, 12.0, 14.0)
    older = {k: v for k, v in model.to_dict().items() if not k.endswith("_scores")}
    assert Calibration.from_dict(older).match_scores == ()


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").is_file():
        found = "/usr/bin/chromium"
    return found


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed")
def test_report_renders_in_headless_chromium(compare_outputs, tmp_path):
    from matplotlib.image import imread

    out, _ = compare_outputs
    shot = tmp_path / "shot.png"
    width, height = 1100, 1800
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        f"--window-size={width},{height}",
        (out / "match.html").as_uri(),
    ]
    completed = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), completed.stderr.decode(errors="replace")[-2000:]
    pixels = imread(shot)
    assert pixels.shape[:2] == (height, width)
    gray = pixels[..., :3].mean(axis=2)
    assert gray.std() > 0.05  # not a blank page
    assert (gray < 0.9).mean() > 0.05  # text, tables and figures drawn
    # the figures (cividis: blue and yellow) are on the page, not only black text
    rgb = pixels[..., :3]
    assert ((rgb[..., 2] - rgb[..., 0]) > 0.15).mean() > 0.001
