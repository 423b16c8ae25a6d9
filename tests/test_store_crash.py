"""Crash safety and concurrency of the store: writers killed mid-write, readers beside a writer.

Writers and readers are forked processes (POSIX only), killed with SIGKILL: no cleanup
handler runs, exactly as in a power cut of the process (the kernel still flushes what was
written; fsync ordering is what protects against a machine crash).
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ribin.store import SignatureStore
from ribin.store import writing as store_writing
from ribin.store_format import exhibit_content_id

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_store import make_exhibit  # noqa: E402

BATCH = 2


def batch(number: int) -> list:
    return [
        (
            make_exhibit(f"b{number:04d}-{j}", size=16, firing_pin=False, detection=False),
            {"country": "JM"},
        )
        for j in range(BATCH)
    ]


def batches_present(store: SignatureStore) -> Counter:
    return Counter(int(exhibit_id[1:5]) for exhibit_id in store.exhibit_ids())


def _child(body, *args) -> tuple[int, int]:
    """Fork a process running ``body(write, *args)``; returns (pid, read end of its pipe)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(read_end)
            body(lambda line: os.write(write_end, (line + "\n").encode()), *args)
        except BaseException as exc:
            os.write(write_end, f"FAIL {type(exc).__name__}: {exc}\n".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def _read_all(fd: int) -> list[str]:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode().splitlines()


def _ingest_forever(say, path: Path, first: int) -> None:
    store = SignatureStore.open(path, "a")
    say("ready")
    number = first
    while True:
        say(f"begin {number} {time.monotonic()}")
        store.add_many(batch(number))
        say(f"done {number} {time.monotonic()}")
        number += 1
        if number % 4 == 0:
            store.compact()  # killed here too: content must not change
        if number % 5 == 0:
            store.remove(f"b{number - 1:04d}-0", "test removal")
            say(f"removed {number - 1}")


def _check_after_kill(
    path: Path, lines: list[str], history: dict[int, int], outcomes: Counter
) -> int:
    """The store holds exactly the completed batches (plus the one in flight if committed).

    ``history`` maps each batch seen after earlier kills to its exhibit count; a committed
    state never changes afterwards, so those counts must stay as they were.
    """
    done = [int(line.split()[1]) for line in lines if line.startswith("done")]
    began = [int(line.split()[1]) for line in lines if line.startswith("begin")]
    removed = {int(line.split()[1]) for line in lines if line.startswith("removed")}
    assert not [line for line in lines if line.startswith("FAIL")], lines
    with SignatureStore.open(path) as store:
        report = store.verify()
        assert report.ok, report.problems
        present = batches_present(store)
    last_done = max([*done, *history], default=-1)
    expected = set(range(last_done + 1))
    in_flight = max(began, default=-1)
    if in_flight > last_done and in_flight in present:
        expected.add(in_flight)  # killed after the commit point, before it could say so
        outcomes["add landed, unreported"] += 1
    elif in_flight > last_done:
        outcomes["add rolled back"] += 1
    else:
        outcomes["between adds (remove/compact/idle)"] += 1
    assert set(present) == expected, (sorted(present), last_done, in_flight)
    for number, count in present.items():
        if number in removed:
            assert count == BATCH - 1, (number, count)
        elif number in history and number not in done:
            assert count == history[number], (number, count, history[number])
        else:  # whole, or whole less the one removal that follows every fifth batch
            assert count == BATCH or (count == BATCH - 1 and number % 5 == 4), (number, count)
        history[number] = count
    return max(present, default=-1) + 1


def _wait_for(fd: int, marker: bytes, seen: bytearray) -> None:
    while marker not in seen:
        chunk = os.read(fd, 4096)
        assert chunk, bytes(seen)
        seen.extend(chunk)


@pytest.mark.slow  # many writer processes, each killed part-way
def test_writer_killed_at_random_points_leaves_last_complete_state(tmp_path: Path) -> None:
    """32 SIGKILLs, each at a random moment of a write, removal or compaction."""
    kills, batches = _random_kills(tmp_path, 32, seed=6)
    assert kills == 32 and batches >= 2  # the writer made progress between kills


@pytest.mark.slow
def test_writer_killed_a_thousand_times(tmp_path: Path) -> None:
    """1,000 SIGKILLs (``RIBIN_KILLS`` sets another count), a fresh store every 50 so each
    check stays quick; every state after every kill verified."""
    total = int(os.environ.get("RIBIN_KILLS", "1000"))
    kills = batches = 0
    for round_ in range((total + 49) // 50):
        done, made = _random_kills(tmp_path / f"r{round_}", min(50, total - kills), seed=round_)
        kills += done
        batches += made
    print(f"{kills} kills in all, {batches} batches committed")
    assert kills == total and batches >= (total + 49) // 50  # progress between kills


def _random_kills(tmp_path: Path, count: int, seed: int) -> tuple[int, int]:
    """Kill a writer ``count`` times at random moments; check the store after each kill.

    Returns (kills, batches committed).
    """
    path = tmp_path / "crash.ribin"
    SignatureStore.open(path, "x").close()
    rng = random.Random(seed)
    next_batch = 0
    history: dict[int, int] = {}
    started = time.monotonic()
    kills = 0
    outcomes: Counter = Counter()
    commit_seconds = 0.1  # running estimate of one add, so kills spread over its steps
    for _ in range(count):
        pid, fd = _child(_ingest_forever, path, next_batch)
        seen = bytearray()
        _wait_for(fd, b"begin", seen)  # a write is under way
        time.sleep(rng.uniform(0.0, min(1.5 * commit_seconds, 0.5)))  # in the add or after
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        while chunk := os.read(fd, 65536):
            seen.extend(chunk)
        os.close(fd)
        kills += 1
        lines = seen.decode().splitlines()
        next_batch = _check_after_kill(path, lines, history, outcomes)
        times = {
            tuple(line.split()[:2]): float(line.split()[2])
            for line in lines
            if line.startswith(("begin", "done"))
        }
        durations = [
            end - times["begin", number]
            for (word, number), end in times.items()
            if word == "done" and ("begin", number) in times
        ]
        if durations:
            commit_seconds = 0.7 * commit_seconds + 0.3 * float(np.median(durations))
        else:  # killed before any add finished: allow more time next round
            commit_seconds *= 1.25
    seconds = time.monotonic() - started
    print(
        f"writer killed {kills} times in {seconds:.1f} s, verified after each: {next_batch} batches"
    )
    print(dict(outcomes))
    return kills, next_batch


@pytest.mark.parametrize(
    ("step", "lands"),
    [
        ("segment-written", False),
        ("segment-renamed", False),
        ("manifest-written", False),
        ("manifest-replaced", True),
    ],
)
@pytest.mark.parametrize("operation", ["add", "remove", "compact"])
def test_writer_killed_at_each_step(tmp_path: Path, step: str, lands: bool, operation: str) -> None:
    path = tmp_path / "steps.ribin"
    with SignatureStore.open(path, "x") as store:
        store.add_many(batch(0))
        store.add_many(batch(1))
        before = sorted(store.exhibit_ids())

    def write(say) -> None:
        def checkpoint(name: str) -> None:
            if name == step:
                os.kill(os.getpid(), signal.SIGKILL)

        store_writing._checkpoint = checkpoint
        with SignatureStore.open(path, "a") as store:
            if operation == "add":
                store.add_many(batch(2))
            elif operation == "remove":
                store.remove("b0000-1", "test")
            else:
                store.compact()
        say("finished")  # only reached when the step is not passed

    pid, fd = _child(write)
    os.waitpid(pid, 0)
    lines = _read_all(fd)
    if operation == "remove" and step.startswith("segment"):
        assert lines == ["finished"]  # a removal writes no segment
        lands = True
    else:
        assert lines == [], lines
    with SignatureStore.open(path) as store:
        report = store.verify()
        assert report.ok, report.problems
        after = sorted(store.exhibit_ids())
        segments = len(store.segment_paths())
    expected = before
    if lands and operation == "add":
        expected = sorted([*before, *(f"b0002-{j}" for j in range(BATCH))])
    elif lands and operation == "remove":
        expected = [e for e in before if e != "b0000-1"]
    assert after == expected
    if operation == "compact":
        assert segments == (1 if lands else 2)
    if not lands:
        assert report.notes  # the interrupted write's files, ignored by readers
    with SignatureStore.open(path, "a") as store:  # the next writer carries on cleanly
        store.add_many(batch(3))
        assert store.verify().notes == []


def _write_for(say, path: Path, seconds: float) -> None:
    store = SignatureStore.open(path, "a")
    end = time.monotonic() + seconds
    number = 0
    while time.monotonic() < end:
        store.add_many(batch(number))
        if number % 3 == 2:
            store.remove(f"b{number:04d}-0", "test removal")
        if number % 7 == 6:
            store.compact()
        number += 1
    say(f"wrote {number}")


def _check_batches(exhibit_ids: list[str]) -> None:
    """Batches present are 0..k, each whole (less its committed removal)."""
    present = Counter(int(exhibit_id[1:5]) for exhibit_id in exhibit_ids)
    if not present:
        return
    last = max(present)
    assert set(present) == set(range(last + 1)), sorted(present)
    for number, count in present.items():
        whole = count == BATCH and (number % 3 != 2 or number == last)
        assert whole or (count == BATCH - 1 and number % 3 == 2), (number, count)


def _read_for(say, path: Path, seconds: float, deep: bool) -> None:
    end = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < end:
        with SignatureStore.open(path) as store:
            sequence = store.info().sequence
            ids = store.exhibit_ids()
            _check_batches(ids)
            exhibits = list(store.iter())
            _check_batches([e.exhibit_id for e in exhibits])
            for stored in exhibits:  # the bytes read are the bytes committed
                signature_ids = {k: s.id for k, s in stored.exhibit.signatures().items()}
                assert exhibit_content_id(stored.exhibit_id, signature_ids) == stored.content_id
            table = store.features()
            _check_batches(list(table.exhibit_id))
            if store.info().sequence == sequence:  # no compaction made it re-read meanwhile
                assert len(exhibits) == len(ids) == len(table)
            if deep and rounds % 3 == 0:
                report = store.verify()
                assert report.ok, report.problems
                _check_batches(store.exhibit_ids())
        rounds += 1
        time.sleep(0.01)  # leave the writer some of a small machine's cores
    say(f"rounds {rounds}")


def test_readers_beside_a_writer_never_see_a_torn_state(tmp_path: Path) -> None:
    path = tmp_path / "busy.ribin"
    SignatureStore.open(path, "x").close()
    seconds = 4.0
    writer = _child(_write_for, path, seconds)
    readers = [_child(_read_for, path, seconds, deep) for deep in (True, False, False)]
    outputs = []
    for pid, fd in [writer, *readers]:
        outputs.append(_read_all(fd))
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, outputs[-1]
    assert outputs[0][0].startswith("wrote")
    written = int(outputs[0][0].split()[1])
    rounds = [int(out[0].split()[1]) for out in outputs[1:]]
    print(f"writer committed {written} batches; reader rounds {rounds}")
    assert written >= 3 and min(rounds) >= 3
    with SignatureStore.open(path) as store:
        assert store.verify().ok
