"""What the Q3 examples (``q3_<framework>.py``) share: their command line, the sandbox, the chart.

Each example drives the recorded seed conversation through its own framework; this module gives
every one the same set-up: ``--image`` and ``--out``, a `wasmrun.Sandbox` on that image whose
registry holds the seed's SQLite tools (over a fresh sales database), the limits the seed question
needs on each image, and at the end the chart the working program wrote, saved to ``--out``. The
question itself is `wasmrun.agent.seed.SEED_TASK` (with `SEED_INSTRUCTIONS`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import wasmrun
from wasmrun.agent.seed import sales_database, save_artifacts, seed_registry


@dataclass
class Q3Example:
    """One run of an example: its ``--image`` and ``--out``, and the files its code runs made."""

    image: str
    out: Path
    files: dict[str, bytes] = field(default_factory=dict)

    def keep_files(self, result: wasmrun.Result) -> None:
        """Keep a run's files (the chart); pass as the adapter's ``on_result``."""
        self.files.update(result.files)

    def finish(self, answer: object) -> None:
        """Save the chart to ``--out`` and print the model's answer and where the chart went."""
        written = save_artifacts(self.files, self.out)
        print(f"\n{answer}\n\nchart: {', '.join(map(str, written))}")


@contextmanager
def q3_sandbox(description: str) -> Iterator[tuple[Q3Example, wasmrun.Sandbox]]:
    """Parse the example's command line; the example and its sandbox over the seed's tools, for a ``with``."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--image", choices=["default", "scientific"], default="default")
    parser.add_argument("--out", type=Path, default=Path.cwd(), help="where to write the chart")
    args = parser.parse_args()

    example = Q3Example(image=args.image, out=args.out)
    limits = wasmrun.Limits(timeout_s=60 if args.image == "scientific" else 10)
    with sales_database() as db, wasmrun.Sandbox(tools=seed_registry(db), limits=limits, image=args.image) as sandbox:
        yield example, sandbox
