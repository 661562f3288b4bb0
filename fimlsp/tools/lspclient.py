"""The LSP client our own tools drive the server with (demo and benchmarks), as an editor would.

One place for what every such client needs: an answer to `window/workDoneProgress/create`, an
event set when the model load's progress ends, the server's `window/showMessage` lines kept (and
optionally printed), and its `window/logMessage` lines ignored or handed to `on_log` (the request
log: `fimlsp bench session` reads each request's token counts from it).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types


def editor_client(name: str, echo: bool = False, on_log: Callable[[str], None] | None = None
                  ) -> tuple[Any, asyncio.Event, list[str]]:
    """(pygls LanguageClient, set when the model has loaded, the server's shown messages)."""
    from pygls.lsp.client import LanguageClient

    client = LanguageClient(name, "1")
    loaded = asyncio.Event()
    shown: list[str] = []

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def _create(_params: Any) -> None:
        return None

    @client.feature(types.PROGRESS)
    def _progress(params: types.ProgressParams) -> None:
        value = params.value
        kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
        if kind == "end":
            loaded.set()

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def _show(params: types.ShowMessageParams) -> None:
        shown.append(params.message)
        if echo:
            print(f"server says: {params.message}", file=sys.stderr)

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def _log(params: types.LogMessageParams) -> None:
        if on_log is not None:
            on_log(params.message)

    return client, loaded, shown


async def initialize_and_open(client: Any, loaded: asyncio.Event, folder: Path,
                              options: dict[str, Any], uri: str, text: str,
                              timeout_s: float = 900) -> None:
    """initialize (with work-done progress, as editors announce it) → initialized → waits for
    the model load to end → didOpen of `uri` with `text` (Python)."""
    await client.initialize_async(types.InitializeParams(
        process_id=None, root_uri=folder.as_uri(),
        capabilities=types.ClientCapabilities(window=types.WindowClientCapabilities(
            work_done_progress=True)), initialization_options=options))
    client.initialized(types.InitializedParams())
    await asyncio.wait_for(loaded.wait(), timeout=timeout_s)
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                             text=text)))


def did_change(client: Any, uri: str, version: int, start: tuple[int, int],
               end: tuple[int, int], text: str) -> None:
    """One incremental didChange: `text` replaces the range from `start` to `end`, each
    (line, character) in the negotiated encoding's units."""
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=start[0], character=start[1]),
                              end=types.Position(line=end[0], character=end[1])),
            text=text)]))
