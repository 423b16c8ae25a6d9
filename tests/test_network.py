"""Network file parsing, scopes and sharing enforcement."""

from __future__ import annotations

import pytest

from ribin.errors import InputError
from ribin.network import load_network


@pytest.fixture(scope="module")
def network():
    return load_network()


def test_example_network_has_the_caribbean_cluster(network):
    assert network.clusters["ribin"] == ("BB", "BZ", "JM")
    assert network.countries["JM"].name == "Jamaica"


@pytest.mark.parametrize(
    ("scope", "searcher", "expected"),
    [
        ("country", "JM", {"JM"}),
        ("cluster:ribin", "BB", {"BB", "BZ", "JM"}),
        ("BB,jm", "BZ", {"BB", "JM"}),
        (["TT"], "JM", {"TT"}),
    ],
)
def test_scopes(network, scope, searcher, expected):
    assert network.scope_countries(scope, searcher) == expected


def test_network_scope_is_every_country(network):
    assert network.scope_countries("network", "BB") == set(network.countries)
    assert len(network.countries) > 3


@pytest.mark.parametrize(
    ("scope", "searcher", "listed"),
    [
        ("cluster:nowhere", "JM", "caricom, ribin"),
        ("country", "XX", "BB, BZ"),
        ("JM,QQ", "JM", "unknown country 'QQ'"),
        ("everything", "JM", "cluster:NAME"),
    ],
)
def test_unknown_names_list_the_valid_ones(network, scope, searcher, listed):
    with pytest.raises(InputError, match=listed) as info:
        network.scope_countries(scope, searcher)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("owner", "sharing", "searcher", "visible"),
    [
        ("JM", "local", "JM", True),
        ("JM", "local", "BB", False),
        ("JM", "cluster", "BB", True),
        ("JM", "cluster", "TT", True),  # JM and TT share the caricom cluster
        ("JM", "cluster", "US", False),
        ("JM", "network", "US", True),
        ("JM", "bogus", "BB", False),
    ],
)
def test_sharing_policy(network, owner, sharing, searcher, visible):
    assert network.visible(owner, sharing, searcher) is visible


def test_sites_and_keys(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(
        '[countries.BB]\nname = "Barbados"\npublic_key = "AAAA"\n'
        '[countries.JM]\nname = "Jamaica"\n'
        '[countries.JM.sites.kingston]\npublic_key = "BBBB"\n'
        "[countries.JM.sites.montego]\n"
        '[clusters.two]\nmembers = ["BB", "JM"]\n'
    )
    network = load_network(path)
    assert network.public_keys("BB") == {"BB": "AAAA"}
    assert network.public_keys("JM") == {"kingston": "BBBB"}
    assert network.visible("BB", "cluster", "JM")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[countries", "not valid TOML"),
        ("title = 'x'\n", r"no \[countries\.XX\] tables"),
        ("[countries.jam]\nname='J'\n", "not ISO 3166"),
        ("[countries.JM]\n[clusters.c]\nmembers=['JM','ZZ']\n", "unknown countries: ZZ"),
        ("[countries.JM]\n[clusters.c]\nmembers=[]\n", "non-empty members"),
    ],
)
def test_bad_network_files(tmp_path, text, problem):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=problem) as info:
        load_network(path)
    assert str(info.value).startswith("bad.toml: ")


def test_missing_network_file(tmp_path):
    with pytest.raises(InputError, match="cannot read network file"):
        load_network(tmp_path / "absent.toml")
