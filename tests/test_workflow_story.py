"""The lab's loop end to end, across a border, through the command line and real keys.

Barbados ingests test fires of a seized gun and shares them with the cluster; Jamaica
ingests a questioned casing fired by the same gun, gets a lead on Barbados' exhibit without
asking, and its examiner records an identification; Jamaica syncs back and Barbados sees
Jamaica's hit notice, and one linked group spans both countries.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ribin.cli import main


def run(*args) -> dict | str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    text = result.output
    return json.loads(text) if "--json" in args else text


def network_with_keys(root: Path) -> tuple[Path, dict[str, Path]]:
    """Keys made by ``ribin keys generate`` and a network file pinning them."""
    keys, lines = {}, []
    for code in ("BB", "BZ", "JM"):
        keys[code] = root / f"{code}.pem"
        public = run("keys", "generate", keys[code]).strip().splitlines()[-1]
        lines += [f"[countries.{code}]", f'public_key = "{public}"', ""]
    lines += ["[clusters.ribin]", 'members = ["BB", "BZ", "JM"]', ""]
    network = root / "network.toml"
    network.write_text("\n".join(lines))
    return network, keys


def play_story(
    root: Path, known: list[Path], questioned: Path, same_gun: set[str], jm_old: Path
) -> tuple[dict, dict]:
    """Play the story; returns BB's leads and links documents at the end."""
    network, keys = network_with_keys(root)
    bb, jm = root / "BB.ribin", root / "JM.ribin"

    # Barbados: test fires of a seized gun, shared with the cluster
    run(
        "ingest", bb, *known, "--country", "BB", "--role", "known", "--sharing", "cluster",
        "--network", network,
    )  # fmt: skip
    run(
        "sync", "export", bb, root / "bb-1.zip", "--key", keys["BB"], "--country", "BB",
        "--scope", "cluster:ribin", "--network", network,
    )  # fmt: skip

    # Jamaica: an older case of its own (another gun), then receives BB's test fires,
    # then ingests a questioned casing and gets a lead automatically
    run("ingest", jm, jm_old, "--country", "JM", "--exhibit-id", "JM-OLD-1", "--network", network)
    first = run("sync", "import", jm, root / "bb-1.zip", "--network", network, "--country", "JM",
                "--json")  # fmt: skip
    assert first["added"] == len(known)
    ingested = run(
        "ingest",
        jm,
        questioned,
        "--country",
        "JM",
        "--role",
        "questioned",
        "--exhibit-id",
        "JM-Q-1",
        "--json",
    )  # fmt: skip  (no --network: the site's, remembered from its sync import)
    assert ingested["correlation"]["correlated"] == 1 and ingested["correlation"]["leads"]
    leads = run("leads", "list", jm, "--json")["leads"]
    mine = [x for x in leads if x["query"] == {"country": "JM", "exhibit_id": "JM-Q-1"}]
    assert mine, leads
    best = min(mine, key=lambda x: x["rank"])
    assert best["candidate"]["country"] == "BB"
    assert best["candidate"]["exhibit_id"] in same_gun, best
    assert best["origin"] is None and best["status"] == "open"

    # a Jamaican examiner confirms it under the microscope
    decided = run(
        "leads", "decide", jm, best["id"], "--conclusion", "identification",
        "--examiner", "J. Examiner", "--note", "BF agrees over the whole primer", "--json",
    )  # fmt: skip
    assert decided["status"] == "identification" and decided["origin"] == "JM"
    exported = run(
        "sync", "export", jm, root / "jm-1.zip", "--key", keys["JM"], "--scope", "cluster:ribin",
        "--network", network, "--json",
    )  # fmt: skip
    assert exported["notices"] == 1

    # Barbados learns of it
    back = run("sync", "import", bb, root / "jm-1.zip", "--network", network, "--json")
    assert back["notices"] == 1 and back["added"] == 2  # JM's old case and the new one
    assert back["correlation"]["correlated"] == 2  # JM's casings against BB's own exhibits
    bb_leads = run("leads", "list", bb, "--status", "all", "--json")
    notices = [x for x in bb_leads["leads"] if x["origin"] == "JM"]
    assert len(notices) == 1
    assert notices[0]["status"] == "identification"
    assert notices[0]["examiner"] == "J. Examiner"
    assert notices[0]["query"] == {"country": "JM", "exhibit_id": "JM-Q-1"}
    own_on_it = [
        x
        for x in bb_leads["leads"]
        if x["origin"] is None and x["query"] == {"country": "JM", "exhibit_id": "JM-Q-1"}
    ]
    assert own_on_it, "BB's own correlation of JM's casing gave no lead"
    links = run("links", bb, "--json")
    # importing the same bundle again changes nothing
    again = run("sync", "import", bb, root / "jm-1.zip", "--network", network, "--json")
    assert again["already_imported"] and again["notices"] == 0
    assert run("leads", "list", bb, "--status", "all", "--json") == bb_leads
    assert "ok:" in run("store", "verify", bb)
    assert "ok:" in run("store", "verify", jm)
    return bb_leads, links


def test_cross_border_story_synthetic(tmp_path, synthetic_dir) -> None:
    known = [synthetic_dir / f"F0{gun}-{shot}.x3p" for gun in (1, 2) for shot in (1, 2)]
    questioned = synthetic_dir / "F01-3.x3p"
    truth = {
        row["file"]: row["firearm"] for row in csv.DictReader(open(synthetic_dir / "manifest.csv"))
    }
    same_gun = {p.stem for p in known if truth[p.name] == truth[questioned.name]}
    assert same_gun == {"F01-1", "F01-2"}
    _, links = play_story(tmp_path, known, questioned, same_gun, synthetic_dir / "F03-1.x3p")
    (group,) = links["groups"]
    assert group["countries"] == ["BB", "JM"]
    names = {(e["country"], e["exhibit_id"]) for e in group["exhibits"]}
    assert ("JM", "JM-Q-1") in names and len(names & {("BB", s) for s in same_gun}) == 1


@pytest.mark.slow
def test_cross_border_story_fadul(tmp_path, fadul_dir) -> None:
    rows = list(csv.DictReader(open(fadul_dir / "truth.csv")))
    known = [fadul_dir / r["file"] for r in rows if r["role"] == "known" and r["firearm"] in "123"]
    questioned = fadul_dir / "Fadul F.x3p"
    same_gun = {Path(r["file"]).stem for r in rows if r["firearm"] == "1" and r["role"] == "known"}
    _, links = play_story(tmp_path, known, questioned, same_gun, fadul_dir / "Fadul 4-1.x3p")
    (group,) = links["groups"]
    assert group["countries"] == ["BB", "JM"]
