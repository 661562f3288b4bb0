"""Typing-through and recent answers as an editor sees them: the real server in a subprocess
(the helpers of test_lsp.py), the tiny random-weight model loaded for real.

A scripted user follows the suggestions: types their first characters one by one, takes the
next word with a partial accept, accepts the rest, asks again at the new place, and at the end
undoes the last accept. Everything but the first request of each round must be answered without
the model; the share is printed for docs/benchmarks.md (run with `-s` to see it).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as t
from pygls.exceptions import JsonRpcException
from test_lsp import Doc, position_of, running, uri_for

pytestmark = pytest.mark.slow

TEXT = ("import math\n\n\ndef area(radius):\n    return math.pi * radius ** 2\n\n\n"
        "def circumference(radius):\n    return ")
ROUNDS = 3
TYPED_PER_ROUND = 12  # characters typed one by one before taking a word and then the rest


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("typing through")


def shown(result: Any) -> tuple[str, list[Any]]:
    """The suggestion's text and its accept command's arguments."""
    assert isinstance(result, t.InlineCompletionList) and len(result.items) == 1, result
    item = result.items[0]
    assert isinstance(item.insert_text, str) and item.command is not None
    return item.insert_text, list(item.command.arguments or [])


async def test_typing_that_follows_the_suggestion_is_answered_without_the_model(
        tiny_model: Path, workspace: Path) -> None:
    # No computing ahead: the next round's first request must be the model's (test_prefetch.py
    # covers what an accept gets with it on).
    async with running(tiny_model, workspace, {"prefetch": False}) as client:
        assert (await client.wait_loaded())["state"] == "ready"
        doc = Doc(client, uri_for(workspace, "typing.py"), TEXT)
        at = len(doc.text)  # the cursor, as a Python index
        before = await client.stats()
        model, typed_through = 0, 0

        async def ask() -> tuple[str, list[Any], dict[str, Any]]:
            text, args = shown(await client.inline(doc.uri, position_of(doc.text, at)))
            return text, args, await client.stats()

        def insert(text: str) -> None:
            nonlocal at
            doc.change((at, at, text))
            at += len(text)

        for _ in range(ROUNDS):
            round_text, round_at = doc.text, at
            suggestion, args, stats = await ask()
            assert stats["source"] == "model", stats
            model += 1
            remaining = suggestion
            # Type its first characters one by one: each answer is the rest, from the screen.
            for ch in remaining[: min(TYPED_PER_ROUND, len(remaining.rstrip()) - 1)]:
                insert(ch)
                remaining = remaining[1:]
                text, args, stats = await ask()
                assert text == remaining, (text, remaining)
                assert stats["source"] == "cache" and stats["generated_tokens"] == 0, stats
                typed_through += 1
            # Take the next word (VS Code's partial accept inserts it, then asks again).
            word = re.match(r"\s*\S+", remaining)
            if word and remaining[word.end():].strip():
                insert(word.group())
                await client.command("fimlsp.partialAccept", args[0], word.end())
                remaining = remaining[word.end():]
                text, args, stats = await ask()
                assert (text, stats["source"]) == (remaining, "cache"), (text, stats)
                typed_through += 1
            # Accept the rest: nothing is left on screen, the next round asks the model.
            insert(remaining)
            await client.command("fimlsp.accept", *args)

        # Undo the last round: the same prompt as its first request, remembered by identity.
        doc.change((round_at, at, ""))
        at = round_at
        assert doc.text == round_text
        result = await client.inline(doc.uri, position_of(doc.text, at))
        undo = await client.stats()
        assert undo["source"] == "cache" and undo["generated_tokens"] == 0, undo
        assert shown(result)[0] == suggestion

        requests = undo["requests"] - before["requests"]
        from_cache = undo["answered_from_cache"] - before["answered_from_cache"]
        assert requests == model + typed_through + 1
        assert from_cache == typed_through + 1 and typed_through >= ROUNDS * 5
        assert undo["cache_share"] == pytest.approx(undo["answered_from_cache"]
                                                    / undo["requests"], abs=1e-3)
        # The request log carries the running share.
        logged = [m.message for m in client.logged if "source=cache" in m.message]
        assert logged and all(re.search(r"cache_share=\d\.\d\d$", m) for m in logged), logged
        print(f"\ntyping run: {requests} requests, {from_cache} answered without the model "
              f"(share {from_cache / requests:.2f}); {ROUNDS} rounds of {TYPED_PER_ROUND} typed "
              f"characters, a partial accept, an accept; then one undo")


async def test_typing_through_does_not_wait_for_a_running_generation(
        tiny_model: Path, workspace: Path) -> None:
    """A generation that runs for long on the model's thread: the typed-through answer for
    another document comes at once, while it still runs."""
    options = {"maxNewTokens": 4000, "multiline": "always", "timeBudgetMs": 300}
    async with running(tiny_model, workspace, options) as client:
        assert (await client.wait_loaded())["state"] == "ready"
        a = Doc(client, uri_for(workspace, "shown.py"), "def area(radius):\n    return math.pi")
        suggestion, _ = shown(await client.inline(a.uri, a.end))  # cut by the time budget
        assert len(suggestion.rstrip()) > 1
        # A time budget is not part of what an answer is: the suggestion stays on screen.
        client.configure(maxNewTokens=4000, multiline="always", timeBudgetMs=600000)

        b = Doc(client, uri_for(workspace, "long.py"), "def long():\n    ")
        before = await client.stats()
        pending = client.protocol.send_request_async(
            t.TEXT_DOCUMENT_INLINE_COMPLETION, client.inline_params(b.uri, b.end),
            msg_id="long-one")
        await client.poll_stats(lambda s: s["requests"] > before["requests"], "the long start")

        a.change((len(a.text), len(a.text), suggestion[0]))
        result = await client.inline(a.uri, a.end)
        assert not pending.done(), "the long generation ended first: nothing was shown"
        # What was shown, or more of it: a cut block goes on in the model's idle time.
        assert shown(result)[0].startswith(suggestion[1:])
        stats = await client.stats()
        assert stats["answered_from_cache"] == before["answered_from_cache"] + 1

        client.protocol.notify(t.CANCEL_REQUEST, t.CancelParams(id="long-one"))
        with contextlib.suppress(JsonRpcException):  # -32800, as test_lsp checks
            await client.ask(pending)
