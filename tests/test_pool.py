"""The pre-warm pool works only while it pays: never beside back-to-back runs, unless a warm instance saves them more.

Making or closing an instance while a run executes slowed that run down (issue 12:
back-to-back fresh runs were ~30% slower with the default pool than with
``prewarm=0``). These tests drive `InstancePool` with a stand-in backend that
records which thread made or closed what, with the quiet interval stretched to
half a second so that no scheduling delay on a loaded machine can pass for one;
they assert what the pool did, never how long it took.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest

from wasmrun.images import _pool
from wasmrun.images._pool import InstancePool

QUIET_S = 0.5


class FakeBackend:
    """Records instances made and closed, and on which thread."""

    warm_up_pays_when_busy: ClassVar[bool] = False

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.made: list[tuple[str, str]] = []  # (how, thread name)
        self.closed: list[str] = []  # thread names
        self.serial = 0

    def _make(self, how: str) -> dict[str, object]:
        with self.lock:
            self.serial += 1
            self.made.append((how, threading.current_thread().name))
            return {"id": self.serial, "warm": how != "instantiate"}

    def instantiate(self, memory_bytes: int) -> dict[str, object]:
        return self._make("instantiate")

    def prewarmed(self, memory_bytes: int) -> dict[str, object]:
        return self._make("prewarmed")

    def warm(self, instance: dict[str, object]) -> None:
        instance["warm"] = True

    def fresh(self, memory_bytes: int, code: str, *, warm: bool = False) -> dict[str, object]:
        return self._make("fresh")

    def warm_up_pays_for(self, code: str) -> bool:
        return self.warm_up_pays_when_busy

    def close(self, instance: dict[str, object]) -> None:
        with self.lock:
            self.closed.append(threading.current_thread().name)

    def by_pool(self) -> int:
        return sum(1 for how, thread in self.made if thread == "wasmrun-prewarm")


class DataStackBackend(FakeBackend):
    """Like the scientific image: a warm instance pays for code that uses the data stack."""

    warm_up_pays_when_busy: ClassVar[bool] = True

    def warm_up_pays_for(self, code: str) -> bool:
        return "pandas" in code


@pytest.fixture(autouse=True)
def slow_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pool, "QUIET_S", QUIET_S)
    monkeypatch.setattr(_pool, "IDLE_S", QUIET_S)


@pytest.fixture
def pools() -> Iterator[list[InstancePool[dict[str, object]]]]:
    made: list[InstancePool[dict[str, object]]] = []
    yield made
    for pool in made:
        pool.stop(5)


def _until(condition: Callable[[], bool], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_back_to_back_runs_make_and_close_their_own(pools: list[InstancePool[dict[str, object]]]) -> None:
    backend = FakeBackend()
    pool: InstancePool[dict[str, object]] = InstancePool(backend, 1 << 20, 2)  # type: ignore[arg-type]
    pools.append(pool)
    assert _until(lambda: len(pool._ready) == 2)  # quiet: filled and warmed
    made_by_pool = backend.by_pool()
    assert made_by_pool == 2

    for _ in range(10):  # back to back: runs of 20 ms, and no gap between them reaches QUIET_S
        instance = pool.take("print(1)")
        time.sleep(0.02)
        pool.discard(instance)
    assert backend.by_pool() == made_by_pool  # the pool made nothing meanwhile
    assert [how for how, _ in backend.made].count("fresh") == 8  # 2 ready ones, then the runs' own
    assert "wasmrun-pool-close" not in backend.closed  # nor closed anything
    assert backend.closed.count("MainThread") == 10 - _pool._MAX_PENDING  # past the pending cap, runs close theirs

    # Quiet again: the used instances are closed and the pool refills, in the background.
    assert _until(lambda: len(pool._ready) == 2 and not pool._used)
    assert backend.closed.count("wasmrun-pool-close") == _pool._MAX_PENDING
    assert backend.by_pool() == made_by_pool + 2


def test_a_run_in_progress_keeps_the_pool_idle(pools: list[InstancePool[dict[str, object]]]) -> None:
    backend = FakeBackend()
    pool: InstancePool[dict[str, object]] = InstancePool(backend, 1 << 20, 1)  # type: ignore[arg-type]
    pools.append(pool)
    assert _until(lambda: len(pool._ready) == 1)
    instance = pool.take("print(1)")
    time.sleep(3 * QUIET_S)  # a long run: however long, the pool waits for it
    assert backend.by_pool() == 1 and not pool._ready and not pool._cold
    pool.discard(instance)
    assert _until(lambda: len(pool._ready) == 1 and backend.closed == ["wasmrun-pool-close"])
    assert backend.by_pool() == 2


def test_refills_beside_runs_that_a_warm_instance_pays_for(pools: list[InstancePool[dict[str, object]]]) -> None:
    backend = DataStackBackend()
    pool: InstancePool[dict[str, object]] = InstancePool(backend, 1 << 20, 2)  # type: ignore[arg-type]
    pools.append(pool)
    assert _until(lambda: len(pool._ready) == 2)

    plain = [pool.take("print(1)") for _ in range(2)]
    time.sleep(3 * QUIET_S)
    assert backend.by_pool() == 2  # runs going on that a warm instance would not have helped: no refill

    uses_stack = pool.take("import pandas as pd")
    assert _until(lambda: len(pool._ready) == 2, timeout_s=QUIET_S / 2)  # refilled while three runs go on
    assert backend.by_pool() == 4 and all(how == "prewarmed" for how, _ in backend.made if how != "fresh")
    for instance in [*plain, uses_stack]:
        pool.discard(instance)
