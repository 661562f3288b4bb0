"""The real model configs and tokenizers, or a skip that says how to get them.

`fimlsp.tools.fixtures.find` looks in $FIMLSP_SHARED, beside the repository and in the Hugging Face
cache. Where none has them, tests that need them skip with the reason and the command that fetches
them; with FIMLSP_REQUIRE_FIXTURES=1 (CI, which has shared/ beside the clone) they fail instead, so
that a run cannot go green by testing nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fimlsp.tools.fixtures import find


def shared_or_skip() -> Path:
    found = find()
    if found.path is not None:
        return found.path
    if os.environ.get("FIMLSP_REQUIRE_FIXTURES") == "1":
        pytest.fail(found.reason())
    pytest.skip(found.reason())
