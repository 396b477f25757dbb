"""Guest programs that cross every kind of host call, and what they gave, for `tests/test_hostcall.py`.

The default image defines its host functions with lean callbacks (`images.default._fastcall`)
unless ``WASMRUN_NO_FASTCALL=1`` selects wasmtime-py's generic ones, once per process. So the test
runs these cases in this process (lean) and in a child process with the variable set (generic),
and compares the two outcomes byte for byte. ``python tests/hostcall_cases.py`` prints them as JSON.
"""

from __future__ import annotations

import base64
import sys
from typing import Any

import msgspec

import wasmrun

# Strings that have tripped string conversions somewhere: empty, NUL, non-BMP, escapes, JSON syntax.
ODD_STRINGS = ["", "\0", "é", "\U0001f600 smile", '"quoted" \\ back\nslash', "{}", "null", "\u2028\u2029", "x" * 70_000]

CASES: dict[str, str] = {
    "print": "print('hello', 'wörld'); print(); import sys; print('err \U0001f600', file=sys.stderr)",
    "value": "{'a': [1, 2.5, None, True], 'b': 'ü'}",
    "tool-echo": f"import tools\n[tools.echo(s) == s for s in {ODD_STRINGS!r}]",
    "tool-none": "import tools\n[tools.nothing() for _ in range(3)]",
    "tool-add": "import tools\ntools.add(2, b=3), tools.add(a=-1)",
    "tool-invalid": "import tools\ntry:\n    tools.add('x')\nexcept tools.ToolError as e:\n    print(e)",
    "tool-fails": "import tools\ntry:\n    tools.fail('no é')\nexcept tools.ToolError as e:\n    print(e)",
    "tool-unknown": (
        "from wit_world.imports import host\ntry:\n    host.call('nope', '{}')\n"
        "except Exception as e:\n    print(type(e).__name__, e.value)"
    ),
    "tool-bad-json": (
        "from wit_world.imports import host\ntry:\n    host.call('echo', '{\"s\": ')\n"
        "except Exception as e:\n    print(e.value)"
    ),
    "random": "import os, random\nos.urandom(600).hex(), random.random()",
    "clocks": "import time\nt0 = time.monotonic(); time.sleep(0.01); time.monotonic() - t0 >= 0.01, time.time() > 0",
    "files": (
        "import os\nopen('out.txt', 'w').write('ça va\\n' * 1000)\n"
        "os.makedirs('d/e', exist_ok=True)\nopen('d/e/f.bin', 'wb').write(bytes(range(256)))\n"
        "sorted(os.listdir('.')), os.stat('out.txt').st_size, open('in.bin', 'rb').read()[:5], os.path.exists('zz')"
    ),
    "raw-write": "import os\nos.write(1, bytes(range(32, 127)))\nos.write(2, b'')",
    "no-network": (
        "import socket\ntry:\n    socket.create_connection(('example.com', 80))\n"
        "except Exception as e:\n    print(type(e).__name__)"
    ),
    "stdin": "try:\n    input()\nexcept EOFError:\n    print('eof')",
    "exit": "import os\nos._exit(3)",
    "output-cap": "print('y' * 5000)",
}


def registry() -> wasmrun.ToolRegistry:
    tools = wasmrun.ToolRegistry()

    @tools.tool(inline=True)
    def echo(s: str) -> str:
        """Return `s`."""
        return s

    @tools.tool
    def nothing() -> None:
        """Do nothing (on a handler thread)."""

    @tools.tool(inline=True)
    def add(a: int, b: int = 1) -> int:
        """Add."""
        return a + b

    @tools.tool
    def fail(reason: str) -> str:
        """Always fail."""
        raise ValueError(reason)

    return tools


def outcomes() -> dict[str, Any]:
    """Every case's result, without what differs from run to run (timings, run ids)."""
    out: dict[str, Any] = {}
    limits = wasmrun.Limits(max_output_bytes=4096)
    with wasmrun.Sandbox(tools=registry(), deterministic=True, executor="inline", prewarm=0, limits=limits) as sb:
        for name, code in CASES.items():
            result = sb.run(code, files={"in.bin": b"\x00\xffabc"})
            out[name] = {
                "stdout": result.stdout,
                "stderr": result.stderr,
                "value": result.value,
                "error": None if result.error is None else [result.error.kind, result.error.message],
                "files": {k: base64.b64encode(v).decode() for k, v in sorted(result.files.items())},
                "tool_calls": [
                    [c.tool, c.arguments, c.decision, c.reason, c.outcome, c.result, c.error] for c in result.tool_calls
                ],
            }
    return out


if __name__ == "__main__":
    sys.stdout.write(msgspec.json.encode(outcomes()).decode())
