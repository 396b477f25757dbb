"""Escapes: the guest reaches no host file, network, environment, process, library or interpreter.

Every case runs on both images and asserts the exact outcome: the error kind and
type the guest sees, that nothing of the host leaked into the result, and that
the next run is fine.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from wasmrun import Result, Sandbox

# What "no such thing" looks like per image: the default image has no filesystem
# at all; the scientific one has a private scratch /work whose preopens refuse `..`.
NOT_FOUND = {"FileNotFoundError", "PermissionError"}


def leaked(result: Result, secret: str) -> bool:
    return any(secret in text for text in (result.stdout, result.stderr, result.value or "", str(result.error)))


@pytest.fixture
def secret_file(tmp_path: Path) -> tuple[Path, str]:
    secret = f"wasmrun-secret-{uuid.uuid4()}"
    path = tmp_path / "secret.txt"
    path.write_text(secret)
    return path, secret


@pytest.mark.parametrize(
    "template",
    [
        "open({path!r}).read()",
        "open('../../../../../../../..' + {path!r}).read()",
        "open('/work/../../../../..' + {path!r}).read()",
        "import os; os.open({path!r}, os.O_RDONLY)",
        "import pathlib; pathlib.Path({path!r}).read_text()",
        "import io; io.FileIO({path!r}).read()",
        "import os; os.stat({path!r})",
    ],
)
def test_host_files_are_unreachable(
    box: Sandbox, healthy: Callable[[], Result], secret_file: tuple[Path, str], template: str
) -> None:
    path, secret = secret_file
    result = box.run(template.format(path=str(path)))
    assert result.error is not None and result.error.kind == "exception"
    assert result.error.type in NOT_FOUND
    assert not leaked(result, secret)
    healthy()


@pytest.mark.parametrize("target", ["/", "/etc", "/proc/self", "/work/..", "..", "/tmp/.."])
def test_directory_listing_shows_nothing_of_the_host(box: Sandbox, image: str, target: str) -> None:
    result = box.run(f"import os; sorted(os.listdir({target!r}))")
    if result.ok:  # only the image's own read-only or scratch directories are visible
        assert image == "scientific" and target in ("/", "..", "/tmp/..")
        assert set(eval(result.value or "[]")) <= {"usr", "work", "tmp", "matplotlib"}
    else:
        assert result.error is not None and result.error.type in NOT_FOUND


@pytest.mark.parametrize(
    "code",
    [
        "import os; os.symlink({path!r}, 'link'); open('link').read()",
        "import os; open('a', 'w').write('1'); os.link('a', 'b')",
        "import os; os.symlink('/', 'root'); os.listdir('root')",
        "import os; os.symlink('..', 'up'); os.listdir('up/up/up')",
    ],
)
def test_links_are_refused(
    box: Sandbox, healthy: Callable[[], Result], secret_file: tuple[Path, str], code: str
) -> None:
    path, secret = secret_file
    result = box.run(code.format(path=str(path)))
    assert result.error is not None and result.error.kind == "exception"
    assert result.error.type in NOT_FOUND
    assert not leaked(result, secret)
    assert set(result.files) <= {"a"}  # no link came back as a file
    healthy()


def test_writes_never_reach_the_host(box: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "planted.txt"
    code = f"""
for name in ({str(target)!r}, '../' * 12 + {str(target)!r}, '/tmp/../../' + {str(target)!r}):
    try:
        open(name, 'w').write('x')
    except OSError as exc:
        print(type(exc).__name__)
"""
    result = box.run(code)
    assert result.ok, result.error
    assert set(result.stdout.split()) <= NOT_FOUND
    assert not target.exists()


def test_host_environment_is_invisible(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = f"canary-{uuid.uuid4()}"
    monkeypatch.setenv("WASMRUN_CANARY", canary)
    result = box.run("import os, sys; print(dict(os.environ), os.environb, sys.argv[1:], sys.flags.ignore_environment)")
    assert result.ok, result.error
    assert canary not in result.stdout
    assert result.stdout.startswith("{} environ({}) []")


@pytest.mark.parametrize(
    "code",
    [
        "import socket; socket.socket()",
        "import socket; socket.create_connection(('127.0.0.1', 22), timeout=1)",
        "import socket; socket.getaddrinfo('example.com', 80)",
        "import urllib.request; urllib.request.urlopen('http://127.0.0.1:1/', timeout=1)",
    ],
)
def test_network_is_unreachable(box: Sandbox, healthy: Callable[[], Result], code: str) -> None:
    result = box.run(code)
    assert result.error is not None and result.error.kind == "exception"
    # The exact type depends on how far the stdlib gets before the missing socket layer refuses.
    assert result.error.type in {"PermissionError", "OSError", "AttributeError", "URLError", "gaierror"}
    healthy()


@pytest.mark.parametrize(
    ("code", "types"),
    [
        ("import subprocess; subprocess.run(['/bin/sh', '-c', 'id'])", {"OSError"}),
        ("import os; os.system('id')", {"AttributeError"}),
        ("import os; os.fork()", {"AttributeError"}),
        ("import os; os.execv('/bin/sh', ['sh'])", {"AttributeError"}),
        ("import os; os.kill(1, 9)", {"AttributeError"}),
        ("import threading; threading.Thread(target=print).start()", {"RuntimeError"}),
        (
            "import multiprocessing; multiprocessing.Process(target=print).start()",
            {"ModuleNotFoundError", "AttributeError"},
        ),
    ],
)
def test_no_processes_or_threads(box: Sandbox, healthy: Callable[[], Result], code: str, types: set[str]) -> None:
    result = box.run(code)
    assert result.error is not None and result.error.kind == "exception"
    assert result.error.type in types
    healthy()


def test_ctypes_reaches_no_native_library(box: Sandbox, image: str) -> None:
    result = box.run("import ctypes; ctypes.CDLL('libc.so.6')")
    assert result.error is not None and result.error.kind == "exception"
    # The default image has no ctypes at all; the scientific one has the module but no loader.
    assert result.error.type == ("ModuleNotFoundError" if image == "default" else "OSError")


@pytest.mark.parametrize(
    "code",
    [
        "import wasmtime",
        "import wasmrun",
        "import importlib; importlib.import_module('_wasmtime')",
        "import importlib.util; importlib.util.find_spec('wasmtime').loader",
        "__import__('sys').modules['wasmrun._sandbox']",
    ],
)
def test_host_interpreter_is_unreachable(box: Sandbox, healthy: Callable[[], Result], code: str) -> None:
    result = box.run(code)
    assert result.error is not None and result.error.kind == "exception"
    assert result.error.type in {"ModuleNotFoundError", "AttributeError", "KeyError"}
    healthy()


def test_no_host_object_is_reachable_from_the_heap(box: Sandbox) -> None:
    code = (
        "import gc, sys\n"
        "mods = sorted({type(o).__module__ for o in gc.get_objects()} | set(sys.modules))\n"
        "[m for m in mods if m and ('wasmtime' in m or m.startswith('wasmrun.') or m == 'wasmrun')]"
    )
    result = box.run(code)
    assert result.ok, result.error
    assert result.value == "[]"


def test_posix_internals_stay_inside(box: Sandbox) -> None:
    result = box.run("import posix, os; (posix.getpid(), os.getuid() if hasattr(os, 'getuid') else 0, os.getcwd())")
    assert result.ok, result.error
    pid = eval(result.value or "()")[0]
    assert pid != os.getpid()  # a constant of the WASI libc, not the host's process id


def test_forged_door_frames_are_answered_safely(box: Sandbox, image: str, healthy: Callable[[], Result]) -> None:
    """The guest's raw door to the host (below `tools`) validates every frame."""
    if image == "default":
        code = (
            "from wit_world.imports import host\n"
            "out = []\n"
            "for name, args in [('nope', '{}'), ('', ''), ('x' * 10000, '[' * 5000)]:\n"
            "    try:\n"
            "        host.call(name, args); out.append('ok')\n"
            "    except Exception as exc:\n"
            "        out.append(type(exc).__name__)\n"
            "out"
        )
    else:
        frames = [
            b"",
            b"garbage",
            b'{"op": 1}\n',
            b'{"op": "call"}\n{}',
            b'{"op": "call", "name": "nope"}\n{}',
            b'{"op": "artifact", "name": "../x"}\n',
            b'{"op": "unknown"}\n',
            b"x" * 10**6,
        ]
        code = (
            "import _host\n"
            "out = []\n"
            f"for frame in {frames!r}:\n"
            "    try:\n"
            "        out.append(_host.call(frame)[:1])\n"
            "    except Exception as exc:\n"
            "        out.append(type(exc).__name__)\n"
            "out"
        )
    result = box.run(code)
    assert result.ok, result.error
    assert result.tool_calls == ()  # nothing was dispatched to a tool
    assert result.artifacts == {}
    healthy()


def test_lone_surrogate_through_the_raw_component_door(sandboxes: dict[str, Sandbox]) -> None:
    """componentize-py cannot lower a lone surrogate into a WIT string (it executes `unreachable`).

    Guest code that imports the component's `host` bindings gets a Python error;
    only the runtime's untyped `call_import` below them still kills the guest, cleanly.
    """
    from security.conftest import LIMITS, check_healthy

    box = sandboxes.setdefault("default", Sandbox(limits=LIMITS))
    door = "from wit_world.imports import host\n"
    for code, error in [
        (door + "host.call('\\ud800', '{}')", "UnicodeEncodeError"),
        (door + "host.call('echo', '{\"text\": \"\\ud800\"}')", "UnicodeEncodeError"),
        (door + "host.output(1, 'x\\udfff')", "UnicodeEncodeError"),
        (door + "host.output(-1, 'x')", "ValueError"),
        (door + "host.call(b'echo', '{}')", "TypeError"),
    ]:
        result = box.run(code)
        assert result.error is not None, code
        assert (result.error.kind, result.error.type) == ("exception", error), (code, result.error)
        check_healthy(box)
    result = box.run("import componentize_py_runtime as rt\nrt.call_import(0, ['\\ud800', '{}'])")
    assert result.error is not None
    assert (result.error.kind, result.error.type) == ("internal", "GuestCrash")
    assert result.error.message == "the guest crashed (wasm trap: wasm `unreachable` instruction executed)"
    check_healthy(box)
