"""Segment files, their open handles and indexes, and the live view across them."""

from __future__ import annotations

import collections
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ribin.errors import InputError, StoreError
from ribin.store.common import (
    _OPEN_HANDLES,
    MANIFEST,
    SEGMENTS,
    AmbiguousExhibitError,
    ExhibitNotFoundError,
    _label,
    _readings,
    _SegmentGone,
    _split_key,
)
from ribin.store.records import SegmentRef
from ribin.store_format import SegmentIndex, open_segment, read_segment_index


@dataclass
class _Live:
    """Maps from keys to (segment name, row) over the live (not tombstoned) exhibits.

    Exhibits are keyed per owning country: ``(country, exhibit_id)`` and ``(country,
    content_id)`` are unique among live exhibits, so Barbados's ``Q-001`` and Jamaica's
    ``Q-001`` (imported by sync) live side by side. ``by_signature_id`` maps ``(country,
    signature_id)`` to (segment, signature row).
    """

    by_key: dict[tuple[str, str], tuple[str, int]]
    by_content_id: dict[tuple[str, str], tuple[str, int]]
    by_signature_id: dict[tuple[str, str], tuple[str, int]]
    live_rows: dict[str, np.ndarray]  # segment -> bool mask over its exhibit rows
    duplicates: list[str]
    # exhibit_id -> owning countries, made when first asked for (a search names them)
    _owners: dict[str, list[str]] | None = field(default=None, repr=False)

    @property
    def countries_of(self) -> dict[str, list[str]]:
        """Exhibit ID -> the countries holding an exhibit of that ID, in the order added."""
        if self._owners is None:
            owners: dict[str, list[str]] = {}
            for country, exhibit_id in self.by_key:
                owners.setdefault(exhibit_id, []).append(country)
            self._owners = owners
        return self._owners

    def add_key(self, key: tuple[str, str], place: tuple[str, int]) -> None:
        self.by_key[key] = place
        if self._owners is not None:
            self._owners.setdefault(key[1], []).append(key[0])

    def add_keys(self, keys: list[tuple[str, str]], places: list[tuple[str, int]]) -> None:
        """:meth:`add_key` for many new keys at once."""
        if self._owners is not None:
            for key, place in zip(keys, places, strict=True):
                self.add_key(key, place)
        else:
            self.by_key.update(zip(keys, places, strict=True))

    def drop_key(self, key: tuple[str, str]) -> None:
        del self.by_key[key]
        if self._owners is not None:
            owners = self._owners[key[1]]
            owners.remove(key[0])
            if not owners:
                del self._owners[key[1]]


class _SegmentsMixin:
    """Segment handles and indexes, and the live view (which exhibit lives where)."""

    # -- segments ---------------------------------------------------------------------

    def _segment_path(self, name: str) -> Path:
        return self.path if self.single_file else self.path / SEGMENTS / name

    def _regular_segment(self, name: str) -> Path:
        """The segment's path, refused unless a regular file (no link) in the store."""
        path = self._segment_path(name)
        if self.single_file:
            return path
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise _SegmentGone(name) from None
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(
                f"{self.path.name}/{SEGMENTS}/{name}: not a regular file in the store "
                "(a link or a device); refused"
            )
        return path

    def _handle(self, name: str) -> h5py.File:
        handle = self._handles.get(name)
        if handle is not None:
            self._handles.move_to_end(name)
            return handle
        try:
            handle = open_segment(self._regular_segment(name))
        except FileNotFoundError:
            raise _SegmentGone(name) from None
        self._handles[name] = handle
        while len(self._handles) > _OPEN_HANDLES:
            self._handles.popitem(last=False)[1].close()
        return handle

    def _index(self, name: str) -> SegmentIndex:
        index = self._indices.get(name)
        if index is None:
            index = read_segment_index(self._handle(name), name)
            self._indices[name] = index
        return index

    def _retrying(self, action: Callable[[], Any]) -> Any:
        """Run ``action``; if a listed segment vanished, re-read the manifest and retry."""
        for _ in range(10):
            try:
                return action()
            except _SegmentGone as gone:
                missing = gone.args[0]
                self.refresh()
                if any(s["name"] == missing for s in self._manifest["segments"]):
                    raise StoreError(
                        f"{self.path.name}/{SEGMENTS}/{missing}: listed in {MANIFEST} but missing"
                    ) from None
        raise StoreError(f"{self.path}: the store kept changing while being read")

    def segments(self) -> list[SegmentRef]:
        """Live segments with the content IDs tombstoned in each (for search workers)."""
        removed: dict[str, set[str]] = collections.defaultdict(set)
        for stone in self._manifest["tombstones"]:
            removed[stone["segment"]].add(stone["content_id"])
        return [
            SegmentRef(
                s["name"],
                self._segment_path(s["name"]),
                s.get("sha256", ""),
                frozenset(removed[s["name"]]),
            )
            for s in self._manifest["segments"]
        ]

    def segment_paths(self) -> list[Path]:
        """Paths of the live segment files, oldest first."""
        return [ref.path for ref in self.segments()]

    # -- the live view ----------------------------------------------------------------

    def _live_view(self) -> _Live:
        if self._live is None:
            self._live = self._retrying(self._build_live)
        return self._live

    def _build_live(self) -> _Live:
        live = _Live({}, {}, {}, {}, [])
        for ref in self.segments():
            index = self._index(ref.name)
            content_ids = index.exhibits["content_id"]
            rows = np.ones(len(content_ids), dtype=bool)
            if ref.removed:
                rows &= ~np.isin(content_ids, list(ref.removed))
            take = np.flatnonzero(rows).tolist()
            countries = index.exhibits["country"][take].tolist()
            new_content = list(zip(countries, content_ids[take].tolist(), strict=True))
            new_keys = list(
                zip(countries, index.exhibits["exhibit_id"][take].tolist(), strict=True)
            )
            places = [(ref.name, row) for row in take]
            clash = (
                len(set(new_content)) < len(take)
                or len(set(new_keys)) < len(take)
                or not live.by_content_id.keys().isdisjoint(new_content)
                or not live.by_key.keys().isdisjoint(new_keys)
            )
            if not clash:  # the usual case, in bulk
                live.by_content_id.update(zip(new_content, places, strict=True))
                live.add_keys(new_keys, places)
            else:  # a damaged store: keep the first copy, report the others
                for row, content_key, key in zip(take, new_content, new_keys, strict=True):
                    if content_key in live.by_content_id or key in live.by_key:
                        live.duplicates.append(f"{ref.name}: {_label(*key)} is stored twice")
                        rows[row] = False
                        continue
                    live.by_content_id[content_key] = (ref.name, row)
                    live.add_key(key, (ref.name, row))
            live.live_rows[ref.name] = rows
            self._add_signatures(live, ref.name, np.flatnonzero(rows[index.signatures["exhibit"]]))
        return live

    def _add_signatures(self, live: _Live, name: str, sig_rows: np.ndarray) -> None:
        index = self._index(name)
        sig_rows = np.asarray(sig_rows, dtype=np.int64)
        owners = index.exhibits["country"][index.signatures["exhibit"][sig_rows]].tolist()
        sig_ids = index.signatures["signature_id"][sig_rows].tolist()
        live.by_signature_id.update(
            zip(
                zip(owners, sig_ids, strict=True),
                [(name, r) for r in sig_rows.tolist()],
                strict=True,
            )
        )

    def _add_to_live(self, live: _Live, name: str) -> None:
        """Extend ``live`` with a segment just committed by this writer, and install it."""
        index = self._index(name)
        for row, (content_id, exhibit_id, country) in enumerate(
            zip(
                index.exhibits["content_id"],
                index.exhibits["exhibit_id"],
                index.exhibits["country"],
                strict=True,
            )
        ):
            live.by_content_id[(country, content_id)] = (name, row)
            live.add_key((country, exhibit_id), (name, row))
        self._add_signatures(live, name, np.arange(index.n_signatures))
        live.live_rows[name] = np.ones(index.n_exhibits, dtype=bool)
        self._live = live

    def __len__(self) -> int:
        return len(self._live_view().by_key)

    def __contains__(self, exhibit_id: object) -> bool:
        if not isinstance(exhibit_id, str):
            return False
        live = self._live_view()
        return any(
            (country, plain) in live.by_key if country is not None else plain in live.countries_of
            for country, plain in _readings(exhibit_id)
        )

    def exhibit_ids(self) -> list[str]:
        """exhibit_id of every live exhibit, in store order.

        Two countries may hold the same exhibit_id (after sync); it is then listed once per
        country. :meth:`keys` gives the unique ``(country, exhibit_id)`` pairs.
        """
        return [exhibit_id for _, exhibit_id in self._live_view().by_key]

    def keys(self) -> list[tuple[str, str]]:
        """``(country, exhibit_id)`` of every live exhibit, in store order (unique)."""
        return list(self._live_view().by_key)

    def _locate(self, exhibit_id: str, country: str | None = None) -> tuple[str, str, int]:
        """(country, segment, row) of a live exhibit named ``ID``, ``CC/ID`` or ``ID`` + country.

        An exhibit ID may itself contain ``/`` (``2026/0412``): ``CC/REST`` is read both as
        country ``CC``'s ``REST`` and as the ID ``CC/REST`` itself; whichever is stored is
        found, and when both are, the name is ambiguous (name the country separately).
        """
        found = []
        for prefix, plain in _readings(exhibit_id):
            if prefix is not None and country is not None and prefix != country:
                continue
            try:
                found.append(self._locate_one(plain, prefix or country, exhibit_id))
            except ExhibitNotFoundError:
                continue
        if len(found) > 1:
            prefix, plain = _split_key(exhibit_id)
            raise AmbiguousExhibitError(
                f"{self.path.name}: {exhibit_id!r} is both {prefix}'s exhibit {plain!r} and "
                f"{found[1][0]}'s exhibit {exhibit_id!r}; name the country separately"
            )
        if found:
            return found[0]
        prefix, _ = _split_key(exhibit_id)
        if prefix is not None and country is not None and prefix != country:
            raise InputError(None, f"{exhibit_id!r} names country {prefix}, not {country}")
        raise ExhibitNotFoundError(f"{self.path.name}: no exhibit {exhibit_id!r}")

    def _locate_one(self, plain: str, country: str | None, name: str) -> tuple[str, str, int]:
        """:meth:`_locate` for one reading: exhibit ID ``plain`` of ``country`` (or any)."""
        live = self._live_view()
        if country is None:
            owners = live.countries_of.get(plain, [])
            if len(owners) > 1:
                choices = ", ".join(f"{c}/{plain}" for c in sorted(owners))
                raise AmbiguousExhibitError(
                    f"{self.path.name}: exhibit_id {plain!r} is held by {len(owners)} countries "
                    f"({', '.join(sorted(owners))}); name one: {choices}"
                )
            country = owners[0] if owners else ""
        where = live.by_key.get((country, plain))
        if where is None:
            raise ExhibitNotFoundError(f"{self.path.name}: no exhibit {name!r}")
        return country, *where
