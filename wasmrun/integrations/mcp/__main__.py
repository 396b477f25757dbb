"""``python -m wasmrun.integrations.mcp [--http HOST:PORT] [--image ...] [--tools module:attr] ...``.

The same server as ``wasmrun mcp``, startable without the CLI (e.g. by an MCP
client's ``command``/``args`` configuration).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from wasmrun import Limits

from ._server import serve


def parse_address(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (IPv6 hosts in brackets) -> (host, port); a clear ValueError otherwise."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"expected HOST:PORT with a port in 1..65535, got {text!r}")
    return host, int(port_text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wasmrun.integrations.mcp", description=__doc__)
    parser.add_argument("--http", metavar="HOST:PORT", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--image", default="default", help="guest image: default or scientific")
    parser.add_argument("--tools", metavar="MODULE:ATTR", help="a wasmrun.ToolRegistry to expose")
    parser.add_argument("--timeout", type=float, default=10.0, help="maximum seconds per run (default 10)")
    parser.add_argument("--memory", type=int, default=256, help="maximum MiB per run (default 256)")
    parser.add_argument("--return-mode", choices=("xml", "json"), default="xml", help="run_python_code replies")
    args = parser.parse_args(argv)
    try:
        limits = Limits(timeout_s=args.timeout, memory_bytes=args.memory * 1024 * 1024)
        address = parse_address(args.http) if args.http else None
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    try:
        if address is None:
            serve(image=args.image, limits=limits, tools=args.tools, return_mode=args.return_mode)
        else:
            serve(transport="http", host=address[0], port=address[1], image=args.image, limits=limits,
                  tools=args.tools, return_mode=args.return_mode)  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
