"""Seeded fuzzing of what crosses a trust boundary: bundles, X3P headers, store manifests.

Every mutated bundle is re-signed with the sender's real pinned key, so the signature check
passes and the manifest and payload parsing are what is exercised. The rule checked on every
case: only :class:`ribin.errors.RibinError` subclasses escape the library (the CLI then
exits 1 with one line), nothing crashes, and the store is left exactly as it was (or, for
a mutation that happens to be harmless, verifies). About 30 s in all; each test prints its
counts. ``RIBIN_FUZZ_SCALE`` (default 1) multiplies the number of cases.
"""

# ruff: noqa: F811 - the fixtures imported from test_sync are parameters by name

from __future__ import annotations

import collections
import copy
import hashlib
import json
import os
import random
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ribin.cli import main
from ribin.errors import RibinError
from ribin.io import read_casing
from ribin.store import SignatureStore
from ribin.sync import PAYLOAD, import_bundle, load_private_key, write_bundle

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_sync import keys, manifest_of, members, network, network_file, new_site  # noqa: F401

SCALE = float(os.environ.get("RIBIN_FUZZ_SCALE", "1"))
PALETTE: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    10**30,
    2**63,
    "",
    "abc",
    "../../etc/passwd",
    "0" * 64,
    [],
    {},
    [[[[[]]]]],
    {"a": {"b": {"c": {}}}},
    "\x00",
]


def n_cases(base: int) -> int:
    return max(1, int(base * SCALE))


def mutate_json(value: Any, rng: random.Random) -> Any:
    """``value`` with one randomly chosen node replaced, deleted or added."""
    value = copy.deepcopy(value)
    paths: list[tuple] = []

    def walk(node: Any, path: tuple) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for key, item in node.items():
                walk(item, (*path, key))
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, (*path, i))

    walk(value, ())
    path = rng.choice(paths[1:] or paths)
    if not path:
        return rng.choice(PALETTE)
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    action = rng.random()
    if action < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
    elif action < 0.25 and isinstance(parent, dict):
        parent[rng.choice(["extra", "files", "cursor", "from", "to"])] = rng.choice(PALETTE)
    else:
        parent[path[-1]] = rng.choice(PALETTE)
    return value


def flip_bytes(data: bytes, rng: random.Random, most: int = 8) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, most)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


@pytest.fixture(scope="module")
def sites(tmp_path_factory, keys, network) -> tuple[Path, Path, dict, bytes]:
    root = tmp_path_factory.mktemp("fuzz")
    bb = new_site(root, "BB")
    jm = new_site(root, "JM")
    bundle = root / "bb.zip"
    with SignatureStore.open(bb, "a") as store:
        from ribin.sync import export_bundle

        export_bundle(store, bundle, keys["BB"], country="BB", scope="cluster:ribin")
    with SignatureStore.open(jm, "a") as store:  # identity known: imports need no --country
        from ribin.sync import _set_identity

        store.commit_note("identity", {}, _set_identity("JM", "JM"))
    manifest = manifest_of(bundle)
    manifest.pop("files")
    return jm, root, manifest, members(bundle)[PAYLOAD]


def try_import(jm: Path, bundle: Path, network, snapshot: Path, outcomes: collections.Counter):
    """Import; refused: the store must be unchanged; accepted: it must verify, then reset."""
    before = (jm / "manifest.json").read_bytes()
    try:
        with SignatureStore.open(jm, "a") as store:
            result = import_bundle(store, bundle, network)
    except RibinError as exc:
        assert "\n" not in str(exc)
        assert (jm / "manifest.json").read_bytes() == before
        outcomes[f"refused: {_kind(str(exc))}"] += 1
        return
    with SignatureStore.open(jm) as store:
        assert store.verify().ok
    outcomes["accepted" + (" (already imported)" if result.already_imported else "")] += 1
    shutil.rmtree(jm)
    shutil.copytree(snapshot, jm)


def _kind(message: str) -> str:
    text = message.split(": ", 1)[-1]
    words = ("SHA-256", "cursor", "unreadable", "payload", "manifest", "files", "exhibit")
    for word in (*words, "format", "scope"):
        if word in text:
            return word
    return text[:30]


def test_fuzz_bundle_payloads(sites, keys, network, tmp_path) -> None:
    """Byte-flipped payloads, re-signed: never a traceback, the store unchanged."""
    jm, _, manifest, payload = sites
    snapshot = tmp_path / "snapshot"
    shutil.copytree(jm, snapshot)
    key = load_private_key(keys["BB"])
    rng = random.Random(22)
    outcomes: collections.Counter = collections.Counter()
    cases = n_cases(60)
    for i in range(cases):
        source = tmp_path / f"p{i}.h5"
        source.write_bytes(flip_bytes(payload, rng))
        bundle = tmp_path / f"b{i}.zip"
        write_bundle(bundle, manifest, key, {PAYLOAD: source})
        try_import(jm, bundle, network, snapshot, outcomes)
        bundle.unlink()
        source.unlink()
    print(f"bundle payloads: {cases} cases, {dict(outcomes)}")
    assert sum(outcomes.values()) == cases


def test_fuzz_bundle_manifests(sites, keys, network, tmp_path) -> None:
    """Structurally mutated manifests, re-signed: never a traceback, the store unchanged."""
    jm, _, manifest, payload = sites
    snapshot = tmp_path / "snapshot"
    shutil.copytree(jm, snapshot)
    key = load_private_key(keys["BB"])
    source = tmp_path / "payload.h5"
    source.write_bytes(payload)
    rng = random.Random(20)
    outcomes: collections.Counter = collections.Counter()
    cases = n_cases(80)
    for i in range(cases):
        changed = manifest
        for _ in range(rng.randint(1, 3)):
            changed = mutate_json(changed, rng)
        bundle = tmp_path / f"m{i}.zip"
        try:
            write_bundle(bundle, changed, key, {PAYLOAD: source})
        except (TypeError, ValueError, AttributeError):  # not JSON-able or not a dict at all
            outcomes["not writable"] += 1
            continue
        try_import(jm, bundle, network, snapshot, outcomes)
        bundle.unlink()
    print(f"bundle manifests: {cases} cases, {dict(outcomes)}")


@pytest.fixture(scope="module")
def x3p_parts(tmp_path_factory) -> dict[str, bytes]:
    """A small X3P (96 x 80 int32 points with a validity bit array) as its members."""
    import numpy as np

    from ribin.io.x3p import X3P, write_x3p

    heights = np.random.default_rng(0).normal(0, 1e-6, (80, 96))
    heights[:5] = np.nan
    path = tmp_path_factory.mktemp("x3p") / "small.x3p"
    write_x3p(path, X3P(heights, 3.125, 3.125), data_type="L")
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist() if not name.endswith("/")}


_NUMBERS = ["1e300", "1e-300", "-1", "0", "nan", "inf", "abc", "", "99999999999", "3", "1.5"]


def test_fuzz_x3p_headers(x3p_parts, tmp_path) -> None:
    """main.xml with mutated numbers and flipped bytes (checksum recomputed half the time)."""
    import re

    rng = random.Random(5436)
    xml = x3p_parts["main.xml"].decode()
    numbers = list(re.finditer(r">([^<>]*)<", xml))
    outcomes: collections.Counter = collections.Counter()
    cases = n_cases(600)
    for i in range(cases):
        text = xml
        for _ in range(rng.randint(1, 3)):
            match = rng.choice(numbers)
            text = text[: match.start(1)] + rng.choice(_NUMBERS) + text[match.end(1) :]
            numbers_here = list(re.finditer(r">([^<>]*)<", text))
            numbers = numbers_here if len(numbers_here) == len(numbers) else numbers
        body = text.encode()
        if rng.random() < 0.3:
            body = flip_bytes(body, rng, 3)
        parts = dict(x3p_parts, **{"main.xml": body})
        if rng.random() < 0.5:
            parts["md5checksum.hex"] = f"{hashlib.md5(body).hexdigest()} *main.xml\n".encode()
        path = tmp_path / f"h{i}.x3p"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in parts.items():
                zf.writestr(name, data)
        try:
            read_casing(path)
            outcomes["read"] += 1
        except RibinError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(path.name)
            outcomes["refused"] += 1
        numbers = list(re.finditer(r">([^<>]*)<", xml))
        path.unlink()
    print(f"x3p headers: {cases} cases, {dict(outcomes)}")
    assert outcomes["refused"] > 0


def test_fuzz_store_manifests(tmp_path) -> None:
    """Mutated and byte-flipped store manifests: store info/verify fail in one line."""
    path = new_site(tmp_path, "JM")
    original = (path / "manifest.json").read_bytes()
    manifest = json.loads(original)
    segments = {p: p.read_bytes() for p in (path / "segments").iterdir()}
    rng = random.Random(1)
    runner = CliRunner()
    outcomes: collections.Counter = collections.Counter()
    cases = n_cases(150)
    for i in range(cases):
        if rng.random() < 0.7:
            text = json.dumps(mutate_json(manifest, rng)).encode()
        else:
            text = flip_bytes(original, rng, 4)
        (path / "manifest.json").write_bytes(text)
        try:
            with SignatureStore.open(path) as store:
                store.info()
                list(store.keys())
                if i % 4 == 0:  # verify re-hashes everything: a quarter of the cases
                    report = store.verify()
                    outcomes["opened, verify " + ("ok" if report.ok else "problems")] += 1
                else:
                    outcomes["opened"] += 1
        except RibinError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
        if i % 10 == 0:  # the CLI too: exit 0 or 1, one line, no traceback
            result = runner.invoke(main, ["store", "info", str(path)])
            assert result.exit_code in (0, 1) and not isinstance(result.exception, Exception), (
                result.output
            )
        for segment, data in segments.items():  # nothing may write through a manifest
            assert segment.read_bytes() == data
    (path / "manifest.json").write_bytes(original)
    with SignatureStore.open(path) as store:
        assert store.verify().ok and len(store) == 4
    print(f"store manifests: {cases} cases, {dict(outcomes)}")
