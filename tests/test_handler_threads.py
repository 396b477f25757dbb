"""Tool handler threads: which thread takes a job, how many there are, and where they run.

A tool call hands its handler to an idle worker thread (so that a hung handler
can be abandoned at its deadline). On Linux the caller first moves that thread
onto its own CPU, and the thread moves back to its own CPU set as soon as it
wakes (`wasmrun.tools._affinity`): these tests check both halves, and that the
pool of threads behaves as before (bounded, reused, every job finished).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from wasmrun import Sandbox, ToolRegistry
from wasmrun.tools import _affinity
from wasmrun.tools._handlers import Job, Workers

linux_affinity = pytest.mark.skipif(not _affinity.enabled, reason="needs sched_setaffinity and sched_getcpu")
ALL_CPUS = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()


def _run(workers: Workers, func, *args):  # type: ignore[no-untyped-def]
    job = Job(func, args, {})
    assert workers.submit(job)
    assert job.done.wait(10)
    assert job.error is None, job.error
    return job.value


def test_sequential_calls_reuse_one_thread() -> None:
    workers = Workers(max_threads=4)
    seen = {_run(workers, threading.get_ident) for _ in range(50)}
    assert len(seen) == 1


def test_concurrent_calls_are_bounded_and_all_finish() -> None:
    workers = Workers(max_threads=3)
    gate, release = threading.Barrier(3, timeout=10), threading.Event()
    jobs = [Job(lambda: (gate.wait(), release.wait(10), threading.get_ident())[2], (), {}) for _ in range(3)]
    assert all(workers.submit(job) for job in jobs)
    assert not workers.submit(Job(lambda: None, (), {}))  # a fourth while three are busy: refused
    release.set()
    assert all(job.done.wait(10) for job in jobs)
    assert len({job.value for job in jobs}) == 3
    with ThreadPoolExecutor(6) as pool:  # many callers, few threads: each call waits for a free one
        values = list(pool.map(lambda i: _run_or_none(workers, i), range(600)))
    assert all(value in (None, 2 * i) for i, value in enumerate(values))
    assert values.count(None) < 600


def _run_or_none(workers: Workers, i: int) -> int | None:
    job = Job(lambda: 2 * i, (), {})
    if not workers.submit(job):
        return None
    assert job.done.wait(10)
    return job.value  # type: ignore[no-any-return]


@linux_affinity
def test_the_handler_thread_is_moved_to_the_callers_cpu_and_back() -> None:
    parked, release = threading.Event(), threading.Event()
    follower = _Follower()

    def idle() -> None:
        follower.thread_id = threading.get_native_id()
        follower.home = _affinity.allowed()
        parked.set()
        release.wait(10)

    thread = threading.Thread(target=idle)
    thread.start()
    assert parked.wait(10)
    for _ in range(20):  # the caller may itself be moved between reading its CPU and acting on it
        before = _cpu()
        _affinity.follow_caller(follower)
        if _cpu() == before == follower.pinned_cpu:
            break
    assert os.sched_getaffinity(follower.thread_id) == {before}
    _affinity.release(follower)
    assert follower.pinned_cpu is None
    assert os.sched_getaffinity(follower.thread_id) == ALL_CPUS
    release.set()
    thread.join(10)


@linux_affinity
def test_a_long_handler_gets_its_whole_cpu_set_back() -> None:
    """The pin is for the hand-off: a handler still running after a moment must be free to move to an idle CPU."""
    registry = ToolRegistry()

    @registry.tool
    def cpus(wait_s: float) -> list[int]:
        """The CPUs this handler may run on, after `wait_s` seconds."""
        time.sleep(wait_s)
        return sorted(os.sched_getaffinity(0))

    with Sandbox(tools=registry, prewarm=0, executor="inline") as sb:
        result = sb.run("import tools\nprint([len(tools.cpus(0)) for _ in range(20)], tools.cpus(0.05))")
    assert result.ok, result.error
    quick, slow = result.stdout.strip().split("] ")
    # a new thread starts with the caller's CPU set; from then on it is pinned for each hand-off
    assert quick == "[" + ", ".join([str(len(ALL_CPUS))] + ["1"] * 19)
    assert slow == repr(sorted(ALL_CPUS))


def test_without_affinity_handlers_still_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_affinity, "enabled", False)
    workers = Workers(max_threads=2)
    assert [_run(workers, pow, 2, i) for i in range(10)] == [2**i for i in range(10)]


class _Follower:
    def __init__(self) -> None:
        self.thread_id = 0
        self.home: frozenset[int] | None = None
        self.pinned_cpu: int | None = None


def _cpu() -> int:
    getcpu = _affinity._getcpu
    assert getcpu is not None
    return getcpu()
