"""`fimlsp demo`: the server as an editor sees it, completing a sample file.

The model: the one given, else a real one in the local Hugging Face cache, else the small trained
fixture in shared/models (real but weak text), else a random-weight one; the demo says which.

Starts `fimlsp serve` as a subprocess, speaks LSP to it over stdio with pygls's client exactly as
an editor would (initialize, didOpen, inlineCompletion, didChange, fimlsp.stats), and prints each
suggestion with its timings: a cold request, one after typing a character (KV cache reuse), and
the same request again (answered from the completion cache).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types

SAMPLE = '''import math


def fibonacci(n: int) -> int:
    """The n-th Fibonacci number."""
    if n < 2:
        return n
    return {cursor}


def is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1))


print(fibonacci(10), is_prime(97))
'''.replace("{cursor}", "")  # the cursor sits after "return " (a trailing space)
CURSOR = types.Position(line=7, character=11)  # after "    return "
REAL_MODELS = ("tiny-starcoder", "starcoderbase-1b", "santacoder", "starcoder2-3b",
               "qwen2.5-coder-1.5b", "deepseek-coder-1.3b")
# What a bare clone downloads: a real FIM model (164M parameters), open, fast on any CPU.
DEMO_PRESET, DEMO_HUB_ID = "tiny-starcoder", "bigcode/tiny_starcoder_py"
_DEMO_FILES = ("config.json", "tokenizer.json", "generation_config.json", "tokenizer_config.json",
               "special_tokens_map.json")


def download_demo_model(repo: str = DEMO_HUB_ID) -> None:
    """Puts the demo model into the Hugging Face cache, where the server then finds it."""
    from huggingface_hub import hf_hub_download

    for name in _DEMO_FILES:
        try:
            hf_hub_download(repo, name)
        except Exception:
            if name in ("config.json", "tokenizer.json"):
                raise  # the others are optional
    try:
        hf_hub_download(repo, "model.safetensors")
    except Exception:
        hf_hub_download(repo, "pytorch_model.bin")  # older repositories ship only this


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


@dataclass
class DemoModel:
    """The model the demo runs, what kind it is, and the options it is served with."""

    name: str
    kind: str  # "given", "real", "trained" (the small fixture) or "random"
    note: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


# The trained fixture saw 384-token examples only (shared/models/README.md): a longer window
# feeds it positions it never learned; int8 writes the same text sooner on a CPU
# (`fimlsp bench quality`, docs/benchmarks.md).
TRAINED_OPTIONS: dict[str, Any] = {"contextWindow": 384, "quantization": "int8"}


def choose_model(model: str | None,
                 download: Callable[[str], None] = download_demo_model) -> DemoModel:
    """A model to demo, what kind it is, and a note that says plainly which it is.

    In order: the one asked for; a real model already in the Hugging Face cache; the small
    trained fixture in shared/models; a tiny random-weight one built from the real configs and
    tokenizers (`fimlsp.tools.fixtures`: this project's shared/, offline); else, on a bare clone,
    `bigcode/tiny_starcoder_py` downloaded from the hub. The demo is a command the user runs, so
    it may download; the server never does.
    """
    from fimlsp.models import PRESETS, weights_present
    from fimlsp.tools.fixtures import find
    from fimlsp.tools.tiny import build_tiny_model, default_tiny_dir, trained_model_dir

    if model:
        return DemoModel(model, "given")
    for name in REAL_MODELS:
        if weights_present(PRESETS[name].hub_id):
            return DemoModel(name, "real")
    found = find()
    trained = trained_model_dir(found.path) if found.path is not None else None
    if trained is not None:
        note = (f"No real model weights are cached on this machine, so this demo runs "
                f"{trained.name} from shared/models: a SMALL model (~16M parameters) trained on "
                "a 2-core CPU for demos and tests, on Python's standard library, with the real "
                "StarCoder tokenizer and FIM format. Its text is a trained model's, but it has "
                "learned the surface of Python, not programs: expect Python-looking text, rarely "
                "the right one. Try `fimlsp demo --model <your model>`.")
        return DemoModel(str(trained), "trained", note, dict(TRAINED_OPTIONS))
    if found.path is None:
        how = (f"run `hf download {DEMO_HUB_ID}` where the hub is reachable, set FIMLSP_SHARED "
               "to a shared/ folder of real configs and tokenizers, or run `fimlsp demo --model "
               "<preset, hub id or directory>`")
        if _offline():
            raise SystemExit(f"fimlsp demo: no model is cached and HF_HUB_OFFLINE is set, so "
                             f"{DEMO_HUB_ID} cannot be downloaded: {how}.")
        print(f"fimlsp demo: no model cached; downloading {DEMO_HUB_ID} (a real FIM model of "
              "164M parameters, a few hundred MB) into the Hugging Face cache", file=sys.stderr)
        try:
            download(DEMO_HUB_ID)
        except Exception as error:
            first = str(error).strip().splitlines()
            raise SystemExit(f"fimlsp demo: downloading {DEMO_HUB_ID} failed "
                             f"({first[0].rstrip('.') if first else type(error).__name__}): "
                             f"{how}.") from None
        return DemoModel(DEMO_PRESET, "real")
    path = build_tiny_model(default_tiny_dir(), "tiny_starcoder_py", shared=found.path)
    note = ("No real model weights are cached on this machine, so this demo runs a tiny "
            "random-weight model built from tiny_starcoder_py's real config (shrunk to 2 layers) "
            "and the real StarCoder tokenizer. The suggestion TEXT IS MEANINGLESS; the protocol, "
            "prompt, timings and cache reuse are real. Try `fimlsp demo --model <your model>`.")
    return DemoModel(str(path), "random", note)


async def _session(model: str, options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from fimlsp.tools.lspclient import editor_client

    client, loaded, messages = editor_client("fimlsp-demo", echo=True)

    await client.start_io(sys.executable, "-m", "fimlsp", "serve", "--model", model)
    folder = Path(tempfile.mkdtemp(prefix="fimlsp-demo-"))
    path = folder / "sample.py"
    path.write_text(SAMPLE, encoding="utf-8")
    uri = path.as_uri()
    results: list[dict[str, Any]] = []
    try:
        await client.initialize_async(types.InitializeParams(
            process_id=None, root_uri=folder.as_uri(),
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=True)),
            initialization_options={"maxNewTokens": 24, **(options or {})}))
        client.initialized(types.InitializedParams())
        await asyncio.wait_for(loaded.wait(), timeout=600)
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                 text=SAMPLE)))

        async def ask(label: str, position: types.Position) -> None:
            answer = await client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri), position=position,
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Automatic)))
            items = answer.items if answer else []
            text = items[0].insert_text if items else ""
            stats = await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="fimlsp.stats"))
            results.append({"request": label, "suggestion": text, **dict(stats or {})})

        await ask("cold: first request", CURSOR)
        typed = "f"
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=CURSOR, end=CURSOR), text=typed)]))
        after = types.Position(line=CURSOR.line, character=CURSOR.character + len(typed))
        await ask(f"warm: after typing {typed!r}", after)
        await ask("repeat: same position again", after)
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()
    if not results and messages:
        raise SystemExit("fimlsp demo: " + messages[-1])
    return results


def run_demo(model: str | None = None, json_output: bool = False) -> int:
    chosen = choose_model(model)
    results = asyncio.run(_session(chosen.name, chosen.options))
    if json_output:
        print(json.dumps({"model": chosen.name, "kind": chosen.kind,
                          "random_weights": chosen.kind == "random", "note": chosen.note,
                          "options": chosen.options, "results": results}, ensure_ascii=False))
        return 0
    print(f"fimlsp demo: model {chosen.name}"
          + (f" (options {chosen.options})" if chosen.options else ""))
    if chosen.note:
        print(f"NOTE: {chosen.note}")
    print(f"\nsample.py, cursor at line {CURSOR.line} character {CURSOR.character} "
          "(0-based, marked ▮):")
    lines = SAMPLE.splitlines()
    for number, line in enumerate(lines[CURSOR.line - 4:CURSOR.line + 1], CURSOR.line - 4):
        shown = line[:CURSOR.character] + "▮" + line[CURSOR.character:] if number == CURSOR.line \
            else line
        print(f"  {number:>3} | {shown}")
    for r in results:
        print(f"\n{r['request']}")
        print(f"  suggestion: {r['suggestion']!r}")
        print(f"  source={r.get('source')} prompt_tokens={r.get('prompt_tokens')} "
              f"reused_tokens={r.get('reused_tokens')} prefill_ms={r.get('prefill_ms')} "
              f"decode_ms={r.get('decode_ms')} generated_tokens={r.get('generated_tokens')} "
              f"total_ms={r.get('total_ms')}")
    return 0
