"""Warm starts (`fimlsp.warm`): the prompt at a cursor prefilled while the model is idle, so the
first keystroke in a big file feeds one token; any real request stops it.

The real server over stdio with the tiny random-weight model (conftest); what happened is read
from `fimlsp.stats` (tokens reused by the next request, warm starts finished or interrupted).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lsprotocol import types as t
from test_lsp import Doc, running, uri_for

pytestmark = pytest.mark.slow


def big_file(lines: int = 3000) -> str:
    """A 3,000-line module: the prompt at its end fills any window."""
    body = []
    for i in range(lines // 3):
        body += [f"def handler_{i}(request, limit={i}):", f"    return request.get({i}) or limit",
                 ""]
    return "\n".join(body) + "\n"


async def test_warm_start_leaves_one_token_for_the_first_keystroke(tiny_model: Path,
                                                                    tmp_path: Path) -> None:
    async with running(tiny_model, tmp_path, {"maxNewTokens": 8}) as client:
        assert (await client.wait_loaded())["state"] == "ready", client.tail()
        text = big_file()
        warm = Doc(client, uri_for(tmp_path, "warm.py"), text)
        cold = Doc(client, uri_for(tmp_path, "cold.py"), text)
        at = warm.at("def handler_500(request, limit=500):\n    ")

        assert await client.command("fimlsp.warm", warm.uri, {"line": at.line,
                                                              "character": at.character})
        await client.poll_stats(lambda s: s["warmed"] == 1, "the warm start finished")
        await client.inline(warm.uri, at)
        stats = await client.stats()
        assert stats["prompt_tokens"] > 1000, stats  # a full window, not a toy prompt
        assert stats["reused_tokens"] == stats["prompt_tokens"] - 1, stats

        await client.inline(cold.uri, at)  # the same text and cursor, never warmed
        stats = await client.stats()
        assert stats["reused_tokens"] == 0 and stats["warmed"] == 1, stats


async def test_a_request_stops_a_warm_start_that_has_not_run(tiny_model: Path,
                                                             tmp_path: Path) -> None:
    """The model thread is busy with a long request; a warm start queues behind it; the next
    request cancels the warm start before it runs, so that request never waits for it."""
    options = {"maxNewTokens": 400, "policy": "raw", "multiline": "always",
               "timeBudgetMs": 600000}
    async with running(tiny_model, tmp_path, options) as client:
        assert (await client.wait_loaded())["state"] == "ready", client.tail()
        text = big_file(300)
        busy, warm, user = (Doc(client, uri_for(tmp_path, f"{n}.py"), text)
                            for n in ("busy", "warm", "user"))
        busy_answer = client.text_document_inline_completion_async(
            client.inline_params(busy.uri, busy.end))
        busy_task = asyncio.ensure_future(busy_answer)
        # Queued behind the busy request (which decodes 400 tokens: seconds, against the
        # milliseconds of this round trip).
        assert await client.command("fimlsp.warm", warm.uri, {"line": 4, "character": 4})
        user_answer = client.text_document_inline_completion_async(
            client.inline_params(user.uri, user.end))
        await asyncio.wait_for(asyncio.gather(busy_task, user_answer), 120)
        stats = await client.poll_stats(lambda s: s["warm_interrupted"] + s["warmed"] >= 1,
                                        "the warm start settled")
        assert (stats["warmed"], stats["warm_interrupted"]) == (0, 1), stats


async def test_warm_is_refused_for_unknown_documents_and_bad_positions(tiny_model: Path,
                                                                       tmp_path: Path) -> None:
    async with running(tiny_model, tmp_path) as client:
        assert (await client.wait_loaded())["state"] == "ready", client.tail()
        gone = uri_for(tmp_path, "never-opened.py")
        assert await client.command("fimlsp.warm", gone, {"line": 0, "character": 0}) is False
        doc = Doc(client, uri_for(tmp_path, "small.py"), "x = 1\n")
        with pytest.raises(Exception) as raised:
            await client.command("fimlsp.warm", doc.uri, {"line": 99, "character": 0})
        assert getattr(raised.value, "code", None) == -32602, raised.value
        assert (await client.stats())["warmed"] == 0
        assert isinstance(doc.end, t.Position)
