"""`fimlsp bench warm`: time to the first suggestion after opening a big file, cold and warm.

A user opens a 3,000-line module and types one character halfway down. Cold, that keystroke
pays for prefilling the whole window (thousands of tokens) before its first token. Warm, the
client has sent `fimlsp.warm` with the cursor when the file was opened or focused, and the
model has prefilled it during the seconds the user spent reading: the keystroke feeds a token
or two. Each run is a fresh `fimlsp serve` subprocess over stdio (nothing cached from an earlier
run); cold and warm runs alternate, per window.

Reported per window and mode: keystroke→suggestion (the time to the first suggestion), the
prompt's tokens and how many of them were reused, and for warm runs how long the warm start
took (what the user must spend reading for it to be complete).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types as t

LINES = 3000


def document() -> tuple[str, str]:
    """The first 3,000 lines of a standard-library module no one here wrote."""
    import typing as module

    path = Path(module.__file__)
    return path.name, "".join(path.read_text().splitlines(keepends=True)[:LINES])


def cursor_in(text: str) -> tuple[int, int]:
    """The end of the code on the first indented line after the middle: where typing goes on."""
    lines = text.split("\n")
    for number in range(len(lines) // 2, len(lines)):
        line = lines[number]
        if line.startswith("        ") and len(line.strip()) > 10:
            return number, len(line)
    raise ValueError("no indented line in the second half")


async def first_suggestion(model: str, options: dict[str, Any], warm: bool) -> dict[str, Any]:
    from fimlsp.tools.lspclient import did_change, editor_client, initialize_and_open

    client, loaded, _shown = editor_client("fimlsp-bench-warm")
    await client.start_io(sys.executable, "-m", "fimlsp", "serve", "--model", model,
                          "--log-level", "warning")
    folder = Path(tempfile.mkdtemp(prefix="fimlsp-warm-"))
    name, text = document()
    uri = (folder / name).as_uri()
    line, character = cursor_in(text)

    async def stats() -> dict[str, Any]:
        return dict(await client.workspace_execute_command_async(
            t.ExecuteCommandParams(command="fimlsp.stats")) or {})

    try:
        await initialize_and_open(client, loaded, folder, options, uri, text, 900)
        warm_s = None
        if warm:
            started = time.perf_counter()
            await client.workspace_execute_command_async(t.ExecuteCommandParams(
                command="fimlsp.warm",
                arguments=[uri, {"line": line, "character": character}]))
            while (await stats()).get("warmed", 0) < 1:  # the user reads; the model prefills
                await asyncio.sleep(0.05)  # poll interval of a status endpoint
            warm_s = time.perf_counter() - started
        did_change(client, uri, 2, (line, character), (line, character), " ")
        started = time.perf_counter()
        await client.text_document_inline_completion_async(t.InlineCompletionParams(
            text_document=t.TextDocumentIdentifier(uri=uri),
            position=t.Position(line=line, character=character + 1),
            context=t.InlineCompletionContext(
                trigger_kind=t.InlineCompletionTriggerKind.Automatic)))
        first_ms = (time.perf_counter() - started) * 1000
        last = await stats()
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()
    return {"mode": "warm" if warm else "cold", "first_suggestion_ms": round(first_ms, 1),
            "prompt_tokens": last.get("prompt_tokens"), "reused_tokens": last.get("reused_tokens"),
            "prefill_ms": last.get("prefill_ms"), "decode_ms": last.get("decode_ms"),
            "warm_s": None if warm_s is None else round(warm_s, 2)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fimlsp bench warm",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny_starcoder_py",
                        help="a shared/model-configs name (built full size with random weights "
                        "into the bench cache, as `fimlsp bench engine` does) or a model dir")
    parser.add_argument("--windows", default="default,2048,8192",
                        help="comma-separated windows; `default` sends no window, quantization "
                        "or threads: the server's own choices")
    parser.add_argument("--quantization", default="int8")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from fimlsp_bench.engine import full_size_model

    model = full_size_model(args.model)
    rows = []
    for window in [w.strip() for w in args.windows.split(",") if w.strip()]:
        options: dict[str, Any] = {"maxNewTokens": 16, "timeBudgetMs": 600000}
        if window != "default":  # "default": what a user who sets nothing gets
            options.update(contextWindow=int(window), quantization=args.quantization,
                           threads=args.threads)
        for _ in range(args.repeats):
            for warm in (False, True):  # interleaved
                row = asyncio.run(first_suggestion(model, options, warm))
                row["window"] = window
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("| window | mode | first suggestion ms (median) | prompt tokens | reused | "
          "warm start took s |")
    print("|---|---|---|---|---|---|")
    for window in dict.fromkeys(r["window"] for r in rows):
        for mode in ("cold", "warm"):
            these = [r for r in rows if r["window"] == window and r["mode"] == mode]
            warm_s = [r["warm_s"] for r in these if r["warm_s"] is not None]
            print(f"| {window} | {mode} | "
                  f"{statistics.median(r['first_suggestion_ms'] for r in these):.0f} | "
                  f"{these[0]['prompt_tokens']} | {these[0]['reused_tokens']} | "
                  f"{statistics.median(warm_s) if warm_s else '—'} |")
    return 0
