"""Each adapter is an optional extra: without its framework, importing it names the extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

ADAPTERS = [
    ("wasmrun.integrations.pydantic_ai", "pydantic_ai", "pydantic-ai"),
    ("wasmrun.integrations.langchain", "langchain_core", "langchain"),
    ("wasmrun.integrations.openai_agents", "agents", "openai-agents"),
    ("wasmrun.integrations.smolagents", "smolagents", "smolagents"),
]

# Makes `blocked` unimportable in a child process, as if its package were not installed.
BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {blocked!r} or name.startswith({blocked!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
try:
    import {adapter}
except ImportError as exc:
    print(exc)
else:
    print("imported")
"""


@pytest.mark.parametrize(("adapter", "framework", "extra"), ADAPTERS)
def test_missing_framework_names_the_extra(adapter: str, framework: str, extra: str) -> None:
    code = BLOCK.format(blocked=framework, adapter=adapter)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert f"pip install 'wasmrun[{extra}]'" in out.stdout
    assert adapter in out.stdout


def test_importing_wasmrun_imports_no_framework() -> None:
    frameworks = [framework for _, framework, _ in ADAPTERS]
    code = (
        "import sys, wasmrun, wasmrun.agent, wasmrun.integrations\n"
        f"print([m for m in {frameworks!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
