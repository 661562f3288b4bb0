"""Fault injection for a server subprocess of tests/test_engine_faults.py, and nothing else.

Python imports `sitecustomize` at start-up from the path; the test puts this folder first on
PYTHONPATH of the server it starts and names a trigger file in FIMLSP_TEST_FAULT_FILE. The first
forward that finds the file removes it and fails in the output head, after the blocks have
written their keys and values: the way an out-of-memory error in the biggest matmul fails, the
cache one step ahead of the ids it stands for. A real fault cannot be provoked on demand here.
"""

from __future__ import annotations

import os
from typing import Any

_TRIGGER = os.environ.get("FIMLSP_TEST_FAULT_FILE")

if _TRIGGER:
    from fimlsp.engine import local

    _original = local.LocalEngine._forward

    def _fail(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("injected fault in the output head")

    def _forward(self: Any, session: Any, ids: list[int], all_logits: bool = False) -> Any:
        if not os.path.exists(_TRIGGER):
            return _original(self, session, ids, all_logits)
        os.unlink(_TRIGGER)
        owner = self.lean if self.lean is not None else self.model.get_output_embeddings()
        name = "head" if self.lean is not None else "forward"
        setattr(owner, name, _fail)
        try:
            return _original(self, session, ids, all_logits)
        finally:
            delattr(owner, name)

    local.LocalEngine._forward = _forward
