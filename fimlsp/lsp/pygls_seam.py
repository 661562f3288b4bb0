"""Every use of pygls's private API, in one place: `PyglsProtocol` and nothing else.

Why we use any: fimlsp reads, checks and answers messages itself (`protocol`, `framing`), but
it keeps pygls's handler machinery — the feature registry behind `@server.feature` /
`@server.command`, its built-in `initialize` / `shutdown` handlers (capabilities, workspace
folders, progress), and the way it runs a handler that is a coroutine, a thread function or a
generator that yields to the user's handler. That machinery has no public entry point short of
pygls's own reader, whose failures `protocol`'s docstring lists. Checked against pygls 2.1.1,
which `pyproject.toml` pins (`~=2.1.1`); `tests/test_pygls_internals.py` fails naming the
internal if an upgrade changes any of these.

Private names, used only in this module:

- `JsonRPCProtocol._execute_handler(msg_id, handler, callback, args=...)`: runs a handler of
  any of pygls's four kinds and calls `callback(future)` when it is done. Without it we would
  reimplement its generator stepping (`_run_generator`), which pygls's built-in handlers
  depend on. If it changed, no request or notification would run.
- `JsonRPCProtocol._request_futures` (msg id → Future): `_execute_handler` registers a running
  handler there and pygls's `lsp_shutdown` cancels everything in it. We pop a request's entry
  when it is answered, cancel from it on `$/cancelRequest`, drop a notification's entry at once
  (pygls never removes those: one Future per keystroke, docs/pygls-upstream.md) and register
  our requests to the client there, so that `shutdown` cancels them as it always did. If it
  changed, answering, `$/cancelRequest` and the notifications' clean-up would all fail.
- `JsonRPCProtocol._ctx_msg_id` (a ContextVar): the id behind the public `msg_id`, set for each
  request; pygls's `lsp_shutdown` reads it so as not to cancel the shutdown request itself.
  Without it `shutdown` would cancel its own request and answer -32800.

Public names that we override and pygls calls by name (a rename upstream would silently
bypass us):

- `structure_message`: only pygls's own readers call it (`start_io`, `start_tcp`, which
  fimlsp does not use); here it keeps JSON as JSON so that even they hand `protocol` raw values.
- `notify`, `send_request` (`protocol.FimProtocol`): every message pygls's `LanguageServer`
  methods (`window_log_message`, `client_register_capability_async`, progress) send goes
  through them. Ours write through `outbox`, the writer our answers use; pygls's go through its
  private `_send_data`, which logs every body at INFO and reports a failure out of band. If
  pygls stopped calling them, messages to the client would bypass `outbox` and the answers to
  our requests would no longer be matched (`protocol.FimProtocol._response`).
- the built-in features `lsp_text_document__did_open` / `__did_change` / `__did_close`
  (`sync.DocumentSync`) and `lsp_workspace__execute_command` (`protocol.FimProtocol`): pygls
  finds built-ins by scanning the protocol's attributes (`_register_builtin_features`), so ours
  replace its handlers only while they have exactly its names. If not, pygls's workspace would
  again keep (and rewrite) a second copy of every document, and commands would skip our
  argument checks.
- `LanguageServer.report_server_error(error, source)` (`server.FimServer`): where pygls reports
  errors that have no response to carry them; ours logs instead of an Error popup.
- `FeatureManager.features` / `.builtin_features` / `.commands`: the registry, read to find a
  method's handler (pygls's `_get_handler` does the same two lookups).

Dropped (were used before, now our own code): `_converter` (we keep the converter we are
given), `_shutdown` (the lifecycle is `protocol`'s), `_get_handler`, `_serialize_message`,
`_result_types` and `_handle_response` (our requests to the client and their answers are
`protocol`'s), and the overrides of `_send_data`, `_send_response`, `_send_handler_result`,
`_check_handler_result` and `_handle_cancel_notification` (pygls calls those only from its own
`handle_message`, `notify` and `send_request`, which `protocol` replaces).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import cattrs
from pygls.exceptions import JsonRpcMethodNotFound
from pygls.protocol import LanguageServerProtocol

Done = Callable[[Future[Any]], None]


class PyglsProtocol(LanguageServerProtocol):
    """pygls's protocol, with its private machinery behind named methods."""

    def __init__(self, server: Any, converter: cattrs.Converter) -> None:
        super().__init__(server, converter)
        self.converter = converter

    def structure_message(self, data: dict[str, Any]) -> Any:
        """pygls's readers call this as `json.loads`'s object_hook, for every nested object."""
        return data

    def handler(self, method: str) -> Callable[..., Any]:
        """The handler pygls would run for `method`: its built-in first, then the user's."""
        found = self.fm.builtin_features.get(method)
        if found is None:
            found = self.fm.features.get(method)
        if found is None:
            raise JsonRpcMethodNotFound.of(method)
        return found

    def run_request(self, msg_id: Any, method: str, params: Any, done: Done) -> None:
        """Runs the handler of a request; `done(future)` when it has finished. Call it in a
        context of its own (`contextvars.copy_context().run`): the id is set in it."""
        handler = self.handler(method)
        self._ctx_msg_id.set(msg_id)
        self._execute_handler(msg_id, handler, done, args=(params,))

    def run_notification(self, method: str, params: Any, done: Done) -> None:
        """Runs the handler of a notification; `done(future)` when it has finished."""
        key = str(uuid.uuid4())
        try:
            self._execute_handler(key, self.handler(method), done, args=(params,))
        finally:
            # Dropped at once, not in a done callback: `lsp_shutdown` iterates the dict while
            # cancelling, and a callback popping from it then would break that loop.
            self._request_futures.pop(key, None)

    def track(self, msg_id: Any, future: Future[Any]) -> None:
        """Registers a request of ours to the client, cancelled by `shutdown` with the rest."""
        self._request_futures[msg_id] = future

    def untrack(self, msg_id: Any) -> Future[Any] | None:
        """Forgets a request (answered, or an answer arrived); its future, if it was known."""
        return self._request_futures.pop(msg_id, None)

    def running(self) -> int:
        """Requests and handlers pygls holds a future for (tests: nothing may stay behind)."""
        return len(self._request_futures)
