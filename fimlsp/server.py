"""The language server: its lifecycle (settings, the model's load, logging), its capabilities
and thin handlers.

Handlers only translate between LSP types and the parts that do the work: the answerer
(answering.py: what a keystroke is answered with) and the completer (completer.py). The model
works on the scheduler's worker thread; the event loop stays free to read the next keystroke or
a `$/cancelRequest`. Errors are `FimError`s, turned into LSP answers in one place
(`FimServer.guarded`).

Why one module: `create_server` registers every handler in one list (next edits' apart,
nextedit/lsp.py) so that what the server answers is read in one place, and `FimServer` is the
lifecycle those handlers share; the policy behind the answers is answering.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from fimlsp import __version__
from fimlsp.answering import Answerer
from fimlsp.completer import Completer
from fimlsp.config import Settings, parse_settings
from fimlsp.context import Cursor
from fimlsp.documents import Documents
from fimlsp.engine import choices
from fimlsp.errors import ErrorKind, FimError
from fimlsp.items import CMD_ACCEPT, completion_item, inline_list
from fimlsp.lsp.protocol import FimProtocol
from fimlsp.nextedit import lsp as nextedit
from fimlsp.nextedit.history import EditHistory
from fimlsp.options import reload_keys
from fimlsp.repo.service import WorkspaceIndexer
from fimlsp.scheduler import Scheduler
from fimlsp.sources import ContextSources
from fimlsp.validation import strict_converter

log = logging.getLogger("fimlsp")

# CMD_ACCEPT is items.py's: the items it makes carry it.
CMD_PARTIAL_ACCEPT = "fimlsp.partialAccept"
CMD_STATS = "fimlsp.stats"
CMD_PROMPT = "fimlsp.prompt"
CMD_DOCUMENT_TEXT = "fimlsp.documentText"
CMD_WARM = "fimlsp.warm"
CMD_CONTEXT = "fimlsp.context"
# How long a request the user asked for (Invoked) waits for a model that is still loading: a
# plain LSP client would otherwise get nothing, and not know why. Automatic requests never wait.
MODEL_WAIT_S = 60.0
REMOTE_WORKERS = 8  # documents whose requests a serving engine gets at once (it batches them)
_NO_EMPTY = object()  # `guarded` without an empty answer: internal errors get -32603


class FimServer(LanguageServer):
    def __init__(self, settings: Settings) -> None:
        super().__init__("fimlsp", __version__, protocol_cls=FimProtocol,
                         converter_factory=strict_converter)
        self.settings = settings
        self.documents = Documents()
        # Which open documents may lend snippets: the workspace folders, no secrets (sources.py).
        self.sources = ContextSources(allow_secrets=settings.context_secrets)
        self.repo = WorkspaceIndexer(self)  # the workspace index (fimlsp/repo)
        self.completer = self._new_completer()
        self.scheduler = Scheduler(workers_for(settings))
        self.state = "idle"  # idle | loading | ready | failed
        self.answerer = Answerer(self)  # what each keystroke is answered with (answering.py)
        self.load_error = ""
        self._loading: asyncio.Task[None] | None = None
        self._settled: asyncio.Event | None = None  # set while no load is under way
        self._told_not_ready = ""  # the not-ready reason last logged: once, not per request
        self._engine_down = ""  # the serving engine's failure last shown: once, not per request
        self.watch_parent_process = True  # off where a client's pid is not ours (transport.py)
        self.history = EditHistory()  # edits and places viewed, for next edits
        self.next_edits = nextedit.NextEditState()

    def _new_completer(self) -> Completer:
        completer = Completer(self.settings)
        completer.documents = lambda: self.documents.all(self.sources.allows)
        completer.repo_index = lambda: self.repo.index
        return completer

    # -- messages to the user ---------------------------------------------------------------

    def report_server_error(self, error: Exception, source: Any) -> None:
        """pygls's out-of-band errors: stderr, rate-limited; never an Error popup per message."""
        self.protocol.complain(logging.ERROR, "%s: %s", getattr(source, "__name__", source),
                               error, exc_info=error)

    def log(self, message: str, level: int = logging.INFO) -> None:
        """stderr always; the client's log too at debug level, or for warnings."""
        log.log(level, message)
        if self.settings.log_level == "debug" or level >= logging.WARNING:
            warning = level >= logging.WARNING
            kind = types.MessageType.Warning if warning else types.MessageType.Debug
            self.window_log_message(types.LogMessageParams(type=kind, message=message))

    def request_log(self, line: str) -> None:
        """Every request's id and timings: stderr always, the client's log at debug level."""
        log.info(line)
        self.window_log_message(types.LogMessageParams(type=types.MessageType.Debug, message=line))

    def warn_user(self, message: str) -> None:
        log.warning(message)
        self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning,
                                                         message=message))

    @property
    def encoding(self) -> str:
        return encoding_name(self.server_capabilities.position_encoding)

    # -- settings and model -----------------------------------------------------------------

    def apply_options(self, options: Any) -> None:
        parsed = parse_settings(options, self.settings)
        for warning in parsed.warnings:
            self.warn_user(warning)
        old, self.settings = self.settings, parsed.settings
        logging.getLogger("fimlsp").setLevel(self.settings.log_level.upper())
        self.sources.set_allow_secrets(self.settings.context_secrets)
        # Downloads newly allowed: a model that failed for want of them gets its second chance.
        retry = self.settings.allow_download and not old.allow_download and self.state == "failed"
        # One list per engine (options.reload_keys): a serving engine's endpoint does not
        # reload the model in this process, nor its threads a serving engine.
        if retry or any(getattr(old, k) != getattr(self.settings, k)
                        for k in reload_keys(old.engine)):
            self.completer = self._new_completer()
            self.scheduler.set_workers(workers_for(self.settings))
            if self.state != "idle":
                self._loading = asyncio.ensure_future(self.load_model())
        else:
            self.completer.update_settings(self.settings)
        self.repo.update_settings(self.settings)

    async def load_model(self) -> None:
        """Loads on the worker thread with work-done progress; requests meanwhile get nothing."""
        completer = self.completer
        self.state, self.load_error = "loading", ""
        self.settled().clear()
        name = self.settings.model
        token = str(uuid.uuid4())
        progress = bool(getattr(getattr(self.client_capabilities, "window", None),
                                "work_done_progress", False))
        if progress:
            try:
                await self.work_done_progress.create_async(token)
                self.work_done_progress.begin(token, types.WorkDoneProgressBegin(
                    title="fimlsp", message=f"loading {name}", cancellable=False))
            except Exception:  # a client that refuses progress still gets a model
                progress = False
        started = time.perf_counter()
        try:
            await asyncio.wrap_future(self.scheduler.run(completer.load))
        except FimError as error:
            if completer is self.completer:
                self.state, self.load_error = "failed", error.message
                self.warn_user(f"fimlsp: {error.message}")
        except Exception as error:  # a bug or a broken checkpoint: say it, keep serving
            log.exception("model load failed")  # the details (which may quote files): stderr
            if completer is self.completer:
                self.state = "failed"
                self.load_error = f"{type(error).__name__}; the server's log has the details"
                self.warn_user(f"fimlsp: loading {name} failed: {self.load_error}")
        else:
            if completer is self.completer:
                self.state = "ready"
                self.log(f"model {name} ready in {time.perf_counter() - started:.1f}s "
                         f"(format {completer.spec.template.name}/{completer.spec.order}; "
                         f"{choices.describe(completer.choices())})"
                         if completer.spec else f"model {name} ready")
        finally:
            if completer is self.completer:
                self.settled().set()
            if progress:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(
                    message=self.state if self.state != "failed" else "failed"))

    def settled(self) -> asyncio.Event:
        """Set when no model load is under way (made on first use: it needs the event loop)."""
        if self._settled is None:
            self._settled = asyncio.Event()
            if self.state != "loading":
                self._settled.set()
        return self._settled

    async def wait_for_model(self) -> None:
        """For an invoked request: until the model is loaded or failed, `MODEL_WAIT_S` at most.
        The request's task is what waits, so `$/cancelRequest` ends the wait."""
        if self.state == "loading":
            self.log(f"request waits for model {self.settings.model} to load (at most "
                     f"{MODEL_WAIT_S:.0f}s)")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.settled().wait(), MODEL_WAIT_S)

    def not_ready(self) -> None:
        """Logs why requests get nothing: at info, once per reason (fimlsp.stats has it too)."""
        reason = f"model {self.state}" + (f" ({self.load_error})" if self.load_error else "")
        if reason != self._told_not_ready:
            self._told_not_ready = reason
            message = (f"no completions while {reason}: automatic requests are answered empty"
                       + ("; invoked ones wait for it" if self.state == "loading" else ""))
            log.info(message)  # and to the client's log, which a plain LSP client shows
            self.window_log_message(types.LogMessageParams(type=types.MessageType.Info,
                                                           message=message))

    # -- completion -------------------------------------------------------------------------

    def cursor(self, uri: str, position: types.Position,
               selected: types.SelectedCompletionInfo | None) -> Cursor:
        text = self.documents.get(uri)
        if text is None:
            raise FimError(ErrorKind.UNKNOWN_DOCUMENT, f"{uri} was never opened (didOpen)")
        replace = None
        if selected is not None:  # complete as if the selected item were already inserted
            start, end = selected.range.start, selected.range.end
            replace = (start.line, start.character, end.line, end.character, selected.text)
        return self.completer.cursor_for(text, position.line, position.character, self.encoding,
                                         replace)

    async def model_ready(self, invoked: bool) -> bool:
        """Whether a completion request can be answered by the model now; an invoked one (the
        user asked) waits for a model that is still loading (`wait_for_model`)."""
        if self.state != "ready" and invoked:
            await self.wait_for_model()
        if self.state != "ready":
            self.not_ready()
            return False
        self._told_not_ready = ""
        return True

    def engine_answers(self) -> None:
        """The model answered: a serving engine shown as down (`guarded`) is up again."""
        if self._engine_down:
            self._engine_down = ""
            self.log(f"fimlsp: the {self.settings.engine} engine answers again", logging.WARNING)

    async def guarded(self, work: Any, empty: Any = _NO_EMPTY) -> Any:
        """Runs a request's coroutine; errors become LSP answers here and nowhere else:
        INVALID_PARAMS is the client's bug and gets -32602, other FimErrors a log line and
        `empty`. Anything else is our bug or the engine's (a CUDA error, a broken checkpoint):
        its traceback goes to stderr, the answer is `empty` (or -32603 where there is no empty
        answer) and never carries the traceback."""
        try:
            return await work
        except FimError as error:
            if error.kind is ErrorKind.INVALID_PARAMS:
                raise JsonRpcInvalidParams(error.message) from None
            self.completer.stats.add(errors=1)
            if error.kind is ErrorKind.ENGINE_UNAVAILABLE and not self._engine_down:
                self._engine_down = error.message  # shown once; fimlsp.stats keeps saying it
                self.warn_user(f"fimlsp: {error.message}")
            self.log(f"no completion: {error.message}", logging.INFO)
            return None if empty is _NO_EMPTY else empty
        except JsonRpcException:
            raise
        except Exception as error:
            log.exception("request failed")
            self.completer.stats.add(errors=1)
            if empty is _NO_EMPTY:
                raise JsonRpcInternalError(f"fimlsp failed ({type(error).__name__}); the "
                                           "server's log has the details") from None
            return empty


def workers_for(settings: Settings) -> int:
    """Requests at once: one for the model in this process, several for a serving engine."""
    return 1 if settings.engine == "local" else REMOTE_WORKERS


def encoding_name(value: Any) -> str:
    """'utf-16' | 'utf-8' | 'utf-32' from what pygls negotiated: a plain string when the client
    offered encodings, the enum `PositionEncodingKind.Utf16` (whose str() is its *name*) when it
    offered none, as Neovim 0.7, VS Code and eglot do."""
    value = getattr(value, "value", value)
    return str(value) if value else "utf-16"


def create_server(settings: Settings) -> FimServer:
    server = FimServer(settings)

    @server.feature(types.INITIALIZE)
    def initialize(ls: FimServer, params: types.InitializeParams) -> None:
        ls.apply_options(params.initialization_options)
        ls.sources.set_folders(ls.repo.folder_uris())
        if params.process_id and params.process_id > 0 and ls.watch_parent_process:
            watch_parent(params.process_id)

    @server.feature(types.INITIALIZED)
    async def initialized(ls: FimServer, _params: types.InitializedParams) -> None:
        ls.repo.start(ls.settings)  # in the background, never before the model
        await ls.load_model()

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_workspace_folders(ls: FimServer,
                                     params: types.DidChangeWorkspaceFoldersParams) -> None:
        ls.repo.remove_folders([f.uri for f in params.event.removed or []])
        ls.repo.add_folders([f.uri for f in params.event.added or []])
        ls.sources.set_folders(ls.repo.folder_uris())  # pygls's workspace has them by now

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(ls: FimServer,
                                 params: types.DidChangeWatchedFilesParams) -> None:
        ls.repo.files_changed(list(params.changes or []))

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: FimServer,
                                       params: types.DidChangeConfigurationParams) -> None:
        options = params.settings
        if not options and getattr(getattr(ls.client_capabilities, "workspace", None),
                                   "configuration", False):
            items = [types.ConfigurationItem(section="fimlsp")]
            answer = await ls.workspace_configuration_async(types.ConfigurationParams(items=items))
            options = answer[0] if answer else None
        ls.apply_options(options)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: FimServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.documents.open(params.text_document.uri, params.text_document.text)
        ls.history.open(params.text_document.uri, params.text_document.version)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: FimServer, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.documents.change(uri, params.content_changes, ls.encoding,
                            ls.history.observer(uri, ls.encoding))
        ls.history.set_version(uri, params.text_document.version)
        ls.next_edits.changed(uri)
        ls.answerer.pace.keystroke(uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: FimServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.documents.close(uri)
        ls.history.close(uri)
        ls.next_edits.forget(uri)
        ls.answerer.forget(uri)  # the event loop's; the rest is the model thread's
        completer = ls.completer
        ls.scheduler.run(lambda: completer.forget(uri, nextedit.SESSION_SUFFIX))

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: FimServer, params: types.InlineCompletionParams
                                ) -> types.InlineCompletionList | None:
        async def work() -> types.InlineCompletionList | None:
            selected = params.context.selected_completion_info if params.context else None
            uri = params.text_document.uri
            invoked = params.context is not None and \
                params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
            ls.history.viewed(uri, params.position.line)
            edit = nextedit.inline_item(ls, uri, params.position)  # the cursor line's next edit
            cursor = ls.cursor(uri, params.position, selected)
            result = await ls.answerer.complete(uri, cursor, invoked)
            if result is None:
                return types.InlineCompletionList(items=[edit] if edit else [])
            others = await ls.answerer.alternatives(uri, cursor, result, invoked)
            return inline_list([result, *others], params.position, selected, edit)

        empty = types.InlineCompletionList(items=[])
        return await ls.guarded(work(), empty)

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(ls: FimServer, params: types.CompletionParams
                         ) -> types.CompletionList | None:
        async def work() -> types.CompletionList | None:
            uri = params.text_document.uri
            cursor = ls.cursor(uri, params.position, None)
            invoked = params.context is None or \
                params.context.trigger_kind == types.CompletionTriggerKind.Invoked
            result = await ls.answerer.complete(uri, cursor, invoked)
            if result is None:
                return empty
            item = completion_item(result, cursor, params.position, ls.encoding)
            return types.CompletionList(is_incomplete=True, items=[item])

        empty = types.CompletionList(is_incomplete=True, items=[])
        return await ls.guarded(work(), empty)

    # Every command declares its arguments with types: the protocol checks them (-32602).
    @server.command(CMD_ACCEPT)
    def accept(ls: FimServer, request_id: int) -> None:
        ls.answerer.accepted(request_id, partial=False)

    @server.command(CMD_PARTIAL_ACCEPT)
    def partial_accept(ls: FimServer, request_id: int, chars: int | None = None) -> None:
        ls.answerer.accepted(request_id, partial=True, chars=chars)

    @server.command(CMD_STATS)
    def stats(ls: FimServer) -> dict[str, Any]:
        return {**ls.completer.stats_report(), "state": ls.state, "error": ls.load_error or None,
                "next_edits": {**ls.history.sizes(), "answers": len(ls.next_edits.last),
                               "shown": ls.next_edits.shown,
                               "accepted": ls.next_edits.accepted},
                "repo_index": ls.repo.report()}

    @server.command(CMD_PROMPT)
    async def show_prompt(ls: FimServer, uri: str, position: types.Position) -> Any:
        """What the model would see at a position: for "show prompt" commands and debugging.
        The protocol checks the arguments against these annotations (-32602 if they differ)."""

        async def work() -> dict[str, Any]:
            completer, cursor = ls.completer, ls.cursor(uri, position, None)
            # The model's thread builds it, as it builds a completion's: tokenizing a window and
            # choosing snippets is no work for the event loop, and the state it reads is kept
            # there.
            prompt, chosen = await asyncio.wrap_future(ls.scheduler.run(
                lambda: completer.prompt_report(uri, cursor)))
            return {"text": prompt.text, "ids": prompt.ids, **prompt.accounting(),
                    "snippets": chosen}

        return await ls.guarded(work())

    @server.command(CMD_WARM)
    async def warm(ls: FimServer, uri: str, position: types.Position) -> Any:
        """Prefill the prompt at a position while the model is idle (a client sends it when a
        document is opened or focused, with its cursor): the first keystroke there then costs
        one token. Answers at once: true if started, false while the model is not ready."""

        async def work() -> bool:
            if ls.state != "ready":
                return False
            ls.history.viewed(uri, position.line)  # where the user looks: next edits' context
            ls.answerer.warm(uri, ls.cursor(uri, position, None))
            return True

        return await ls.guarded(work(), False)

    @server.command(CMD_CONTEXT)
    async def editor_context(ls: FimServer, uri: str, definitions: Any) -> Any:
        """Definitions of the symbols near the cursor from the editor's own language server
        (`[{uri, text, line?, name?}]`, nearest first): the best-ranked snippets of the next
        prompts in `uri`. Answers how many were kept; a malformed list is -32602."""

        async def work() -> int:
            return ls.completer.editor_context(uri, definitions)

        return await ls.guarded(work())

    @server.command(CMD_DOCUMENT_TEXT)
    def document_text(ls: FimServer, uri: str) -> str | None:
        """The server's copy of a document (null if not open): for tests and bug reports."""
        return ls.documents.text(uri)

    nextedit.register(server)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: FimServer, *_args: Any) -> None:
        ls.scheduler.shutdown()
        ls.repo.stop()

    return server


def watch_parent(pid: int, interval_s: float = 2.0) -> None:
    """Exits when the editor that started us is gone, even if it left our pipes open."""

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                log.warning("parent process %d is gone; exiting", pid)
                os._exit(0)
            except PermissionError:
                pass  # alive, owned by someone else

    threading.Thread(target=watch, name="fimlsp-parent-watch", daemon=True).start()
