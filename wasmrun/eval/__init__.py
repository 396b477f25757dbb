"""Evaluate code-generation samples on HumanEval-format benchmarks, in the sandbox.

>>> summary = wasmrun.eval.evaluate("samples.jsonl", "HumanEval.jsonl.gz", k=(1, 10))  # doctest: +SKIP
>>> summary.pass_at_k                                                                   # doctest: +SKIP
{'pass@1': 0.31, 'pass@10': 0.52}

The same as ``wasmrun eval samples.jsonl --problems HumanEval.jsonl.gz``. Inputs
and outputs follow openai/human-eval (``SAMPLES_results.jsonl``, pass@k with the
unbiased estimator); the program checked is the reference harness's, byte for
byte. Backends: ``threads`` (default), ``processes``, ``ray``; verdicts do not
depend on the backend or the worker count.

Threat model (the full text, with the cases measured against the reference
harness, is ``wasmrun/eval/README.md``):

* Each sample runs in a fresh sandbox instance, bounded in wall time, CPU
  fuel, memory and output; infinite loops, memory/output/recursion bombs and
  escape attempts fail cleanly and never stall the evaluation or touch the host.
* The verdict is decided on the host from the run's outcome: a sample passes
  only if the run ended without error, without ending the interpreter early
  (``sys.exit(0)``, ``os._exit(0)``, ``raise SystemExit`` all fail), and with
  the value of a per-run random token placed after ``check(entry_point)``, so
  control flow reached the end of the tests. There is no in-guest plumbing
  (like the reference's ``result`` list) that decides a verdict.
* Not preventable in any in-process harness, this one included: completions
  that change what the tests mean inside the language (an object whose
  ``__eq__`` is always true, patched builtins, ``sys.settrace`` jumps), and a
  completion written against wasmrun's own guest shim (it can read the token
  from its own source and rewrite the shim's report). Passing samples that use
  the constructs such attacks need are listed in ``EvalSummary.flagged``.
"""

from ._data import EvalInputError, Problem, build_program, read_problems, read_samples, results_path_for
from ._harness import BACKENDS, DEFAULT_LIMITS, evaluate
from ._outcome import Checker, EvalSummary, SampleResult
from ._passk import estimate_pass_at_k, pass_at_k, summarize_pass_at_k
from ._program import CATEGORIES, Category, Verdict, guest_code, suspicious_constructs, verdict

__all__ = [
    "BACKENDS",
    "CATEGORIES",
    "DEFAULT_LIMITS",
    "Category",
    "Checker",
    "EvalInputError",
    "EvalSummary",
    "Problem",
    "SampleResult",
    "Verdict",
    "build_program",
    "estimate_pass_at_k",
    "evaluate",
    "guest_code",
    "pass_at_k",
    "read_problems",
    "read_samples",
    "results_path_for",
    "summarize_pass_at_k",
    "suspicious_constructs",
    "verdict",
]
