"""A failure inside the in-process engine's forward resets that document's session: the next
answer there is the one a fresh server gives (both forwards: the lean one and transformers').

Faults are injected into the real server subprocess by tests/faults/sitecustomize.py (nothing
in fimlsp knows about it): the output head fails once, after the cache was written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from test_lsp import Doc, running

pytestmark = pytest.mark.slow  # starts servers and breaks their engines

FAULTS = Path(__file__).parent / "faults"
TEXT = "def mean(values):\n    total = sum(values)\n    return total / \n"
# Nothing in the background (prefetch, alternatives): the one fault must hit the request.
OPTIONS = {"policy": "raw", "maxNewTokens": 16, "typingThrough": False, "prefetch": False,
           "alternatives": 0, "tokenHealing": False}


async def answers(model: Path, root: Path, fault: Path | None) -> tuple[list[Any], dict[str, Any]]:
    """The suggestions at the end of the last line before and after typing `len(`; with
    `fault`, the fault fires in the first forward after the first answer."""
    async with running(model, root, OPTIONS) as client:
        assert (await client.wait_loaded())["state"] == "ready"
        doc = Doc(client, (root / "stats.py").as_uri(), TEXT)
        at = doc.at("return total / ")
        texts = [await client.inline(doc.uri, at)]
        if fault is not None:
            fault.touch()
        index = doc.index("return total / ")
        doc.change((index, index, "len("))
        at = doc.at("return total / len(")
        if fault is not None:
            failed = await client.inline(doc.uri, at)  # the fault: no suggestion, one error
            assert not fault.exists() and (failed is None or not failed.items)
        texts.append(await client.inline(doc.uri, at))
        texts.append(await client.inline(doc.uri, at))  # and the one after that
        stats = await client.stats()
    return [[i.insert_text for i in t.items] if t else None for t in texts], stats


@pytest.mark.parametrize("lean", ["1", "0"], ids=["lean", "transformers"])
async def test_the_answer_after_a_fault_is_a_fresh_servers(
        trained_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lean: str) -> None:
    """The trained model: a random one repeats itself whatever its cache holds, so a stale
    cache would not show in its answers."""
    monkeypatch.setenv("FIMLSP_LEAN", lean)
    fresh, _ = await answers(trained_model, tmp_path, None)
    fault = tmp_path / "fault"
    monkeypatch.setenv("FIMLSP_TEST_FAULT_FILE", str(fault))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH",
                                                                                  "")]))
    faulted, stats = await answers(trained_model, tmp_path, fault)
    assert stats["errors"] == 1, stats  # the fault happened, and only once
    assert fresh[1] and fresh[1][0], fresh  # something to compare
    assert faulted == fresh
