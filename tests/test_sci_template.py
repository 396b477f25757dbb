"""The scientific image's warm template: comparing memories in place gives the same pages as comparing copies."""

from __future__ import annotations

import ctypes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasmrun.images.scientific._template import MEMCMP, Template

PAGE = Template.PAGE

# A memory as a list of pages, each described by one byte value (0: a zero page).
pages = st.lists(st.integers(0, 3), min_size=1, max_size=12)


def _memory(values: list[int]) -> bytes:
    return b"".join(bytes([v]) * PAGE for v in values)


@pytest.mark.skipif(MEMCMP is None, reason="no libc memcmp here")
@given(fresh=pages, warm=pages)
def test_between_finds_the_same_runs_as_diff(fresh: list[int], warm: list[int]) -> None:
    """Any pair of memories, including a warm one larger than the fresh one (grown pages count as zero)."""
    if len(warm) < len(fresh):
        warm = warm + [0] * (len(fresh) - len(warm))  # a warm memory never shrinks
    fresh_bytes, warm_bytes = _memory(fresh), _memory(warm)
    fresh_buf = ctypes.create_string_buffer(fresh_bytes, len(fresh_bytes))
    warm_buf = ctypes.create_string_buffer(warm_bytes, len(warm_bytes))
    found = Template.between(ctypes.addressof(fresh_buf), len(fresh_bytes), ctypes.addressof(warm_buf), len(warm_bytes))
    expected = Template.diff(fresh_bytes, warm_bytes)
    assert found is not None
    assert found.size == expected.size == len(warm_bytes)
    assert [(offset, bytes(data)) for offset, data in found.runs] == expected.runs


@pytest.mark.skipif(MEMCMP is None, reason="no libc memcmp here")
def test_a_template_made_in_place_applies_like_one_made_from_copies() -> None:
    fresh_bytes, warm_bytes = _memory([1, 0, 2, 2]), _memory([1, 3, 3, 2, 0, 1])
    fresh_buf = ctypes.create_string_buffer(fresh_bytes, len(fresh_bytes))
    warm_buf = ctypes.create_string_buffer(warm_bytes, len(warm_bytes))
    template = Template.between(
        ctypes.addressof(fresh_buf), len(fresh_bytes), ctypes.addressof(warm_buf), len(warm_bytes)
    )
    assert template is not None
    assert [offset // PAGE for offset, _ in template.runs] == [1, 5]  # pages 1-2 differ, 3-4 are the same, 5 is new
    target = ctypes.create_string_buffer(fresh_bytes + bytes(2 * PAGE), len(warm_bytes))
    for offset, data in template.runs:
        source = (ctypes.c_char * len(data)).from_buffer(bytearray(data))
        ctypes.memmove(ctypes.addressof(target) + offset, source, len(data))
    assert target.raw == warm_bytes
