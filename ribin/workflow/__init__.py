"""The lab's loop: leads from automatic correlation, conclusions, hit notices, linked groups.

Mutable workflow state lives in one SQLite database in the store directory
(``STORE/workflow.sqlite``, :mod:`ribin.workflow.db`); signature segments stay immutable
HDF5. Rooms: :mod:`~ribin.workflow.leads` (the :class:`Workflow` handle, leads,
conclusions, audit), :mod:`~ribin.workflow.correlation` (search on entry),
:mod:`~ribin.workflow.policy` (the site's correlation policy), :mod:`~ribin.workflow.notices`
(hit notices in sync bundles) and :mod:`~ribin.workflow.links` (linked groups).
"""

from __future__ import annotations

from ribin.workflow.correlation import CorrelationResult, correlate, pending
from ribin.workflow.leads import CONCLUSIONS, STATUSES, Lead, Workflow
from ribin.workflow.links import LinkedGroup
from ribin.workflow.policy import Policy, load_policy

__all__ = [
    "CONCLUSIONS",
    "STATUSES",
    "CorrelationResult",
    "Lead",
    "LinkedGroup",
    "Policy",
    "Workflow",
    "correlate",
    "load_policy",
    "pending",
]
