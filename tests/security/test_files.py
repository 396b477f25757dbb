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
        (
            "import os\nos.makedirs('d/s')\nopen('d/s/f', 'w').write('x')\nf = open('d/s/f')\nos.rename('d', 'e')\n"
            "print(sorted(os.listdir('.')), os.listdir('e/s'), f.read())",
            "['e', 'in.txt'] ['f'] x\n",
            {"e/s/f": b"x"},
        ),
        (
            "import os\nos.mkdir('d')\nopen('d/f', 'w').write('x')\nos.mkdir('empty')\nos.replace('d', 'empty')\n"
            "print(sorted(os.listdir('.')))",
            "['empty', 'in.txt']\n",
            {"empty/f": b"x"},
        ),
    ],
    ids=["rename", "replace-existing", "pathlib-and-shutil", "rename-directory", "replace-empty-directory"],
)
def test_rename_in_work(
    box: Sandbox, healthy: Callable[[], Result], code: str, stdout: str, files: dict[str, bytes]
) -> None:
    """A rename is real, for files and directories, and what was open follows it.

    (The default image used to crash the run here: wasmtime 50 trapped on
    rename-at; then, until wasmtime 51, copied files and refused directories.)
    """
    result = box.run(code, files=INPUTS)
    assert result.ok, result.error
    assert result.stdout == stdout
    assert result.files == files
    healthy()


def _refused(code: str, after: str, *, setup: str = "") -> str:
    """Guest code that runs `code`, prints the name of the OSError it raises, then prints `after`."""
    return f"import os\n{setup}try:\n    {code}\nexcept OSError as exc:\n    print(type(exc).__name__)\nprint({after})"


@pytest.mark.parametrize(
    ("code", "type_"),
    [
        ("os.rename('in.txt', 'x.txt')", "PermissionError"),  # inputs are read-only
        ("open('a.txt', 'w').write('1')\n    os.rename('a.txt', 'in.txt')", "PermissionError"),
        ("os.rename('missing', 'x')", "FileNotFoundError"),
        ("os.mkdir('a.txt')\n    os.rename('a.txt', 'a.txt/x')", "OSError"),  # EINVAL: into itself
    ],
)
def test_refused_renames_change_nothing(box: Sandbox, code: str, type_: str) -> None:
    probe = _refused(code, "open('in.txt').read(), sorted(n for n in os.listdir('.') if n != 'a.txt')")
    result = box.run(probe, files=INPUTS)
    assert result.ok, result.error
    assert result.stdout == f"{type_}\ninput ['in.txt']\n"


def test_a_directory_holding_inputs_stays(box: Sandbox) -> None:
    result = box.run("import os\nos.rename('data', 'moved')", files={"data/in.txt": "input"})
    assert result.error is not None and result.error.type == "PermissionError", result.error


@pytest.mark.parametrize(
    ("code", "type_"),
    [
        ("os.rename('a.txt', '/x')", "FileNotFoundError"),  # no preopen there: refused in the guest's libc
        ("os.rename('a.txt', '/tmp/a.txt')", "FileNotFoundError"),
        ("os.mkdir('d')\n    os.rename('a.txt', 'd')", "IsADirectoryError"),
        ("os.mkdir('d')\n    os.rename('d', 'a.txt')", "NotADirectoryError"),
        ("os.makedirs('d/e')\n    os.mkdir('f')\n    os.replace('f', 'd')", "OSError"),  # ENOTEMPTY
        ("os.rename('a.txt', 'missing/a.txt')", "FileNotFoundError"),
        ("os.rename('.', 'x')", "PermissionError"),
    ],
    ids=["root", "tmp", "file-over-directory", "directory-over-file", "over-non-empty", "no-parent", "work"],
)
def test_default_image_refuses_renames_out_of_work_and_posix_errors(sandbox: Sandbox, code: str, type_: str) -> None:
    """The default image's /work is the only directory; a refused rename leaves the file where it was.

    (The scientific image's guest has a /tmp of its own, so a move there is allowed.)
    """
    probe = _refused(code, "open('a.txt').read()", setup="open('a.txt', 'w').write('a')\n")
    result = sandbox.run(probe, files=INPUTS)
    assert result.ok, result.error
    assert result.stdout == f"{type_}\na\n"


def test_default_image_dotdot_stops_at_work(sandbox: Sandbox) -> None:
    """``..`` from /work is /work again (as at a filesystem's root): the file stays inside."""
    code = (
        "import os\nopen('a.txt', 'w').write('a')\nos.rename('a.txt', '../../b.txt')\n"
        "print(sorted(os.listdir('/work')))"
    )
    result = sandbox.run(code, files=INPUTS)
    assert result.ok, result.error
    assert (result.stdout, result.files) == ("['b.txt', 'in.txt']\n", {"b.txt": b"a"})
