"""The epoch ticker schedules its increments on the clock: at each run's deadline, not only every period.

A deadline counted in ticks, or checked only every few ticks, stretches when
the ticker thread wakes late on a loaded machine (8 ticks of "5 ms" took 565 ms
with 8 busy processes on 2 cores). These tests pin the schedule by counting
increments, with the periodic check made so rare that only a deadline can
explain an increment; no wall-clock bound is asserted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from conftest import IMAGES

from wasmrun import Limits, Sandbox
from wasmrun.images import _backend
from wasmrun.images._backend import EpochTicker


class RecordingEngine:
    """Stands in for `wasmtime.Engine`: records when the epoch was incremented."""

    def __init__(self) -> None:
        self.increments: list[int] = []

    def increment_epoch(self) -> None:
        self.increments.append(time.monotonic_ns())


@pytest.fixture
def rare_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A periodic check every 60 s: any increment during a test comes from a deadline (or a counted run)."""
    monkeypatch.setattr(_backend, "_CHECK_NS", 60 * 10**9)
    yield


def test_a_registered_deadline_gets_exactly_one_increment_at_or_after_it(rare_checks: None) -> None:
    engine = RecordingEngine()
    ticker = EpochTicker(engine)  # type: ignore[arg-type]
    try:
        deadline = time.monotonic_ns() + 200_000_000
        with ticker.running(deadline):
            time.sleep(1.0)
        assert len(engine.increments) == 1, engine.increments
        assert engine.increments[0] >= deadline
    finally:
        ticker.stop(5)


def test_each_of_several_deadlines_gets_its_own_increment(rare_checks: None) -> None:
    engine = RecordingEngine()
    ticker = EpochTicker(engine)  # type: ignore[arg-type]
    try:
        now = time.monotonic_ns()
        deadlines = [now + 300_000_000, now + 150_000_000]  # the later one registered first
        done = threading.Event()

        def other_run() -> None:
            with ticker.running(deadlines[0]):
                done.wait(5)

        thread = threading.Thread(target=other_run)
        thread.start()
        with ticker.running(deadlines[1]):
            time.sleep(1.0)
        done.set()
        thread.join()
        assert len(engine.increments) == 2, engine.increments
        assert engine.increments[0] >= deadlines[1] and engine.increments[1] >= deadlines[0]
    finally:
        ticker.stop(5)


def test_a_finished_run_leaves_no_deadline_behind(rare_checks: None) -> None:
    engine = RecordingEngine()
    ticker = EpochTicker(engine)  # type: ignore[arg-type]
    try:
        with ticker.running(time.monotonic_ns() + 200_000_000):
            pass  # ended long before its deadline
        with ticker.running(time.monotonic_ns() + 10**12):
            time.sleep(0.5)
        assert engine.increments == []
    finally:
        ticker.stop(5)


def test_a_run_counted_in_ticks_advances_every_tick(rare_checks: None) -> None:
    """The fallback without the deadline callback counts ticks of TICK_S, so the ticker must keep that period."""
    engine = RecordingEngine()
    ticker = EpochTicker(engine)  # type: ignore[arg-type]
    try:
        with ticker:
            time.sleep(0.5)
        assert len(engine.increments) >= 5  # ~100 at 5 ms; the periodic check alone would give none
    finally:
        ticker.stop(5)


@pytest.mark.parametrize("image", IMAGES)
def test_the_deadline_alone_stops_a_looping_guest(image: str, rare_checks: None) -> None:
    """With no periodic check during the run, the increment at the deadline is what stops the guest."""
    with Sandbox(image=image, prewarm=0) as box:
        result = box.run("while True: pass", limits=Limits(timeout_s=0.5))
        assert result.error is not None and result.error.kind == "timeout", result.error
        assert box.run("print(6 * 7)").stdout == "42\n"
