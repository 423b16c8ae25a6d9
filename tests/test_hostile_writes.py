"""Writes that fail (file too large, disk full): one line, the store intact, no crash.

Each write runs in a child process with ``RLIMIT_FSIZE`` lowered (as ``ulimit -f`` does)
and SIGXFSZ ignored, so a write past the limit fails with EFBIG exactly as a full disk
fails with ENOSPC. Before the fix the ingest segfaulted (exit 139) after ~180 lines of
h5py "Exception ignored"; the import and the manifest write printed tracebacks.
"""

# ruff: noqa: F811 - the fixtures imported from test_sync are parameters by name

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ribin.store import SignatureStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_sync import export, keys, network, network_file, new_site  # noqa: F401
from test_sync import state as manifest_bytes

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")

_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
from ribin.cli import main
import ribin.store, ribin.sync  # imported before the limit: nothing to write afterwards
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = ["ribin", *sys.argv[2:]]
main()
"""


_LIMIT_AT_SEGMENT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from ribin.cli import main
from ribin.store import SignatureStore
write_segment = SignatureStore._write_segment
def limited(self, *args, **kwargs):
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))
    return write_segment(self, *args, **kwargs)
SignatureStore._write_segment = limited
sys.argv = ["ribin", *sys.argv[1:]]
main()
"""


def run_limited(limit: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _LIMITED, str(limit), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_failure(out: subprocess.CompletedProcess, match: str) -> None:
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines[:20]
    assert match in lines[0], lines[0]
    assert "Exception ignored" not in out.stderr


def assert_intact(path: Path, before: bytes, exhibits: int) -> None:
    assert manifest_bytes(path) == before
    assert not [p.name for p in (path / "segments").iterdir() if p.name.startswith(".tmp")]
    assert not list(path.glob(".manifest-*"))
    with SignatureStore.open(path) as store:
        assert store.verify().ok
        assert len(store) == exhibits


@pytest.mark.parametrize("limit", [2048, 40_000, 90_000])
def test_ingest_past_the_file_size_limit(tmp_path, synthetic_dir, limit) -> None:
    path = tmp_path / "store"
    first = str(synthetic_dir / "F01-1.x3p")
    out = run_limited(1 << 30, "ingest", str(path), first, "--country", "JM")
    assert out.returncode == 0, out.stderr
    before = manifest_bytes(path)
    out = run_limited(
        limit, "ingest", str(path), str(synthetic_dir / "F01-2.x3p"), "--country", "JM"
    )
    assert_one_line_failure(out, "cannot write the segment (File too large)")
    assert_intact(path, before, 1)


def test_manifest_write_past_the_limit(tmp_path) -> None:
    path = new_site(tmp_path, "JM")
    before = manifest_bytes(path)
    code = f"""
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from ribin.store import SignatureStore
from ribin.errors import StoreError
store = SignatureStore.open({str(path)!r}, "a")
resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))
try:
    store.remove("JM-0", "test")
except StoreError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "manifest.json: cannot write the new manifest (File too large)" in out.stdout
    assert "Exception ignored" not in out.stderr
    assert_intact(path, before, 4)


def test_import_past_the_limit(tmp_path, keys, network) -> None:
    bb = new_site(tmp_path, "BB")
    jm = new_site(tmp_path, "JM")
    bundle = tmp_path / "bb.zip"
    export(bb, bundle, keys["BB"])
    before = manifest_bytes(jm)
    args = ["sync", "import", str(jm), str(bundle), "--network", str(network.source)]
    args += ["--country", "JM"]
    out = run_limited(2048, *args)  # the payload cannot even be unpacked
    assert_one_line_failure(out, "cannot unpack payload/exhibits.h5 (File too large)")
    assert_intact(jm, before, 4)
    # unpacked and checked, then the store's new segment hits the limit (a full store disk)
    out = subprocess.run(
        [sys.executable, "-c", _LIMIT_AT_SEGMENT, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_failure(out, "cannot write the segment (File too large)")
    assert_intact(jm, before, 4)
    out = run_limited(1 << 30, *args)  # with room again, the same bundle goes in
    assert out.returncode == 0, out.stderr
    with SignatureStore.open(jm) as store:
        assert len(store) == 6
    assert json.loads(manifest_bytes(jm))["sequence"] > json.loads(before)["sequence"]
