"""Shared fixtures: real tokenizers and tiny random-weight models built from real configs.

Nothing downloads: HF_HUB_OFFLINE is set for the whole run, so a test that would reach for the
hub fails fast instead of hanging on retries.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from shared_fixtures import shared_or_skip

from fimlsp.tools.tiny import build_tiny_model, trained_model_dir


@pytest.fixture(scope="session")
def shared() -> Path:
    """Real configs and tokenizers: $FIMLSP_SHARED, ../shared or the HF cache; else a skip that
    says how to get them (tests/shared_fixtures.py)."""
    return shared_or_skip()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Path:
    """tiny_starcoder_py's real config shrunk to 2 layers × 64 wide, real StarCoder tokenizer."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-starcoder"), "tiny_starcoder_py",
                            shared=shared)


@pytest.fixture(scope="session")
def trained_model(shared: Path) -> Path:
    """The small trained FIM model in shared/models (real text, unlike the random ones)."""
    path = trained_model_dir(shared)
    if path is None:
        pytest.skip("shared/models/tiny-fim-starcoder (the trained fixture) is not there")
    return path
