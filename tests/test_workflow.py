"""The workflow database: leads, conclusions, audit, links, notices and bad input.

These tests record leads through the same call correlation uses
(:meth:`Workflow.record_correlation`) on small made-up exhibits, so they need no image
extraction; ``test_workflow_story.py`` plays the whole loop on real casings.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from ribin.cli import main
from ribin.errors import FormatVersionError, InputError, StoreError
from ribin.network import load_network
from ribin.store import SignatureStore
from ribin.sync import NOTICES, generate_key, load_private_key, public_key_b64
from ribin.workflow import Lead, LinkedGroup, Workflow, load_policy, pending
from ribin.workflow.db import SCHEMA_VERSION
from ribin.workflow.leads import NewLead
from ribin.workflow.links import connected_groups
from ribin.workflow.policy import read_policy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_store import make_exhibit

DATA = Path(__file__).resolve().parent / "data"


# ----------------------------------------------------------------------------- helpers


def new_store(path: Path, country: str, names: dict[str, str]) -> dict[str, str]:
    """A store holding exhibits ``name -> sharing`` of ``country``; returns content IDs."""
    with SignatureStore.open(path, "a") as store:
        results = store.add_many(
            [
                (make_exhibit(f"{country}-{name}"), {"country": country, "sharing": sharing})
                for name, sharing in names.items()
            ]
        )
    return {name: r.content_id for name, r in zip(names, results, strict=True)}


def lead_to(query: tuple[str, str, str], candidate: tuple[str, str, str], score=10.0) -> NewLead:
    return NewLead(
        query,
        candidate,
        score,
        None,
        1,
        "network",
        {"breech_face": {"rank": 1, "score": score}},
        "uncalibrated",
    )


@pytest.fixture
def store(tmp_path) -> Path:
    """A BB store with three exhibits and two open leads from A's correlation."""
    path = tmp_path / "BB.ribin"
    ids = new_store(path, "BB", {"A": "network", "B": "network", "C": "network"})
    with Workflow.open(path) as wf:
        wf.set_meta("country", "BB")
        a = ("BB", "BB-A", ids["A"])
        wf.record_correlation(
            a,
            [lead_to(a, ("BB", "BB-B", ids["B"])), lead_to(a, ("BB", "BB-C", ids["C"]), 5.0)],
            "network",
        )
    return path


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def snapshot(path: Path) -> list:
    """Every row of every table of the workflow database, to show nothing changed."""
    with sqlite3.connect(path / "workflow.sqlite") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [(t, db.execute(f"SELECT * FROM {t}").fetchall()) for t in sorted(tables)]


# ----------------------------------------------------------------------------- database


def test_database_is_wal_with_foreign_keys_and_current_schema(store) -> None:
    with Workflow.open(store) as wf:
        assert wf._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert wf._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert wf._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert wf.check() == []


def test_committed_schema_v1_database_opens(tmp_path) -> None:
    """A database written by schema 1 (tests/data) still opens, with its leads and audit."""
    path = tmp_path / "old.ribin"
    path.mkdir()
    shutil.copy(DATA / "workflow-v1.sqlite", path / "workflow.sqlite")
    with Workflow.open(path) as wf:
        found = wf.leads(status="all")
        assert [(lead.id, lead.status) for lead in found] == [
            (1, "identification"),
            (2, "elimination"),
            (3, "open"),
        ]
        assert found[0].examiner == "A. Examiner" and found[0].origin == "BB"
        actions = [(r["action"], r["lead_id"]) for r in wf.audit()]
        assert ("decide", 1) in actions and ("decide", 2) in actions
        assert wf.check() == []
        assert len(wf.links()) == 1


def test_corrupted_database_is_a_one_line_error_and_left_alone(store) -> None:
    db = store / "workflow.sqlite"
    with Workflow.open(store):
        pass
    damaged = b"this is not an SQLite file at all " * 200
    db.write_bytes(damaged)
    for suffix in ("-wal", "-shm"):
        (store / f"workflow.sqlite{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreError, match=r"workflow\.sqlite: damaged or not an SQLite database"):
        Workflow.open(store)
    one_line_error(cli("leads", "list", store), "damaged or not an SQLite database")
    one_line_error(
        cli("leads", "decide", store, 1, "--conclusion", "elimination", "--examiner", "X"),
        "damaged",
    )
    assert db.read_bytes() == damaged  # nothing overwritten


def test_truncated_database_is_a_one_line_error(store) -> None:
    db = store / "workflow.sqlite"
    with Workflow.open(store) as wf:
        wf._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    result = cli("leads", "list", store, "--status", "all")
    one_line_error(result, "workflow.sqlite")


def test_newer_schema_is_refused(store) -> None:
    with sqlite3.connect(store / "workflow.sqlite") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = snapshot(store)
    with pytest.raises(FormatVersionError, match="upgrade RIBIN"):
        Workflow.open(store)
    one_line_error(cli("leads", "list", store), f"workflow schema {SCHEMA_VERSION + 1}")
    assert snapshot(store) == before


def test_another_sqlite_file_is_not_taken_for_ours(tmp_path) -> None:
    path = tmp_path / "s"
    path.mkdir()
    with sqlite3.connect(path / "workflow.sqlite") as db:
        db.execute("CREATE TABLE other (x)")
    with pytest.raises(StoreError, match="not a RIBIN workflow database"):
        Workflow.open(path)


def test_no_store_directory(tmp_path) -> None:
    with pytest.raises(StoreError, match="no such store"):
        Workflow.open(tmp_path / "missing")


# ----------------------------------------------------------------------------- leads


def test_a_pair_has_one_lead_whichever_way_round(store) -> None:
    with Workflow.open(store) as wf:
        first = wf.leads()
        b = ("BB", "BB-B", "x")
        again = wf.record_correlation(b, [lead_to(b, ("BB", "BB-A", "y"))], "network")
        assert again == []  # B -> A is the lead A -> B already recorded
        assert wf.leads() == first
        with pytest.raises(sqlite3.IntegrityError):
            wf._db.execute(
                "INSERT INTO leads (query_country, query_exhibit, candidate_country, "
                "candidate_exhibit, pair_low, pair_high, created) VALUES "
                "('BB', 'BB-B', 'BB', 'BB-A', 'BB/BB-A', 'BB/BB-B', 'now')"
            )


def test_list_json_matches_the_contract(store) -> None:
    result = cli("leads", "list", store, "--json")
    assert result.exit_code == 0, result.output
    leads = json.loads(result.output)["leads"]
    assert len(leads) == 2
    contract = {
        "id", "query", "candidate", "score", "log_lr", "rank", "scope", "status", "examiner",
        "note", "created", "decided", "origin",
    }  # fmt: skip
    assert contract <= set(leads[0])
    assert leads[0]["query"] == {"country": "BB", "exhibit_id": "BB-A"}
    assert leads[0]["status"] == "open" and leads[0]["origin"] is None
    assert leads[0]["regions"]["breech_face"]["rank"] == 1
    assert leads[0]["calibration"] == "uncalibrated"
    table = cli("leads", "list", store)
    assert "BB/BB-A" in table.output and "BB/BB-C" in table.output


def test_decide_records_audit_and_keeps_the_old_conclusion(store) -> None:
    result = cli(
        "leads", "decide", store, 1, "--conclusion", "inconclusive", "--examiner", "A. Examiner",
        "--note", "BF agrees in part", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["status"] == "inconclusive"
    with Workflow.open(store) as wf:
        lead = wf.decide(1, "identification", "B. Examiner", note="second look", source="web")
        assert isinstance(lead, Lead)
        assert (lead.status, lead.examiner, lead.origin) == ("identification", "B. Examiner", "BB")
        assert [x.id for x in wf.leads("identification")] == [1]
        assert [x.id for x in wf.leads("open")] == [2]
        log = [r for r in wf.audit(1) if r["action"] == "decide"]
        assert [(r["who"], r["source"]) for r in log] == [
            ("A. Examiner", "ribin leads decide"),
            ("B. Examiner", "web"),
        ]
        assert log[1]["before"]["status"] == "inconclusive"
        assert log[1]["before"]["note"] == "BF agrees in part"
        assert log[1]["after"]["status"] == "identification"
        assert all(r["software_version"] for r in log)
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            wf._db.execute("UPDATE audit SET who = 'someone else'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            wf._db.execute("DELETE FROM audit")
        with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
            wf._db.execute("DELETE FROM leads")


@pytest.mark.parametrize(
    ("lead_id", "conclusion", "examiner", "message"),
    [
        ("99", "identification", "A", "no lead 99"),
        ("x", "identification", "A", "not a number"),
        ("1", "match", "A", "unknown conclusion 'match'"),
        ("1", "identification", "   ", "examiner's name is empty"),
    ],
)
def test_bad_decisions_are_one_line_errors_and_change_nothing(
    store, lead_id, conclusion, examiner, message
) -> None:
    before = snapshot(store)
    result = cli(
        "leads", "decide", store, lead_id, "--conclusion", conclusion, "--examiner", examiner
    )
    one_line_error(result, message)
    assert snapshot(store) == before
    with Workflow.open(store) as wf, pytest.raises(InputError):
        wf.decide(lead_id, conclusion, examiner)
    assert snapshot(store) == before


def test_unknown_lead_and_status(store) -> None:
    with Workflow.open(store) as wf:
        with pytest.raises(InputError, match="no lead 7"):
            wf.lead(7)
        with pytest.raises(InputError, match="unknown status"):
            wf.leads("maybe")
        assert wf.lead(2).candidate == ("BB", "BB-C")


# ----------------------------------------------------------------------------- links


def test_connected_groups() -> None:
    edges = [(("BB", "a"), ("JM", "b")), (("JM", "b"), ("JM", "c")), (("BZ", "x"), ("BZ", "y"))]
    groups = sorted(connected_groups(edges))
    assert groups == [[("BB", "a"), ("JM", "b"), ("JM", "c")], [("BZ", "x"), ("BZ", "y")]]


def test_an_elimination_never_merges_groups(tmp_path) -> None:
    path = tmp_path / "s.ribin"
    ids = new_store(path, "BB", {k: "network" for k in "ABCD"})
    key = {k: ("BB", f"BB-{k}", ids[k]) for k in "ABCD"}
    with Workflow.open(path) as wf:
        wf.set_meta("country", "BB")
        wf.record_correlation(key["A"], [lead_to(key["A"], key["B"])], "network")
        wf.record_correlation(key["C"], [lead_to(key["C"], key["D"])], "network")
        wf.record_correlation(key["B"], [lead_to(key["B"], key["C"])], "network")
        wf.decide(1, "identification", "E")
        wf.decide(2, "identification", "E")
        wf.decide(3, "elimination", "E")  # B ~ C eliminated: A-B and C-D stay apart
        groups = wf.links()
        assert sorted(g.exhibits for g in groups) == [
            (("BB", "BB-A"), ("BB", "BB-B")),
            (("BB", "BB-C"), ("BB", "BB-D")),
        ]
        assert all(isinstance(g, LinkedGroup) for g in groups)
        wf.decide(3, "identification", "E")  # now they are one firearm
        (group,) = wf.links()
        assert len(group.exhibits) == 4 and group.countries == ("BB",)
    out = json.loads(cli("links", path, "--json").output)
    assert out["groups"][0]["countries"] == ["BB"]
    assert {e["exhibit_id"] for e in out["groups"][0]["exhibits"]} == {f"BB-{k}" for k in "ABCD"}


# ----------------------------------------------------------------------------- policy


def test_policy_files(tmp_path) -> None:
    assert load_policy(tmp_path).scopes == ("network",)
    assert load_policy(tmp_path).top == 10
    net = tmp_path / "net"
    net.mkdir()
    (net / "policy.toml").write_text('[correlation]\nscopes = ["cluster:ribin"]\ntop = 3\n')
    policy = load_policy(tmp_path, net / "network.toml")
    assert (policy.scopes, policy.top, policy.log_lr_threshold) == (("cluster:ribin",), 3, None)
    (tmp_path / "policy.toml").write_text("[correlation]\nlog_lr_threshold = 4\n")
    policy = load_policy(tmp_path, net / "network.toml")  # the store's own wins
    assert (policy.scopes, policy.top, policy.log_lr_threshold) == (("network",), 10, 4.0)
    for text, message in [
        ("[correlation]\ntop = 0\n", "top must be"),
        ("[correlation]\ntopn = 3\n", "unknown key"),
        ("[correlation]\nscopes = []\n", "scopes must be"),
        ("[correlation\n", "not valid TOML"),
        ("[correlation]\nlog_lr_threshold = 'high'\n", "log_lr_threshold must be"),
    ]:
        (tmp_path / "policy.toml").write_text(text)
        with pytest.raises(InputError, match=message) as caught:
            read_policy(tmp_path / "policy.toml")
        assert str(caught.value).startswith("policy.toml: ")


# ----------------------------------------------------------------------------- verify


def test_store_verify_checks_the_workflow_database(store) -> None:
    result = cli("store", "verify", store)
    assert result.exit_code == 0, result.output
    assert "workflow" in result.output
    with SignatureStore.open(store, "a") as opened:
        opened.remove("BB-C", "test: removed after its lead")
    result = cli("store", "verify", store)
    assert result.exit_code == 0, result.output  # a lead may name a removed exhibit
    with sqlite3.connect(store / "workflow.sqlite") as db:
        db.execute(
            "INSERT INTO leads (query_country, query_exhibit, candidate_country, "
            "candidate_exhibit, pair_low, pair_high, created) VALUES "
            "('BB', 'BB-A', 'BB', 'ghost', 'BB/BB-A', 'BB/ghost', 'now')"
        )
    result = cli("store", "verify", store)
    assert result.exit_code == 1
    assert "BB/ghost" in result.output


# ----------------------------------------------------------------------------- notices


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """Keys for BB and JM, and a network file pinning them in cluster ribin (with BZ)."""
    root = tmp_path_factory.mktemp("sites")
    keys = {}
    lines = []
    for code in ("BB", "JM", "BZ"):
        keys[code] = root / f"{code}.pem"
        generate_key(keys[code])
        public = public_key_b64(load_private_key(keys[code]))
        lines += [f"[countries.{code}]", f'public_key = "{public}"', ""]
    lines += ["[countries.TT]", "", "[clusters.ribin]", 'members = ["BB", "BZ", "JM"]', ""]
    network = root / "network.toml"
    network.write_text("\n".join(lines))
    return keys, network


def notice_setup(tmp_path, sites, *, conclusion="identification", sharing="cluster"):
    """BB shares T (``sharing``) and L (local); JM imports, identifies JM/Q ~ BB/T, exports."""
    keys, network = sites
    bb, jm = tmp_path / "BB.ribin", tmp_path / "JM.ribin"
    bb_ids = new_store(bb, "BB", {"T": sharing, "L": "local"})
    jm_ids = new_store(jm, "JM", {"Q": "network"})
    out = cli(
        "sync", "export", bb, tmp_path / "bb1.zip", "--key", keys["BB"], "--country", "BB",
        "--scope", "cluster:ribin", "--network", network,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    out = cli(
        "sync", "import", jm, tmp_path / "bb1.zip", "--network", network, "--country", "JM",
        "--no-correlate",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    q = ("JM", "JM-Q", jm_ids["Q"])
    with Workflow.open(jm) as wf:
        wf.record_correlation(q, [lead_to(q, ("BB", "BB-T", bb_ids["T"]))], "network")
        wf.decide(1, conclusion, "J. Examiner", note="case notes stay home")
    bundle = tmp_path / "jm1.zip"
    out = cli(
        "sync", "export", jm, bundle, "--key", keys["JM"], "--scope", "cluster:ribin",
        "--network", network, "--json",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    return bb, jm, bundle, json.loads(out.output), bb_ids


def import_bb(bb: Path, bundle: Path, network: Path, *extra: str):
    return cli(
        "sync", "import", bb, bundle, "--network", network, "--country", "BB", "--no-correlate",
        "--json", *extra,
    )  # fmt: skip


def test_notice_travels_once_and_replay_is_a_no_op(tmp_path, sites) -> None:
    bb, jm, bundle, exported, _ = notice_setup(tmp_path, sites)
    assert exported["notices"] == 1
    with zipfile.ZipFile(bundle) as zf:
        document = json.loads(zf.read(NOTICES))
    assert "case notes stay home" not in json.dumps(document)  # the note never travels
    out = import_bb(bb, bundle, sites[1])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["notices"] == 1
    with Workflow.open(bb) as wf:
        (lead,) = wf.leads("identification")
        assert lead.origin == "JM" and lead.notice and lead.examiner == "J. Examiner"
        assert lead.query == ("JM", "JM-Q") and lead.candidate == ("BB", "BB-T")
        with pytest.raises(InputError, match="hit notice from JM"):
            wf.decide(lead.id, "elimination", "B. Examiner")
        (group,) = wf.links()
        assert group.countries == ("BB", "JM")
    before = snapshot(bb)
    again = import_bb(bb, bundle, sites[1])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["already_imported"] and json.loads(again.output)["notices"] == 0
    assert snapshot(bb) == before
    # a later bundle repeating the same identification records nothing new
    second = tmp_path / "jm2.zip"
    out = cli(
        "sync", "export", jm, second, "--key", sites[0]["JM"], "--scope", "cluster:ribin",
        "--network", sites[1], "--since", str(exported["cursor"]),
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    out = import_bb(bb, second, sites[1])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["notices"] == 0
    with Workflow.open(bb) as wf:
        assert len(wf.leads("all")) == 1
        assert [r["action"] for r in wf.audit()].count("notice") == 1


def test_notice_with_a_bad_signature_is_refused_and_changes_nothing(tmp_path, sites) -> None:
    bb, _, bundle, _, _ = notice_setup(tmp_path, sites)
    with zipfile.ZipFile(bundle) as zf:
        contents = {name: zf.read(name) for name in zf.namelist()}
    document = json.loads(contents[NOTICES])
    document["notices"][0]["examiner"] = "Someone Else"
    contents[NOTICES] = json.dumps(document).encode()
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
    store_before, wf_before = (bb / "manifest.json").read_bytes(), snapshot(bb)
    out = import_bb(bb, forged, sites[1])
    one_line_error(out, "forged.zip", "SHA-256 or size does not match the signed manifest")
    assert (bb / "manifest.json").read_bytes() == store_before
    assert snapshot(bb) == wf_before
    # the genuine bundle still imports
    assert json.loads(import_bb(bb, bundle, sites[1]).output)["notices"] == 1


def test_notice_about_an_exhibit_the_sender_could_not_see(tmp_path, sites) -> None:
    """JM's examiner 'identifies' BB's local exhibit: BB refuses the bundle."""
    keys, network = sites
    bb, _jm, bundle, _, bb_ids = notice_setup(tmp_path, sites)
    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        document = json.loads(zf.read(NOTICES))
    document["notices"][0]["candidate"] = {
        "country": "BB",
        "exhibit_id": "BB-L",
        "content_id": bb_ids["L"],
    }
    from ribin.sync import write_bundle

    notices = tmp_path / "notices.json"
    notices.write_text(json.dumps(document))
    manifest.pop("files")
    hostile = tmp_path / "hostile.zip"
    write_bundle(hostile, manifest, load_private_key(keys["JM"]), {NOTICES: notices})
    before = (bb / "manifest.json").read_bytes(), snapshot(bb)
    out = import_bb(bb, hostile, network)
    one_line_error(out, "names BB/BB-L, shared local: JM could not have seen it")
    assert ((bb / "manifest.json").read_bytes(), snapshot(bb)) == before
    # nor one about an exhibit BB never held
    document["notices"][0]["candidate"]["exhibit_id"] = "BB-nothing"
    notices.write_text(json.dumps(document))
    (tmp_path / "hostile.zip").unlink()
    write_bundle(hostile, manifest, load_private_key(keys["JM"]), {NOTICES: notices})
    one_line_error(import_bb(bb, hostile, network), "never held")


def test_cluster_only_exhibit_is_not_named_in_a_network_bundle(tmp_path, sites) -> None:
    """BB/T is shared with the cluster: a notice naming it never goes to the whole network."""
    _, jm, _, _, _ = notice_setup(tmp_path, sites)
    out = cli(
        "sync", "export", jm, tmp_path / "wide.zip", "--key", sites[0]["JM"], "--scope",
        "network", "--network", sites[1], "--json",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["notices"] == 0
    with zipfile.ZipFile(tmp_path / "wide.zip") as zf:
        assert NOTICES not in zf.namelist()


def test_only_identifications_travel(tmp_path, sites) -> None:
    _, _, _bundle, exported, _ = notice_setup(tmp_path, sites, conclusion="elimination")
    assert exported["notices"] == 0


def test_check_notices_needs_a_known_network_key(tmp_path, sites) -> None:
    bb, _, bundle, _, _ = notice_setup(tmp_path, sites)
    stranger = tmp_path / "stranger.toml"
    stranger.write_text(
        '[countries.BB]\n[countries.JM]\n[clusters.ribin]\nmembers = ["BB", "JM"]\n'
    )
    from ribin.workflow.notices import check_notices

    with SignatureStore.open(bb) as opened, pytest.raises(InputError, match="signature"):
        check_notices(opened, bundle, load_network(stranger), country="BB")


def test_correlation_outside_the_network_is_a_one_line_error(tmp_path) -> None:
    """Exhibits of a country the network file does not know: refused in one line, and
    left pending for a later `ribin leads correlate` with the right network file."""
    path = tmp_path / "xx.ribin"
    new_store(path, "XX", {"A": "network"})
    one_line_error(cli("leads", "correlate", path), "unknown country 'XX'")
    with SignatureStore.open(path) as opened, Workflow.open(path) as wf:
        assert len(pending(opened, wf)) == 1
        assert wf.leads("all") == []
