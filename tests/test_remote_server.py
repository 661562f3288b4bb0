"""A serving engine as the real server meets it: deadlines, an engine that starts late, and
which settings reload what.

The engines are loopback stand-ins (tests/test_remote_dialects.py), scripted to do what a real
one does when it is slow, down or restarting; no serving engine runs in these tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_lsp import Doc, nothing, running
from test_remote_dialects import StandIn, _Handler, llamacpp_props

from fimlsp_bench._vllm import free_port

pytestmark = pytest.mark.slow  # starts the server against a stand-in engine


def silent_reply(handler: _Handler) -> None:
    """Takes the request, then sends nothing, not even headers, until the client leaves."""
    handler.server.stand_in.streaming.set()
    if handler.wait_closed():
        handler.server.stand_in.closed_early.set()


async def test_an_engine_that_never_answers_is_left_at_the_time_budget(
        tiny_model: Path, tmp_path: Path) -> None:
    engine = StandIn().on("/props", llamacpp_props()).on("/completion", silent_reply)
    try:
        options = {"engine": "llamacpp", "endpoint": engine.url, "timeBudgetMs": 500,
                   "retries": 0}
        async with running(tiny_model, tmp_path, options) as client:
            assert (await client.wait_loaded())["state"] == "ready"
            doc = Doc(client, (tmp_path / "a.py").as_uri(), "def add(a, b):\n    return ")
            assert nothing(await client.inline(doc.uri, doc.end))
            # The server left before the engine gave up on it (HOLD_S): the wait for the
            # headers was cut by the budget, not by the engine closing the connection.
            assert engine.closed_early.is_set()
            stats = await client.stats()
            assert stats["errors"] == 0 and stats["endpoint_status"] == "ok", stats
    finally:
        engine.stop()


async def test_an_engine_down_at_start_is_learned_when_it_comes_up(
        tiny_model: Path, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet
    options = {"engine": "llamacpp", "endpoint": f"http://127.0.0.1:{port}",
               "connectTimeoutMs": 300}
    async with running(tiny_model, tmp_path, options) as client:
        stats = await client.wait_loaded()
        assert stats["state"] == "ready" and "unreachable" in stats["endpoint_status"], stats
        engine = StandIn(port=port).on("/props", llamacpp_props(slots=2, n_ctx=512))
        try:
            stats = await client.poll_stats(lambda s: s["window"] == 512,
                                            "the window of the engine that came up")
            assert stats["endpoint_status"] == "ok", stats
        finally:
            engine.stop()


async def test_remote_settings_do_not_reload_the_local_model(tiny_model: Path,
                                                             tmp_path: Path) -> None:
    async with running(tiny_model, tmp_path) as client:
        assert (await client.wait_loaded())["state"] == "ready"
        doc = Doc(client, (tmp_path / "a.py").as_uri(), "def add(a, b):\n    return ")
        await client.inline(doc.uri, doc.end)
        before = await client.stats()
        assert before["requests"] == 1, before
        client.configure(endpoint="http://127.0.0.1:9", servedModel="other", retries=5,
                         connectTimeoutMs=1234, tlsVerify=False)
        after = await client.stats()
        assert after["state"] == "ready" and after["requests"] == 1, after  # nothing reset
        begins = [e for e in client.progress_values() if e.get("kind") == "begin"]
        assert len(begins) == 1, client.progress_values()  # loaded once, never again
