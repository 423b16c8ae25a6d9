"""What the routes share: the store (one object per thread), network, calibration, caches."""

from __future__ import annotations

import collections
import logging
import secrets
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import current_app

from ribin.errors import InputError

if TYPE_CHECKING:
    from ribin.exhibit import Exhibit
    from ribin.network import Network
    from ribin.store import SignatureStore, StoredExhibit
    from ribin.web.app import ServeConfig


class LRU:
    """A small thread-safe least-recently-used cache."""

    def __init__(self, size: int):
        self.size = size
        self._items: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """The value under ``key`` if it is made (None when absent or still being made)."""
        with self._lock:
            future = self._items.get(key)
            if future is None or not future.done() or future.exception() is not None:
                return None
            self._items.move_to_end(key)
            return future.result()

    def put(self, key: Hashable, value: Any) -> Any:
        future: Future = Future()
        future.set_result(value)
        with self._lock:
            self._items[key] = future
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value kept under ``key``, made once: a second caller waits for the first."""
        with self._lock:
            future = self._items.get(key)
            owner = future is None
            if owner:
                future = self._items[key] = Future()
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            else:
                self._items.move_to_end(key)
        if owner:
            try:
                future.set_result(make())
            except BaseException as exc:
                future.set_exception(exc)
                with self._lock:
                    if self._items.get(key) is future:
                        del self._items[key]
                raise
        return future.result()


@dataclass(frozen=True)
class ExhibitRef:
    """How a page names an exhibit: stored (``CC/ID``) or a query uploaded this session."""

    country: str | None
    exhibit_id: str
    upload: str | None = None

    @property
    def label(self) -> str:
        return f"upload:{self.upload}" if self.upload else f"{self.country}/{self.exhibit_id}"

    @classmethod
    def parse(cls, text: str | None) -> ExhibitRef:
        """``"BB/F01-1"`` (the ID may hold ``/``) or ``"upload:KEY"``."""
        if not text:
            raise InputError(None, "no exhibit named")
        if text.startswith("upload:"):
            return cls(None, "", upload=text[len("upload:") :])
        country, sep, exhibit_id = text.partition("/")
        if not sep or len(country) != 2 or not country.isalpha() or not exhibit_id:
            raise InputError(None, f"{text!r} is not COUNTRY/EXHIBIT_ID")
        return cls(country.upper(), exhibit_id)


@dataclass(frozen=True)
class Loaded:
    """An exhibit a page shows, with its lab metadata (empty for an upload)."""

    ref: ExhibitRef
    exhibit: Exhibit
    metadata: dict[str, Any]
    key: str  # content ID, or the upload key: what caches are keyed by


class Resources:
    """Per-app state: configuration, network, per-thread stores, calibration and caches."""

    def __init__(self, config: ServeConfig):
        from ribin.network import load_network

        self.config = config
        self.network: Network = load_network(config.network_file)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._calibration: tuple[Any, tuple[dict, str]] | None = None
        self.pairs = LRU(24)
        self.figures = LRU(96)
        self.uploads = LRU(16)
        self.loaded = LRU(32)
        self._index: tuple[int, dict] | None = None
        # matplotlib is not thread-safe; drawing is quick next to comparing
        self.draw_lock = threading.Lock()
        self.compare_lock = threading.Lock()
        # one background worker compares and draws ahead (the figures below the fold, the
        # next open lead) while the examiner looks at the page
        self.background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ribin-ahead")

    def ahead(self, job: Callable[[], Any]) -> None:
        """Run ``job`` in the background; a failure is only logged (the page will say)."""

        def run() -> None:
            try:
                job()
            except Exception:  # the request that needs it reports the error itself
                logging.getLogger("ribin.web").debug("background job failed", exc_info=True)

        self.background.submit(run)

    # -- store ------------------------------------------------------------------------

    def store(self) -> SignatureStore:
        """This thread's store object, refreshed to the latest committed state."""
        from ribin.store import SignatureStore

        store = getattr(self._local, "store", None)
        if store is None:
            store = SignatureStore.open(self.config.store, "r")
            self._local.store = store
        else:
            store.refresh()
        return store

    def get(self, ref: ExhibitRef) -> Loaded:
        """Read an exhibit named by ``ref`` (a stored one or this session's upload)."""
        if ref.upload is not None:
            exhibit = self.uploads.get(ref.upload)
            if exhibit is None:
                raise InputError(None, "that uploaded query is no longer held: upload it again")
            return Loaded(ref, exhibit, {}, f"upload:{ref.upload}")
        store = self.store()

        def read() -> Loaded:
            stored = store.get(f"{ref.country}/{ref.exhibit_id}")
            return Loaded(ref, stored.exhibit, asdict(stored.metadata), stored.content_id)

        # read once per committed state: a page and its images name the same exhibits
        return self.loaded.get_or_make((ref.label, store.path, store.sequence), read)

    def get_stored(self, ref: ExhibitRef) -> StoredExhibit:
        if ref.upload is not None:
            raise InputError(None, "an uploaded query is not a stored exhibit")
        return self.store().get(f"{ref.country}/{ref.exhibit_id}")

    def hold_upload(self, exhibit: Exhibit) -> str:
        """Keep an uploaded query for later pages; returns its key."""
        key = secrets.token_urlsafe(12)
        self.uploads.put(key, exhibit)
        return key

    def index(self) -> dict[tuple[str, str], dict[str, str]]:
        """``(country, exhibit_id)`` -> caliber, acquired_at, role, site, sharing.

        Read from the store's feature table (no surfaces), once per committed state.
        """
        store = self.store()
        sequence = store.sequence
        with self._lock:
            if self._index is not None and self._index[0] == sequence:
                return self._index[1]
        table = store.features()
        index: dict[tuple[str, str], dict[str, str]] = {}
        fields = ("caliber", "acquired_at", "role", "site", "sharing", "content_id")
        for row in range(len(table)):
            key = (str(table.country[row]), str(table.exhibit_id[row]))
            if key not in index:
                index[key] = {f: str(getattr(table, f)[row]) for f in fields}
        with self._lock:
            self._index = (sequence, index)
        return index

    # -- calibration ------------------------------------------------------------------

    def calibration(self) -> tuple[dict, str]:
        """The store's models and where they came from (re-read when the file changes)."""
        from ribin.calibration import CALIBRATION_FILE, models_for_store

        own = self.config.store / CALIBRATION_FILE
        stamp = own.stat().st_mtime_ns if own.is_file() else None
        with self._lock:
            if self._calibration is not None and self._calibration[0] == stamp:
                return self._calibration[1]
        loaded = models_for_store(self.config.store)
        with self._lock:
            self._calibration = (stamp, loaded)
        return loaded


def calibration_note(source: str) -> dict[str, Any]:
    """How a page names a calibration source, and whether it is the lab's own.

    ``"<default>"`` is the calibration shipped with RIBIN (fitted on other instruments and
    ammunition); a file in the store is the lab's own; ``"none"`` gives no LR at all.
    """
    if source == "none":
        return {"label": "none: no likelihood ratio", "own": False, "caution": None}
    if source == "<default>":
        return {
            "label": "the default shipped with RIBIN",
            "own": False,
            "caution": "This likelihood ratio comes from the calibration shipped with RIBIN, "
            "not from this lab's own known matches and non-matches: treat it as indicative "
            "only until the lab calibrates on its own instruments (ribin calibrate).",
        }
    return {"label": f"the lab's own ({Path(source).name})", "own": True, "caution": None}


def resources() -> Resources:
    """The current app's :class:`Resources`."""
    return current_app.extensions["ribin"]
