"""Benchmarks behind `fimlsp bench NAME`: each module here has `main(argv) -> int`.

Benchmarks measure; tests never assert timings. Results, with the machine described, go into
docs/benchmarks.md.
"""

from __future__ import annotations

import importlib
import pkgutil


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def run(name: str, argv: list[str]) -> int:
    if name not in available():
        have = ", ".join(available()) or "none"
        raise SystemExit(f"fimlsp bench: unknown benchmark '{name}' (have: {have})")
    return int(importlib.import_module(f"fimlsp_bench.{name}").main(argv) or 0)
