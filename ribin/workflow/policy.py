"""The site's correlation policy: which scopes each new exhibit is searched in, and which
candidates become leads.

Read from ``policy.toml`` in the store directory, else next to the network file, else the
default: the widest scope the network file lets the site see (``network``: every country's
network-shared exhibits, its cluster partners' cluster-shared ones and its own), the top 10
candidates per region, no likelihood-ratio threshold::

    [correlation]
    scopes = ["network"]        # country | cluster:NAME | network | "BB,JM"; searched in turn
    top = 10                    # per region (breech face, firing pin)
    log_lr_threshold = 4.0      # also every candidate with a log10 LR at least this (optional)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ribin.errors import InputError

POLICY_FILE = "policy.toml"
_KEYS = {"scopes", "top", "log_lr_threshold"}


@dataclass(frozen=True)
class Policy:
    """Which candidates of an automatic search become leads.

    Attributes
    ----------
    scopes : tuple of str
        Scopes searched for each new exhibit of the site's own country.
    top : int
        A candidate ranked within the top ``top`` of either region becomes a lead.
    log_lr_threshold : float or None
        A candidate whose combined log10 LR reaches it becomes a lead whatever its rank.
    source : str
        The policy file, or ``"<default>"``.
    """

    scopes: tuple[str, ...] = ("network",)
    top: int = 10
    log_lr_threshold: float | None = None
    source: str = "<default>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "scopes": list(self.scopes),
            "top": self.top,
            "log_lr_threshold": self.log_lr_threshold,
            "source": self.source,
        }


def load_policy(
    store_path: str | os.PathLike | None = None,
    network_file: str | os.PathLike | None = None,
) -> Policy:
    """The policy of the store at ``store_path``: its ``policy.toml``, else the one next to
    ``network_file``, else :class:`Policy`'s defaults.

    Raises
    ------
    InputError
        Unreadable file, bad TOML, unknown key, a value of the wrong type (names the file).
    """
    for folder in (store_path, Path(network_file).parent if network_file else None):
        if folder is None:
            continue
        path = Path(folder) / POLICY_FILE
        if path.is_file():
            return read_policy(path)
    return Policy()


def read_policy(path: str | os.PathLike) -> Policy:
    """Read one policy file (see the module notes for its shape)."""
    source = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(source, f"cannot read policy file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(source, f"not valid TOML: {exc}") from None
    section = raw.get("correlation", {})
    extra = sorted(set(raw) - {"correlation"}) + sorted(set(section) - _KEYS)
    if not isinstance(section, dict):
        raise InputError(source, "[correlation] must be a table")
    if extra:
        raise InputError(
            source,
            f"unknown key(s) {', '.join(extra)}; [correlation] takes {', '.join(sorted(_KEYS))}",
        )
    scopes = section.get("scopes", ["network"])
    if isinstance(scopes, str):
        scopes = [scopes]
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise InputError(source, "scopes must be a non-empty list of scope names")
    top = section.get("top", 10)
    if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= 1000:
        raise InputError(source, f"top must be a whole number from 1 to 1000, not {top!r}")
    threshold = section.get("log_lr_threshold")
    if threshold is not None and (
        not isinstance(threshold, int | float) or isinstance(threshold, bool)
    ):
        raise InputError(source, f"log_lr_threshold must be a number, not {threshold!r}")
    return Policy(
        tuple(s.strip() for s in scopes),
        top,
        None if threshold is None else float(threshold),
        source,
    )


def site_network(workflow: Any, network_file: str | os.PathLike | None = None):
    """The network a site's workflow commands use: ``network_file`` if given, else the one
    the site last imported a bundle with (remembered in the workflow database), else the
    example shipped with RIBIN."""
    from ribin.network import load_network

    if network_file is None:
        remembered = workflow.meta("network_file")
        if remembered and Path(remembered).is_file():
            network_file = remembered
    return load_network(network_file)
