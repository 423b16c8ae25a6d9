"""Writing a store: the commit protocol, adding and removing exhibits."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ribin import prefilter
from ribin.errors import InputError, StoreError
from ribin.exhibit import Exhibit, canonical_json
from ribin.store.common import CREATED_BY, LOCK, MANIFEST, SEGMENTS, ExhibitConflictError
from ribin.store.lock import _fsync_dir, _WriterLock
from ribin.store.manifest import _audit
from ribin.store.records import AddResult, PreparedExhibit, _features
from ribin.store.segments import _Live
from ribin.store_format import (
    ExhibitMetadata,
    SegmentRecord,
    SegmentWriter,
    check_exhibit_id,
    exhibit_content_id,
    file_sha256,
    is_hex64,
    loose_json,
    utc_now,
)

# Test hook: called with the name of each step of a write, so a test can kill the writer
# exactly there. None in normal use.
_checkpoint: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if _checkpoint is not None:
        _checkpoint(name)


@dataclass
class _Batch:
    """Exhibits accepted so far in one write, with lookups that keep checks O(1)."""

    items: dict[tuple[str, str], PreparedExhibit] = field(default_factory=dict)
    signatures: dict[tuple[str, str], str] = field(default_factory=dict)
    content_ids: set[str] = field(default_factory=set)
    keys: set[tuple[str, str]] = field(default_factory=set)


class _WritingMixin:
    """Writing: the commit protocol, ``add``/``add_many``, ``remove``."""

    # -- writing ----------------------------------------------------------------------

    def _require_writable(self) -> None:
        if self.mode == "r":
            raise StoreError(f"{self.path}: store opened read-only")
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the writer lock, on the newest manifest, with orphans cleaned away."""
        self._require_writable()
        with _WriterLock(self.path / LOCK, self.lock_timeout):
            self.refresh()
            self._remove_orphans()
            yield

    def _remove_orphans(self) -> None:
        for relative in self._orphans():
            with contextlib.suppress(OSError):  # Windows: a reader may hold it open
                (self.path / relative).unlink()

    def _commit(self, manifest: dict[str, Any], live: _Live | None = None) -> None:
        """Replace the manifest atomically: the commit point of every write."""
        data = (canonical_json(manifest) + "\n").encode()
        tmp = self.path / f".manifest-{secrets.token_hex(4)}.tmp"
        try:
            with open(tmp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:  # disk full, file size limit, I/O error: nothing committed
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(
                f"{self.path.name}/{MANIFEST}: cannot write the new manifest "
                f"({exc.strerror or exc}); the store is unchanged"
            ) from None
        _step("manifest-written")
        os.replace(tmp, self.path / MANIFEST)
        _step("manifest-replaced")
        _fsync_dir(self.path)
        self._set_manifest(manifest, live)

    def _next_manifest(self) -> dict[str, Any]:
        manifest = json.loads(json.dumps(self._manifest))
        manifest["sequence"] = int(manifest["sequence"]) + 1
        manifest["written_by"] = CREATED_BY
        manifest["committed_at"] = utc_now()
        return manifest

    def _write_segment(
        self,
        sequence: int,
        records: Iterable[SegmentRecord] | Callable[[SegmentWriter], None],
        origin: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write, fsync and rename one segment; returns its manifest entry."""
        name = f"seg-{sequence:08d}-{secrets.token_hex(4)}.h5"
        tmp = self.path / SEGMENTS / f".tmp-{name}"
        writer = SegmentWriter(
            tmp,
            sequence=sequence,
            created_by=CREATED_BY,
            feature_version=prefilter.FEATURE_VERSION,
            feature_length=prefilter.FEATURE_LENGTH,
        )
        try:
            if callable(records):
                records(writer)
            else:
                for record in records:
                    writer.add(record)
            writer.finish()
            _step("segment-written")
            digest, size = file_sha256(tmp, fsync=True)
            os.replace(tmp, self.path / SEGMENTS / name)
            _fsync_dir(self.path / SEGMENTS)
            _step("segment-renamed")
        except BaseException as exc:
            writer.abort()
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):  # fsync or rename failed: one line, nothing stored
                raise StoreError(
                    f"{self.path.name}/{SEGMENTS}/{name}: cannot write the segment "
                    f"({exc.strerror or exc}); the store is unchanged"
                ) from None
            raise
        index = writer.index(name, sequence)
        self._indices[name] = index
        entry = {
            "name": name,
            "sequence": sequence,
            "sha256": digest,
            "bytes": size,
            "exhibits": index.n_exhibits,
            "signatures": index.n_signatures,
            "feature_version": prefilter.FEATURE_VERSION,
        }
        if origin:
            entry["origin"] = dict(origin)
        return entry

    def _prepare(
        self,
        exhibit: Exhibit,
        metadata: ExhibitMetadata | Mapping[str, Any],
        features: bool = True,
    ):
        if not isinstance(exhibit, Exhibit):
            raise TypeError(f"expected an Exhibit, not {type(exhibit).__name__}")
        source = exhibit.source_name or exhibit.exhibit_id
        check_exhibit_id(exhibit.exhibit_id, source)
        meta = ExhibitMetadata.from_mapping(metadata, source)
        if exhibit.source_sha256 and not is_hex64(exhibit.source_sha256):
            raise InputError(source, "source_sha256 is not 64 lower-case hexadecimal digits")
        signatures = exhibit.signatures()
        if not signatures:
            raise InputError(source, "exhibit has no signature to store")
        for kind, signature in signatures.items():
            if signature.kind != kind:
                raise InputError(source, f"{kind} slot holds a {signature.kind} signature")
            if min(signature.surface.shape) < 1:
                raise InputError(source, f"{kind} surface is empty")
            try:
                text = canonical_json(signature.params)
                if canonical_json(json.loads(text)) != text:
                    raise ValueError("changes when read back")
                loose_json(signature.quality)
            except (TypeError, ValueError) as exc:
                raise InputError(
                    source, f"{kind} params/quality cannot be stored ({exc})"
                ) from None
        try:
            loose_json(
                {k: v for k, v in exhibit.detection.items() if not isinstance(v, np.ndarray)}
            )
            loose_json(list(exhibit.warnings))
            loose_json(dict(exhibit.missing))
        except (TypeError, ValueError) as exc:
            raise InputError(source, f"detection/warnings cannot be stored ({exc})") from None
        sig_ids = {kind: s.id for kind, s in signatures.items()}
        return PreparedExhibit(
            exhibit,
            meta,
            exhibit_content_id(exhibit.exhibit_id, sig_ids),
            sig_ids,
            {kind: prefilter.features(s) for kind, s in signatures.items()} if features else {},
        )

    def _compare(self, item: PreparedExhibit, segment: str, row: int) -> str | None:
        """None when ``item`` equals the stored exhibit, else what differs."""
        stored = self._index(segment).exhibits
        differ = []
        if stored["source_sha256"][row] != item.exhibit.source_sha256:
            differ.append(
                f"source_sha256 {stored['source_sha256'][row][:12]}… vs "
                f"{item.exhibit.source_sha256[:12]}…"
            )
        for key, value in item.metadata.as_dict().items():
            if stored[key][row] != value:
                differ.append(f"{key} {stored[key][row]!r} vs {value!r}")
        return "; ".join(differ) or None

    def add(self, exhibit: Exhibit, metadata: ExhibitMetadata | Mapping[str, Any]) -> AddResult:
        """Add one exhibit (see :meth:`add_many`)."""
        return self.add_many([(exhibit, metadata)])[0]

    def add_many(
        self, items: Iterable[tuple[Exhibit, ExhibitMetadata | Mapping[str, Any]]]
    ) -> list[AddResult]:
        """Add exhibits in one write: all of them land (one new segment) or none does.

        An exhibit already stored with the same content, source and metadata is a no-op:
        its :class:`AddResult` has ``added=False`` and says so. Identity is per owning
        country: ``(country, exhibit_id)`` is unique, and a signature may be stored once
        per country.

        Raises
        ------
        InputError
            Bad metadata or an exhibit that cannot be stored (nothing is written).
        ExhibitConflictError
            Same exhibit_id with other content, same content with other source or metadata,
            or a signature already stored under another exhibit (nothing is written).
        """
        prepared = [self._prepare(exhibit, metadata) for exhibit, metadata in items]
        with self._writing():
            live = self._live_view()
            batch = _Batch()
            results = [self._check_new(item, live, batch) for item in prepared]
            if not batch.items:
                return results
            manifest = self._next_manifest()
            sequence = manifest["sequence"]
            entry = self._write_segment(sequence, self._records(batch.items.values(), utc_now()))
            manifest["segments"].append(entry)
            manifest["audit"].append(
                _audit("add", sequence, segment=entry["name"], exhibits=entry["exhibits"])
            )
            self._commit(manifest)
            self._add_to_live(live, entry["name"])
            return results

    @staticmethod
    def _records(items: Iterable[PreparedExhibit], stored_at: str) -> Iterator[SegmentRecord]:
        return (
            SegmentRecord(p.exhibit, p.metadata, p.content_id, stored_at, _features(p))
            for p in items
        )

    def _check_new(
        self,
        item: PreparedExhibit,
        live: _Live,
        batch: _Batch,
    ) -> AddResult:
        exhibit_id = item.exhibit.exhibit_id
        country = item.metadata.country
        short = item.content_id[:16]
        where = live.by_content_id.get((country, item.content_id))
        if where is not None:
            differ = self._compare(item, *where)
            if differ:
                raise ExhibitConflictError(
                    f"{self.path.name}: exhibit {exhibit_id!r} is already stored with the same "
                    f"signatures but other details ({differ}); remove it first to change them "
                    "(ribin store remove)"
                )
            return AddResult(
                exhibit_id,
                item.content_id,
                False,
                f"{exhibit_id}: already in the store (content {short}…), nothing added",
            )
        twin = batch.items.get((country, item.content_id))
        if twin is not None:
            if twin.metadata != item.metadata or (
                twin.exhibit.source_sha256 != item.exhibit.source_sha256
            ):
                raise ExhibitConflictError(
                    f"{item.exhibit.source_name or exhibit_id}: exhibit {exhibit_id!r} appears "
                    "twice in the batch with different details"
                )
            return AddResult(
                exhibit_id,
                item.content_id,
                False,
                f"{exhibit_id}: repeated in the batch, added once",
            )
        if item.content_id in batch.content_ids:
            raise ExhibitConflictError(  # one segment holds one group per content ID
                f"{item.exhibit.source_name or exhibit_id}: exhibit {exhibit_id!r} appears "
                "twice in the batch under two countries; add them in separate batches"
            )
        stored_at = live.by_key.get((country, exhibit_id))
        if stored_at is not None:
            segment, row = stored_at
            index = self._index(segment).exhibits
            raise ExhibitConflictError(
                f"{item.exhibit.source_name or exhibit_id}: exhibit_id {exhibit_id!r} is "
                f"already stored with other content (stored {index['content_id'][row][:16]}… "
                f"from source {index['source_sha256'][row][:12]}…, new {short}… from "
                f"{item.exhibit.source_sha256[:12]}…)"
            )
        if (country, exhibit_id) in batch.keys:
            raise ExhibitConflictError(
                f"{item.exhibit.source_name or exhibit_id}: exhibit_id {exhibit_id!r} appears "
                "twice in the batch with different content"
            )
        for kind, sig_id in item.signature_ids.items():
            owner = live.by_signature_id.get((country, sig_id))
            other = None
            if owner is not None:
                index = self._index(owner[0])
                other = index.exhibits["exhibit_id"][index.signatures["exhibit"][owner[1]]]
            other = other or batch.signatures.get((country, sig_id))
            if other is not None:
                raise ExhibitConflictError(
                    f"{item.exhibit.source_name or exhibit_id}: its {kind} signature "
                    f"{sig_id[:16]}… is already stored as part of exhibit {other!r}"
                )
        batch.items[(country, item.content_id)] = item
        batch.content_ids.add(item.content_id)
        batch.keys.add((country, exhibit_id))
        for sig_id in item.signature_ids.values():
            batch.signatures[(country, sig_id)] = exhibit_id
        return AddResult(exhibit_id, item.content_id, True, f"{exhibit_id}: added ({short}…)")

    def _tombstone(
        self, live: _Live, manifest: dict[str, Any], country: str, segment: str, row: int
    ) -> dict[str, Any]:
        """Add a tombstone for a live exhibit to ``manifest`` and drop it from ``live``."""
        index = self._index(segment)
        exhibit_id = index.exhibits["exhibit_id"][row]
        content_id = index.exhibits["content_id"][row]
        stone = {
            "segment": segment,
            "content_id": content_id,
            "exhibit_id": exhibit_id,
            "country": country,
            "sharing": index.exhibits["sharing"][row],
            "sequence": manifest["sequence"],
        }
        origin = self.segment_origin(segment)
        if origin:
            stone["origin"] = {"country": origin["country"], "site": origin["site"]}
        manifest["tombstones"].append(stone)
        live.drop_key((country, exhibit_id))
        del live.by_content_id[(country, content_id)]
        live.live_rows[segment][row] = False
        for sig_row in np.flatnonzero(index.signatures["exhibit"] == row):
            live.by_signature_id.pop((country, index.signatures["signature_id"][sig_row]), None)
        return stone

    def remove(
        self,
        exhibit_id: str,
        reason: str,
        country: str | None = None,
        examiner: str | None = None,
    ) -> dict[str, Any]:
        """Remove an exhibit from the live view, with an audit record.

        The segment stays as written; a tombstone in the manifest hides the exhibit, and the
        audit record (who, when, why, which content, owning country, sharing, and the sync
        origin of an imported exhibit) stays in the manifest for good, also after
        :meth:`compact` drops the bytes. ``exhibit_id`` may be ``"CC/ID"``; ``country``
        names the owner when several countries hold the same exhibit_id. ``examiner`` names
        the person who decided the removal (recorded besides the login ``user``). The same
        casing can be ingested again afterwards.

        Returns
        -------
        dict
            The audit record.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise InputError(None, f"removing {exhibit_id!r} needs a reason for the audit log")
        with self._writing():
            owner, segment, row = self._locate(exhibit_id, country)
            live = self._live_view()
            manifest = self._next_manifest()
            sequence = manifest["sequence"]
            try:
                stone = self._tombstone(live, manifest, owner, segment, row)
            except BaseException:
                self._live = None
                raise
            record = _audit(
                "remove",
                sequence,
                **{k: v for k, v in stone.items() if k != "sequence"},
                reason=reason.strip(),
                **({"examiner": examiner.strip()} if examiner and examiner.strip() else {}),
            )
            manifest["audit"].append(record)
            try:
                self._commit(manifest)
            except BaseException:
                self._live = None
                raise
            self._live = live
            return dict(record)
