"""What :mod:`ribin.sync` needs of a store: copies, merges, notes and compaction."""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from ribin import prefilter
from ribin.errors import StoreError
from ribin.exhibit import Exhibit, canonical_json
from ribin.store.common import SEGMENTS
from ribin.store.manifest import _audit
from ribin.store.records import MergeResult, PreparedExhibit, _features
from ribin.store.segments import _Live
from ribin.store.writing import _Batch
from ribin.store_format import (
    ExhibitMetadata,
    SegmentRecord,
    SegmentWriter,
    read_exhibit,
    read_segment_features,
    utc_now,
)

if TYPE_CHECKING:
    from ribin.store.signature_store import SignatureStore


class _SyncMixin:
    """Sync support (used by :mod:`ribin.sync`): copy, merge, notes, compaction."""

    # -- sync support (used by ribin.sync) --------------------------------------------

    def prepare(
        self,
        exhibit: Exhibit,
        metadata: ExhibitMetadata | Mapping[str, Any],
        *,
        features: bool = True,
    ) -> PreparedExhibit:
        """Validate an exhibit and compute its signature IDs, content ID and features.

        Every ID is recomputed from the surfaces and parameters, never taken from a file.
        With ``features=False`` the prefilter features are left for :meth:`merge` to
        compute, for the exhibits it actually adds.
        """
        return self._prepare(exhibit, metadata, features)

    def segment_origin(self, segment: str) -> dict[str, Any] | None:
        """Sync origin of a segment (``country``, ``site``, ``bundle_sha256``), None if local."""
        for entry in self._manifest["segments"]:
            if entry["name"] == segment:
                origin = entry.get("origin")
                return dict(origin) if origin else None
        raise StoreError(f"{self.path.name}: no segment {segment}")

    def locate_content(self, country: str, content_id: str) -> tuple[str, int] | None:
        """(segment, row) of the live exhibit of ``country`` with this content ID, or None."""
        return self._live_view().by_content_id.get((country, content_id))

    @property
    def sequence(self) -> int:
        """Commit sequence of the state this object shows."""
        return int(self._manifest["sequence"])

    @property
    def store_id(self) -> str:
        """Random ID fixed at the store's creation (empty for a single segment file)."""
        return str(self._manifest.get("store_id", ""))

    def sync_state(self) -> dict[str, Any]:
        """The manifest's ``sync`` object: the store's own identity and per-sender cursors."""
        return json.loads(json.dumps(self._manifest.get("sync", {})))

    def copy_local(
        self, writer: SegmentWriter, country: str, since: int, sharing: Iterable[str]
    ) -> list[dict[str, str]]:
        """Copy into ``writer`` the live exhibits ingested here (not imported), of
        ``country``, with a sharing level in ``sharing``, from segments written after
        commit ``since``. Groups are copied as stored (HDF5 object copy), with their stored
        prefilter features. Returns their index rows (``content_id``, ``exhibit_id``,
        metadata). After :meth:`compact`, every local exhibit counts as written by it.
        """
        levels = list(sharing)
        live = self._live_view()
        copied: list[dict[str, str]] = []
        for entry in self._manifest["segments"]:
            if entry.get("origin") or _entry_sequence(entry) <= since:
                continue
            name = entry["name"]
            index = self._index(name)
            exh, sigs = index.exhibits, index.signatures
            rows = live.live_rows[name] & (exh["country"] == country)
            rows &= np.isin(exh["sharing"], levels)
            if not rows.any():
                continue
            handle = self._handle(name)
            groups = handle["exhibits"]
            if index.feature_version == prefilter.FEATURE_VERSION:
                stored = read_segment_features(handle)
            else:
                stored = self._recompute_features(name, index, np.arange(index.n_signatures))
            sig_rows: dict[int, list[int]] = collections.defaultdict(list)
            for sig_row, row in enumerate(sigs["exhibit"].tolist()):
                sig_rows[row].append(sig_row)
            for row in np.flatnonzero(rows).tolist():
                values = {key: exh[key][row] for key in exh}
                mine = sig_rows[row]
                writer.copy_exhibit(
                    groups[values["content_id"]],
                    values,
                    [tuple(sigs[key][r] for key in _SIGNATURE_ROW) for r in mine],
                    [stored[r] for r in mine],
                )
                copied.append(values)
        return copied

    def commit_note(
        self,
        action: str,
        details: Mapping[str, Any],
        update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Commit an audit record (and ``update`` applied to the new manifest), no data."""
        with self._writing():
            manifest = self._next_manifest()
            if update is not None:
                update(manifest)
            record = _audit(action, manifest["sequence"], **details)
            manifest["audit"].append(record)
            self._commit(manifest)
            return dict(record)

    def merge(
        self,
        items: Iterable[PreparedExhibit],
        removals: Iterable[tuple[str, str]],
        *,
        origin: Mapping[str, Any],
        audit: Mapping[str, Any],
        check: Callable[[SignatureStore], None] | None = None,
        update: Callable[[dict[str, Any]], None] | None = None,
        copy_from: h5py.File | None = None,
    ) -> MergeResult:
        """Apply removals and add exhibits from another site in one crash-safe write.

        Under the writer lock, on the newest manifest: ``check(self)`` may raise to refuse
        (nothing is written); each ``(country, content_id)`` in ``removals`` that is live
        gets a tombstone; exhibits not yet stored go into one new segment whose manifest
        entry records ``origin``; exhibits already stored identically are skipped; then
        ``update(manifest)`` (e.g. a sync cursor) and an ``import`` audit record go into the
        same manifest commit. A crash leaves either all of it or none of it.

        With ``copy_from`` (an open segment holding the items' groups under their content
        IDs, already checked by the caller), exhibit groups are copied as they are (HDF5
        object copy) instead of re-encoded; the index and prefilter rows still come from
        the prepared items (IDs and features computed here).

        Raises
        ------
        ExhibitConflictError
            An exhibit clashes with a stored one (nothing is written).
        """
        items = list(items)
        removals = list(removals)
        with self._writing():
            if check is not None:
                check(self)
            live = self._live_view()
            manifest = self._next_manifest()
            sequence = manifest["sequence"]
            try:
                removed = 0
                for country, content_id in removals:
                    where = live.by_content_id.get((country, content_id))
                    if where is not None:
                        self._tombstone(live, manifest, country, *where)
                        removed += 1
                batch = _Batch()
                results = [self._check_new(item, live, batch) for item in items]
                new = batch.items
                entry = None
                if new:
                    records = (
                        self._records(new.values(), utc_now())
                        if copy_from is None
                        else _copier(copy_from, list(new.values()))
                    )
                    entry = self._write_segment(sequence, records, origin)
                    manifest["segments"].append(entry)
                if update is not None:
                    update(manifest)
                record = _audit(
                    "import",
                    sequence,
                    **audit,
                    segment=entry["name"] if entry else None,
                    added=len(new),
                    unchanged=len(results) - len(new),
                    removed=removed,
                )
                manifest["audit"].append(record)
                self._commit(manifest)
            except BaseException:
                self._live = None  # the in-memory view was changed: rebuild it from disk
                raise
            if entry is not None:
                self._add_to_live(live, entry["name"])
            else:
                self._live = live
            return MergeResult(len(new), len(results) - len(new), removed, sequence, record)

    def compact(self) -> int:
        """Rewrite all live exhibits into as few segments as possible; drop tombstoned bytes.

        Exhibits ingested here go into one segment, those imported from each sending site
        into one segment per site (the sync origin stays on the segment; bundle hashes
        stay in the audit log). Returns the number of segments replaced. Readers holding the
        old manifest re-read it when they next touch a removed segment.
        """
        with self._writing():
            old = [s["name"] for s in self._manifest["segments"]]
            if len(old) <= 1 and not self._manifest["tombstones"]:
                return 0
            live = self._live_view()
            manifest = self._next_manifest()
            sequence = manifest["sequence"]
            manifest["segments"] = []
            try:
                for origin, records in self._records_for_compaction(live):
                    entry = self._write_segment(sequence, records, origin)
                    manifest["segments"].append(entry)
            except BaseException:
                for entry in manifest["segments"]:
                    with contextlib.suppress(OSError):
                        (self.path / SEGMENTS / entry["name"]).unlink()
                raise
            manifest["audit"].append(
                _audit(
                    "compact",
                    sequence,
                    replaced=old,
                    dropped=[t["content_id"] for t in manifest["tombstones"]],
                    exhibits=len(live.by_content_id),
                )
            )
            manifest["tombstones"] = []
            self._commit(manifest)
            self._remove_orphans()
            return len(old)

    def _records_for_compaction(
        self, live: _Live
    ) -> Iterator[tuple[dict[str, Any] | None, list[SegmentRecord]]]:
        """Live records grouped by origin; a group splits where a content ID repeats
        (two countries holding identical content cannot share one segment's group names)."""
        groups: dict[str, list[list[SegmentRecord]]] = {}
        origins: dict[str, dict[str, Any] | None] = {}
        seen: dict[str, list[set[str]]] = {}
        for ref in self.segments():
            origin = self.segment_origin(ref.name)
            if origin:
                origin = {"country": origin["country"], "site": origin["site"]}
            key = canonical_json(origin)
            origins[key] = origin
            bins = groups.setdefault(key, [])
            names = seen.setdefault(key, [])
            index = self._index(ref.name)
            handle = self._handle(ref.name)
            stored = read_segment_features(handle)
            rows_of: dict[int, dict[str, int]] = collections.defaultdict(dict)
            for sig_row, (row, kind) in enumerate(
                zip(index.signatures["exhibit"], index.signatures["kind"], strict=True)
            ):
                rows_of[int(row)][kind] = sig_row
            for row in np.flatnonzero(live.live_rows[ref.name]):
                record = read_exhibit(handle, index.exhibits["content_id"][row])
                signatures = record.exhibit.signatures()
                if index.feature_version == prefilter.FEATURE_VERSION:
                    vectors = {k: stored[rows_of[int(row)][k]] for k in signatures}
                else:
                    vectors = {k: prefilter.features(s) for k, s in signatures.items()}
                out = SegmentRecord(
                    record.exhibit, record.metadata, record.content_id, record.stored_at, vectors
                )
                free = [i for i, used in enumerate(names) if out.content_id not in used]
                if free:
                    i = free[0]
                else:
                    i = len(names)
                    names.append(set())
                    bins.append([])
                names[i].add(out.content_id)
                bins[i].append(out)
        for key, bins in groups.items():
            for records in bins:
                yield origins[key], records


def _copier(source: h5py.File, items: list[PreparedExhibit]) -> Callable[[SegmentWriter], None]:
    def fill(writer: SegmentWriter) -> None:
        groups = source["exhibits"]
        for item in items:
            row = {
                "content_id": item.content_id,
                "exhibit_id": item.exhibit.exhibit_id,
                "source_sha256": item.exhibit.source_sha256,
                **item.metadata.as_dict(),
            }
            signatures = item.exhibit.signatures()
            writer.copy_exhibit(
                groups[item.content_id],
                row,
                [
                    (item.signature_ids[k], k, s.modality, s.pixel_size_um)
                    for k, s in signatures.items()
                ],
                [_features(item)[k] for k in signatures],
            )

    return fill


_SIGNATURE_ROW = ("signature_id", "kind", "modality", "pixel_size_um")


def _entry_sequence(entry: Mapping[str, Any]) -> int:
    if isinstance(entry.get("sequence"), int):
        return int(entry["sequence"])
    return int(str(entry["name"])[4:12])  # seg-<sequence>-<random>.h5
