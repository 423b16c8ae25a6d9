"""``ribin store verify``'s checks of the workflow database, beside the signature store's."""

from __future__ import annotations

from typing import Any

from ribin.errors import RibinError
from ribin.workflow.db import DB_NAME
from ribin.workflow.leads import Workflow


def verify_workflow(store: Any, report: Any) -> None:
    """Add the workflow database's problems and notes to a store's ``VerifyReport``.

    Checks SQLite's integrity and foreign keys, and that every exhibit an own lead names is
    held by the store or was removed from it (a received notice may name another
    country's exhibit this store never held). Notes how many stored exhibits were never
    correlated.
    """
    path = store.path / DB_NAME
    if store.single_file or not path.is_file():
        return  # no lead recorded yet: nothing to check
    try:
        workflow = Workflow.open(store.path, create=False)
    except RibinError as exc:
        report.problems.append(str(exc).splitlines()[0])
        return
    with workflow:
        report.problems.extend(f"{DB_NAME}: {p}" for p in workflow.check())
        held = set(store.keys())
        removed = {
            (str(e.get("country")), str(e.get("exhibit_id")))
            for e in store.audit_log()
            if e.get("action") == "remove"
        }
        leads = workflow.leads(status="all")
        for lead in leads:
            for exhibit in (lead.query, lead.candidate):
                if exhibit in held or exhibit in removed:
                    continue
                if lead.notice and exhibit[0] != workflow.country:
                    continue
                report.problems.append(
                    f"{DB_NAME}: lead {lead.id} names {exhibit[0]}/{exhibit[1]}, which this "
                    "store neither holds nor removed"
                )
        from ribin.workflow.correlation import pending

        waiting = len(pending(store, workflow))
        report.notes.append(
            f"{DB_NAME}: {len(leads)} leads, {len(workflow.audit())} audit records, "
            f"{waiting} stored exhibits not yet correlated"
        )
