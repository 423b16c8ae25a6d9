"""Leads and conclusions: the :class:`Workflow` handle on a store's workflow database.

A **lead** is a pair of exhibits that correlation (or another country's hit notice) put in
front of an examiner; its **status** is ``open`` until an examiner records a conclusion on
the AFTE range (``identification``, ``inconclusive``, ``elimination``). Every examiner
action is appended to an audit log that SQLite triggers keep append-only; changing a
conclusion keeps the earlier one there.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ribin import __version__
from ribin.errors import InputError, StoreError
from ribin.workflow import db as _db

CONCLUSIONS = ("identification", "inconclusive", "elimination")
STATUSES = ("open", *CONCLUSIONS)
SOURCES_MAX = 200  # characters kept of a free-text source / examiner / note field
NOTE_MAX = 10_000


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the microsecond (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def pair_key(country: str, exhibit_id: str) -> str:
    """``"CC/ID"``: how an exhibit is named across countries (IDs never contain ``/``)."""
    return f"{country}/{exhibit_id}"


@dataclass(frozen=True)
class Lead:
    """A pair of exhibits to review, and the conclusion recorded on it (if any).

    Attributes
    ----------
    id : int
        The lead's number in this store's workflow database.
    query, candidate : tuple of str
        ``(country, exhibit_id)`` of the exhibit searched with and of the one found.
    score, log_lr : float or None
        Combined comparison score and log10 likelihood ratio (None: not calibrated).
    rank : int or None
        Rank of the candidate in the combined list of that search.
    scope : str
        Scope of the search that found it.
    status : str
        ``open`` or the conclusion.
    examiner, note : str
        Who recorded the conclusion, and why.
    created, decided : str or None
        UTC times (ISO 8601).
    origin : str or None
        Country whose examiner decided it (None while open); a received hit notice
        carries the sender's code.
    regions : dict
        Per region (``breech_face``, ``firing_pin``): rank, score, cmc_count, log_lr.
    calibration : str
        Calibration behind ``log_lr`` (file or ``<default>``), or ``"uncalibrated"``.
    notice : bool
        True for a lead received as another country's hit notice (read-only here).
    """

    id: int
    query: tuple[str, str]
    candidate: tuple[str, str]
    score: float | None
    log_lr: float | None
    rank: int | None
    scope: str
    status: str
    examiner: str
    note: str
    created: str
    decided: str | None
    origin: str | None
    regions: dict[str, Any] = field(default_factory=dict)
    calibration: str = "uncalibrated"
    notice: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """One item of ``ribin leads list --json`` (DESIGN.md) plus regions and calibration."""
        return {
            "id": self.id,
            "query": {"country": self.query[0], "exhibit_id": self.query[1]},
            "candidate": {"country": self.candidate[0], "exhibit_id": self.candidate[1]},
            "score": self.score,
            "log_lr": self.log_lr,
            "rank": self.rank,
            "scope": self.scope,
            "status": self.status,
            "examiner": self.examiner,
            "note": self.note,
            "created": self.created,
            "decided": self.decided,
            "origin": self.origin,
            "regions": self.regions,
            "calibration": self.calibration,
            "notice": self.notice,
        }


@dataclass(frozen=True)
class NewLead:
    """A lead correlation wants recorded (see :meth:`Workflow.record_correlation`)."""

    query: tuple[str, str, str]  # country, exhibit_id, content_id
    candidate: tuple[str, str, str]
    score: float | None
    log_lr: float | None
    rank: int | None
    scope: str
    regions: dict[str, Any]
    calibration: str
    provenance: dict[str, Any] = field(default_factory=dict)


class Workflow:
    """The workflow database of one store; open with :meth:`open`, use as a context manager.

    Processes may share it freely (SQLite WAL, busy timeout); within a process give each
    thread its own object.

    Examples
    --------
    >>> with Workflow.open("lab.ribin") as wf:  # doctest: +SKIP
    ...     for lead in wf.leads(status="open"):
    ...         print(lead.id, lead.candidate, lead.log_lr)
    ...     wf.decide(3, "identification", examiner="A. Examiner", note="BF agrees")
    """

    def __init__(self, store_path: Path, connection: sqlite3.Connection):
        self.store_path = store_path
        self.path = store_path / _db.DB_NAME
        self._db = connection

    @classmethod
    def open(cls, store_path: str | os.PathLike, *, create: bool = True) -> Workflow:
        """Open the workflow database of the store at ``store_path`` (created if absent).

        Raises
        ------
        StoreError
            No store directory, a damaged database.
        FormatVersionError
            A database written by a newer RIBIN.
        """
        store_path = Path(store_path)
        if not store_path.is_dir():
            raise StoreError(f"{store_path}: no such store directory")
        return cls(store_path, _db.connect(store_path / _db.DB_NAME, create=create))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Workflow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self):
        return _db.transaction(self._db)

    # -- the site ---------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str, *, overwrite: bool = True) -> None:
        verb = "INSERT OR REPLACE" if overwrite else "INSERT OR IGNORE"
        with self._write():
            self._db.execute(f"{verb} INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def country(self) -> str | None:
        """The site's own country (learnt from the first ingest or sync), or None."""
        return self.meta("country")

    # -- reading ----------------------------------------------------------------------

    def leads(self, status: str = "open") -> list[Lead]:
        """Leads with this status (``open``, a conclusion, or ``all``), oldest first."""
        if status != "all" and status not in STATUSES:
            raise InputError(
                None, f"unknown status {status!r}; use one of {', '.join(STATUSES)}, all"
            )
        where, args = ("", ()) if status == "all" else ("WHERE status = ?", (status,))
        rows = self._db.execute(f"SELECT * FROM leads {where} ORDER BY id", args).fetchall()
        own = self.country
        return [_lead(row, own) for row in rows]

    def lead(self, lead_id: int | str) -> Lead:
        """The lead numbered ``lead_id``.

        Raises
        ------
        InputError
            No such lead (one line).
        """
        number = _lead_number(lead_id)
        row = self._db.execute("SELECT * FROM leads WHERE id = ?", (number,)).fetchone()
        if row is None:
            raise InputError(None, f"{self.store_path.name}: no lead {lead_id}")
        return _lead(row, self.country)

    def audit(self, lead_id: int | str | None = None) -> list[dict[str, Any]]:
        """The audit log (of one lead, or all), oldest first.

        Each record: ``id``, ``at`` (UTC), ``who``, ``action``, ``lead_id``, ``source``
        (command or page), ``software_version``, ``before`` / ``after`` (the lead's
        conclusion fields) and ``details``.
        """
        if lead_id is None:
            rows = self._db.execute("SELECT * FROM audit ORDER BY id").fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM audit WHERE lead_id = ? ORDER BY id", (_lead_number(lead_id),)
            ).fetchall()
        out = []
        for row in rows:
            record = dict(row)
            for key in ("before", "after", "details"):
                record[key] = json.loads(record[key]) if record[key] else None
            out.append(record)
        return out

    def links(self, *, with_metadata: bool = True):
        """Linked groups of exhibits: see :func:`ribin.workflow.links.linked_groups`."""
        from ribin.workflow.links import linked_groups

        return linked_groups(self, with_metadata=with_metadata)

    def correlated(self, country: str, exhibit_id: str, content_id: str) -> bool:
        """Whether that stored exhibit's correlation was recorded."""
        row = self._db.execute(
            "SELECT 1 FROM correlated WHERE country = ? AND exhibit_id = ? AND content_id = ?",
            (country, exhibit_id, content_id),
        ).fetchone()
        return row is not None

    def correlated_keys(self) -> set[tuple[str, str, str]]:
        """``(country, exhibit_id, content_id)`` of every exhibit correlated so far."""
        rows = self._db.execute("SELECT country, exhibit_id, content_id FROM correlated")
        return {(r[0], r[1], r[2]) for r in rows}

    def exhibits_named(self) -> set[tuple[str, str]]:
        """``(country, exhibit_id)`` of every exhibit a lead names."""
        out = set()
        for row in self._db.execute(
            "SELECT query_country, query_exhibit, candidate_country, candidate_exhibit FROM leads"
        ):
            out.add((row[0], row[1]))
            out.add((row[2], row[3]))
        return out

    def check(self) -> list[str]:
        """SQLite integrity and foreign-key problems (empty when sound)."""
        return _db.check(self._db)

    # -- writing ----------------------------------------------------------------------

    def decide(
        self,
        lead_id: int | str,
        conclusion: str,
        examiner: str,
        note: str = "",
        source: str = "cli",
    ) -> Lead:
        """Record an examiner's conclusion on a lead (and its audit record, in one write).

        Parameters
        ----------
        lead_id : int
            The lead.
        conclusion : {"identification", "inconclusive", "elimination"}
            The AFTE conclusion.
        examiner : str
            Who decided (not empty).
        note : str
            Why (free text).
        source : str
            Which command or page it came from (``cli``, ``web``...), for the audit log.

        Returns
        -------
        Lead
            The lead as now recorded.

        Raises
        ------
        InputError
            Unknown lead or conclusion, empty examiner, or a lead that is another
            country's hit notice; nothing is changed.
        """
        if conclusion not in CONCLUSIONS:
            raise InputError(
                None, f"unknown conclusion {conclusion!r}; use one of {', '.join(CONCLUSIONS)}"
            )
        examiner = " ".join(str(examiner or "").split())
        if not examiner:
            raise InputError(None, "the examiner's name is empty; say who decides (--examiner)")
        if len(examiner) > SOURCES_MAX:
            raise InputError(None, f"the examiner's name is over {SOURCES_MAX} characters")
        note = str(note or "")
        if len(note) > NOTE_MAX:
            raise InputError(None, f"the note is over {NOTE_MAX} characters")
        source = str(source or "")[:SOURCES_MAX] or "api"
        number = _lead_number(lead_id)
        with self._write():
            row = self._db.execute("SELECT * FROM leads WHERE id = ?", (number,)).fetchone()
            if row is None:
                raise InputError(None, f"{self.store_path.name}: no lead {lead_id}")
            if row["origin"]:
                raise InputError(
                    None,
                    f"lead {number} is a hit notice from {row['origin']}: their conclusion "
                    "cannot be changed here; record yours on your own lead of the same pair",
                )
            now = utc_now()
            before = _conclusion_fields(row)
            self._db.execute(
                "UPDATE leads SET status = ?, examiner = ?, note = ?, decided = ? WHERE id = ?",
                (conclusion, examiner, note, now, number),
            )
            after = {"status": conclusion, "examiner": examiner, "note": note, "decided": now}
            self._audit(examiner, "decide", number, source, before, after, {}, now)
            row = self._db.execute("SELECT * FROM leads WHERE id = ?", (number,)).fetchone()
        return _lead(row, self.country)

    def _audit(
        self,
        who: str,
        action: str,
        lead_id: int | None,
        source: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
        details: Mapping[str, Any],
        at: str | None = None,
    ) -> None:
        self._db.execute(
            "INSERT INTO audit (at, who, action, lead_id, source, software_version, before, "
            "after, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                at or utc_now(),
                who,
                action,
                lead_id,
                source,
                __version__,
                None if before is None else json.dumps(before, sort_keys=True),
                None if after is None else json.dumps(after, sort_keys=True),
                json.dumps(dict(details), sort_keys=True, default=str),
            ),
        )

    def record_correlation(
        self,
        exhibit: tuple[str, str, str],
        leads: Sequence[NewLead],
        scope: str,
        *,
        source: str = "ingest",
        details: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """Record one exhibit's correlation: its new leads and the fact it was correlated.

        One transaction: after a crash either all of it is there or none. A pair that
        already has a lead (either way round) keeps the one it has. Returns the IDs of the
        leads added.
        """
        added: list[int] = []
        now = utc_now()
        with self._write():
            for new in leads:
                lead_id = self._insert_lead(new, now)
                if lead_id is not None:
                    added.append(lead_id)
            self._db.execute(
                "INSERT OR REPLACE INTO correlated (country, exhibit_id, content_id, at, scope, "
                "leads) VALUES (?, ?, ?, ?, ?, ?)",
                (*exhibit, now, scope, len(added)),
            )
            self._audit(
                "ribin",
                "correlate",
                None,
                source,
                None,
                None,
                {
                    "exhibit": pair_key(exhibit[0], exhibit[1]),
                    "content_id": exhibit[2],
                    "scope": scope,
                    "candidates": len(leads),
                    "new_leads": added,
                    **(details or {}),
                },
                now,
            )
        return added

    def _insert_lead(self, new: NewLead, now: str, origin: str = "") -> int | None:
        a, b = pair_key(*new.query[:2]), pair_key(*new.candidate[:2])
        if a == b:
            return None
        low, high = sorted((a, b))
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO leads (query_country, query_exhibit, query_content, "
            "candidate_country, candidate_exhibit, candidate_content, pair_low, pair_high, "
            "origin, score, log_lr, rank, scope, regions, calibration, created, provenance) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *new.query,
                *new.candidate,
                low,
                high,
                origin,
                new.score,
                new.log_lr,
                new.rank,
                new.scope,
                json.dumps(new.regions, sort_keys=True),
                new.calibration,
                now,
                json.dumps(new.provenance, sort_keys=True, default=str),
            ),
        )
        return cursor.lastrowid if cursor.rowcount else None

    def record_notices(self, notices: Iterable[Mapping[str, Any]], source: str = "sync") -> int:
        """Record received hit notices (checked by :mod:`ribin.workflow.notices`), once each.

        A notice already recorded is skipped, so importing a bundle again changes nothing.
        A newer notice from the same sender on the same pair updates that sender's lead
        (the earlier state stays in the audit log). Returns how many were new.
        """
        new = 0
        with self._write():
            for notice in notices:
                known = self._db.execute(
                    "SELECT 1 FROM notices WHERE notice_id = ?", (notice["notice_id"],)
                ).fetchone()
                if known is not None:
                    continue
                new += 1
                self._record_notice(notice)
        return new

    def _record_notice(self, notice: Mapping[str, Any]) -> None:
        body = notice["body"]
        sender = notice["sender"]
        query, candidate = body["query"], body["candidate"]
        lead = NewLead(
            (query["country"], query["exhibit_id"], query.get("content_id", "")),
            (candidate["country"], candidate["exhibit_id"], candidate.get("content_id", "")),
            body.get("score"),
            body.get("log_lr"),
            body.get("rank"),
            str(body.get("scope", "")),
            body.get("regions") or {},
            str(body.get("calibration", "uncalibrated")),
            {"notice_id": notice["notice_id"], "bundle_sha256": notice["bundle_sha256"]},
        )
        now = utc_now()
        lead_id = self._insert_lead(lead, now, origin=sender)
        low, high = sorted((pair_key(*lead.query[:2]), pair_key(*lead.candidate[:2])))
        row = self._db.execute(
            "SELECT * FROM leads WHERE pair_low = ? AND pair_high = ? AND origin = ?",
            (low, high, sender),
        )
        row = row.fetchone()
        before = None if lead_id is not None else _conclusion_fields(row)
        # a notice older than what this sender's lead already shows does not roll it back
        applied = lead_id is not None or (row["decided"] or "") <= str(body["decided"])
        after = None
        if applied:
            self._db.execute(
                "UPDATE leads SET status = ?, examiner = ?, note = ?, decided = ? WHERE id = ?",
                (body["conclusion"], body["examiner"], "", body["decided"], row["id"]),
            )
            after = {
                "status": body["conclusion"],
                "examiner": body["examiner"],
                "note": "",
                "decided": body["decided"],
            }
        self._db.execute(
            "INSERT INTO notices (notice_id, lead_id, sender, bundle_sha256, received, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                notice["notice_id"],
                row["id"],
                sender,
                notice["bundle_sha256"],
                now,
                json.dumps(body, sort_keys=True),
            ),
        )
        self._audit(
            f"{body['examiner']} ({sender})",
            "notice",
            row["id"],
            "sync import",
            before,
            after,
            {
                "notice_id": notice["notice_id"],
                "bundle_sha256": notice["bundle_sha256"],
                "applied": applied,  # False: older than what the lead already shows
            },
            now,
        )

    def identifications_for_export(self) -> list[Lead]:
        """This site's own identifications (not received notices), oldest first."""
        rows = self._db.execute(
            "SELECT * FROM leads WHERE origin = '' AND status = 'identification' ORDER BY id"
        ).fetchall()
        return [_lead(row, self.country) for row in rows]

    def identification_edges(self) -> list[tuple[tuple[str, str], tuple[str, str], int, str]]:
        """(exhibit, exhibit, lead id, origin) of every identification, own and received."""
        own = self.country or ""
        return [
            (
                (r["query_country"], r["query_exhibit"]),
                (r["candidate_country"], r["candidate_exhibit"]),
                int(r["id"]),
                r["origin"] or own,
            )
            for r in self._db.execute(
                "SELECT * FROM leads WHERE status = 'identification' ORDER BY id"
            )
        ]

    def eliminations(self) -> set[frozenset[tuple[str, str]]]:
        """Exhibit pairs that some examiner (here or abroad) eliminated."""
        return {
            frozenset(
                (
                    (r["query_country"], r["query_exhibit"]),
                    (r["candidate_country"], r["candidate_exhibit"]),
                )
            )
            for r in self._db.execute("SELECT * FROM leads WHERE status = 'elimination'")
        }


def _lead_number(lead_id: int | str) -> int:
    try:
        number = int(str(lead_id).strip())
    except ValueError:
        raise InputError(None, f"lead ID {str(lead_id)[:40]!r} is not a number") from None
    return number


def _conclusion_fields(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "status": row["status"],
        "examiner": row["examiner"],
        "note": row["note"],
        "decided": row["decided"],
    }


def _lead(row: sqlite3.Row, own_country: str | None) -> Lead:
    # an open lead has no decider yet; a decided own lead was decided here
    origin = row["origin"] or (own_country if row["status"] != "open" else None) or None
    return Lead(
        id=int(row["id"]),
        query=(row["query_country"], row["query_exhibit"]),
        candidate=(row["candidate_country"], row["candidate_exhibit"]),
        score=row["score"],
        log_lr=row["log_lr"],
        rank=row["rank"],
        scope=row["scope"],
        status=row["status"],
        examiner=row["examiner"],
        note=row["note"],
        created=row["created"],
        decided=row["decided"],
        origin=origin,
        regions=json.loads(row["regions"] or "{}"),
        calibration=row["calibration"],
        notice=bool(row["origin"]),
        provenance=json.loads(row["provenance"] or "{}"),
    )
