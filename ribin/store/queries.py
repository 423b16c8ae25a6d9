"""Reading a store: lookups by ID, listings, iteration and feature tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from ribin import prefilter
from ribin.errors import StoreError
from ribin.network import Scope
from ribin.store.common import MANIFEST, SEGMENTS, _SegmentGone
from ribin.store.records import _TABLE_FIELDS, FeatureTable, StoredExhibit
from ribin.store_format import SegmentIndex, read_exhibit, read_segment_features

T = TypeVar("T")
_SIGNATURE_COLUMNS = ("signature_id", "kind", "modality", "pixel_size_um")


class _QueriesMixin:
    """Reading: lookups, listings, iteration, features, the audit log."""

    # -- reading ----------------------------------------------------------------------

    def listing(self, country: str | None = None, role: str | None = None) -> list[dict[str, str]]:
        """One row per live exhibit, in store order, without reading any signature.

        Parameters
        ----------
        country, role : str, optional
            Only exhibits owned by this country / of this role.

        Returns
        -------
        list of dict
            ``country``, ``exhibit_id``, ``role``, ``caliber``, ``sharing``, ``site`` and
            ``added`` (UTC time of the ingest, ISO 8601), the shape of ``ribin store list
            --json``.
        """

        def read() -> list[dict[str, str]]:
            live = self._live_view()
            rows_out = []
            for ref in self.segments():
                index = self._index(ref.name)
                rows = live.live_rows[ref.name].copy()
                if country is not None:
                    rows &= index.exhibits["country"] == country
                if role is not None:
                    rows &= index.exhibits["role"] == role
                exhibits = self._handle(ref.name)["exhibits"]
                for row in np.flatnonzero(rows).tolist():
                    group = exhibits[index.exhibits["content_id"][row]]
                    added = group.attrs.get("stored_at", "")
                    rows_out.append(
                        {
                            "country": str(index.exhibits["country"][row]),
                            "exhibit_id": str(index.exhibits["exhibit_id"][row]),
                            "role": str(index.exhibits["role"][row]),
                            "caliber": str(index.exhibits["caliber"][row]),
                            "sharing": str(index.exhibits["sharing"][row]),
                            "site": str(index.exhibits["site"][row]),
                            "added": added.decode() if isinstance(added, bytes) else str(added),
                        }
                    )
            return rows_out

        return self._retrying(read)

    def same_source(self, source_sha256: str) -> list[tuple[str, str]]:
        """``(country, content_id)`` of every live exhibit extracted from this source file.

        A search excludes them from a query with the same SHA-256: a scan is never its own
        candidate, whatever exhibit ID or extraction options it was stored under.
        """
        if not source_sha256:
            return []

        def read() -> list[tuple[str, str]]:
            live = self._live_view()
            found = []
            for ref in self.segments():
                index = self._index(ref.name)
                rows = live.live_rows[ref.name] & (index.exhibits["source_sha256"] == source_sha256)
                for row in np.flatnonzero(rows).tolist():
                    found.append(
                        (
                            str(index.exhibits["country"][row]),
                            str(index.exhibits["content_id"][row]),
                        )
                    )
            return found

        return self._retrying(read)

    def _stored(self, segment: str, content_id: str) -> StoredExhibit:
        record = read_exhibit(self._handle(segment), content_id)
        return StoredExhibit(
            record.exhibit, record.metadata, record.content_id, segment, record.stored_at
        )

    def get(self, exhibit_id: str, country: str | None = None) -> StoredExhibit:
        """The live exhibit with this exhibit_id.

        Parameters
        ----------
        exhibit_id : str
            ``"Q-001"``, or ``"JM/Q-001"`` to name the owning country (an ID containing
            ``/`` such as ``"2026/0412"`` is found as written; see :meth:`_locate`).
        country : str, optional
            Owning country; needed (here or as a prefix) when several countries hold the
            same exhibit_id.

        Raises
        ------
        ExhibitNotFoundError
            No live exhibit has that exhibit_id (a ``StoreError`` and a ``KeyError``).
        AmbiguousExhibitError
            Several countries hold it and none was named; the message lists them.
        """

        def read() -> StoredExhibit:
            _, segment, row = self._locate(exhibit_id, country)
            return self._stored(segment, self._index(segment).exhibits["content_id"][row])

        return self._retrying(read)

    def iter(self, scope: Scope | None = None) -> Iterator[StoredExhibit]:
        """Every live exhibit visible in ``scope`` (all of them when None), in store order.

        The iteration follows the snapshot taken at open or :meth:`refresh`; if a compaction
        removes a segment meanwhile, it re-reads the manifest and continues without repeats.
        """
        done: set[tuple[str, str]] = set()
        for _ in range(10):
            try:
                live = self._live_view()
                for ref in self.segments():
                    index = self._index(ref.name)
                    rows = live.live_rows[ref.name].copy()
                    if scope is not None:
                        rows &= scope.mask(index.exhibits["country"], index.exhibits["sharing"])
                    for row in np.flatnonzero(rows):
                        content_id = index.exhibits["content_id"][row]
                        key = (index.exhibits["country"][row], content_id)
                        if key in done:
                            continue
                        stored = self._stored(ref.name, content_id)
                        done.add(key)
                        yield stored
                return
            except _SegmentGone as gone:
                self.refresh()
                if any(s["name"] == gone.args[0] for s in self._manifest["segments"]):
                    raise StoreError(
                        f"{self.path.name}/{SEGMENTS}/{gone.args[0]}: listed in {MANIFEST} "
                        "but missing"
                    ) from None
        raise StoreError(f"{self.path}: the store kept changing while being read")

    def __iter__(self) -> Iterator[StoredExhibit]:
        return self.iter()

    def features(self, scope: Scope | None = None, kind: str | None = None) -> FeatureTable:
        """Prefilter features of the live signatures in ``scope``, optionally of one region.

        Each segment's features are one contiguous dataset read in one go; segments written
        with another :data:`ribin.prefilter.FEATURE_VERSION` are recomputed from surfaces.
        """
        return self._retrying(lambda: self._features(scope, kind))

    def _features(self, scope: Scope | None, kind: str | None) -> FeatureTable:
        live = self._live_view()
        kinds = None if kind is None else (kind,)
        parts = (self._segment_features(ref.name, live, scope, kinds) for ref in self.segments())
        return FeatureTable.concat([part[kind] for part in parts if part is not None])

    def map_features(
        self,
        action: Callable[[dict[str, FeatureTable]], T],
        scope: Scope | None = None,
        kinds: Sequence[str] = (),
    ) -> list[T]:
        """``action`` on each segment's feature tables, one table per region of ``kinds``.

        What :meth:`features` reads, a segment at a time: each segment's feature matrix is
        read once for all ``kinds``, and no table of the whole store is ever built, so a
        search over 10^5 exhibits holds one segment's features at a time (a few MB) rather
        than the store's (0.4 GB per region). Rows are in store order, segments oldest
        first; a segment without a live row in scope is skipped. If a compaction removes a
        segment meanwhile, the whole pass is re-run on the new manifest (``action`` must
        not depend on having been called before).

        Parameters
        ----------
        action : callable
            Called as ``action({kind: FeatureTable})`` per segment; its results are returned.
        scope : Scope, optional
            Only exhibits visible in this scope.
        kinds : sequence of str
            The regions to read (``"breech_face"``, ``"firing_pin"``).

        Returns
        -------
        list
            ``action``'s results, one per segment read.
        """
        kinds = tuple(dict.fromkeys(kinds))

        def read() -> list[T]:
            live = self._live_view()
            out = []
            for ref in self.segments():
                part = self._segment_features(ref.name, live, scope, kinds)
                if part is not None:
                    out.append(action(part))
            return out

        return self._retrying(read)

    def _segment_features(
        self,
        name: str,
        live: Any,
        scope: Scope | None,
        kinds: tuple[str, ...] | None,
    ) -> dict[str | None, FeatureTable] | None:
        """One segment's live feature rows in ``scope``: a table per kind (None: all kinds).

        The segment's matrix is read once whatever the number of kinds; None when no row
        of any asked kind is live in scope.
        """
        index = self._index(name)
        sigs, exh = index.signatures, index.exhibits
        rows = live.live_rows[name]
        if scope is not None:
            rows = rows & scope.mask(exh["country"], exh["sharing"])
        live_sigs = rows[sigs["exhibit"]]
        takes = {
            kind: live_sigs if kind is None else live_sigs & (sigs["kind"] == kind)
            for kind in (kinds if kinds is not None else (None,))
        }
        if not any(take.any() for take in takes.values()):
            return None
        wanted = np.logical_or.reduce(list(takes.values()))
        if index.feature_version == prefilter.FEATURE_VERSION:
            matrix = read_segment_features(self._handle(name))
        else:
            matrix = np.empty((len(wanted), prefilter.FEATURE_LENGTH), dtype=np.float32)
            matrix[wanted] = self._recompute_features(name, index, np.flatnonzero(wanted))
        out: dict[str | None, FeatureTable] = {}
        for kind, take in takes.items():
            owner = sigs["exhibit"][take]
            columns = {name_: sigs[name_][take] for name_ in _SIGNATURE_COLUMNS}
            columns.update({name_: exh[name_][owner] for name_ in _TABLE_FIELDS})
            out[kind] = FeatureTable(
                features=matrix[take],
                segment=np.full(len(owner), name, dtype=object),
                **columns,
            )
        return out

    def _recompute_features(self, segment: str, index: SegmentIndex, rows: np.ndarray):
        out = np.empty((len(rows), prefilter.FEATURE_LENGTH), dtype=np.float32)
        handle = self._handle(segment)
        for i, sig_row in enumerate(rows):
            content_id = index.exhibits["content_id"][index.signatures["exhibit"][sig_row]]
            record = read_exhibit(handle, content_id)
            signature = record.exhibit.signatures()[index.signatures["kind"][sig_row]]
            out[i] = prefilter.features(signature)
        return out

    def audit_log(self) -> list[dict[str, Any]]:
        """The manifest's audit records (create, add, remove, compact), oldest first."""
        return [dict(entry) for entry in self._manifest.get("audit", [])]
