"""Keep a tool call's thread hand-off on one CPU: the handler thread follows its caller there.

A tool call hands the handler to a waiting thread and blocks until it is
done. On a VM, waking a thread that sleeps on the *other*, idle vCPU costs the
hypervisor's wake-up latency (~30 us) each way, several times the work of a
no-op tool call. The caller is about to block, so its own CPU is about to be
free: the handler thread is moved onto it before it is woken (one
``sched_setaffinity``, skipped when the thread is already there, as it is for a
caller that stays on its CPU), and the wake-ups in both directions stay on that
CPU. A handler still running after `RELEASE_AFTER_S` is given its whole CPU set
back by the waiting caller, so a long handler is never held on one CPU.

Linux only (``os.sched_setaffinity`` and glibc/musl's ``sched_getcpu``); elsewhere,
or with ``WASMRUN_HANDLER_AFFINITY=0``, or after the first refusal (a cpuset
that forbids it), hand-offs wake whichever CPU the scheduler picks.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Protocol

RELEASE_AFTER_S = 0.002  # ~100 no-op hand-offs: long enough that short handlers never pay the syscall


class Follower(Protocol):
    thread_id: int
    home: frozenset[int] | None
    pinned_cpu: int | None


def _sched_getcpu() -> Callable[[], int] | None:
    if not hasattr(os, "sched_setaffinity") or os.environ.get("WASMRUN_HANDLER_AFFINITY", "1") == "0":
        return None
    try:
        getcpu = ctypes.PyDLL(None).sched_getcpu  # PyDLL: a ~70 ns vDSO call keeps the GIL
    except (AttributeError, OSError):
        return None
    getcpu.restype, getcpu.argtypes = ctypes.c_int, []
    return getcpu


_getcpu = _sched_getcpu()
enabled = _getcpu is not None


def allowed() -> frozenset[int] | None:
    """The calling thread's own CPU set (what a handler thread goes back to), or None when following is off."""
    if not enabled:
        return None
    try:
        return frozenset(os.sched_getaffinity(0))
    except OSError:
        return None


def follow_caller(worker: Follower) -> None:
    """Before waking an idle handler thread: move it onto the CPU this (calling) thread runs on."""
    global enabled
    if not enabled or worker.home is None or _getcpu is None:
        return
    cpu = _getcpu()
    if cpu == worker.pinned_cpu or cpu not in worker.home:
        return
    try:
        os.sched_setaffinity(worker.thread_id, (cpu,))
    except OSError:  # a cpuset or seccomp policy forbids it: stop trying
        enabled = False
        return
    worker.pinned_cpu = cpu


def release(worker: Follower) -> None:
    """Give a handler thread its whole CPU set back (its handler is taking long)."""
    if worker.pinned_cpu is not None and worker.home is not None:
        worker.pinned_cpu = None
        try:
            os.sched_setaffinity(worker.thread_id, worker.home)
        except OSError:
            pass
