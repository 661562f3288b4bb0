"""Computing ahead (`prefetch`): while a suggestion is on screen, the model computes the one that
follows accepting it, so that after an accept the next suggestion is there without the model.

The real server over stdio with the trained fixture (its suggestions are real text, so there is
something to accept). What the server did is read from `fimlsp.stats` (`source` of the last
answer, the prefetch counters); an answer computed ahead must be exactly the answer the model
gives when asked at that place with prefetching off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as t
from test_lsp import Doc, position_of, running, uri_for

pytestmark = pytest.mark.slow

TEXT = ('import os\n\n\ndef read_config(path):\n    """Read the configuration file."""\n'
        "    with open(path) as handle:\n        return handle.read()\n\n\n"
        "def write_config(path, text):\n    with open(path, ")
# fp32: with int8 the logits depend on how the tokens were split into forwards (dynamic
# activation scales), so an answer computed after other forwards may differ at a near-tie. No
# time budget: on a loaded machine a request cut by it would differ from one computed ahead.
OPTIONS = {"maxNewTokens": 24, "quantization": "none", "timeBudgetMs": 600000}


def suggestion(result: Any) -> str:
    assert isinstance(result, t.InlineCompletionList) and len(result.items) == 1, result
    text = result.items[0].insert_text
    assert isinstance(text, str) and text
    return text


async def accept_and_ask(client: Any, doc: Doc, at: int, text: str) -> tuple[Any, int]:
    """The user takes `text` at `at` (the editor inserts it) and the client asks again there."""
    doc.change((at, at, text))
    at += len(text)
    return await client.inline(doc.uri, position_of(doc.text, at)), at


async def test_after_an_accept_the_next_suggestion_was_computed_ahead(
        trained_model: Path, tmp_path: Path) -> None:
    """Three accepts in a row: each next suggestion comes from the prefetch, and is the very
    suggestion a server without prefetching computes at that place."""
    answers: dict[bool, list[str]] = {}
    for prefetch in (True, False):
        async with running(trained_model, tmp_path, {**OPTIONS, "prefetch": prefetch}) as client:
            assert (await client.wait_loaded())["state"] == "ready", client.tail()
            doc = Doc(client, uri_for(tmp_path, f"ahead-{prefetch}.py"), TEXT)
            at = len(doc.text)
            shown = suggestion(await client.inline(doc.uri, doc.end))
            got, asked = [shown], 0
            for accepted in range(1, 4):
                asked += 1
                if prefetch:  # the user reads it; the model computes ahead meanwhile
                    await client.poll_stats(lambda s, n=accepted: s["prefetched"] >= n,
                                            f"prefetch {accepted} done")
                result, at = await accept_and_ask(client, doc, at, shown)
                stats = await client.stats()
                assert stats["source"] == ("prefetch" if prefetch else "model"), stats
                if not result or not result.items:
                    break
                shown = suggestion(result)
                got.append(shown)
            stats = await client.stats()
            assert stats["requests"] == 1 + asked, stats
            if prefetch:
                assert stats["prefetch_used"] == asked and stats["prefetch_ms"] > 0, stats
            else:
                assert stats["prefetched"] == 0 and stats["prefetch_used"] == 0, stats
            answers[prefetch] = got
    assert len(answers[True]) >= 2, answers  # at least one answer came from the prefetch
    assert answers[True] == answers[False]


async def test_typing_something_else_is_not_answered_from_the_prefetch(
        trained_model: Path, tmp_path: Path) -> None:
    """The prefetch is for the cursor after an accept: a different keystroke asks the model, and
    a computed-ahead answer is used at most once."""
    async with running(trained_model, tmp_path, OPTIONS) as client:
        assert (await client.wait_loaded())["state"] == "ready", client.tail()
        doc = Doc(client, uri_for(tmp_path, "other.py"), TEXT)
        at = len(doc.text)
        shown = suggestion(await client.inline(doc.uri, doc.end))
        await client.poll_stats(lambda s: s["prefetched"] >= 1, "the prefetch done")
        typed = "#" if not shown.startswith("#") else "@"
        await accept_and_ask(client, doc, at, typed)
        assert (await client.stats())["source"] == "model"
        # Back to where the suggestion was, and its accept: the prefetched answer is still there
        # (the prompt is the same) and is taken now, once.
        doc.change((at, at + 1, ""))
        await client.inline(doc.uri, position_of(doc.text, at))
        _, after = await accept_and_ask(client, doc, at, shown)
        first = await client.stats()
        await client.inline(doc.uri, position_of(doc.text, after))
        second = await client.stats()
        assert first["source"] == "prefetch" and second["source"] != "prefetch", (first, second)
        assert second["prefetch_used"] == first["prefetch_used"]
