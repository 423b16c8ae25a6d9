"""The network file: countries, their sites and keys, clusters; search scopes and sharing."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ribin.errors import InputError

SHARING = ("local", "cluster", "network")
_CODE = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class Site:
    """One lab of a country, with the key that signs its sync bundles."""

    country: str
    name: str
    public_key: str | None = None


@dataclass(frozen=True)
class Country:
    """A member country of the network."""

    code: str
    name: str
    sites: tuple[Site, ...] = ()


@dataclass(frozen=True)
class Network:
    """Countries and clusters of a ballistic network.

    Attributes
    ----------
    countries : dict
        ISO 3166 alpha-2 code -> :class:`Country`.
    clusters : dict
        Cluster name -> member codes.
    source : str
        File it was read from (``"<example>"`` for the bundled example).
    """

    countries: dict[str, Country]
    clusters: dict[str, tuple[str, ...]]
    source: str = "<example>"
    _cluster_of: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        mates: dict[str, set[str]] = {code: set() for code in self.countries}
        for members in self.clusters.values():
            for code in members:
                mates[code].update(members)
        object.__setattr__(
            self, "_cluster_of", {code: frozenset(found) for code, found in mates.items()}
        )

    def scope_countries(self, scope: str | Iterable[str], searcher: str) -> frozenset[str]:
        """Country codes a scope covers, for a search made by country ``searcher``.

        Parameters
        ----------
        scope : str or iterable of str
            ``"country"`` (the searcher's own), ``"cluster:NAME"``, ``"network"``, a
            comma-separated list of codes, or an iterable of codes.
        searcher : str
            Code of the searching country.

        Returns
        -------
        frozenset of str

        Raises
        ------
        InputError
            Unknown scope, cluster or country; the message lists the valid ones.
        """
        self.require_country(searcher)
        if isinstance(scope, str):
            name = scope.strip()
            if name == "country":
                return frozenset({searcher})
            if name == "network":
                return frozenset(self.countries)
            if name.startswith("cluster:"):
                cluster = name.removeprefix("cluster:")
                if cluster not in self.clusters:
                    valid = ", ".join(sorted(self.clusters)) or "none"
                    raise InputError(
                        self.where, f"unknown cluster {cluster!r}; clusters are: {valid}"
                    )
                return frozenset(self.clusters[cluster])
            codes = [code.strip().upper() for code in name.split(",") if code.strip()]
            if not codes or not all(_CODE.match(code) for code in codes):
                raise InputError(
                    None,
                    f"unknown scope {scope!r}; use country, network, "
                    f"cluster:NAME ({', '.join(sorted(self.clusters))}) or country codes",
                )
        else:
            codes = [str(code).strip().upper() for code in scope]
        for code in codes:
            self.require_country(code)
        return frozenset(codes)

    @property
    def where(self) -> str | None:
        """The file to name in an error: None for the example shipped with RIBIN."""
        return None if self.source == "<example>" else self.source

    def check_scope(self, scope: str | Iterable[str]) -> None:
        """Raise :class:`InputError` unless ``scope`` is a scope of this network.

        For any searching country: ``country`` and ``network`` always are; a cluster must be
        defined, and listed codes must be countries of the network.
        """
        self.scope_countries(scope, next(iter(self.countries)))

    def visible(self, owner: str, sharing: str, searcher: str) -> bool:
        """Whether an exhibit of country ``owner`` shared as ``sharing`` may reach ``searcher``.

        ``local`` never leaves its country; ``cluster`` reaches the countries that share a
        cluster with the owner; ``network`` reaches everyone. Unknown sharing values are
        treated as ``local``, so a damaged record never leaks.
        """
        if owner == searcher:
            return True
        if sharing == "network":
            return True
        if sharing == "cluster":
            return searcher in self._cluster_of.get(owner, frozenset())
        return False

    def require_country(self, code: str) -> Country:
        """The country with this code, or an error listing the valid codes."""
        country = self.countries.get(code)
        if country is None:
            valid = ", ".join(sorted(self.countries))
            raise InputError(
                self.where, f"unknown country {code!r}; countries in the network: {valid}"
            )
        return country

    def public_keys(self, country: str) -> dict[str, str]:
        """Site name -> pinned public key (base64) of each site of ``country`` that has one."""
        return {
            site.name: site.public_key
            for site in self.require_country(country).sites
            if site.public_key
        }


@dataclass(frozen=True)
class Scope:
    """Which stored exhibits a requesting country may see.

    Attributes
    ----------
    requester : str
        Country code of the searching site; its own exhibits are always visible.
    countries : frozenset of str or None
        Owning countries to include; None means every country.
    partners : frozenset of str
        Countries sharing a cluster with the requester: their ``cluster`` exhibits are
        visible. ``network`` exhibits are visible to all; ``local`` ones only at home.

    Built from a network file by :meth:`from_network` (``country``, ``cluster:<name>``,
    ``network``, codes); the store only applies them.
    """

    requester: str
    countries: frozenset[str] | None = None
    partners: frozenset[str] = frozenset()

    def mask(self, country: np.ndarray, sharing: np.ndarray) -> np.ndarray:
        """Boolean mask of the visible rows, given owner countries and sharing levels."""
        country = np.asarray(country, dtype=object)
        sharing = np.asarray(sharing, dtype=object)
        own = country == self.requester
        partner = np.isin(country, list(self.partners)) if self.partners else np.zeros_like(own)
        visible = own | (sharing == "network") | ((sharing == "cluster") & partner)
        if self.countries is not None:
            visible &= np.isin(country, list(self.countries))
        return np.asarray(visible, dtype=bool)

    @classmethod
    def from_network(cls, network: Network, scope: str | Iterable[str], searcher: str) -> Scope:
        """The scope ``scope`` (``country``, ``cluster:NAME``, ``network``, codes) of a
        :class:`Network`, for a search by country ``searcher``."""
        partners = frozenset(
            code
            for code in network.countries
            if code != searcher and network.visible(code, "cluster", searcher)
        )
        return cls(searcher, frozenset(network.scope_countries(scope, searcher)), partners)

    def allows(self, country: str, sharing: str) -> bool:
        return bool(self.mask(np.array([country]), np.array([sharing]))[0])


def load_network(path: str | Path | None = None) -> Network:
    """Read a network file (TOML); with no path, the example shipped with RIBIN.

    Raises
    ------
    InputError
        Unreadable file, bad TOML, a bad country code, a cluster naming an unknown country.
    """
    if path is None:
        text = resources.files("ribin.data").joinpath("network.toml").read_text("utf-8")
        source = "<example>"
    else:
        source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(source, f"cannot read network file: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(source, f"not valid TOML: {exc}") from None
    return _parse(raw, source)


def _parse(raw: Mapping[str, Any], source: str) -> Network:
    countries_raw = raw.get("countries")
    if not isinstance(countries_raw, Mapping) or not countries_raw:
        raise InputError(source, "network file has no [countries.XX] tables")
    countries: dict[str, Country] = {}
    for code, entry in countries_raw.items():
        if not _CODE.match(code):
            raise InputError(source, f"country code {code!r} is not ISO 3166 alpha-2 (e.g. JM)")
        if not isinstance(entry, Mapping):
            raise InputError(source, f"[countries.{code}] must be a table")
        countries[code] = Country(code, str(entry.get("name", code)), _sites(code, entry, source))
    clusters: dict[str, tuple[str, ...]] = {}
    clusters_raw = raw.get("clusters") or {}
    if not isinstance(clusters_raw, Mapping):
        raise InputError(source, "clusters must be [clusters.NAME] tables")
    for name, entry in clusters_raw.items():
        members = entry.get("members") if isinstance(entry, Mapping) else None
        if not isinstance(members, list) or not members:
            raise InputError(source, f"[clusters.{name}] needs a non-empty members list")
        unknown = sorted({str(m) for m in members} - set(countries))
        if unknown:
            raise InputError(
                source, f"cluster {name!r} names unknown countries: {', '.join(unknown)}"
            )
        clusters[name] = tuple(dict.fromkeys(str(m) for m in members))
    return Network(countries=countries, clusters=clusters, source=source)


def _sites(code: str, entry: Mapping[str, Any], source: str) -> tuple[Site, ...]:
    """Sites of a country: ``[countries.XX.sites.NAME]`` tables, or one key on the country."""
    sites: list[Site] = []
    if entry.get("public_key"):
        sites.append(Site(code, code, str(entry["public_key"])))
    tables = entry.get("sites") or {}
    if not isinstance(tables, Mapping):
        raise InputError(source, f"sites of {code} must be [countries.{code}.sites.NAME] tables")
    for name, site in tables.items():
        if not isinstance(site, Mapping):
            raise InputError(source, f"[countries.{code}.sites.{name}] must be a table")
        key = site.get("public_key")
        sites.append(Site(code, str(name), str(key) if key else None))
    return tuple(sites)
