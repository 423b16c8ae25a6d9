"""Crash safety and concurrency of ingest-with-correlation and of examiners' decisions.

Writers are forked processes killed with SIGKILL (POSIX only), as in
``test_store_crash.py``. After every kill the store and its workflow database must be
consistent: SQLite sound, every lead naming stored exhibits, every correlation recorded
whole (its leads, its ``correlated`` row and its audit record, or none of them), and the
exhibits stored but not yet correlated picked up by the next correlation.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ribin.store import SignatureStore
from ribin.store import writing as store_writing
from ribin.workflow import Workflow, correlate, pending
from ribin.workflow.leads import NewLead
from ribin.workflow.verify import verify_workflow

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_store import make_exhibit  # noqa: E402
from test_store_crash import _child  # noqa: E402
from workflow_child import BATCH, ingest_with_correlation  # noqa: E402

CHILD = Path(__file__).resolve().parent / "workflow_child.py"


def spawn(*args: object) -> subprocess.Popen:
    """A fresh Python running ``workflow_child.py``'s function ``args[0]``."""
    return subprocess.Popen(
        [sys.executable, str(CHILD), *(str(a) for a in args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_for(child: subprocess.Popen, word: str, seen: list[str]) -> None:
    while True:
        line = child.stdout.readline().decode()
        assert line, seen
        seen.append(line.rstrip())
        if line.startswith(word):
            return


def check_consistent(path: Path) -> tuple[int, int]:
    """Assert the store and its workflow agree; returns (exhibits stored, not correlated)."""
    with SignatureStore.open(path) as store:
        report = store.verify()
        verify_workflow(store, report)
        assert report.ok, report.problems
        held = set(store.keys())
        with Workflow.open(path) as wf:
            assert wf.check() == []
            correlated = wf.correlated_keys()
            assert {(c, i) for c, i, _ in correlated} <= held
            audits = [r for r in wf.audit() if r["action"] == "correlate"]
            # one audit record per correlation, written in the same transaction
            assert len(audits) == len(correlated)
            recorded = {lead.id for lead in wf.leads("all")}
            for record in audits:
                assert set(record["details"]["new_leads"]) <= recorded
            assert sum(len(r["details"]["new_leads"]) for r in audits) == len(recorded)
            waiting = pending(store, wf)
    return len(held), len(waiting)


def _batches(path: Path) -> set[int]:
    with SignatureStore.open(path) as store:
        return {int(exhibit_id[1:5]) for exhibit_id in store.exhibit_ids()}


@pytest.mark.slow
def test_ingest_with_correlation_killed_at_random(tmp_path: Path) -> None:
    """SIGKILLs at random moments of ingest-with-correlation; consistent after each."""
    path = tmp_path / "crash.ribin"
    with SignatureStore.open(path, "x") as store:
        ingest_with_correlation(store, 0)  # compiles the kernels before the children fork
    rng = random.Random(18)
    kills, outcomes = 0, Counter()
    next_batch = 1
    cycle = 0.5  # running estimate of one ingest-with-correlation, to spread the kills
    for _ in range(40):
        child = spawn("ingest_forever", path, next_batch)
        seen: list[str] = []
        wait_for(child, "begin", seen)  # kernels loaded, an ingest under way
        time.sleep(rng.uniform(0.0, 1.5 * cycle))
        child.send_signal(signal.SIGKILL)
        seen += child.stdout.read().decode().splitlines()
        assert child.wait() == -signal.SIGKILL, seen  # killed by us, not dead of its own
        kills += 1
        stored, waiting = check_consistent(path)
        outcomes["stored, not yet correlated" if waiting else "all correlated"] += 1
        began = {ln.split()[1]: float(ln.split()[2]) for ln in seen if ln.startswith("begin")}
        took = [float(ln.split()[2]) - began[ln.split()[1]] for ln in seen if ln.startswith("done")]
        cycle = 0.7 * cycle + 0.3 * (sum(took) / len(took)) if took else cycle * 1.25
        next_batch = max(_batches(path)) + 1
    # the next correlation picks up what the kills left uncorrelated, once
    with SignatureStore.open(path) as store, Workflow.open(path) as wf:
        result = correlate(store, pending(store, wf), workflow=wf, site_country="JM")
    stored, waiting = check_consistent(path)
    assert waiting == 0 and stored == BATCH * next_batch
    with Workflow.open(path) as wf:
        pairs = [(lead.query, lead.candidate) for lead in wf.leads("all")]
        assert len({frozenset(p) for p in pairs}) == len(pairs)  # no pair twice
    print(
        f"ingest-with-correlation killed {kills} times, consistent after each: "
        f"{dict(outcomes)}; {next_batch} batches, one ingest ~{cycle:.2f} s; "
        f"recovery correlated {result.correlated}"
    )
    assert next_batch >= 3


def test_killed_between_the_store_commit_and_correlation(tmp_path: Path) -> None:
    """The exhibits are stored, not correlated; the next correlation does them, once."""
    path = tmp_path / "step.ribin"
    with SignatureStore.open(path, "x") as store:
        ingest_with_correlation(store, 0)

    def write(say) -> None:
        def die(name: str) -> None:
            if name == "manifest-replaced":
                os.kill(os.getpid(), signal.SIGKILL)

        store_writing._checkpoint = die
        with SignatureStore.open(path, "a") as store:
            ingest_with_correlation(store, 1)

    pid, fd = _child(write)
    os.waitpid(pid, 0)
    os.close(fd)
    stored, waiting = check_consistent(path)
    assert (stored, waiting) == (2 * BATCH, BATCH)
    with SignatureStore.open(path) as store, Workflow.open(path) as wf:
        before = len(wf.leads("all"))
        result = correlate(store, pending(store, wf), workflow=wf, site_country="JM")
        assert result.correlated == BATCH and len(wf.leads("all")) >= before
        again = correlate(store, pending(store, wf), workflow=wf, site_country="JM")
        assert again.correlated == 0
    assert check_consistent(path) == (2 * BATCH, 0)


def test_two_deciders_and_an_ingester_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "busy.ribin"
    with SignatureStore.open(path, "x") as store:
        ingest_with_correlation(store, 0)  # compiles the kernels before the children fork
        results = store.add_many(
            [(make_exhibit(f"bb{k:02d}"), {"country": "BB"}) for k in range(32)]
        )
    keys = [("BB", r.exhibit_id, r.content_id) for r in results]
    with Workflow.open(path) as wf:
        for k in range(32):  # leads for the deciders, recorded as correlation records them
            found = [] if k < 2 else [NewLead(keys[k], keys[k % 2], 1.0, None, 1, "x", {}, "")]
            wf.record_correlation(keys[k], found, "x")
        lead_ids = [lead.id for lead in wf.leads("open") if lead.query[0] == "BB"]
    assert len(lead_ids) == 30
    ids = ",".join(map(str, lead_ids))
    children = [
        spawn("decide_many", path, "examiner-1", ids, 1),
        spawn("decide_many", path, "examiner-2", ids, 2),
        spawn("ingest_some", path, 2, 6),
    ]
    outputs = []
    for child in children:
        out = child.stdout.read().decode().splitlines()
        outputs.append(out)
        assert child.wait() == 0, out[-5:]
    said = {
        name: [line for line in out if line.startswith("decided")]
        for name, out in zip(("examiner-1", "examiner-2"), outputs, strict=False)
    }
    assert [line for line in outputs[2] if line.startswith("done")] == [
        f"done {n}" for n in range(2, 8)
    ]
    with Workflow.open(path) as wf:
        decisions = [r for r in wf.audit() if r["action"] == "decide"]
        for name in said:
            mine = [r for r in decisions if r["who"] == name]
            assert len(mine) == len(said[name]) == len(lead_ids) * 3
        # every lead shows the last decision the audit log holds for it
        for lead_id in lead_ids:
            last = [r for r in decisions if r["lead_id"] == lead_id][-1]
            lead = wf.lead(lead_id)
            assert (lead.status, lead.examiner, lead.note) == (
                last["after"]["status"],
                last["who"],
                last["after"]["note"],
            )
            # each decision's "before" is the previous one's "after": none was lost
            history = [r for r in decisions if r["lead_id"] == lead_id]
            for earlier, later in itertools.pairwise(history):
                assert later["before"] == earlier["after"]
    stored, waiting = check_consistent(path)
    assert stored == 32 + BATCH * 7 and waiting == 0
