"""`fimlsp.prompt` shows exactly the prompt a completion is served with.

The server runs as a subprocess with a serving engine (llama.cpp's API, which takes token ids)
played by a loopback stand-in that records what it is sent: the ids it received for a completion
are compared with the ids `fimlsp.prompt` showed at the same place just before. A stand-in,
because no llama.cpp server runs in this test; the server, its tokenizer and its prompt path are
the real ones. The window is small so that the prefix is cut (sticky edges), and a second open
document lends a snippet (neighbours), under the path header.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_lsp import Doc, running
from test_remote_dialects import StandIn, answer, llamacpp_props, tokenizer  # noqa: F401
from tokenizers import Tokenizer

HELPER = "".join(f"def measure_route_{i}(route_points, scale_factor):\n"
                 f"    return sum(route_points) * scale_factor + {i}\n\n" for i in range(12))
MAIN = "first_line_of_main = 1\n" + "".join(
    f"total += measure_step(route_points, scale_factor, {i})\n" for i in range(120)) + \
    "result = measure_route_3(route_points, \n"


@pytest.fixture
def engine(tokenizer: Tokenizer) -> Iterator[StandIn]:  # noqa: F811
    stand_in = StandIn()
    stand_in.on("/props", llamacpp_props(slots=4, n_ctx=4096))
    ids = tokenizer.encode("scale_factor)", add_special_tokens=False).ids
    stand_in.on("/completion", answer("llamacpp", tokenizer, ids))
    yield stand_in
    stand_in.stop()


async def test_prompt_command_shows_the_served_prompt(tiny_model: Path, tmp_path: Path,
                                                      engine: StandIn) -> None:
    options = {"engine": "llamacpp", "endpoint": engine.url, "contextWindow": 512,
               "maxNewTokens": 16, "neighbourShare": 0.5, "repoContext": False}
    async with running(tiny_model, tmp_path, options) as client:
        stats = await client.wait_loaded()
        assert stats["state"] == "ready", stats
        Doc(client, (tmp_path / "routes.py").as_uri(), HELPER)
        main = Doc(client, (tmp_path / "main.py").as_uri(), MAIN)
        for typed in ("", "x"):  # "x" is not what the suggestion says: no typing-through
            if typed:
                end = main.index("measure_route_3(route_points, ")
                main.change((end, end, typed))
            at = main.at("measure_route_3(route_points, " + typed)
            shown = await client.prompt(main.uri, at)
            assert shown["neighbour_tokens"] > 0, shown  # the other document's snippet
            assert "routes.py" in shown["text"]  # ... under its path
            assert "first_line_of_main" not in shown["text"]  # the window cut the prefix
            assert any(s["kind"] == "open document" and s["in_prompt"]
                       for s in shown["snippets"]), shown["snippets"]
            posts = len(engine.posts())
            result = await client.inline(main.uri, at)
            assert result is not None and result.items, client.tail()
            assert len(engine.posts()) == posts + 1
            assert engine.posts()[-1].body["prompt"] == shown["ids"]
