"""Fixtures for driving real editors against the real server.

An editor that is not installed skips its tests with the reason, unless FIMLSP_REQUIRE_EDITORS=1
(set by CI after installing them), where a missing editor is a failure: CI must not go green by
testing nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


def editor_missing(what: str, how_to_install: str) -> None:
    """Skips (or, in CI, fails) a test whose editor is not available."""
    message = f"{what} is not installed: {how_to_install}"
    if os.environ.get("FIMLSP_REQUIRE_EDITORS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def server_command(tiny_model: Path) -> list[str]:
    """How an editor starts fimlsp here: this interpreter, the tiny random-weight model."""
    return [sys.executable, "-m", "fimlsp", "serve", "--model", str(tiny_model)]


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Screenshots and logs kept after the run (CI can collect .artifacts/)."""
    path = Path(__file__).resolve().parents[2] / ".artifacts"
    path.mkdir(exist_ok=True)
    return path
