"""The version of wasmrun (its own module, so that internals can read it without importing the package)."""

__version__ = "0.1.0"
