"""`fimlsp bench edits`: what one keystroke costs the server, by document size.

The real server over stdio with the tiny random-weight model (`fimlsp.tools.tiny`), three documents:

- **100 lines** of real Python (the standard library's source);
- **100k lines** of the same (about 3.5 MB);
- **5 MB on one line**: `fimlsp_bench/corpus/store.js` with its line breaks turned into spaces,
  repeated: a minified bundle.

Per document, the cursor is put in the middle (line 50,000 of the big one; character 2.5M of the
one-line one) and a line of code is typed there one character at a time. Per keystroke:

- **edit**: `didChange` (one character) then `fimlsp.stats`, a request the server answers at
  once: the document store's cost plus a round trip;
- **keystroke**: `didChange` then `textDocument/inlineCompletion` at the new cursor, answered by
  the model: what the user waits for.

Median and p95 in milliseconds, after a few warm-up keystrokes (the first prompt of a document is
prefilled whole), the documents taking turns so that the machine's load weighs on all alike.
`keystroke_costs` is the measuring loop, for other benchmarks to call with a client of their own.

Before that, **store**: the document store alone, in this process (`Documents.change` for one
typed character, 200 times), for the three documents and a 48 MB one-line file, which the server
keeps in step but never completes in (`--store-only` measures just this).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types

ROUND = 5  # keystrokes per document before the next one's turn
TYPED = "total = sum(v * w for v, w in zip(values, weights)) / max(len(values), 1)"


def python_lines(count: int) -> str:
    """`count` lines of real Python source from the standard library."""
    import argparse as a
    import email.message as b
    import inspect as c
    import json.decoder as d
    import logging as e
    import pathlib as f
    import typing as g

    lines: list[str] = []
    while len(lines) < count:
        for module in (a, b, c, d, e, f, g):
            lines += Path(inspect.getsourcefile(module) or "").read_text().splitlines()
    return "\n".join(lines[:count]) + "\n"


def minified(chars: int) -> str:
    """One line of `chars` characters of JavaScript, as a minifier leaves it."""
    source = (Path(__file__).parent / "corpus" / "store.js").read_text()
    line = " ".join(part.strip() for part in source.splitlines() if part.strip()) + " "
    return (line * (chars // len(line) + 1))[:chars]


def documents() -> dict[str, tuple[str, types.Position]]:
    """name → (text, cursor): the middle of each document, at a line end where it has lines."""
    small, big, one_line = python_lines(100), python_lines(100_000), minified(5_000_000)
    return {
        "100 lines": (small, _line_end(small, 50)),
        "100k lines": (big, _line_end(big, 50_000)),
        "5 MB one line": (one_line, types.Position(line=0, character=2_500_000)),
    }


def _line_end(text: str, line: int) -> types.Position:
    content = text.split("\n")[line]
    return types.Position(line=line, character=len(content.encode("utf-16-le")) // 2)


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": round(statistics.median(ordered), 2), "p95_ms": round(p95, 2),
            "n": len(ordered)}


class Typist:
    """Types TYPED into one open document at a cursor, one character per `key()`."""

    def __init__(self, client: Any, uri: str, text: str, at: types.Position) -> None:
        self.client, self.uri, self.at, self.typed = client, uri, at, 0
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                 text=text)))

    async def key(self, complete: bool = True) -> float:
        """Milliseconds from the didChange to the answer of the request after it: an inline
        completion at the new cursor when `complete`, else `fimlsp.stats`. TYPED is ASCII, so
        each character is one code unit in every position encoding."""
        n, self.typed = self.typed, self.typed + 1
        here = types.Position(line=self.at.line, character=self.at.character + n)
        after = types.Position(line=self.at.line, character=self.at.character + n + 1)
        started = time.perf_counter()
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=self.uri, version=n + 2),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=here, end=here), text=TYPED[n % len(TYPED)])]))
        if complete:
            await self.client.text_document_inline_completion_async(types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=self.uri), position=after,
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic)))
        else:
            await self.client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="fimlsp.stats"))
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self.client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=self.uri)))


async def keystroke_costs(client: Any, uri: str, text: str, at: types.Position, keys: int,
                          warmup: int = 5, complete: bool = True) -> list[float]:
    """Opens `uri` with `text`, types `keys` characters at `at` and closes it: the cost of each
    keystroke in milliseconds (`Typist.key`), after `warmup` keystrokes not counted."""
    typist = Typist(client, uri, text, at)
    for _ in range(warmup):
        await typist.key(complete)
    costs = [await typist.key(complete) for _ in range(keys)]
    typist.close()
    return costs


def store_costs(edits: int = 200) -> list[dict[str, Any]]:
    """Per didChange in the store alone: one character typed at the cursor, `edits` times."""
    from fimlsp.documents import Documents

    docs = documents()
    docs["48 MB one line"] = (minified(48_000_000), types.Position(line=0, character=24_000_000))
    rows = []
    for name, (text, at) in docs.items():
        store = Documents()
        store.open("file:///bench", text)
        costs = []
        for n in range(edits):
            here = types.Position(line=at.line, character=at.character + n)
            change = [types.TextDocumentContentChangePartial(range=types.Range(start=here,
                                                                               end=here),
                                                             text=TYPED[n % len(TYPED)])]
            started = time.perf_counter()
            store.change("file:///bench", change, "utf-16")
            costs.append((time.perf_counter() - started) * 1000)
        rows.append({"document": name, "chars": len(text), "store": _percentiles(costs[5:])})
    return rows


async def _run(model: str, keys: int, warmup: int, options: dict[str, Any]
               ) -> list[dict[str, Any]]:
    from pygls.lsp.client import LanguageClient

    client = LanguageClient("fimlsp-bench", "1")

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def _show(params: types.ShowMessageParams) -> None:
        print(f"server says: {params.message}", file=sys.stderr)

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def _log(_params: types.LogMessageParams) -> None:
        return None

    await client.start_io(sys.executable, "-m", "fimlsp", "serve", "--model", model)
    folder = Path(tempfile.mkdtemp(prefix="fimlsp-bench-edits-"))
    rows: list[dict[str, Any]] = []
    try:
        await client.initialize_async(types.InitializeParams(
            process_id=os.getpid(), root_uri=folder.as_uri(),
            capabilities=types.ClientCapabilities(), initialization_options=options))
        client.initialized(types.InitializedParams())
        deadline = time.monotonic() + 600
        while (await client.workspace_execute_command_async(types.ExecuteCommandParams(
                command="fimlsp.stats")))["state"] in ("idle", "loading"):
            if time.monotonic() > deadline:
                raise SystemExit("fimlsp bench edits: the model did not load in 10 minutes")
            await asyncio.sleep(0.1)  # polling a status, not synchronising
        # Round robin over the documents, a few keystrokes each, so that the load of the
        # machine weighs on all of them alike.
        typists: dict[tuple[str, bool], Typist] = {}
        costs: dict[tuple[str, bool], list[float]] = {}
        docs = documents()
        for index, (name, (text, at)) in enumerate(docs.items()):
            for complete in (False, True):
                uri = (folder / f"doc{index}-{'complete' if complete else 'edit'}.py").as_uri()
                typists[name, complete] = Typist(client, uri, text, at)
                costs[name, complete] = []
                for _ in range(warmup):
                    await typists[name, complete].key(complete)
        for done in range(0, keys, ROUND):
            for (name, complete), typist in typists.items():
                for _ in range(min(ROUND, keys - done)):
                    costs[name, complete].append(await typist.key(complete))
        for name, (text, _at) in docs.items():
            rows.append({"document": name, "chars": len(text), "lines": text.count("\n") + 1,
                         "edit": _percentiles(costs[name, False]),
                         "keystroke": _percentiles(costs[name, True])})
            print(json.dumps(rows[-1]), file=sys.stderr)
        for typist in typists.values():
            typist.close()
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        await client.stop()
    return rows


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="fimlsp bench edits", description=inspect.getdoc(
        inspect.getmodule(main)), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model (default: the tiny random-weight StarCoder, "
                                        "built from shared/ on first use)")
    parser.add_argument("--keys", type=int, default=60, help="keystrokes measured per document")
    parser.add_argument("--warmup", type=int, default=5,
                        help="keystrokes per document typed before measuring")
    parser.add_argument("--context-window", type=int, default=None,
                        help="contextWindow for the server (default: the model's)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--store-only", action="store_true",
                        help="only the store, in this process: no server, no model")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    store = store_costs()
    if args.store_only:
        if args.json:
            print(json.dumps({"store": store}))
        else:
            _print_store(store)
        return 0
    model = args.model
    if model is None:
        from fimlsp.tools.tiny import build_tiny_model, default_tiny_dir

        model = str(build_tiny_model(default_tiny_dir()))
    options: dict[str, Any] = {"maxNewTokens": args.max_new_tokens, "device": "cpu"}
    if args.context_window:
        options["contextWindow"] = args.context_window
    rows = asyncio.run(_run(model, args.keys, args.warmup, options))
    if args.json:
        print(json.dumps({"model": model, "options": options, "store": store, "rows": rows}))
        return 0
    _print_store(store)
    print(f"\nmodel {model}, options {options}, {args.keys} keystrokes per document\n")
    print("| document | characters | edit median / p95 ms | keystroke median / p95 ms |")
    print("|---|---|---|---|")
    for row in rows:
        edit, key = row["edit"], row["keystroke"]
        print(f"| {row['document']} | {row['chars']:,} | {edit['median_ms']} / {edit['p95_ms']} "
              f"| {key['median_ms']} / {key['p95_ms']} |")
    return 0


def _print_store(rows: list[dict[str, Any]]) -> None:
    print("| document (store alone) | characters | didChange median / p95 ms |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row['document']} | {row['chars']:,} | {row['store']['median_ms']} / "
              f"{row['store']['p95_ms']} |")
