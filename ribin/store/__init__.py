"""The signature store: immutable HDF5 segments listed by an atomically replaced manifest.

A store is a directory (layout in ``docs/formats.md``)::

    STORE/manifest.json          canonical JSON: format, sequence, live segments, tombstones,
                                 audit log; replaced whole with os.replace, never edited
    STORE/segments/seg-<sequence>-<random>.h5   immutable segment files (plain HDF5)
    STORE/.lock                  writers' exclusive lock (readers never take it)

Every write (``add``/``add_many``, ``remove``, ``compact``) holds the writer lock, re-reads
the manifest, writes at most one new segment (under a temporary name, fsynced, renamed), then
replaces the manifest (temporary file, fsync, ``os.replace``, fsync of the directory). The
manifest replace is the commit point: a crash before it leaves the previous state plus
orphan files that readers ignore and the next writer deletes; a crash after it leaves the new
state. Readers take no lock: they read whichever manifest is current when they open (or
:meth:`SignatureStore.refresh`) and see that state whole. A segment removed by ``compact``
while a reader still lists it makes the reader re-read the manifest and carry on.

A single segment file (``.h5``) also opens, read-only, as a store of its own.

The package, by concern: :mod:`~ribin.store.signature_store` (the :class:`SignatureStore`
class, opening and closing) and its mixins :mod:`~ribin.store.segments` (segment handles,
indexes, the live view), :mod:`~ribin.store.queries` (reading), :mod:`~ribin.store.checks`
(``info``, ``verify``), :mod:`~ribin.store.writing` (the commit protocol, ``add``,
``remove``) and :mod:`~ribin.store.sync_support` (copy, merge, compaction); beside them
:mod:`~ribin.store.manifest` (the manifest and audit records), :mod:`~ribin.store.lock`
(the writer lock), :mod:`~ribin.store.records` (what the store returns) and
:mod:`~ribin.store.common` (constants, errors, exhibit keys). Every name importable from
``ribin.store`` before the split still is.
"""

from __future__ import annotations

from ribin.network import Scope  # defined next to the network model; importable from here too

# Re-exported beyond __all__: tests and benchmarks import these from ribin.store.
from ribin.store.common import CREATED_BY as CREATED_BY
from ribin.store.common import LOCK as LOCK
from ribin.store.common import MANIFEST as MANIFEST
from ribin.store.common import SEGMENTS as SEGMENTS
from ribin.store.common import (
    AmbiguousExhibitError,
    ExhibitConflictError,
    ExhibitNotFoundError,
    StoreLockedError,
)
from ribin.store.lock import _WriterLock as _WriterLock
from ribin.store.records import (
    AddResult,
    FeatureTable,
    MergeResult,
    PreparedExhibit,
    SegmentRef,
    StoredExhibit,
    StoreInfo,
    VerifyReport,
)
from ribin.store.signature_store import SignatureStore
from ribin.store_format import ExhibitMetadata

__all__ = [
    "AddResult",
    "AmbiguousExhibitError",
    "ExhibitConflictError",
    "ExhibitMetadata",
    "ExhibitNotFoundError",
    "FeatureTable",
    "MergeResult",
    "PreparedExhibit",
    "Scope",
    "SegmentRef",
    "SignatureStore",
    "StoreInfo",
    "StoreLockedError",
    "StoredExhibit",
    "VerifyReport",
]
