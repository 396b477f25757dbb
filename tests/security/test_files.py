"""Files in the run's /work on both images: renames, read-only inputs, the scratch quota."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from wasmrun import Result, Sandbox

INPUTS = {"in.txt": "input"}


@pytest.mark.parametrize(
    ("code", "stdout", "files"),
    [
        (
            "import os\nopen('a.txt', 'w').write('hi')\nos.rename('a.txt', 'b.txt')\n"
            "print(sorted(os.listdir('.')), open('b.txt').read())",
            "['b.txt', 'in.txt'] hi\n",
            {"b.txt": b"hi"},
        ),
        (
            "import os\nopen('a.txt', 'w').write('new')\nopen('b.txt', 'w').write('old')\n"
            "os.replace('a.txt', 'b.txt')\nprint(sorted(os.listdir('.')), open('b.txt').read())",
            "['b.txt', 'in.txt'] new\n",
            {"b.txt": b"new"},
        ),
        (
            "import pathlib, shutil\npathlib.Path('p.txt').write_text('p')\npathlib.Path('p.txt').rename('q.txt')\n"
            "shutil.move('q.txt', 'r.txt')\nprint(open('r.txt').read())",
            "p\n",
            {"r.txt": b"p"},
        ),
    ],
    ids=["rename", "replace-existing", "pathlib-and-shutil"],
)
def test_rename_in_work(
    box: Sandbox, healthy: Callable[[], Result], code: str, stdout: str, files: dict[str, bytes]
) -> None:
    """(The default image used to crash the run here: wasmtime 50 traps on rename-at.)"""
    result = box.run(code, files=INPUTS)
    assert result.ok, result.error
    assert result.stdout == stdout
    assert result.files == files
    healthy()


@pytest.mark.parametrize(
    ("code", "type_"),
    [
        ("os.rename('in.txt', 'x.txt')", "PermissionError"),  # inputs are read-only
        ("open('a.txt', 'w').write('1')\n    os.rename('a.txt', 'in.txt')", "PermissionError"),
        ("os.rename('missing', 'x')", "FileNotFoundError"),
    ],
)
def test_refused_renames_change_nothing(box: Sandbox, code: str, type_: str) -> None:
    probe = (
        "import os\n"
        "try:\n"
        f"    {code}\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
        "print(open('in.txt').read(), sorted(n for n in os.listdir('.') if n != 'a.txt'))"
    )
    result = box.run(probe, files=INPUTS)
    assert result.ok, result.error
    assert result.stdout == f"{type_}\ninput ['in.txt']\n"
