"""Broken model folders get messages that name the file (and the key), never its content.

config.json and tokenizer.json are the model author's files: a message about them ends up in the
editor's popup, so it says which file and which key is wrong, not what the value is. The folders
are copies of the tiny real-architecture model with one file broken on purpose.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from lsprotocol import types as t
from test_lsp import running

from fimlsp.completer import Completer
from fimlsp.config import Settings
from fimlsp.engine.checkpoint import load_model
from fimlsp.errors import FimError
from fimlsp.models import load_tokenizer, read_config, resolve_model

MARKER = "MARKER<script>alert(1)</script>"


def copy_of(tiny_model: Path, tmp_path: Path, name: str = "model") -> Path:
    folder = tmp_path / name
    shutil.copytree(tiny_model, folder)
    return folder


def with_config(folder: Path, **changes: object) -> Path:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def load_error(folder: Path) -> str:
    settings = Settings(model=str(folder), device="cpu")
    with pytest.raises(FimError) as caught:
        load_model(resolve_model(str(folder), template="starcoder"), settings)
    return caught.value.message


@pytest.mark.parametrize("content", ['{"model": {"type": "BPE", "vocab"', "not json at all", ""])
def test_corrupt_tokenizer_json_in_a_folder_is_named(tiny_model: Path, tmp_path: Path,
                                                    content: str) -> None:
    folder = copy_of(tiny_model, tmp_path)
    (folder / "tokenizer.json").write_text(content)
    with pytest.raises(FimError) as caught:
        load_tokenizer(str(folder))
    message = caught.value.message
    assert str(folder / "tokenizer.json") in message, message
    assert "not a valid tokenizer.json" in message, message
    assert "cache" not in message, message


def test_tokenizer_json_that_is_valid_json_but_not_a_tokenizer(tiny_model: Path,
                                                              tmp_path: Path) -> None:
    folder = copy_of(tiny_model, tmp_path)
    (folder / "tokenizer.json").write_text(json.dumps({"model": MARKER}))
    with pytest.raises(FimError) as caught:
        Completer(Settings(model=str(folder), template="starcoder")).load_tokenizer()
    assert str(folder / "tokenizer.json") in caught.value.message
    assert MARKER not in caught.value.message


@pytest.mark.parametrize("content", ['{"model_type": "gpt_bigcode",', "[1, 2]", "\x00\x01"])
def test_config_json_that_is_not_a_json_object_is_named(tiny_model: Path, tmp_path: Path,
                                                        content: str) -> None:
    folder = copy_of(tiny_model, tmp_path)
    (folder / "config.json").write_text(content)
    with pytest.raises(FimError) as caught:
        read_config(str(folder))
    assert str(folder / "config.json") in caught.value.message, caught.value.message
    # ... also on the path a request takes (prompting needs the window from config.json).
    with pytest.raises(FimError) as caught:
        Completer(Settings(model=str(folder))).load_tokenizer()
    assert str(folder / "config.json") in caught.value.message, caught.value.message


@pytest.mark.parametrize(("key", "value"), [
    ("model_type", MARKER),
    ("model_type", 42),
    ("dtype", MARKER),
    ("torch_dtype", MARKER),
    ("n_embd", MARKER),
    ("n_positions", MARKER),
    ("activation_function", MARKER),
])
def test_config_values_are_named_by_key_never_echoed(tiny_model: Path, tmp_path: Path, key: str,
                                                     value: object) -> None:
    folder = with_config(copy_of(tiny_model, tmp_path), **{key: value})
    message = load_error(folder)
    assert MARKER not in message and "<script>" not in message, message
    if key != "activation_function":  # transformers' KeyError names no key; the type is said
        assert f"'{key}'" in message, message
    assert str(folder) in message, message


def test_folder_without_weights_says_so(tiny_model: Path, tmp_path: Path) -> None:
    folder = copy_of(tiny_model, tmp_path)
    (folder / "model.safetensors").unlink()
    message = load_error(folder)
    assert "has no weights" in message and str(folder) in message, message


@pytest.mark.slow
async def test_popup_names_the_key_not_the_value(tiny_model: Path, tmp_path: Path) -> None:
    folder = with_config(copy_of(tiny_model, tmp_path), model_type=MARKER)
    async with running(folder, tmp_path) as client:
        message = await client.wait_for(
            lambda: next((m for m in client.shown if m.type == t.MessageType.Warning), None),
            "the load failure's message")
        assert "'model_type'" in message.message, message.message
        assert MARKER not in message.message and "<script>" not in message.message
        stats = await client.stats()
        assert stats["state"] == "failed" and MARKER not in str(stats), stats
