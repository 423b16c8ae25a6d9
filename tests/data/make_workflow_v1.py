"""Write tests/data/workflow-v1.sqlite: a workflow database of schema 1, kept so that later
schemas are tested to open (and migrate) it. Run once with the schema-1 code; never rerun
with a later one."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

from ribin.workflow import Workflow
from ribin.workflow.leads import NewLead


def lead(query, candidate, score):
    regions = {"breech_face": {"rank": 1, "score": score, "cmc_count": 5, "log_lr": score / 10}}
    return NewLead(query, candidate, score, score / 10, 1, "network", regions, "<default>")


def main() -> None:
    work = Path(tempfile.mkdtemp())
    with Workflow.open(work) as wf:
        wf.set_meta("country", "BB")
        a = ("BB", "BB-2024-001", "a" * 64)
        wf.record_correlation(
            a,
            [
                lead(a, ("JM", "JM-Q-7", "b" * 64), 40.0),
                lead(a, ("BB", "BB-2019-044", "c" * 64), 12.0),
                lead(a, ("BZ", "BZ-T-3", "d" * 64), 9.0),
            ],
            "network",
        )
        wf.decide(1, "identification", "A. Examiner", note="BF and FP agree", source="cli")
        wf.decide(2, "elimination", "A. Examiner", note="different class marks", source="cli")
        wf._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with sqlite3.connect(work / "workflow.sqlite") as db:
        db.execute("PRAGMA journal_mode=DELETE")
    shutil.copy(work / "workflow.sqlite", Path(__file__).parent / "workflow-v1.sqlite")


if __name__ == "__main__":
    main()
