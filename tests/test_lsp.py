"""The language server as an editor sees it: `python -m fimlsp serve` in a real subprocess on
stdio, driven by pygls' `LanguageClient`. No mocks: the tiny random-weight StarCoder model from
conftest is loaded, prompted and decoded for real, so only the text it writes is meaningless.

`tests/data/vscode_initialize.json` is the `initialize` params of VS Code 1.100.3 with
vscode-languageclient 10. It was written by hand, not captured: the capabilities that
vscode-languageclient's features fill in (`fillClientCapabilities`), starting from the VS Code
1.65.2 capture that pytest-lsp ships and adding what LSP 3.17/3.18 clients send since
(positionEncodings, inlineCompletion, diagnostic, inlayHint, staleRequestSupport, ...). Each
server patches processId, initializationOptions and the workspace root.

Waiting is always on something the server sends (a notification, a response, process exit) or a
bounded poll of `fimlsp.stats`, never a bare sleep; `WAIT_S` bounds each wait and is never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types as t
from lsprotocol.converters import get_converter
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient

pytestmark = pytest.mark.slow

VSCODE_INITIALIZE = Path(__file__).parent / "data" / "vscode_initialize.json"
WAIT_S = 120.0  # upper bound on one wait (a model load on a slow machine); never asserted
COMMANDS = {"fimlsp.accept", "fimlsp.partialAccept", "fimlsp.stats", "fimlsp.prompt"}
TIMING_FIELDS = ("prompt_tokens", "reused_tokens", "prefill_ms", "decode_ms", "generated_tokens",
                 "source")
SPM_HEAD, SPM_MIDDLE = "<fim_prefix><fim_suffix>", "<fim_middle>"
INVALID_PARAMS, REQUEST_CANCELLED = -32602, -32800
_EOL = re.compile(r"\r\n|\r|\n")  # LSP's line breaks, and only these


# -- the client's own position arithmetic (UTF-16, as VS Code counts) -------------------------


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def position_of(text: str, index: int) -> t.Position:
    """The LSP position of Python index `index` in `text`."""
    lines = _EOL.split(text[:index])
    return t.Position(line=len(lines) - 1, character=utf16_len(lines[-1]))


def end_of(text: str) -> t.Position:
    return position_of(text, len(text))


class Doc:
    """The client's copy of a document; edits are given in Python indices, sent as LSP ranges."""

    def __init__(self, client: Client, uri: str, text: str) -> None:
        self.client, self.uri, self.text, self.version = client, uri, text, 1
        client.text_document_did_open(t.DidOpenTextDocumentParams(text_document=t.TextDocumentItem(
            uri=uri, language_id="python", version=1, text=text)))

    def change(self, *edits: tuple[int, int, str]) -> None:
        """One didChange with several edits, each relative to the text the previous one left."""
        changes: list[t.TextDocumentContentChangeEvent] = []
        for start, end, new in edits:
            rng = t.Range(start=position_of(self.text, start), end=position_of(self.text, end))
            changes.append(t.TextDocumentContentChangePartial(range=rng, text=new))
            self.text = self.text[:start] + new + self.text[end:]
        self.version += 1
        self.client.text_document_did_change(t.DidChangeTextDocumentParams(
            text_document=t.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            content_changes=changes))

    def index(self, anchor: str, after: bool = True) -> int:
        """Python index just after (or at) the first `anchor`."""
        at = self.text.index(anchor)
        return at + len(anchor) if after else at

    def at(self, anchor: str, after: bool = True) -> t.Position:
        return position_of(self.text, self.index(anchor, after))

    @property
    def end(self) -> t.Position:
        return end_of(self.text)


# -- the client --------------------------------------------------------------------------------


class Client(LanguageClient):
    """Records what the server sends unasked, and waits on it."""

    def __init__(self) -> None:
        super().__init__("fimlsp-tests", "1")
        self.shown: list[t.ShowMessageParams] = []
        self.logged: list[t.LogMessageParams] = []
        # ("create", token) and ("progress", token, value), in arrival order.
        self.events: list[tuple[Any, ...]] = []
        self.configuration: dict[str, Any] = {}
        self.result: t.InitializeResult | None = None
        self.stderr = bytearray()
        self._news = asyncio.Event()
        self._drain: asyncio.Task[None] | None = None

        @self.feature(t.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def create(params: t.WorkDoneProgressCreateParams) -> None:
            self._note(self.events, ("create", params.token))

        @self.feature(t.PROGRESS)
        def progress(params: t.ProgressParams) -> None:
            self._note(self.events, ("progress", params.token, params.value))

        @self.feature(t.WINDOW_SHOW_MESSAGE)
        def show(params: t.ShowMessageParams) -> None:
            self._note(self.shown, params)

        @self.feature(t.WINDOW_LOG_MESSAGE)
        def log(params: t.LogMessageParams) -> None:
            self._note(self.logged, params)

        @self.feature(t.WORKSPACE_CONFIGURATION)
        def configuration(params: t.ConfigurationParams) -> list[Any]:
            return [self.configuration.get(item.section or "") for item in params.items]

    def _note(self, into: list[Any], item: Any) -> None:
        into.append(item)
        self._news.set()

    async def server_exit(self, server: asyncio.subprocess.Process) -> None:
        self._news.set()

    @property
    def process(self) -> asyncio.subprocess.Process:
        assert self._server is not None
        return self._server

    def keep_stderr(self) -> None:
        async def drain() -> None:
            stream = self.process.stderr
            assert stream is not None
            while line := await stream.readline():
                self.stderr += line
                del self.stderr[:-20_000]
                self._news.set()  # `wait_for` may be waiting on a log line

        self._drain = asyncio.create_task(drain())

    def tail(self) -> str:
        return self.stderr.decode(errors="replace")[-3000:]

    async def wait_for(self, ready: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
        """Waits until `ready()` is truthy, re-checking whenever the server sends something."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (value := ready()):
            if self.process.returncode is not None:
                raise AssertionError(f"server exited ({self.process.returncode}) while waiting "
                                     f"for {what}; stderr:\n{self.tail()}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {timeout:.0f}s; stderr:\n{self.tail()}")
            self._news.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._news.wait(), remaining)
        return value

    async def ask(self, request: Any) -> Any:
        """A request's answer, bounded in time."""
        return await asyncio.wait_for(request, WAIT_S)

    # -- requests ----------------------------------------------------------------------------

    async def command(self, name: str, *args: Any) -> Any:
        return await self.ask(self.workspace_execute_command_async(
            t.ExecuteCommandParams(command=name, arguments=list(args))))

    async def stats(self) -> dict[str, Any]:
        return await self.command("fimlsp.stats")

    async def prompt(self, uri: str, at: t.Position) -> dict[str, Any]:
        return await self.command("fimlsp.prompt", uri,
                                  {"line": at.line, "character": at.character})

    @staticmethod
    def inline_params(uri: str, at: t.Position, selected: t.SelectedCompletionInfo | None = None
                      ) -> t.InlineCompletionParams:
        return t.InlineCompletionParams(
            text_document=t.TextDocumentIdentifier(uri=uri), position=at,
            context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Automatic,
                                              selected_completion_info=selected))

    async def inline(self, uri: str, at: t.Position,
                     selected: t.SelectedCompletionInfo | None = None) -> Any:
        return await self.ask(self.text_document_inline_completion_async(
            self.inline_params(uri, at, selected)))

    async def complete(self, uri: str, at: t.Position) -> Any:
        return await self.ask(self.text_document_completion_async(t.CompletionParams(
            text_document=t.TextDocumentIdentifier(uri=uri), position=at,
            context=t.CompletionContext(trigger_kind=t.CompletionTriggerKind.Invoked))))

    def configure(self, **settings: Any) -> None:
        """What VS Code sends when the user edits settings.json."""
        self.workspace_did_change_configuration(
            t.DidChangeConfigurationParams(settings={"fimlsp": settings}))

    # -- model state -------------------------------------------------------------------------

    def progress_values(self) -> list[dict[str, Any]]:
        return [e[2] for e in self.events if e[0] == "progress"]

    async def wait_loaded(self) -> dict[str, Any]:
        """Waits for the load's progress `end`; returns `fimlsp.stats` after it."""
        await self.wait_for(lambda: any(v.get("kind") == "end" for v in self.progress_values()),
                            "work-done progress end of the model load")
        return await self.stats()

    async def poll_stats(self, ready: Callable[[dict[str, Any]], bool], what: str
                         ) -> dict[str, Any]:
        """Polls `fimlsp.stats` (a status endpoint) until `ready`; bounded."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while not ready(stats := await self.stats()):
            assert loop.time() < deadline, f"stats never showed {what}: {stats}\n{self.tail()}"
            await asyncio.sleep(0.01)  # poll interval, not synchronisation
        return stats


def vscode_initialize(root: Path, options: Any, process_id: int) -> t.InitializeParams:
    raw = copy.deepcopy(json.loads(VSCODE_INITIALIZE.read_text()))
    raw["processId"] = process_id
    raw["initializationOptions"] = options
    raw["rootPath"], raw["rootUri"] = str(root), root.as_uri()
    raw["workspaceFolders"] = [{"uri": root.as_uri(), "name": root.name}]
    return get_converter().structure(raw, t.InitializeParams)


async def launch(model: Path | str, root: Path, options: Any = None,
                 process_id: int | None = None) -> Client:
    """Starts the server, runs initialize → initialized; the model loads in the background."""
    client = Client()
    await client.start_io(sys.executable, "-m", "fimlsp", "serve", "--model", str(model))
    client.keep_stderr()
    params = vscode_initialize(root, {} if options is None else options,
                               os.getpid() if process_id is None else process_id)
    try:
        client.result = await client.ask(client.initialize_async(params))
    except Exception:
        await close(client)
        raise
    client.initialized(t.InitializedParams())
    return client


async def close(client: Client) -> None:
    """shutdown → exit, and kill whatever does not go."""
    process = client.process
    if process.returncode is None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_async(None), 15)
            client.exit(None)
            await asyncio.wait_for(process.wait(), 15)
    if process.returncode is None:
        process.kill()
        await process.wait()
    await client.stop()
    if client._drain is not None:
        await client._drain


@contextlib.asynccontextmanager
async def running(model: Path | str, root: Path, options: Any = None,
                  process_id: int | None = None) -> AsyncIterator[Client]:
    client = await launch(model, root, options, process_id)
    try:
        yield client
    finally:
        await close(client)


def nothing(result: Any) -> bool:
    """No suggestion: null, or a list with no items (both valid LSP answers)."""
    return result is None or (hasattr(result, "items") and list(result.items) == [])


def spm_parts(prompt: dict[str, Any]) -> tuple[str, str]:
    """(prefix, suffix) of a starcoder/spm prompt: <fim_prefix><fim_suffix>S<fim_middle>P."""
    assert prompt["format"] == "starcoder/spm", prompt["format"]
    text = prompt["text"]
    assert text.startswith(SPM_HEAD), text[:80]
    suffix, middle, prefix = text[len(SPM_HEAD):].partition(SPM_MIDDLE)
    assert middle, text
    return prefix, suffix


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("my project")  # a space: VS Code sends it as %20


def uri_for(root: Path, name: str) -> str:
    return (root / name).as_uri()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(tiny_model: Path, workspace: Path) -> AsyncIterator[Client]:
    """One server for the tests that can share it; it has its model loaded."""
    async with running(tiny_model, workspace) as client:
        stats = await client.wait_loaded()
        assert stats["state"] == "ready", f"{stats}\n{client.tail()}"
        yield client


# -- 1, 2: handshake and loading ---------------------------------------------------------------


async def test_initialize_advertises_capabilities(server: Client) -> None:
    result = server.result
    assert result is not None
    caps = result.capabilities
    assert result.server_info is not None and result.server_info.name == "fimlsp"
    assert caps.position_encoding == t.PositionEncodingKind.Utf16
    sync = caps.text_document_sync
    kind = sync.change if isinstance(sync, t.TextDocumentSyncOptions) else sync
    assert kind == t.TextDocumentSyncKind.Incremental == 2
    if isinstance(sync, t.TextDocumentSyncOptions):
        assert sync.open_close
    assert caps.inline_completion_provider not in (None, False)
    assert caps.completion_provider is not None
    assert caps.execute_command_provider is not None
    assert set(caps.execute_command_provider.commands) >= COMMANDS


async def test_model_loads_after_initialized_with_work_done_progress(server: Client) -> None:
    created = [e[1] for e in server.events if e[0] == "create"]
    progress = [e for e in server.events if e[0] == "progress"]
    assert len(created) == 1, server.events
    token = created[0]
    assert server.events.index(("create", token)) < server.events.index(progress[0])
    assert {e[1] for e in progress} == {token}
    kinds = [e[2]["kind"] for e in progress]
    assert kinds[0] == "begin" and kinds[-1] == "end", kinds
    assert set(kinds[1:-1]) <= {"report"}
    assert progress[0][2]["title"] == "fimlsp"
    assert progress[-1][2].get("message") == "ready"
    stats = await server.stats()
    assert stats["state"] == "ready" and stats["ready"] is True and stats["error"] is None
    # What status lines and health checks show: the server's version and how the model runs.
    import fimlsp

    assert stats["version"] == fimlsp.__version__
    # The CPU's defaults (issue 19): dynamic int8 weights, fp32 activations.
    assert (stats["device"], stats["dtype"], stats["quantization"]) == ("cpu", "float32", "int8")


# -- 3: document sync --------------------------------------------------------------------------


async def test_incremental_sync_with_surrogates_cjk_and_crlf(server: Client, workspace: Path
                                                            ) -> None:
    doc = Doc(server, uri_for(workspace, "sync crlf.py"),
              "# 😀 greeting\r\ndef greet(name):\r\n    return '你好, ' + name\r\n\r\n"
              "print(greet('🌍'))\r\n")
    doc.change((doc.index("😀"), doc.index("😀"), "!"))  # UTF-16 character 4, after a pair
    doc.change((doc.index("你好"), doc.index("你好"), "，世界"))
    # Two edits in one notification (the second's range counts the first's result), the second
    # at the very end of the document.
    name = doc.index("def ")
    grown = len(doc.text) + len("salute") - len("greet")
    doc.change((name, name + len("greet"), "salute"), (grown, grown, "# 🎉 done\r\n"))
    # Insert lines with CRLF and more pairs in the middle of a line, right after an emoji.
    doc.change((doc.index("🌍"), doc.index("🌍"), "🎉\r\nx = '😀😀'\r\ny = '"))
    # Replace from right after a pair on line 0 to inside the CJK text on line 2.
    doc.change((doc.index("# 😀"), doc.index("世"), "中"))
    # Delete across a line break, from after a pair to the middle of the next line.
    doc.change((doc.index("🌍🎉"), doc.index("x = '"), ""))
    assert doc.text == ("# 😀中界, ' + name\r\n\r\nprint(greet('🌍🎉😀😀'\r\ny = ''))\r\n"
                        "# 🎉 done\r\n")

    prefix, suffix = spm_parts(await server.prompt(doc.uri, doc.end))
    assert (prefix, suffix) == (doc.text, "")

    # Mid-line, right after an emoji: the split falls between the pair and what follows it.
    split = doc.index("🌍")
    at = position_of(doc.text, split)
    assert at == t.Position(line=2, character=len("print(greet('") + 2)
    prefix, suffix = spm_parts(await server.prompt(doc.uri, at))
    assert prefix == doc.text[:split] and prefix.endswith("🌍")
    assert suffix == doc.text[split:]


async def test_incremental_sync_counts_only_cr_and_lf_as_line_breaks(server: Client,
                                                                     workspace: Path) -> None:
    """LSP lines end at \\r\\n, \\r or \\n only: a form feed (Python files have them) or U+2028
    (JavaScript strings) is an ordinary character, so line numbers after it do not move."""
    doc = Doc(server, uri_for(workspace, "separators.py"),
              "a = 1\x0cb = 2\nc = '\u2028'\nd = 4\n")
    doc.change((doc.index("c", after=False), doc.index("c", after=False), "X"))  # line 1
    doc.change((doc.index("d", after=False), doc.index("d", after=False), "Y"))  # line 2
    assert doc.text == "a = 1\x0cb = 2\nXc = '\u2028'\nYd = 4\n"
    prefix, suffix = spm_parts(await server.prompt(doc.uri, doc.end))
    assert (prefix, suffix) == (doc.text, "")


# -- 4, 5: completions -------------------------------------------------------------------------


async def test_inline_completion_inserts_at_the_cursor(server: Client, workspace: Path) -> None:
    doc = Doc(server, uri_for(workspace, "inline.py"),
              "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    \n\n\nprint(mul(2, 3))\n")
    at = position_of(doc.text, doc.index("def mul(a, b):\n    "))
    result = await server.inline(doc.uri, at)
    assert isinstance(result, t.InlineCompletionList), result
    assert len(result.items) == 1, result
    item = result.items[0]
    assert isinstance(item.insert_text, str) and item.insert_text.strip()
    assert item.range == t.Range(start=at, end=at)


async def test_inline_completion_extends_the_selected_item(server: Client, workspace: Path
                                                          ) -> None:
    doc = Doc(server, uri_for(workspace, "selected.py"), "import os\n\nnames = os.li\n")
    at = doc.at("os.li")
    word = t.Range(start=doc.at("os.", after=True), end=at)
    selected = t.SelectedCompletionInfo(range=word, text="listdir")
    result = await server.inline(doc.uri, at, selected)
    assert isinstance(result, t.InlineCompletionList) and len(result.items) == 1, result
    item = result.items[0]
    assert isinstance(item.insert_text, str)
    assert item.insert_text.startswith("listdir") and len(item.insert_text) > len("listdir")
    assert item.range == word


async def test_completion_replaces_the_word_before_the_cursor(server: Client, workspace: Path
                                                             ) -> None:
    doc = Doc(server, uri_for(workspace, "classic.py"),
              "def total(values):\n    result = 0\n    for value in values:\n        resu\n")
    at = doc.at("        resu")
    result = await server.complete(doc.uri, at)
    items = result.items if isinstance(result, t.CompletionList) else result
    assert items, result
    edit = items[0].text_edit
    assert isinstance(edit, t.TextEdit), edit
    assert edit.range.end == at
    assert edit.range.start == t.Position(line=at.line, character=at.character - len("resu"))
    assert edit.new_text.startswith("resu") and len(edit.new_text) > len("resu")


# -- 6: stats and KV reuse ---------------------------------------------------------------------


async def test_stats_report_timings_and_kv_reuse(server: Client, workspace: Path) -> None:
    doc = Doc(server, uri_for(workspace, "reuse.py"),
              "import math\n\n\ndef area(radius):\n    return math.pi * rad\n\n\nprint(area(2))\n")
    at = doc.at("math.pi * rad")
    before = await server.stats()

    shown = await server.inline(doc.uri, at)
    first = await server.stats()
    assert first["requests"] == before["requests"] + 1
    for name in TIMING_FIELDS:
        assert first[name] is not None, (name, first)
    assert first["source"] == "model"
    assert first["prompt_tokens"] > 0 and 0 <= first["reused_tokens"] < first["prompt_tokens"]
    assert first["prefill_ms"] >= 0 and first["decode_ms"] >= 0 and first["generated_tokens"] >= 1

    await server.inline(doc.uri, at)  # the identical request
    again = await server.stats()
    assert again["requests"] == first["requests"] + 1
    assert again["source"] == "cache" or again["reused_tokens"] > 0, again

    index = doc.index("math.pi * rad")
    # The user types one character, not the suggestion's next (typing-through would answer).
    suggested = shown.items[0].insert_text if shown and shown.items else ""
    doc.change((index, index, "x" if suggested.startswith("i") else "i"))
    await server.inline(doc.uri, position_of(doc.text, index + 1))
    typed = await server.stats()
    assert typed["requests"] == again["requests"] + 1
    assert typed["source"] == "model"
    assert typed["reused_tokens"] > 0, typed


async def test_a_request_prints_no_deprecation_warning(server: Client, workspace: Path) -> None:
    """Deprecations reach the editor's server log on every request (VS Code's output channel):
    the server's own calls into transformers and torch must not trigger any."""
    doc = Doc(server, uri_for(workspace, "deprecations.py"), "def twice(x):\n    return \n")
    await server.inline(doc.uri, doc.at("return "))
    await server.wait_for(lambda: "deprecations.py" in server.tail(), "the request's log line")
    logged = server.stderr.decode(errors="replace")
    assert "Warning:" not in logged and "deprecated" not in logged, logged[-3000:]


async def test_stats_report_version_device_and_quantization(server: Client) -> None:
    """What the editors' status and health output shows: the server's version and where and how
    the model runs, `auto` resolved (dynamic int8 on the CPU, issue 19)."""
    from fimlsp import __version__

    stats = await server.wait_loaded()
    assert stats["state"] == "ready", stats
    assert stats["version"] == __version__
    assert stats["device"] == "cpu"
    assert stats["quantization"] == "int8"
    assert stats["model"]


# -- 8: configuration --------------------------------------------------------------------------


async def test_did_change_configuration_applies_to_the_next_request(server: Client,
                                                                    workspace: Path) -> None:
    doc = Doc(server, uri_for(workspace, "config.py"), "def square(x):\n    \n")
    at = doc.at("def square(x):\n    ")
    server.configure(maxNewTokens=1)
    try:
        await server.inline(doc.uri, at)
        stats = await server.stats()
        assert stats["source"] == "model"
        assert stats["generated_tokens"] <= 1, stats
    finally:
        server.configure(maxNewTokens=64)
    # Back to the default: the same place on a new line of text generates more than one token.
    doc.change((len(doc.text), len(doc.text), "\n\ndef cube(x):\n    "))
    await server.inline(doc.uri, doc.end)
    stats = await server.stats()
    assert stats["source"] == "model" and stats["generated_tokens"] > 1, stats


async def test_configuration_change_is_not_answered_from_older_answers(server: Client,
                                                                      workspace: Path) -> None:
    """The user lowers maxNewTokens and asks again where they were: the answer must obey the
    new setting, not come from what was remembered under the old one."""
    doc = Doc(server, uri_for(workspace, "config again.py"), "def twice(x):\n    ")
    first = await server.inline(doc.uri, doc.end)
    assert isinstance(first, t.InlineCompletionList) and first.items, first
    assert (await server.stats())["generated_tokens"] > 1
    server.configure(maxNewTokens=1)
    try:
        second = await server.inline(doc.uri, doc.end)
        stats = await server.stats()
    finally:
        server.configure(maxNewTokens=64)
    assert stats["generated_tokens"] <= 1 and stats["source"] == "model", stats
    assert nothing(second) or len(second.items[0].insert_text) < len(first.items[0].insert_text)


# -- 10: bad input -----------------------------------------------------------------------------


async def test_never_opened_document_gets_no_suggestion(server: Client, workspace: Path) -> None:
    result = await server.inline(uri_for(workspace, "never-opened.py"),
                                 t.Position(line=0, character=0))
    assert nothing(result), result


@pytest.mark.parametrize("where", ["line past the end", "character past the line"])
async def test_position_outside_the_document_is_invalid_params(server: Client, workspace: Path,
                                                               where: str) -> None:
    doc = Doc(server, uri_for(workspace, f"bounds {where}.py"), "x = '😀'\ny = 2\n")
    # "x = '😀'" is 8 UTF-16 units: 8 is its end, 9 is past it; the document has lines 0..2.
    at = (t.Position(line=5, character=0) if where.startswith("line")
          else t.Position(line=0, character=9))
    assert (await server.prompt(doc.uri, t.Position(line=0, character=8)))["text"]
    with pytest.raises(JsonRpcException) as raised:
        await server.inline(doc.uri, at)
    assert raised.value.code == INVALID_PARAMS, raised.value
    with pytest.raises(JsonRpcException) as raised:
        await server.complete(doc.uri, at)
    assert raised.value.code == INVALID_PARAMS, raised.value


# -- 14: accept --------------------------------------------------------------------------------


async def test_accept_command_counts_what_was_shown(server: Client, workspace: Path) -> None:
    doc = Doc(server, uri_for(workspace, "accept.py"),
              "class Point:\n    def __init__(self, x, y):\n        \n")
    result = await server.inline(doc.uri, doc.at("y):\n        "))
    assert isinstance(result, t.InlineCompletionList) and result.items, result
    item = result.items[0]
    assert item.command is not None and item.command.command == "fimlsp.accept"
    args = item.command.arguments or []
    length = len(item.insert_text)
    before = await server.stats()
    # Partial accepts (word by word) report the running total taken of the item.
    await server.command("fimlsp.partialAccept", *args, min(3, length))
    await server.command("fimlsp.partialAccept", *args, min(5, length))
    await server.command("fimlsp.partialAccept", *args, min(5, length))  # a repeat adds nothing
    partial = await server.stats()
    assert partial["partially_accepted"] == before["partially_accepted"] + (
        2 if length > 3 else 1)
    assert partial["accepted_chars"] == before["accepted_chars"] + min(5, length)
    # Accepting the rest counts only what was not taken yet, and the accept once.
    await server.command(item.command.command, *args)
    await server.command(item.command.command, *args)
    after = await server.stats()
    assert after["accepted"] == before["accepted"] + (1 if length > 5 else 0)
    assert after["accepted_chars"] == before["accepted_chars"] + length


# -- servers of their own ----------------------------------------------------------------------


async def test_while_loading_invoked_requests_wait_and_automatic_ones_say_why_once(
        tiny_model: Path, workspace: Path) -> None:
    """A plain LSP client asks right after `initialized`, while the model loads (importing
    transformers' model code alone takes a while): what it typed gets an empty answer and one
    Info log line saying why; what it asked for with a key waits and gets the suggestion."""
    async with running(tiny_model, workspace) as client:
        doc = Doc(client, uri_for(workspace, "early.py"), "def add(a, b):\n    return a + b\n\n\n"
                  "def mul(a, b):\n    \n\n\nprint(mul(2, 3))\n")
        at = position_of(doc.text, doc.index("def mul(a, b):\n    "))

        def params(kind: t.InlineCompletionTriggerKind) -> t.InlineCompletionParams:
            return t.InlineCompletionParams(text_document=t.TextDocumentIdentifier(uri=doc.uri),
                                            position=at,
                                            context=t.InlineCompletionContext(trigger_kind=kind))

        automatic = t.InlineCompletionTriggerKind.Automatic
        first = await client.ask(client.text_document_inline_completion_async(params(automatic)))
        await client.ask(client.text_document_inline_completion_async(params(automatic)))
        assert nothing(first)
        invoked = await client.ask(client.text_document_inline_completion_async(
            params(t.InlineCompletionTriggerKind.Invoked)))
        # the suggestion first; alternatives may follow it (an invoked request waits for them)
        assert isinstance(invoked, t.InlineCompletionList) and len(invoked.items) >= 1, invoked
        assert invoked.items[0].insert_text.strip()
        assert "request waits for model" in client.tail()
        why = [m for m in client.logged if "no completions while model loading" in m.message]
        assert len(why) == 1 and why[0].type == t.MessageType.Info, client.logged


async def test_cancel_request_stops_the_generation(tiny_model: Path, workspace: Path) -> None:
    # fp32: this random model's int8 text ends a block early, and the request must run long;
    # the model's whole window, which 4000 new tokens need.
    options = {"maxNewTokens": 4000, "multiline": "always", "timeBudgetMs": 600000,
               "quantization": "none", "contextWindow": 8192}
    async with running(tiny_model, workspace, options) as client:
        assert (await client.wait_loaded())["state"] == "ready"
        doc = Doc(client, uri_for(workspace, "cancel.py"), "def long():\n    ")
        before = await client.stats()
        pending = client.protocol.send_request_async(
            t.TEXT_DOCUMENT_INLINE_COMPLETION, client.inline_params(doc.uri, doc.end),
            msg_id="cancel-me")
        # Cancel once the model is on it: the request counter moves when generation starts.
        await client.poll_stats(lambda s: s["requests"] > before["requests"], "the request start")
        client.protocol.notify(t.CANCEL_REQUEST, t.CancelParams(id="cancel-me"))
        with pytest.raises(JsonRpcException) as raised:
            await client.ask(pending)
        assert raised.value.code == REQUEST_CANCELLED, raised.value

        # Still serving: a short request queues behind the cancelled one on the model thread,
        # so by its answer the cancelled generation has stopped and been counted.
        client.configure(maxNewTokens=8, multiline="auto", timeBudgetMs=4000)
        doc.change((len(doc.text), len(doc.text), "return 1\n\n\ndef short():\n    "))
        result = await client.inline(doc.uri, doc.end)
        assert result is None or isinstance(result, t.InlineCompletionList)
        stats = await client.stats()
        assert stats["cancelled"] >= before["cancelled"] + 1, stats
        assert stats["requests"] == before["requests"] + 2
        assert stats["generated_tokens"] <= 8 and stats["source"] == "model"


async def test_invalid_options_warn_by_name_and_defaults_apply(tiny_model: Path,
                                                               workspace: Path) -> None:
    async with running(tiny_model, workspace, {"maxNewTokens": "lots", "bogusKey": 1}) as client:
        # The warnings come while initialize is handled, so before its answer.
        warnings = [m.message for m in client.shown if m.type == t.MessageType.Warning]
        assert any("maxNewTokens" in m for m in warnings), client.shown
        assert any("bogusKey" in m for m in warnings), client.shown
        assert (await client.wait_loaded())["state"] == "ready"
        doc = Doc(client, uri_for(workspace, "defaults.py"), "def half(x):\n    ")
        result = await client.inline(doc.uri, doc.end)
        assert isinstance(result, t.InlineCompletionList) and result.items, result
        stats = await client.stats()
        assert 1 <= stats["generated_tokens"] <= 64, stats  # the default maxNewTokens


@pytest.mark.parametrize("how", ["--model", "initializationOptions"])
async def test_unknown_model_is_reported_and_answers_nothing(tiny_model: Path, workspace: Path,
                                                             how: str) -> None:
    model, options = ("/nonexistent/dir", None) if how == "--model" else \
        (tiny_model, {"model": "no-such-model"})
    name = "/nonexistent/dir" if how == "--model" else "no-such-model"
    async with running(model, workspace, options) as client:
        message = await client.wait_for(
            lambda: next((m for m in client.shown if name in m.message), None),
            f"a message naming {name}")
        assert message.type in (t.MessageType.Warning, t.MessageType.Error)
        assert "--model" in message.message, message.message
        stats = await client.stats()
        assert stats["state"] == "failed" and stats["error"], stats

        doc = Doc(client, uri_for(workspace, "nomodel.py"), "def f():\n    ")
        result = await client.inline(doc.uri, doc.end)
        assert isinstance(result, t.InlineCompletionList) and list(result.items) == [], result
        result = await client.complete(doc.uri, doc.end)
        assert nothing(result), result


async def test_shutdown_then_exit_ends_the_process_with_0(tiny_model: Path, workspace: Path
                                                          ) -> None:
    client = await launch(tiny_model, workspace)
    try:
        assert (await client.wait_loaded())["state"] == "ready"
        doc = Doc(client, uri_for(workspace, "bye.py"), "def bye():\n    ")
        await client.inline(doc.uri, doc.end)  # the model thread has done real work
        assert await client.ask(client.shutdown_async(None)) is None
        client.exit(None)
        assert await asyncio.wait_for(client.process.wait(), WAIT_S) == 0, client.tail()
    finally:
        await close(client)


async def test_server_exits_when_its_parent_dies(tiny_model: Path, workspace: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        client = await launch(tiny_model, workspace, process_id=parent.pid)
    except BaseException:
        parent.kill()
        parent.wait()
        raise
    try:
        parent.kill()
        parent.wait()  # reaped: a zombie would still answer kill(pid, 0)
        # The server polls its parent every 2 s; its stdin stays open, so only that can end it.
        code = await asyncio.wait_for(client.process.wait(), 30)
        assert code == 0, client.tail()
    finally:
        await close(client)
