"""Byte lists across the default image's component boundary (file reads and writes, raw stdout): exact bytes.

`wasmrun.images.default._bytelists` replaces wasmtime-py's per-byte conversion
of ``list<u8>`` with a one-copy one; these tests hold both paths to the same
results (speed is compared in benchmarks/test_bench_core.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasmrun import Sandbox
from wasmrun.images.default import _bytelists

ROUND_TRIP = "data = open('in.bin', 'rb').read()\nopen('out.bin', 'wb').write(data[::-1])\nlen(data)"


@pytest.fixture(params=["one-copy", "generic"])
def byte_path(request: pytest.FixtureRequest, sandbox: Sandbox) -> Iterator[str]:
    """Run the test with the one-copy conversion, then with wasmtime-py's own."""
    assert _bytelists.installed(), "the default image installs the one-copy path"
    if request.param == "generic":
        _bytelists.uninstall()
    try:
        yield request.param
    finally:
        _bytelists.install()


@pytest.mark.parametrize("size", [0, 1, 255, 4096, 70_000])
def test_file_bytes_round_trip(sandbox: Sandbox, byte_path: str, size: int) -> None:
    data = bytes(i * 7 % 256 for i in range(size))
    result = sandbox.run(ROUND_TRIP, files={"in.bin": data})
    assert result.ok, result.error
    assert result.value == str(size)
    assert result.files == {"out.bin": data[::-1]}


def test_raw_stdout_bytes(sandbox: Sandbox, byte_path: str) -> None:
    result = sandbox.run("import os\nos.write(1, b'')\nos.write(1, bytes(range(32, 127)) + b'\\n')")
    assert result.ok, result.error
    assert result.stdout == bytes(range(32, 127)).decode() + "\n"


@given(st.binary(max_size=3000))
def test_any_bytes_round_trip(sandbox: Sandbox, data: bytes) -> None:
    result = sandbox.run(ROUND_TRIP, files={"in.bin": data})
    assert result.ok, result.error
    assert result.files == {"out.bin": data[::-1]}
