"""Hostile bundles and crafted stores (issue 22): refused in one line, the store untouched.

Every bundle here is signed by a real pinned key, so the signature check passes and the
manifest and payload parsing are what is exercised.
"""

# ruff: noqa: F811 - the fixtures imported from test_sync are parameters by name

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ribin.cli import main
from ribin.errors import StoreError
from ribin.store import SignatureStore
from ribin.sync import MANIFEST, PAYLOAD, SIGNATURE, load_private_key

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_sync import (  # noqa: F401 - fixtures used by name
    export,
    import_,
    keys,
    manifest_of,
    members,
    network,
    network_file,
    new_site,
    pair,
    payload_file,
    refused,
    resign,
    rezip,
    state,
)


def edited_payload(bundle: Path, target: Path, edit) -> Path:
    """The bundle's payload with ``edit(first_exhibit_group, file)`` applied in place."""
    payload = payload_file(bundle, target)
    with h5py.File(payload, "r+") as f:
        group = f["exhibits"][next(iter(f["exhibits"]))]
        edit(group, f)
    return payload


def signed_raw(path: Path, body: bytes, key: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A bundle whose manifest bytes are exactly ``body``, validly signed by ``key``."""
    signature = load_private_key(key).sign(body)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(MANIFEST, body)
        zf.writestr(SIGNATURE, signature)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


# ----------------------------------------------------------------------------- finding 1


def _soft_link(group, f):
    del group["breech_face"]
    group["breech_face"] = h5py.SoftLink("/nowhere")


def _soft_link_inside(group, f):
    data = group["breech_face"][()]
    f.create_dataset("elsewhere", data=data)
    del group["breech_face"]
    group["breech_face"] = h5py.SoftLink("/elsewhere")


def _external_link(group, f):
    del group["breech_face"]
    group["breech_face"] = h5py.ExternalLink("/etc/hostname", "/x")


def _external_storage(group, f):
    shape = group["breech_face"].shape
    attrs = dict(group["breech_face"].attrs)
    del group["breech_face"]
    data = group.create_dataset(
        "breech_face", shape=shape, dtype="<f4", external=[("/dev/zero", 0, h5py.h5f.UNLIMITED)]
    )
    for key, value in attrs.items():
        data.attrs[key] = value


def _virtual(group, f):
    shape = group["breech_face"].shape
    f.create_dataset("real", data=group["breech_face"][()])
    layout = h5py.VirtualLayout(shape=shape, dtype="<f4")
    layout[:] = h5py.VirtualSource(f["real"])
    del group["breech_face"]
    group.create_virtual_dataset("breech_face", layout)


def _extra_top_group(group, f):
    f.create_group("smuggled")


def _extra_attribute(group, f):
    group.attrs["smuggled"] = "x"


def _extra_signature_attribute(group, f):
    group["breech_face"].attrs["smuggled"] = 1


def _detection_dataset(group, f):
    if "detection" in group:
        del group["detection"]
    group.create_dataset("detection", data=np.arange(10))


def _bomb_surface(group, f):
    attrs = dict(group["breech_face"].attrs)
    del group["breech_face"]
    data = group.create_dataset(
        "breech_face", shape=(20000, 20000), dtype="<f4", chunks=(256, 256), compression="gzip"
    )
    for key, value in attrs.items():
        data.attrs[key] = value


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_soft_link, "SoftLink"),
        (_soft_link_inside, "SoftLink|top level holds elsewhere"),
        (_external_link, "ExternalLink"),
        (_external_storage, "external raw storage"),
        (_virtual, "virtual|top level holds real"),
        (_extra_top_group, "top level holds smuggled"),
        (_extra_attribute, "attribute.*smuggled"),
        (_extra_signature_attribute, "attribute.*smuggled"),
        (_detection_dataset, "detection: is not a group"),
        (_bomb_surface, "20000x20000 is over the limit"),
    ],
)
def test_payload_with_links_or_undefined_parts_is_refused(
    pair, network, keys, tmp_path, edit, match
) -> None:
    _, jm, bundle = pair
    payload = edited_payload(bundle, tmp_path / "p.h5", edit)
    forged = resign(bundle, tmp_path / "forged.zip", keys["BB"], payload)
    refused(jm, forged, network, match)


def test_bomb_surface_is_refused_early(pair, network, keys, tmp_path) -> None:
    """A 20000^2 fill-value surface in a bundle of a few hundred kB: no 1.6 GB read."""
    _, jm, bundle = pair
    payload = edited_payload(bundle, tmp_path / "p.h5", _bomb_surface)
    forged = resign(bundle, tmp_path / "bomb.zip", keys["BB"], payload)
    assert forged.stat().st_size < 1 << 20
    code = (
        "import resource, sys, time\n"
        "from ribin.network import load_network\n"
        "from ribin.store import SignatureStore\n"
        "from ribin.sync import BundleError, import_bundle\n"
        "t = time.perf_counter()\n"
        f"store = SignatureStore.open({str(jm)!r}, 'a')\n"
        "try:\n"
        f"    import_bundle(store, {str(forged)!r}, load_network({str(network.source)!r}),"
        " country='JM')\n"
        "except BundleError as exc:\n"
        "    print('refused', exc)\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "for line in open('/proc/self/status'):  # own high-water mark, not the parent's\n"
        "    if line.startswith('VmHWM:'):\n"
        "        peak = int(line.split()[1]) / 1024\n"
        "print(f'peak {peak:.0f} MB in {time.perf_counter() - t:.1f} s')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "refused" in out.stdout and "over the limit" in out.stdout
    peak = float(out.stdout.split("peak ")[1].split()[0])
    print(out.stdout.strip().splitlines()[-1])
    assert peak < 1000  # the surface alone would be 1600 MB


def _store_with_segment_edit(root: Path, edit) -> Path:
    """A store whose (only) segment was changed after the commit, as an attacker with
    write access to the disk (or an older RIBIN that imported a hostile bundle) left it."""
    path = new_site(root, "JM")
    segment = next((path / "segments").glob("seg-*.h5"))
    with h5py.File(segment, "r+") as f:
        group = f["exhibits"][next(iter(f["exhibits"]))]
        edit(group, f)
    return path


@pytest.mark.parametrize("edit", [_soft_link, _external_link, _external_storage])
def test_stored_exhibit_with_a_link_gives_one_line_errors(tmp_path, edit) -> None:
    path = _store_with_segment_edit(tmp_path, edit)
    with SignatureStore.open(path) as store:
        report = store.verify()  # reports, does not die
        assert not report.ok
        assert any("Link" in p or "external" in p for p in report.problems), report.problems
        with pytest.raises(StoreError) as info:
            list(store.iter())
        assert "\n" not in str(info.value) and "exhibits/" in str(info.value)
    result = CliRunner().invoke(main, ["store", "verify", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output


# ----------------------------------------------------------------------------- issue 20


def test_tampered_bundle_already_imported_is_refused_not_a_no_op(pair, network, tmp_path) -> None:
    _, jm, bundle = pair
    assert not import_(jm, bundle, network).already_imported
    assert import_(jm, bundle, network).already_imported  # the genuine one: a no-op
    contents = members(bundle)
    payload = bytearray(contents[PAYLOAD])
    payload[len(payload) // 3] ^= 0x10
    contents[PAYLOAD] = bytes(payload)
    tampered = rezip(tmp_path / "tampered.zip", contents)
    before = state(jm)
    result = CliRunner().invoke(
        main, ["sync", "import", str(jm), str(tampered), "--network", str(network.source)]
    )
    assert result.exit_code == 1, result.output
    assert "SHA-256 or size does not match" in result.output
    assert "already imported" not in result.output
    assert state(jm) == before


# ----------------------------------------------------------------------------- finding 5


@pytest.mark.parametrize(
    "cursor",
    [
        {"from": 0, "to": 10**30},
        {"from": False, "to": True},
        {"from": 0, "to": 1.5},
        {"from": -1, "to": 3},
        {"from": 5, "to": 3},
        {"from": "0", "to": "9"},
        {"from": 0, "to": 10**8 + 1},
    ],
)
def test_bad_cursor_is_refused_and_does_not_poison(pair, network, keys, tmp_path, cursor) -> None:
    _, jm, bundle = pair
    payload = payload_file(bundle, tmp_path / "p.h5")
    forged = resign(bundle, tmp_path / "c.zip", keys["BB"], payload, cursor=cursor)
    refused(jm, forged, network, "cursor range")
    assert import_(jm, bundle, network).added == 3  # the genuine bundle still goes in


def test_payload_written_at_another_cursor_is_refused(pair, network, keys, tmp_path) -> None:
    _, jm, bundle = pair
    to = manifest_of(bundle)["cursor"]["to"]
    payload = payload_file(bundle, tmp_path / "p.h5")
    forged = resign(bundle, tmp_path / "c.zip", keys["BB"], payload, cursor={"from": 0, "to": 99})
    assert to != 99
    refused(jm, forged, network, "written at cursor")


# ----------------------------------------------------------------------------- finding 4


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"files": "payload/exhibits.h5"}, "wrong type"),
        ({"files": {PAYLOAD: "abc"}}, "needs a sha256"),
        ({"sender": "BB"}, "wrong type"),
        ({"exhibits": {"a": 1}}, "wrong type"),
        ({"removals": [{"content_id": 7}]}, "bad removal entry"),
        ({"exhibits": [{"content_id": 7}]}, "bad exhibit entry"),
        ({"format_version": True}, "format_version"),
    ],
)
def test_malformed_signed_manifest_is_one_line(pair, network, keys, tmp_path, change, match):
    _, jm, bundle = pair
    manifest = manifest_of(bundle)
    manifest.update(change)
    body = json.dumps(manifest).encode()
    payload = members(bundle)[PAYLOAD]
    forged = signed_raw(tmp_path / "m.zip", body, keys["BB"], {PAYLOAD: payload})
    refused(jm, forged, network, match)


def test_deeply_nested_signed_manifest(pair, network, keys, tmp_path) -> None:
    _, jm, _ = pair
    body = b"[" * 200_000 + b"]" * 200_000
    refused(jm, signed_raw(tmp_path / "deep.zip", body, keys["BB"]), network, "nested too deeply")


# ----------------------------------------------------------------------------- crafted stores


def _edit_manifest(path: Path, edit) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    text = json.dumps(manifest).replace('"DEEP"', "[" * 5000 + "]" * 5000)
    (path / "manifest.json").write_text(text)


def _one_line_cli_error(path: Path, *command: str, timeout: float = 60) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "ribin", *command, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert out.returncode == 1, (out.returncode, lines)
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def _deep(manifest):
    manifest["audit"][0]["deep"] = "DEEP"


def _int_content_id(manifest):
    manifest["tombstones"].append({"segment": manifest["segments"][0]["name"], "content_id": 12345})


def _audit_not_list(manifest):
    manifest["audit"] = "nothing"


def _bad_received(manifest):
    manifest["sync"] = {"received": {"BB/BB": {"from": 0, "to": "abc"}}}


def _bool_sequence(manifest):
    manifest["sequence"] = True


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_deep, "nested deeper|not valid JSON"),
        (_int_content_id, "bad tombstone entry"),
        (_audit_not_list, "'audit' is not a list"),
        (_bad_received, "bad cursor range"),
        (_bool_sequence, "bad 'sequence'"),
    ],
)
def test_crafted_manifest_is_one_line(tmp_path, edit, match) -> None:
    path = new_site(tmp_path, "JM")
    _edit_manifest(path, edit)
    for command in (("store", "info"), ("store", "verify")):
        line = _one_line_cli_error(path, *command)
        assert __import__("re").search(match, line), line


def test_manifest_that_is_a_device_or_a_fifo(tmp_path) -> None:
    path = new_site(tmp_path, "JM")
    manifest = path / "manifest.json"
    manifest.unlink()
    manifest.symlink_to("/dev/zero")
    assert "not a regular file" in _one_line_cli_error(path, "store", "info", timeout=30)
    manifest.unlink()
    os.mkfifo(manifest)
    assert "not a regular file" in _one_line_cli_error(path, "store", "info", timeout=30)


def test_wrong_prefilter_width(tmp_path) -> None:
    def widen(group, f):
        features = f["prefilter/features"][()]
        del f["prefilter/features"]
        f["prefilter"].create_dataset("features", data=np.hstack([features, features[:, :1]]))

    path = _store_with_segment_edit(tmp_path, widen)
    with SignatureStore.open(path) as store:
        with pytest.raises(StoreError, match="prefilter/features: shape"):
            store.features()
        assert any("prefilter/features: shape" in p for p in store.verify().problems)


def test_segment_linked_to_another_stores_segment(tmp_path) -> None:
    ours = new_site(tmp_path / "a", "JM")
    theirs = new_site(tmp_path / "b", "JM", tag="x")
    mine = next((ours / "segments").glob("seg-*.h5"))
    other = next((theirs / "segments").glob("seg-*.h5"))
    mine.unlink()
    mine.symlink_to(other)
    with SignatureStore.open(ours) as store:
        with pytest.raises(StoreError, match="not a regular file"):
            store.keys()
        assert any("not a regular file" in p for p in store.verify().problems)
    assert "not a regular file" in _one_line_cli_error(ours, "store", "info")
