"""Isolation: the guest sees no host filesystem, environment, processes or network.

Denials must be clean: an ordinary Python exception of kind ``exception`` that
the guest could catch, with the host unaffected.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

# ---------------------------------------------------------------------------
# Filesystem
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "open('/etc/passwd').read()",
        "open('/etc/hostname', 'rb').read()",
        "open('/proc/self/environ', 'rb').read()",
        "import os\nos.listdir('/')",
        "import os\nos.listdir('.')",
        "import os\nos.listdir('/etc')",
        "import os\nos.stat('/etc/passwd')",
        "import os\nos.scandir('/')",
        "import pathlib\nlist(pathlib.Path('/').iterdir())",
        "import os\nos.mkdir('/newdir')",
        "open('pyproject.toml').read()",  # the host's working directory (the checkout) is not visible
        "import glob\nassert glob.glob('/*'), 'empty'",
    ],
)
def test_host_filesystem_is_invisible(sandbox, assert_alive, code: str) -> None:
    result = sandbox.run(code)
    assert not result.ok
    assert result.error.kind == "exception", result.error
    assert result.error.type in {
        "FileNotFoundError",
        "PermissionError",
        "OSError",
        "NotADirectoryError",
        "AssertionError",
    }, result.error
    assert "root:" not in result.stdout + result.error.message
    assert_alive()


def test_passwd_is_not_readable_even_when_caught(sandbox) -> None:
    code = "try:\n    data = open('/etc/passwd').read()\nexcept OSError as exc:\n    data = type(exc).__name__\ndata"
    result = sandbox.run(code)
    assert result.ok, result.error
    assert "root" not in result.value
    assert result.value in {"'FileNotFoundError'", "'PermissionError'", "'OSError'"}


def test_writes_do_not_reach_the_host(sandbox, tmp_path: Path) -> None:
    target = tmp_path / f"escape-{uuid.uuid4().hex}.txt"
    for path in (str(target), f"/tmp/{target.name}"):
        result = sandbox.run(f"with open({path!r}, 'w') as f:\n    f.write('escaped')")
        assert not result.ok
        assert result.error.kind == "exception"
        assert isinstance(result.error.type, str) and result.error.type.endswith("Error")
    assert not target.exists()
    assert not Path("/tmp", target.name).exists()


# ---------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------


def test_environment_is_empty(sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"WASMRUN_TEST_SECRET_{uuid.uuid4().hex.upper()}"
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv(name, secret)
    assert os.environ[name] == secret  # it is set in the host process

    code = (
        "import os\n"
        f"print(os.environ.get({name!r}), os.getenv('HOME'), os.getenv('PATH'), os.getenv('USER'))\n"
        "sorted(os.environ.items())"
    )
    result = sandbox.run(code)
    assert result.ok, result.error
    assert result.value == "[]"
    assert result.stdout == "None None None None\n"
    assert secret not in result.stdout + result.stderr + (result.value or "")


def test_environ_bytes_and_posix_environ_are_empty(sandbox) -> None:
    result = sandbox.run("import os, posix\n(len(os.environb), len(posix.environ))")
    assert result.ok, result.error
    assert result.value == "(0, 0)"


def test_argv_reveals_nothing(sandbox) -> None:
    result = sandbox.run("import sys\nsys.argv")
    assert result.ok
    host_markers = ("python", "pytest", "/work", "/home", "/usr")
    assert not any(marker in result.value for marker in host_markers), result.value


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "import os\nos.system('echo pwned')",
        "import os\nos.fork()",
        "import os\nos.execv('/bin/sh', ['sh', '-c', 'echo pwned'])",
        "import os\nos.popen('echo pwned').read()",
        "import os\nos.kill(1, 9)",
        "import subprocess\nsubprocess.run(['echo', 'pwned'], check=True)",
        "import subprocess\nsubprocess.check_output('echo pwned', shell=True)",
        "import threading\nthreading.Thread(target=print, args=('pwned',)).start()",
        "import ctypes",
    ],
)
def test_processes_fail_cleanly(sandbox, assert_alive, code: str) -> None:
    result = sandbox.run(code)
    assert not result.ok
    assert result.error.kind == "exception", result.error
    assert result.error.type in {
        "AttributeError",
        "OSError",
        "PermissionError",
        "RuntimeError",
        "ModuleNotFoundError",
        "NotImplementedError",
    }, result.error
    assert "pwned" not in result.stdout
    assert_alive()


def test_process_denial_is_catchable(sandbox) -> None:
    code = (
        "import subprocess\n"
        "try:\n    subprocess.run(['ls'])\nexcept OSError:\n    print('denied')\n"
        "import os\nprint(hasattr(os, 'fork'), hasattr(os, 'system'))"
    )
    result = sandbox.run(code)
    assert result.ok, result.error
    assert result.stdout == "denied\nFalse False\n"


# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------


@pytest.fixture
def host_listener():
    """A TCP listener on the host's loopback; tests check the guest never reaches it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.3)
    try:
        yield server
    finally:
        server.close()


def _no_connection(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except TimeoutError:
        return True
    conn.close()
    return False


@pytest.mark.parametrize(
    "template",
    [
        "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))",
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)",
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'x', ('127.0.0.1', {port}))",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/', timeout=1).read()",
        "import http.client\nc = http.client.HTTPConnection('127.0.0.1', {port}, timeout=1)\nc.request('GET', '/')",
        "import socket\nsocket.getaddrinfo('localhost', {port})",
    ],
    ids=["connect", "create_connection", "udp", "urllib", "http.client", "getaddrinfo"],
)
def test_network_is_unusable(sandbox, assert_alive, host_listener, template: str) -> None:
    port = host_listener.getsockname()[1]
    result = sandbox.run(template.format(port=port), limits=None)
    assert not result.ok, "network access succeeded"
    assert result.error.kind in {"exception", "internal"}, result.error
    assert _no_connection(host_listener), "the guest reached a socket on the host"
    assert_alive()


def test_socket_creation_is_denied(sandbox) -> None:
    result = sandbox.run("import socket\nsocket.socket()")
    assert result.error is not None
    assert result.error.kind == "exception"
    assert result.error.type in {"PermissionError", "OSError"}


def test_socket_server_is_denied(sandbox) -> None:
    code = "import socket\ns = socket.socket()\ns.bind(('0.0.0.0', 8080))\ns.listen()"
    result = sandbox.run(code)
    assert not result.ok
    assert result.error.kind == "exception"


@pytest.mark.parametrize(
    "call",
    [
        "socket.create_connection(('127.0.0.1', 9), timeout=1)",
        "socket.getaddrinfo('example.com', 80)",
        "__import__('urllib.request').request.urlopen('http://example.com', timeout=1)",
    ],
    ids=["create_connection", "getaddrinfo", "urlopen"],
)
def test_network_denial_is_catchable(sandbox, call: str) -> None:
    code = f"import socket, urllib.error\ntry:\n    {call}\nexcept OSError as exc:\n    print('denied')\n"
    result = sandbox.run(code)
    assert result.ok, result.error
    assert result.stdout == "denied\n"


# ---------------------------------------------------------------------------
# The standard library is there
# ---------------------------------------------------------------------------

STDLIB = [
    "json",
    "re",
    "math",
    "itertools",
    "collections",
    "functools",
    "typing",
    "dataclasses",
    "datetime",
    "decimal",
    "fractions",
    "statistics",
    "random",
    "heapq",
    "bisect",
    "string",
    "textwrap",
    "csv",
    "io",
    "hashlib",
    "base64",
    "copy",
    "operator",
    "enum",
    "email",
    "xml.etree.ElementTree",
    "urllib.parse",
    "zoneinfo",
    "pprint",
    "difflib",
]


@pytest.mark.parametrize("module", STDLIB)
def test_stdlib_module_imports(sandbox, module: str) -> None:
    result = sandbox.run(f"import {module}\n{module}.__name__")
    assert result.ok, result.error
    assert result.value == repr(module)


def test_stdlib_all_at_once(sandbox) -> None:
    result = sandbox.run("import " + ", ".join(STDLIB) + "\nprint('ok')")
    assert result.ok, result.error
    assert result.stdout == "ok\n"


def test_stdlib_actually_works(sandbox) -> None:
    code = r"""
import json, re, math, statistics, hashlib, base64, datetime, decimal, fractions, csv, io, heapq, bisect
import collections, itertools, textwrap, difflib, xml.etree.ElementTree as ET, urllib.parse, dataclasses

@dataclasses.dataclass
class P:
    x: int

rows = list(csv.reader(io.StringIO("a,b\n1,2\n")))
out = {
    "json": json.loads(json.dumps({"k": [1, 2.5, None]})),
    "re": re.findall(r"\d+", "a1b22c333"),
    "math": math.isqrt(10**6),
    "stats": statistics.median([3, 1, 2]),
    "sha": hashlib.sha256(b"abc").hexdigest()[:16],
    "b64": base64.b64encode(b"hi").decode(),
    "date": datetime.date(2024, 2, 29).isoformat(),
    "dec": str(decimal.Decimal("0.1") + decimal.Decimal("0.2")),
    "frac": str(fractions.Fraction(1, 3) + fractions.Fraction(1, 6)),
    "csv": rows,
    "heap": heapq.nsmallest(2, [5, 1, 4]),
    "bisect": bisect.bisect([1, 3, 5], 4),
    "counter": collections.Counter("aab").most_common(1),
    "perm": len(list(itertools.permutations(range(4)))),
    "wrap": textwrap.wrap("aaa bbb", 3),
    "diff": round(difflib.SequenceMatcher(None, "abc", "abd").ratio(), 3),
    "xml": ET.fromstring("<a><b>t</b></a>").find("b").text,
    "url": urllib.parse.urlparse("https://h/p?q=1").query,
    "dc": dataclasses.asdict(P(3)),
}
out
"""
    result = sandbox.run(code)
    assert result.ok, result.error
    expected = {
        "json": {"k": [1, 2.5, None]},
        "re": ["1", "22", "333"],
        "math": 1000,
        "stats": 2,
        "sha": "ba7816bf8f01cfea",
        "b64": "aGk=",
        "date": "2024-02-29",
        "dec": "0.3",
        "frac": "1/2",
        "csv": [["a", "b"], ["1", "2"]],
        "heap": [1, 4],
        "bisect": 2,
        "counter": [("a", 2)],
        "perm": 24,
        "wrap": ["aaa", "bbb"],
        "diff": 0.667,
        "xml": "t",
        "url": "q=1",
        "dc": {"x": 3},
    }
    assert result.value == repr(expected)
