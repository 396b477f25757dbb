"""Fixtures of the attack suite: every case runs on both images.

Each image gets one long-lived `Sandbox` for the session (runs never share
guest state, see `Sandbox`), so a case that leaves the host unhealthy fails the
cases after it too. `healthy` is the check every case ends with: a known-good
program still runs and gives exactly the expected result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from conftest import IMAGES  # tests/conftest.py: "default", and "scientific" skipped when not installed

from wasmrun import Limits, Result, Sandbox

#: Generous enough for the slowest honest case, short enough that a hang fails fast.
LIMITS = Limits(timeout_s=10.0)
HEALTHY_CODE = "import sys\nprint(6 * 7)\nprint('err', file=sys.stderr)\n[i * i for i in range(5)]"


@pytest.fixture(scope="session")
def sandboxes() -> Iterator[dict[str, Sandbox]]:
    made: dict[str, Sandbox] = {}
    yield made
    for sandbox in made.values():
        sandbox.close()


@pytest.fixture(params=IMAGES)
def image(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def box(image: str, sandboxes: dict[str, Sandbox]) -> Sandbox:
    """The session's sandbox for `image`."""
    if image not in sandboxes:
        sandboxes[image] = Sandbox(image=image, limits=LIMITS)
    return sandboxes[image]


def check_healthy(sandbox: Sandbox) -> Result:
    result = sandbox.run(HEALTHY_CODE)
    assert result.ok, f"the host is not healthy after the previous run: {result.error}"
    assert (result.stdout, result.stderr, result.value) == ("42\n", "err\n", "[0, 1, 4, 9, 16]")
    return result


@pytest.fixture
def healthy(box: Sandbox) -> Callable[[], Result]:
    """Call `healthy()` at the end of a case: the next run must be fine."""
    return lambda: check_healthy(box)
