"""The documentation's examples run, and the CLI reference matches the commands.

Every ```bash and ```python block of the guides runs, in order, in one scratch folder per
document where ``data/`` is the repository's ``data/`` (so the synthetic casings are at
``data/synthetic_casings/``). A block preceded by ``<!-- doctest: skip (why) -->`` is not
run (installation lines, cron entries, a cluster that needs other machines); a comment
``<!-- doctest: setup ... -->`` holds bash run at that point but not shown to the reader.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from ribin.cli import reference

GUIDES = [
    "README.md",
    "docs/examiner-guide.md",
    "docs/api.md",
    "docs/operations.md",
    "docs/formats.md",
    "docs/synthetic.md",
    "docs/scaling.md",
]

_FENCE = re.compile(r"^```(\w*)\s*$")
_SKIP = re.compile(r"<!--\s*doctest:\s*skip\b.*?-->\s*$")
_SETUP = re.compile(r"<!--\s*doctest:\s*setup\s*\n(.*?)-->", re.S)


def example_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of each runnable block, with hidden setup as ``bash`` blocks."""
    blocks: list[tuple[str, str]] = []
    lines = text.splitlines()
    i = 0
    previous = ""
    while i < len(lines):
        line = lines[i]
        setup = _SETUP.match("\n".join(lines[i:]))
        if setup:
            blocks.append(("bash", setup.group(1)))
            i += setup.group(0).count("\n") + 1
            continue
        fence = _FENCE.match(line)
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            language = fence.group(1)
            if language in ("bash", "python") and not _SKIP.match(previous):
                blocks.append((language, "\n".join(lines[i + 1 : end]) + "\n"))
            i = end + 1
            previous = ""
            continue
        if line.strip():
            previous = line.strip()
        i += 1
    return blocks


_SESSION = (
    "set -euo pipefail; set -a; if [ -f .doctest.env ]; then source .doctest.env; fi; "
    "source .doctest.sh; export -p > .doctest.env"
)


def run_blocks(blocks: list[tuple[str, str]], workdir: Path, name: str) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("NUMBA_NUM_THREADS", "2")
    for n, (language, code) in enumerate(blocks, start=1):
        if language == "python":
            command = [sys.executable, "-c", code]
        else:
            # one shell session for the whole document, as a reader types it: variables
            # set in one block (set -a exports them) are kept for the next
            (workdir / ".doctest.sh").write_text(code, encoding="utf-8")
            command = ["bash", "-c", _SESSION]
        done = subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, (
            f"{name}, example {n} ({language}) failed with {done.returncode}:\n{code}\n"
            f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        )


def test_example_blocks_parser():
    text = (
        "intro\n```bash\necho one\n```\n<!-- doctest: skip (needs a cluster) -->\n"
        "```bash\nexit 1\n```\n```text\nnot code\n```\n<!-- doctest: setup\ntouch x\n-->\n"
        "```python\nprint(2)\n```\n"
    )
    assert example_blocks(text) == [
        ("bash", "echo one\n"),
        ("bash", "touch x\n"),
        ("python", "print(2)\n"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("guide", GUIDES)
def test_guide_examples_run(guide, tmp_path):
    path = REPO / guide
    if not path.is_file():
        pytest.fail(f"{guide} is missing")
    blocks = example_blocks(path.read_text(encoding="utf-8"))
    (tmp_path / "data").symlink_to(REPO / "data", target_is_directory=True)
    run_blocks(blocks, tmp_path, guide)


def test_cli_reference_is_current():
    current = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == reference.render(), (
        "docs/cli.md is out of date: python -m ribin.cli.reference > docs/cli.md"
    )


def test_validation_tables_render_from_recorded_figures(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import make_docs

    table = {
        "name": "compare_accuracy",
        "title": "Accuracy",
        "columns": ["set", "AUC"],
        "rows": [["fadul", 1.0], ["synthetic", 0.99491]],
        "notes": "Every pair.",
        "command": "bench_compare_accuracy.py",
        "measured_at": "2026-11-23T18:00:00+00:00",
        "ribin_version": "0.1.0",
        "machine": "test machine",
    }
    (tmp_path / "compare_accuracy.json").write_text(json.dumps(table))
    (tmp_path / "other.json").write_text(json.dumps({**table, "name": "other", "title": "Other"}))
    tables = make_docs.load(tmp_path)
    page = make_docs.render(tables)
    assert "| synthetic | 0.995 |" in page and "test machine" in page
    assert page.index("## Accuracy") < page.index("## Other")
    method = tmp_path / "method.md"
    method.write_text(f"intro\n{make_docs.BEGIN}\nstale\n{make_docs.END}\noutro\n")
    assert make_docs.update_method(method, tables)
    text = method.read_text()
    assert "stale" not in text and "### Accuracy" in text and "### Other" not in text
    assert text.startswith("intro\n") and text.endswith("outro\n")
