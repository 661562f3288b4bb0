"""Errors that are not FimErrors go through the server's one error path too.

An engine that raises (here: a real checkpoint whose vocabulary is smaller than its tokenizer's,
so the embedding lookup fails inside torch) and a command with bad arguments: each request gets
one answer without a traceback in it, the traceback goes to stderr, the error is counted, and
the server keeps serving.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as t
from pygls.exceptions import JsonRpcException
from test_lsp import INVALID_PARAMS, Doc, running, uri_for

from fimlsp.tools.tiny import TOKENIZER_FOR, shrink

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_vocabulary(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Path:
    """tiny_starcoder_py's architecture with 300 embeddings, beside the 49k-token tokenizer:
    it loads, and its first forward raises IndexError inside torch."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("small-vocabulary")
    raw = json.loads((shared / "model-configs" / "tiny_starcoder_py" / "config.json").read_text())
    config = AutoConfig.for_model(**{**shrink(raw), "vocab_size": 300})
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizers = shared / "tokenizers" / TOKENIZER_FOR["tiny_starcoder_py"]
    shutil.copy(tokenizers / "tokenizer.json", folder / "tokenizer.json")
    return folder


async def test_engine_exception_is_answered_empty_and_logged(small_vocabulary: Path,
                                                             tmp_path: Path) -> None:
    async with running(small_vocabulary, tmp_path) as client:
        assert (await client.wait_loaded())["state"] == "ready", client.tail()
        doc = Doc(client, uri_for(tmp_path, "vocab.py"), "def add(a, b):\n    return ")
        result = await client.inline(doc.uri, doc.end)
        assert isinstance(result, t.InlineCompletionList) and list(result.items) == [], result
        result = await client.complete(doc.uri, doc.end)
        assert isinstance(result, t.CompletionList) and list(result.items) == [], result
        stats = await client.stats()
        assert stats["errors"] == 2 and stats["state"] == "ready", stats
        assert not [m for m in client.shown if m.type == t.MessageType.Error], client.shown
    stderr = client.stderr.decode(errors="replace")  # complete: the server has exited
    assert "Traceback" in stderr and "IndexError" in stderr, stderr[-3000:]


BAD_ARGUMENTS: list[list[Any]] = [
    [],
    ["file:///x.py"],
    ["file:///x.py", {"line": "0", "character": 0}],
    ["file:///x.py", {"line": 0.5, "character": 0}],
    ["file:///x.py", {"line": True, "character": 0}],
    ["file:///x.py", {"line": 0}],
    ["file:///x.py", [0, 0]],
    [7, {"line": 0, "character": 0}],
    ["file:///x.py", {"line": 0, "character": -1}],
    ["file:///x.py", {"line": 0, "character": 0}, "extra"],
]


async def test_prompt_command_with_bad_arguments_is_invalid_params(tiny_model: Path,
                                                                   tmp_path: Path) -> None:
    async with running(tiny_model, tmp_path) as client:
        doc = Doc(client, uri_for(tmp_path, "ok.py"), "x = 1\n")
        for arguments in BAD_ARGUMENTS:
            with pytest.raises(JsonRpcException) as raised:
                await client.command("fimlsp.prompt", *arguments)
            assert raised.value.code == INVALID_PARAMS, (arguments, raised.value)
            assert not raised.value.data, (arguments, raised.value.data)  # no traceback
            assert "Traceback" not in str(raised.value)
            # still serving
            assert (await client.prompt(doc.uri, t.Position(line=1, character=0)))["text"]
        assert not [m for m in client.shown if m.type == t.MessageType.Error], client.shown
