"""The store's summary (``info``) and its full check (``verify``)."""

from __future__ import annotations

import collections

import numpy as np

from ribin import prefilter
from ribin.errors import StoreError
from ribin.store.common import MANIFEST, SEGMENTS, _SegmentGone
from ribin.store.records import StoreInfo, VerifyReport
from ribin.store_format import (
    ExhibitRecord,
    check_segment_structure,
    file_sha256,
    iter_exhibit_names,
    read_exhibit,
    read_segment_features,
    recompute_ids,
)


class _ChecksMixin:
    """Summary and checks: ``info`` and ``verify``."""

    # -- summary and checks -----------------------------------------------------------

    def info(self) -> StoreInfo:
        """Counts per country, region, modality, caliber and sharing; size; format."""
        return self._retrying(self._info)

    def _info(self) -> StoreInfo:
        live = self._live_view()
        counts: dict[str, collections.Counter] = {
            k: collections.Counter()
            for k in ("country", "region", "modality", "caliber", "sharing")
        }
        n_signatures = 0
        size = 0
        for entry in self._manifest["segments"]:
            index = self._index(entry["name"])
            rows = live.live_rows[entry["name"]]
            for name in ("country", "caliber", "sharing"):
                counts[name].update(index.exhibits[name][rows].tolist())
            take = rows[index.signatures["exhibit"]]
            n_signatures += int(take.sum())
            counts["region"].update(index.signatures["kind"][take].tolist())
            counts["modality"].update(index.signatures["modality"][take].tolist())
            size += int(entry.get("bytes", 0))
        if not self.single_file and (self.path / MANIFEST).exists():
            size += (self.path / MANIFEST).stat().st_size
        return StoreInfo(
            path=str(self.path),
            format_version=int(self._manifest["format_version"]),
            created_by=str(self._manifest["created_by"]),
            sequence=int(self._manifest["sequence"]),
            segments=len(self._manifest["segments"]),
            exhibits=len(live.by_key),
            signatures=n_signatures,
            removed=len(self._manifest["tombstones"]),
            bytes=size,
            **{
                f"by_{name}": dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))
                for name, counter in counts.items()
            },
        )

    def verify(self) -> VerifyReport:
        """Re-hash every stored signature and exhibit and check every segment.

        Checks each segment's SHA-256 and size against the manifest, recomputes every
        signature ID from its stored surface and parameters and every exhibit content ID,
        and checks the index and prefilter tables against the exhibit groups. Files in the
        store that no manifest lists (left by an interrupted write) are reported as notes.
        """
        for _ in range(10):
            try:
                return self._verify_once()
            except _SegmentGone:  # a compaction ran meanwhile: check the new state
                continue
        raise StoreError(f"{self.path}: the store kept changing while being verified")

    def _verify_once(self) -> VerifyReport:
        report = VerifyReport(str(self.path))
        if not self.single_file:
            self.refresh()
            report.notes.extend(f"orphan file (ignored): {p}" for p in self._orphans())
        live = None
        try:
            live = self._live_view()
        except StoreError as exc:
            report.problems.append(str(exc))
        if live is not None:
            report.problems.extend(live.duplicates)
        tombstoned: dict[str, set[str]] = collections.defaultdict(set)
        for stone in self._manifest["tombstones"]:
            tombstoned[stone["segment"]].add(stone["content_id"])
        for entry in self._manifest["segments"]:
            report.segments += 1
            self._verify_segment(entry, tombstoned.pop(entry["name"], set()), report)
        for segment, content_ids in tombstoned.items():
            report.problems.append(f"{MANIFEST}: tombstones name unlisted segment {segment}")
            del content_ids
        return report

    def _verify_segment(self, entry: dict, removed: set[str], report: VerifyReport) -> None:
        name = entry["name"]
        try:
            path = self._regular_segment(name)
        except StoreError as exc:
            report.problems.append(str(exc))
            return
        except _SegmentGone:
            path = self._segment_path(name)
        try:
            digest, size = file_sha256(path)
        except FileNotFoundError:
            if not self.single_file and not self._still_listed(name):
                raise _SegmentGone(name) from None
            report.problems.append(f"{name}: listed in {MANIFEST} but missing")
            return
        if not self.single_file:
            if digest != entry["sha256"] or size != entry.get("bytes", size):
                report.problems.append(
                    f"{name}: SHA-256 {digest[:16]}… ({size} bytes) differs from the manifest's "
                    f"{entry['sha256'][:16]}… ({entry.get('bytes')} bytes)"
                )
        try:
            handle = self._handle(name)
            check_segment_structure(handle, exhibits=False)
            index = self._index(name)
            features = read_segment_features(handle)
            groups = set(iter_exhibit_names(handle))
        except _SegmentGone:
            if not self._still_listed(name):
                raise
            report.problems.append(f"{name}: listed in {MANIFEST} but missing")
            return
        except (StoreError, OSError) as exc:
            report.problems.append(str(exc) if isinstance(exc, StoreError) else f"{name}: {exc}")
            return
        content_ids = list(index.exhibits["content_id"])
        if set(content_ids) != groups or len(content_ids) != len(groups):
            report.problems.append(f"{name}: index/content_id does not match the exhibit groups")
        for stone in removed - set(content_ids):
            report.problems.append(f"{MANIFEST}: tombstone for {stone[:16]}… not in {name}")
        sig_rows = collections.defaultdict(dict)
        for sig_row, (row, kind) in enumerate(
            zip(index.signatures["exhibit"], index.signatures["kind"], strict=True)
        ):
            sig_rows[int(row)][kind] = sig_row
        recheck_features = index.feature_version == prefilter.FEATURE_VERSION
        for row, content_id in enumerate(content_ids):
            where = f"{name}: exhibits/{content_id[:16]}…"
            try:
                record: ExhibitRecord = read_exhibit(handle, content_id)
            except (StoreError, OSError, KeyError, ValueError, RuntimeError) as exc:
                report.problems.append(f"{where}: unreadable ({str(exc).splitlines()[0]})")
                continue
            report.exhibits += content_id not in removed
            sig_ids, recomputed = recompute_ids(record)
            for kind, sig_id in sig_ids.items():
                report.signatures += content_id not in removed
                stored = record.stored_signature_ids.get(kind, "")
                if stored != sig_id:
                    report.problems.append(
                        f"{where}/{kind}: stored signature_id {stored[:16]}… != recomputed "
                        f"{sig_id[:16]}…"
                    )
                sig_row = sig_rows[row].get(kind)
                if sig_row is None or index.signatures["signature_id"][sig_row] != sig_id:
                    report.problems.append(f"{where}/{kind}: prefilter table disagrees")
                elif recheck_features:
                    signature = record.exhibit.signatures()[kind]
                    expected = prefilter.features(signature)
                    if not np.allclose(features[sig_row], expected, rtol=1e-3, atol=1e-4):
                        report.problems.append(f"{where}/{kind}: prefilter features differ")
            if set(sig_rows[row]) != set(sig_ids):
                report.problems.append(f"{where}: prefilter table lists other regions")
            if recomputed != content_id or record.content_id != content_id:
                report.problems.append(
                    f"{where}: content_id recomputes to {recomputed[:16]}… (stored "
                    f"{record.content_id[:16]}…)"
                )
            stored_row = {
                "exhibit_id": record.exhibit.exhibit_id,
                "source_sha256": record.exhibit.source_sha256,
                **record.metadata.as_dict(),
            }
            for key, value in stored_row.items():
                if index.exhibits[key][row] != value:
                    report.problems.append(f"{where}: index/{key} disagrees with the group")

    def _still_listed(self, name: str) -> bool:
        """Whether the manifest on disk now still lists segment ``name``."""
        self.refresh()
        return any(s["name"] == name for s in self._manifest["segments"])

    def _orphans(self) -> list[str]:
        listed = {s["name"] for s in self._manifest["segments"]}
        out = [
            f"{SEGMENTS}/{p.name}"
            for p in sorted((self.path / SEGMENTS).glob("*"))
            if p.name not in listed
        ]
        out += [p.name for p in sorted(self.path.glob(".manifest-*.tmp"))]
        return out
