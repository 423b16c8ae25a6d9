"""Sync bundles: round trips between sites, and every attack we could think of refused."""

from __future__ import annotations

import itertools
import json
import os
import signal
import stat
import sys
import zipfile
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ribin import prefilter
from ribin.cli import main
from ribin.errors import InputError, StoreError
from ribin.network import load_network
from ribin.store import AmbiguousExhibitError, ExhibitNotFoundError, Scope, SignatureStore
from ribin.store import writing as store_writing
from ribin.store_format import SegmentWriter
from ribin.sync import (
    PAYLOAD,
    BundleError,
    BundleLimits,
    export_bundle,
    generate_key,
    import_bundle,
    load_private_key,
    write_bundle,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_store import make_exhibit

COUNTRIES = ("BB", "BZ", "JM")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """A private key file per country (plus a stranger's key no network file pins)."""
    root = tmp_path_factory.mktemp("keys")
    out = {}
    for name in (*COUNTRIES, "XX"):
        out[name] = root / f"{name}.pem"
        generate_key(out[name])
    return out


@pytest.fixture(scope="module")
def network_file(keys, tmp_path_factory) -> Path:
    lines = []
    for code in COUNTRIES:
        public = load_private_key(keys[code]).public_key()
        from ribin.sync import public_key_b64

        lines += [f"[countries.{code}]", f'public_key = "{public_key_b64(public)}"', ""]
    lines += ["[countries.TT]", 'name = "Trinidad and Tobago"', ""]
    lines += ["[clusters.ribin]", 'members = ["BB", "BZ", "JM"]', ""]
    path = tmp_path_factory.mktemp("net") / "network.toml"
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="module")
def network(network_file):
    return load_network(network_file)


def own_exhibits(country: str, tag: str = "") -> list:
    """Four exhibits of ``country``: shared network (2), cluster (1) and local (1)."""
    out = []
    for i, sharing in enumerate(("network", "network", "cluster", "local")):
        out.append(
            (
                make_exhibit(f"{country}{tag}-{i}", size=16, detection=False),
                {"country": country, "sharing": sharing, "role": "questioned"},
            )
        )
    return out


def new_site(root: Path, country: str, tag: str = "") -> Path:
    path = root / f"{country}.ribin"
    with SignatureStore.open(path, "x") as store:
        store.add_many(own_exhibits(country, tag))
    return path


def export(path: Path, bundle: Path, key: Path, **kwargs):
    with SignatureStore.open(path, "a") as store:
        return export_bundle(store, bundle, key, country=path.stem, **kwargs)


def import_(path: Path, bundle: Path, network, **kwargs):
    with SignatureStore.open(path, "a") as store:
        return import_bundle(store, bundle, network, country=path.stem, **kwargs)


def state(path: Path) -> bytes:
    return (path / "manifest.json").read_bytes()


def visible(path: Path, network, searcher: str) -> set[tuple[str, str, str]]:
    with SignatureStore.open(path) as store:
        scope = Scope.from_network(network, "network", searcher)
        return {(e.metadata.country, e.exhibit_id, e.content_id) for e in store.iter(scope)}


@pytest.fixture
def pair(tmp_path, keys, network) -> tuple[Path, Path, Path]:
    """A BB store with a cluster bundle exported, and an empty JM store."""
    bb = new_site(tmp_path, "BB")
    jm = tmp_path / "JM.ribin"
    with SignatureStore.open(jm, "x") as store:
        store.add_many(own_exhibits("JM"))
    bundle = tmp_path / "bb-1.zip"
    export(bb, bundle, keys["BB"], scope="cluster:ribin", network=network)
    return bb, jm, bundle


def members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rezip(path: Path, contents: dict[str, bytes] | list[tuple[str, bytes]]) -> Path:
    items = contents.items() if isinstance(contents, dict) else contents
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in items:
            zf.writestr(name, data)
    return path


def payload_file(bundle: Path, target: Path) -> Path:
    target.write_bytes(members(bundle)[PAYLOAD])
    return target


def manifest_of(bundle: Path) -> dict:
    return json.loads(members(bundle)["manifest.json"])


def resign(bundle: Path, out: Path, key: Path, payload: Path | None, **changes) -> Path:
    """A bundle with ``changes`` to the manifest, signed (validly) by ``key``."""
    manifest = manifest_of(bundle)
    manifest.pop("files")
    for name, value in changes.items():
        manifest[name] = value
    key_obj = key if isinstance(key, Ed25519PrivateKey) else load_private_key(key)
    write_bundle(out, manifest, key_obj, {PAYLOAD: payload} if payload else {})
    return out


# ----------------------------------------------------------------------------- keys


def test_keys_are_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "site.pem"
    public = generate_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert len(__import__("base64").b64decode(public)) == 32
    with pytest.raises(InputError, match="refusing to overwrite"):
        generate_key(path)
    load_private_key(path)
    path.chmod(0o644)
    with pytest.raises(InputError, match=r"accessible to other users \(mode 0644\)"):
        load_private_key(path)
    runner = CliRunner()
    result = runner.invoke(main, ["keys", "generate", str(tmp_path / "cli.pem")])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert len(__import__("base64").b64decode(last)) == 32
    again = runner.invoke(main, ["keys", "generate", str(tmp_path / "cli.pem")])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output


# ----------------------------------------------------------------------------- round trip


def test_export_then_import_merges_and_repeats_are_noops(pair, network) -> None:
    bb, jm, bundle = pair
    result = import_(jm, bundle, network)
    assert (result.added, result.removed, result.already_imported) == (3, 0, False)
    with SignatureStore.open(jm) as store:
        assert store.verify().ok
        assert sorted(k for k in store.keys() if k[0] == "BB") == [
            ("BB", "BB-0"),
            ("BB", "BB-1"),
            ("BB", "BB-2"),
        ]  # BB-3 is local: it never left Barbados
        stored = store.get("BB/BB-2")
        assert stored.metadata.sharing == "cluster"
        origin = store.segment_origin(stored.segment)
        assert origin["country"] == "BB" and origin["bundle_sha256"] == result.bundle_sha256
        received = store.sync_state()["received"]["BB/BB"]
        assert received["to"] == result.cursor and received["from"] == 0
        assert store.audit_log()[-1]["action"] == "import"
        assert store.audit_log()[-1]["added"] == 3
    with SignatureStore.open(bb) as store:
        last = store.audit_log()[-1]
        assert last["action"] == "export" and last["exhibits"] == 3
        assert last["bundle_sha256"] == result.bundle_sha256
    before = state(jm)
    again = import_(jm, bundle, network)
    assert again.already_imported and again.added == 0
    assert state(jm) == before  # importing the same bundle twice changes nothing


def test_imported_exhibits_are_never_re_exported(pair, network, keys, tmp_path) -> None:
    _bb, jm, bundle = pair
    import_(jm, bundle, network)
    out = tmp_path / "jm.zip"
    result = export(jm, out, keys["JM"], scope="cluster")
    listed = {e["exhibit_id"] for e in manifest_of(out)["exhibits"]}
    assert listed == {"JM-0", "JM-1", "JM-2"} and result.exhibits == 3
    network_only = export(jm, tmp_path / "jm-net.zip", keys["JM"])
    assert network_only.exhibits == 2  # the cluster one stays in the cluster


def test_exhibit_ids_are_unique_per_country(tmp_path, keys, network) -> None:
    bb = tmp_path / "BB.ribin"
    jm = tmp_path / "JM.ribin"
    for path, code in ((bb, "BB"), (jm, "JM")):
        with SignatureStore.open(path, "x") as store:  # same name, same surfaces
            store.add(make_exhibit("Q-001", size=16), {"country": code})
    export(bb, tmp_path / "b.zip", keys["BB"])
    assert import_(jm, tmp_path / "b.zip", network).added == 1
    with SignatureStore.open(jm, "a") as store:
        assert len(store) == 2 and "Q-001" in store and "BB/Q-001" in store
        with pytest.raises(AmbiguousExhibitError, match=r"held by 2 countries \(BB, JM\)"):
            store.get("Q-001")
        assert store.get("JM/Q-001").metadata.country == "JM"
        assert store.get("Q-001", country="BB").metadata.country == "BB"
        with pytest.raises(ExhibitNotFoundError):
            store.get("BZ/Q-001")
        store.remove("Q-001", "wrong casing", country="JM")
        assert store.get("Q-001").metadata.country == "BB"  # unambiguous again
        assert store.verify().ok


def test_removals_propagate_and_an_old_bundle_cannot_resurrect(pair, network, keys, tmp_path):
    bb, jm, first = pair
    import_(jm, first, network)
    with SignatureStore.open(bb, "a") as store:
        store.remove("BB-0", "misattributed")
        store.remove("BB-3", "local one: its removal stays home")
    cursor = manifest_of(first)["cursor"]["to"]
    second = tmp_path / "bb-2.zip"
    result = export(bb, second, keys["BB"], since=cursor, scope="cluster:ribin")
    assert (result.exhibits, result.removals) == (0, 1)
    assert import_(jm, second, network).removed == 1
    with SignatureStore.open(jm) as store:
        assert "BB/BB-0" not in store and "BB/BB-1" in store
    before = state(jm)
    with pytest.raises(BundleError, match=r"replay: covers cursor 0\.\.\d+ but BB/BB is already"):
        import_(jm, resign(first, tmp_path / "old.zip", keys["BB"], None, exhibits=[]), network)
    # the real old bundle was imported before: a no-op, X stays removed
    assert import_(jm, first, network).already_imported
    assert state(jm) == before
    with SignatureStore.open(jm) as store:
        assert "BB/BB-0" not in store
    # the next bundle carries on from the cursor
    with SignatureStore.open(bb, "a") as store:
        store.add(make_exhibit("BB-9", size=16), {"country": "BB"})
    later = export(bb, tmp_path / "bb-3.zip", keys["BB"], since=result.cursor)
    assert later.exhibits == 1
    assert import_(jm, tmp_path / "bb-3.zip", network).added == 1
    with SignatureStore.open(jm) as store:
        assert store.sync_state()["received"]["BB/BB"]["to"] == later.cursor


def test_a_gap_is_refused(pair, network, keys, tmp_path) -> None:
    bb, jm, first = pair
    with SignatureStore.open(bb, "a") as store:
        store.add(make_exhibit("BB-7", size=16), {"country": "BB"})
    cursor = manifest_of(first)["cursor"]["to"]
    export(bb, tmp_path / "bb-2.zip", keys["BB"], since=cursor)
    before = state(jm)
    with pytest.raises(BundleError, match="gap: starts at cursor"):
        import_(jm, tmp_path / "bb-2.zip", network)
    assert state(jm) == before
    import_(jm, first, network)
    assert import_(jm, tmp_path / "bb-2.zip", network).added == 1


# ----------------------------------------------------------------------------- attacks


def refused(jm: Path, bundle: Path, network, match: str, **kwargs) -> None:
    """The bundle is refused with a one-line message naming ``match``; nothing changed."""
    before = state(jm)
    with pytest.raises(BundleError, match=match) as info:
        import_(jm, bundle, network, **kwargs)
    assert "\n" not in str(info.value) and str(info.value).startswith(bundle.name)
    assert state(jm) == before
    with SignatureStore.open(jm) as store:
        assert store.verify().ok
        assert not any(k[0] == "BB" for k in store.keys())


def test_tampered_payload_byte(pair, network, tmp_path) -> None:
    _, jm, bundle = pair
    contents = members(bundle)
    payload = bytearray(contents[PAYLOAD])
    payload[len(payload) // 2] ^= 0x01
    contents[PAYLOAD] = bytes(payload)
    refused(jm, rezip(tmp_path / "t.zip", contents), network, "SHA-256 or size does not match")
    raw = bytearray(bundle.read_bytes())  # a flipped byte in the compressed stream
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "flip.zip").write_bytes(bytes(raw))
    refused(jm, tmp_path / "flip.zip", network, "damaged|does not match|not a zip")


def test_tampered_manifest(pair, network, tmp_path) -> None:
    _, jm, bundle = pair
    contents = members(bundle)
    contents["manifest.json"] = contents["manifest.json"].replace(b'"cluster"', b'"network"', 1)
    refused(
        jm,
        rezip(tmp_path / "t.zip", contents),
        network,
        "signature does not verify against BB/BB's pinned key",
    )


def test_signature_by_an_unknown_key(pair, network, keys, tmp_path) -> None:
    _, jm, bundle = pair
    payload = payload_file(bundle, tmp_path / "p.h5")
    forged = resign(bundle, tmp_path / "f.zip", keys["XX"], payload)
    refused(jm, forged, network, "signature does not verify against BB/BB's pinned key")


def test_signature_by_another_sites_key(tmp_path, network, keys) -> None:
    bb = new_site(tmp_path, "BB")
    bz = tmp_path / "BZ.ribin"
    SignatureStore.open(bz, "x").close()
    bundle = tmp_path / "b.zip"
    export(bb, bundle, keys["BB"])
    payload = payload_file(bundle, tmp_path / "p.h5")
    forged = resign(bundle, tmp_path / "f.zip", keys["JM"], payload)  # JM signs, claims BB
    refused(bz, forged, network, "says it comes from BB/BB but is signed by the key of JM/JM")


def test_bundle_claiming_another_countrys_exhibits(pair, network, keys, tmp_path) -> None:
    _, _jm, bundle = pair
    bz = tmp_path / "BZ.ribin"
    SignatureStore.open(bz, "x").close()
    payload = payload_file(bundle, tmp_path / "p.h5")  # BB's exhibits, honestly JM-signed
    sender = {"country": "JM", "site": "JM", "store_id": "", "public_key": ""}
    forged = resign(bundle, tmp_path / "f.zip", keys["JM"], payload, sender=sender)
    refused(bz, forged, network, "belongs to BB, not to the sender's country JM")


def test_removal_of_another_countrys_exhibit(pair, network, keys, tmp_path) -> None:
    _, jm, bundle = pair
    with SignatureStore.open(jm) as store:
        victim = store.get("JM-0")
    removal = {"content_id": victim.content_id, "exhibit_id": "JM-0", "country": "JM"}
    forged = resign(bundle, tmp_path / "f.zip", keys["BB"], None, exhibits=[], removals=[removal])
    refused(jm, forged, network, "BB may only remove its own exhibits")
    removal["country"] = "BB"  # lying about the owner does not help: JM-0 is JM's
    forged = resign(bundle, tmp_path / "g.zip", keys["BB"], None, exhibits=[], removals=[removal])
    before = state(jm)
    import_(jm, forged, network)  # no BB exhibit has that content: nothing to remove
    with SignatureStore.open(jm) as store:
        assert "JM/JM-0" in store
    assert state(jm) != before  # (the cursor advanced; JM-0 untouched)


def test_local_exhibit_or_cluster_bundle_outside_the_cluster(pair, network, keys, tmp_path):
    bb, jm, bundle = pair
    local = tmp_path / "local.h5"
    writer = SegmentWriter(
        local,
        sequence=1,
        created_by="t",
        feature_version=prefilter.FEATURE_VERSION,
        feature_length=prefilter.FEATURE_LENGTH,
    )
    with SignatureStore.open(bb) as store:
        rows = store.copy_local(writer, "BB", 0, ["local"])
    writer.finish()
    keep = ("content_id", "exhibit_id", "country", "sharing")
    listing = [{key: row[key] for key in keep} for row in rows]
    assert [row["sharing"] for row in listing] == ["local"]
    forged = resign(bundle, tmp_path / "f.zip", keys["BB"], local, exhibits=listing)
    refused(jm, forged, network, "is shared 'local': it may not reach JM")
    tt = tmp_path / "TT.ribin"
    SignatureStore.open(tt, "x").close()
    refused(tt, bundle, network, "does not hold both BB and TT")


def test_replayed_bundle_after_a_newer_one(pair, network, keys, tmp_path) -> None:
    bb, jm, first = pair
    cursor = manifest_of(first)["cursor"]["to"]
    second = tmp_path / "bb-2.zip"
    with SignatureStore.open(bb, "a") as store:
        store.remove("BB-1", "bad scan")
    export(bb, second, keys["BB"], since=cursor, scope="cluster:ribin")
    import_(jm, first, network)
    import_(jm, second, network)
    payload = payload_file(first, tmp_path / "p.h5")
    same = resign(first, tmp_path / "same.zip", keys["BB"], payload)  # same manifest bytes
    assert import_(jm, same, network).already_imported
    replay = resign(first, tmp_path / "replay.zip", keys["BB"], payload, created_at="later")
    before = state(jm)
    with pytest.raises(BundleError, match="replay"):
        import_(jm, replay, network)
    assert state(jm) == before
    with SignatureStore.open(jm) as store:
        assert "BB/BB-1" not in store


def test_truncated_bundle(pair, network, tmp_path) -> None:
    _, jm, bundle = pair
    data = bundle.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        (tmp_path / "cut.zip").write_bytes(data[:cut])
        refused(jm, tmp_path / "cut.zip", network, "not a zip file or truncated")


def test_path_traversal_and_odd_members(pair, network, tmp_path) -> None:
    _, jm, bundle = pair
    contents = members(bundle)
    for name in ("../evil.h5", "/etc/cron.d/x", "payload/../../x.h5", "payload/other.h5"):
        bad = rezip(tmp_path / "t.zip", {**contents, name: b"x"})
        refused(jm, bad, network, "unexpected member")
    twice = [*list(contents.items()), ("manifest.json", contents["manifest.json"])]
    with pytest.warns(UserWarning, match="Duplicate name"):
        bad = rezip(tmp_path / "d.zip", twice)
    refused(jm, bad, network, "appears twice")


def test_zip_bomb(pair, network, tmp_path) -> None:
    _, jm, bundle = pair
    contents = members(bundle)
    bomb = {**contents, PAYLOAD: b"\0" * (20 << 20)}
    refused(jm, rezip(tmp_path / "bomb.zip", bomb), network, "refused as a zip bomb")
    small = BundleLimits(payload_bytes=1000)
    refused(jm, bundle, network, "over the limit of 1000", limits=small)
    # a central directory that lies about the size: the reader stops at the declared size
    raw = rezip(tmp_path / "lie.zip", contents).read_bytes()
    for declared in (100, 50_000_000):
        lie = bytearray(raw)
        at = lie.find(b"PK\x01\x02")
        while lie[at + 46 : at + 46 + len(PAYLOAD)] != PAYLOAD.encode():
            at = lie.find(b"PK\x01\x02", at + 4)
        lie[at + 24 : at + 28] = declared.to_bytes(4, "little")  # uncompressed size
        (tmp_path / "lie.zip").write_bytes(bytes(lie))
        refused(jm, tmp_path / "lie.zip", network, "damaged|shorter|zip bomb")


def test_newer_bundle_format(pair, network, keys, tmp_path) -> None:
    _, jm, bundle = pair
    payload = payload_file(bundle, tmp_path / "p.h5")
    newer = resign(bundle, tmp_path / "v2.zip", keys["BB"], payload, format_version=2)
    refused(jm, newer, network, "written by bundle format 2, this RIBIN reads format 1")


def test_surface_changed_before_signing(pair, network, keys, tmp_path) -> None:
    _, jm, bundle = pair
    payload = payload_file(bundle, tmp_path / "p.h5")
    with h5py.File(payload, "r+") as f:
        group = f["exhibits"][next(iter(f["exhibits"]))]
        group["breech_face"][5, 5] = 42.0
    forged = resign(bundle, tmp_path / "f.zip", keys["BB"], payload)
    refused(jm, forged, network, "content ID does not recompute")
    payload = payload_file(bundle, tmp_path / "q.h5")
    with h5py.File(payload, "r+") as f:  # junk riding along in a verified exhibit group
        f["exhibits"][next(iter(f["exhibits"]))].create_dataset("junk", data=[1, 2, 3])
    forged = resign(bundle, tmp_path / "g.zip", keys["BB"], payload)
    refused(jm, forged, network, "holds 'junk', which the format does not define")


def test_own_countrys_bundle_and_unknown_identity(pair, network, keys, tmp_path) -> None:
    bb, _jm, bundle = pair
    other = tmp_path / "BB2" / "BB.ribin"
    other.parent.mkdir()
    SignatureStore.open(other, "x").close()
    refused(other, bundle, network, "this store's own country")
    fresh = tmp_path / "fresh.ribin"
    SignatureStore.open(fresh, "x").close()
    with SignatureStore.open(fresh, "a") as store, pytest.raises(StoreError, match="--country"):
        import_bundle(store, bundle, network)
    with SignatureStore.open(bb, "a") as store, pytest.raises(StoreError, match="belongs to BB"):
        export_bundle(store, tmp_path / "x.zip", keys["BB"], country="JM")


# ----------------------------------------------------------------------------- interrupted


STEPS = ["segment-written", "segment-renamed", "manifest-written", "manifest-replaced"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("step", STEPS)
def test_import_killed_mid_way(pair, network, step: str) -> None:
    _, jm, bundle = pair
    pid = os.fork()
    if pid == 0:  # child: import, SIGKILL itself at ``step``
        try:

            def die(name: str) -> None:
                if name == step:
                    os.kill(os.getpid(), signal.SIGKILL)

            store_writing._checkpoint = die
            import_(jm, bundle, network)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    with SignatureStore.open(jm) as store:
        assert store.verify().ok
        imported = sorted(k for k in store.keys() if k[0] == "BB")
        cursor = store.sync_state().get("received", {}).get("BB/BB")
    if step == "manifest-replaced":  # killed after the commit point: all of it
        assert len(imported) == 3 and cursor is not None
    else:  # before it: none of it
        assert imported == [] and cursor is None
    result = import_(jm, bundle, network)  # re-running the cron job just works
    assert result.already_imported == (step == "manifest-replaced")
    with SignatureStore.open(jm) as store:
        assert store.verify().ok and not store.verify().notes
        assert len([k for k in store.keys() if k[0] == "BB"]) == 3


# ----------------------------------------------------------------------------- three sites


ORDERS = [("BB", "BZ", "JM"), ("JM", "BB", "BZ"), ("BZ", "JM", "BB")]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # compare on tiny noise surfaces
@pytest.mark.parametrize("order", ORDERS, ids="-".join)
def test_three_sites_converge(tmp_path, keys, network, order) -> None:
    stores = {code: new_site(tmp_path, code) for code in COUNTRIES}
    cursors = dict.fromkeys(COUNTRIES, 0)

    def sync_round(number: int) -> None:
        bundles = {}
        for code in COUNTRIES:
            out = tmp_path / f"{code}-{number}.zip"
            result = export(stores[code], out, keys[code], since=cursors[code], scope="cluster")
            cursors[code] = result.cursor
            bundles[code] = out
        for receiver, sender in itertools.permutations(order, 2):
            import_(stores[receiver], bundles[sender], network)

    sync_round(1)
    with SignatureStore.open(stores["BB"], "a") as store:
        store.remove("BB-1", "duplicate")
        store.add(make_exhibit("BB-new", size=16), {"country": "BB", "sharing": "cluster"})
    with SignatureStore.open(stores["JM"], "a") as store:
        store.remove("JM-2", "wrong case")
    sync_round(2)

    for searcher in ("TT", *COUNTRIES):  # locals stay home; everything else agrees
        views = [
            {v for v in visible(stores[code], network, searcher) if not v[1].endswith("-3")}
            for code in COUNTRIES
        ]
        assert views[0] == views[1] == views[2], searcher
    outsider = [visible(stores[code], network, "TT") for code in COUNTRIES]
    assert outsider[0] == outsider[1] == outsider[2]
    assert {v[1] for v in outsider[0]} == {"BB-0", "BZ-0", "BZ-1", "JM-0", "JM-1"}
    if order == ORDERS[0]:  # and the lead's search agrees (once: full comparisons are slow)
        from ribin.search import search

        query = make_exhibit("query", size=16, detection=False)
        answers = []
        for code in COUNTRIES:
            with SignatureStore.open(stores[code]) as store:
                result = search(store, query, scope="network", searcher="TT", network=network)
            answers.append(
                {(c.country, c.exhibit_id, round(c.score, 6)) for c in result.candidates}
            )
        assert answers[0] == answers[1] == answers[2] and len(answers[0]) == 5
    for code in COUNTRIES:
        with SignatureStore.open(stores[code]) as store:
            assert store.verify().ok
            keys_here = set(store.keys())
            assert ("BB", "BB-1") not in keys_here and ("JM", "JM-2") not in keys_here
            assert ("BB", "BB-new") in keys_here
            assert len(keys_here) == 4 + 2 * 3 - 2 + 1  # own 4 + others' shared, less removed


# ----------------------------------------------------------------------------- CLI


def test_cli_two_sites(tmp_path, keys, network_file) -> None:
    runner = CliRunner()
    bb = new_site(tmp_path, "BB")
    jm = new_site(tmp_path, "JM")
    bundle = tmp_path / "bb.zip"
    out = runner.invoke(
        main,
        ["sync", "export", str(bb), str(bundle), "--key", str(keys["BB"]), "--country", "BB"],
    )
    assert out.exit_code == 0, out.output
    assert out.output.strip().splitlines()[-1] == str(manifest_of(bundle)["cursor"]["to"])
    args = ["sync", "import", str(jm), str(bundle), "--network", str(network_file)]
    first = runner.invoke(main, [*args, "--country", "JM", "--json"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.output)
    assert data["added"] == 2 and data["country"] == "BB" and not data["already_imported"]
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and "already imported" in again.output
    second = tmp_path / "bb-2.zip"
    since = str(data["cursor"])
    command = ["sync", "export", str(bb), str(second), "--key", str(keys["BB"])]
    out = runner.invoke(main, [*command, "--since", since, "--json"])
    assert json.loads(out.output)["since"] == data["cursor"]
    data = bundle.read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    bad = runner.invoke(main, [*args[:3], str(tmp_path / "cut.zip"), *args[4:]])
    assert bad.exit_code == 1
    lines = bad.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cut.zip: not a zip file")
