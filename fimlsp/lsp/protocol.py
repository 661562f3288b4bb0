"""JSON-RPC and LSP rules between the frames and the handlers: every request gets one answer.

Why not pygls's own dispatch: in pygls 2.1.1 a message is turned into lsprotocol objects inside
`json.loads(..., object_hook=structure_message)`, so any message that does not fit (params null,
a negative line, no "jsonrpc", an unknown method without params) raises out of `json.loads` and
is only logged: the request is never answered and `report_server_error` shows the user an Error
popup per message. Its cattrs converter also coerces (`"line": "4"` → 4, `4.5` → 4,
`"uri": true` → "True"), internal errors carry the Python traceback in the response's `data`,
`exit` before `shutdown` ended the process with 0 (pygls catches its own SystemExit), and
requests after `shutdown` are dropped silently. docs/pygls-upstream.md has the reports. We keep
pygls's handler registry and runner, behind `pygls_seam`.

Here the raw JSON value is checked in the order JSON-RPC and LSP give the errors (`checks` has
the steps that need no state):

1. not an object (batches included: LSP has none) → -32600, id null; a body that is not JSON
   never gets here (`framing` reports it and `dispatch` answers -32700, id null);
2. no `"jsonrpc": "2.0"`, a `method` that is not a string, a `method` together with `result`
   or `error`, an id that is not an integer or a string → -32600 (with the id when it is a
   valid one, else null);
3. lifecycle: a request before `initialize` has been answered → -32002; after `shutdown` →
   -32600; notifications are dropped then, except `exit` (code 0 after shutdown, else 1);
4. unknown method, or a notification method sent with an id → -32601;
5. params checked against the method's lsprotocol type with a strict converter (no coercion,
   LSP's integer ranges) → -32602 with a message that names the field;
6. the handler: its `JsonRpcException` keeps its code, anything else is -32603 with the
   exception's type only; a cancelled request is -32800. The details go to stderr.

Notifications are never answered. Complaints about malformed messages go to stderr, rate-limited
(`ratelimit`), never to a `window/showMessage` popup. What is written goes through `outbox`.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import typing
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import JsonRPCNotification, JsonRPCRequestMessage, lsp_method

from fimlsp.lsp.checks import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REQUEST_CANCELLED,
    SERVER_NOT_INITIALIZED,
    Invalid,
    InvalidParams,
    Reject,
    Request,
    Response,
    check_params,
    command_arguments,
    envelope,
    method_kind,
    short,
    valid_id,
)
from fimlsp.lsp.framing import MAX_MESSAGE_BYTES, Message, Skipped, TooLarge, Unparsable
from fimlsp.lsp.outbox import Outbox, Writer
from fimlsp.lsp.ratelimit import RateLimitedLog
from fimlsp.lsp.sync import DocumentSync, clamp_negative
from fimlsp.validation import describe, is_json

log = logging.getLogger("fimlsp.protocol")


class FimProtocol(DocumentSync):
    """The message checks described above on pygls's handler machinery, with document sync
    kept only in our store (`sync.DocumentSync`)."""

    def __init__(self, server: Any, converter: cattrs.Converter) -> None:
        super().__init__(server, converter)
        self._phase = "new"  # new → initializing → ready → shutdown
        self._initialize_id: Any = None
        self._initialized_seen = False
        self._asked: dict[Any, Any] = {}  # our requests to the client → their result type
        self.complain = RateLimitedLog(log)
        self.outbox = Outbox(converter, self.complain)

    def set_writer(self, writer: Any, include_headers: bool = True) -> None:
        super().set_writer(writer, include_headers)
        self.outbox.writer = typing.cast(Writer, writer)

    def handle_message(self, message: Any) -> None:
        """One decoded JSON value; raises SystemExit for `exit`, nothing else."""
        try:
            self._handle(message)
        except SystemExit:
            raise
        except Exception:  # a bug here must not end the read loop
            log.exception("failed to handle a message")
            if isinstance(message, dict) and valid_id(message.get("id")) and "method" in message:
                self.outbox.reply_error(message["id"], INTERNAL_ERROR, "internal error; the "
                                        "server's stderr has the details")

    def reply_unparsable(self, reason: str) -> None:
        self.complain(logging.WARNING, "unparsable message: %s", reason)
        self.outbox.reply_error(None, PARSE_ERROR, f"Parse error: {reason}")

    def reply_too_large(self, length: int) -> None:
        self.complain(logging.WARNING, "a message of %d bytes is over the %d-byte limit; skipped",
                      length, MAX_MESSAGE_BYTES)
        self.outbox.reply_error(None, INVALID_REQUEST, f"message of {length} bytes is over the "
                                f"{MAX_MESSAGE_BYTES // (1024 * 1024)} MiB limit; skipped")

    # -- the order of checks ----------------------------------------------------------------

    def _handle(self, message: Any) -> None:
        what = envelope(message)
        if isinstance(what, Invalid):
            self._reject(what.id, what.code, what.message)
        elif isinstance(what, Response):
            self._response(what.id, what.message)
        elif isinstance(what, Request):
            try:
                params = self._check_request(what.method, what.params)
            except Reject as reject:
                self._reject(what.id, reject.code, reject.message)
                return
            if what.method == types.INITIALIZE:
                self._phase, self._initialize_id = "initializing", what.id
            contextvars.copy_context().run(self._run_request, what.id, what.method, params)
        else:
            self._notification(what.method, what.params)

    def _kind(self, method: str) -> str | None:
        return method_kind(method, self.fm.builtin_features, self.fm.features)

    def _check_request(self, method: str, raw: Any) -> Any:
        if self._phase == "shutdown":
            raise Reject(INVALID_REQUEST, "the server is shutting down: only the exit "
                         "notification is accepted after shutdown")
        if self._phase != "ready":
            if method == types.INITIALIZE and self._phase == "new":
                pass
            elif method == types.INITIALIZE:
                raise Reject(INVALID_REQUEST, "initialize was already sent")
            else:
                raise Reject(SERVER_NOT_INITIALIZED, "the server is not initialized yet: send "
                             "initialize first and wait for its answer")
        elif method == types.INITIALIZE:
            raise Reject(INVALID_REQUEST, "initialize may only be sent once")
        kind = self._kind(method)
        if kind is None:
            raise Reject(METHOD_NOT_FOUND, f"unknown method {short(method)!r}")
        if kind == "notification":
            raise Reject(METHOD_NOT_FOUND, f"{short(method)} is a notification: send it without "
                         "an id")
        try:
            return check_params(self.converter, method, raw)
        except InvalidParams as error:
            raise Reject(INVALID_PARAMS, str(error)) from None

    def _notification(self, method: str, raw: Any) -> None:
        if method == types.EXIT:
            self.exit(0 if self._phase == "shutdown" else 1)
        if self._phase != "ready":
            why = "after shutdown" if self._phase == "shutdown" else "before initialize"
            log.debug("dropped the %s notification %s", short(method), why)
            return
        if method == types.CANCEL_REQUEST:
            try:
                params = self.converter.structure(raw, types.CancelParams)
            except Exception as error:
                self.complain(logging.WARNING, "ignored $/cancelRequest: %s", describe(error))
                return
            self._cancel(params.id)
            return
        if method == types.INITIALIZED:
            if self._initialized_seen:
                self.complain(logging.WARNING, "ignored a repeated initialized notification")
                return
            self._initialized_seen = True
        kind = self._kind(method)
        if kind != "notification":
            if not method.startswith("$/"):  # LSP: unknown $/ notifications may be ignored
                self.complain(logging.WARNING, "ignored the notification %s: %s", short(method),
                              "a request method needs an id" if kind else "unknown method")
            return
        if method == types.TEXT_DOCUMENT_DID_CHANGE:
            clamp_negative(raw)  # clamped like VS Code, never dropped (documents.py)
        try:
            params = check_params(self.converter, method, raw)
        except InvalidParams as error:
            self.complain(logging.WARNING, "ignored the notification %s: %s", method, error)
            return
        contextvars.copy_context().run(self._run_notification, method, params)

    def _cancel(self, msg_id: Any) -> None:
        """Quietly: most cancels come after the answer (the client cancels what it no longer
        needs), which pygls 2.1.1 logs as a warning each."""
        future = self.untrack(msg_id)
        if future is None:
            log.debug("cancel for %r, which is not running", msg_id)
        elif future.cancel():
            log.debug("cancelled request %r", msg_id)

    def exit(self, code: int) -> None:
        """LSP `exit`: 0 after shutdown, 1 without. pygls's own `exit` raises SystemExit inside
        its IO loop, which catches it, so the process always ended 0; ours reaches `serve`."""
        log.info("exit%s", "" if code == 0 else " without shutdown")
        raise SystemExit(code)

    # -- running handlers and answering -------------------------------------------------------

    def _run_request(self, msg_id: Any, method: str, params: Any) -> None:
        done = functools.partial(self._answer, msg_id=msg_id, method=method)
        try:
            self.run_request(msg_id, method, params, done)
        except Exception as error:
            failed: Future[Any] = Future()
            failed.set_exception(error)
            done(failed)

    def _run_notification(self, method: str, params: Any) -> None:
        try:
            self.run_notification(method, params, self._notification_done)
        except Exception:
            self.complain(logging.ERROR, "the %s handler failed", method, exc_info=True)

    def _answer(self, future: Future[Any], *, msg_id: Any, method: str) -> None:
        """One answer per request, without pygls's traceback in `data` or its popup."""
        self.untrack(msg_id)
        error = None if future.cancelled() else future.exception()
        failed = future.cancelled() or error is not None
        if msg_id == self._initialize_id and self._phase == "initializing":
            self._phase = "new" if failed else "ready"
        elif method == types.SHUTDOWN and self._phase == "ready" and not failed:
            self._phase = "shutdown"
        if future.cancelled():
            self.outbox.reply_error(msg_id, REQUEST_CANCELLED, "request cancelled")
        elif error is None:
            self.outbox.respond(msg_id, future.result())
        elif isinstance(error, JsonRpcException):
            if error.code == INTERNAL_ERROR:
                self.complain(logging.ERROR, "request %r failed: %s", msg_id, error.message)
            else:
                self.complain(logging.WARNING, "request %r: %s", msg_id, error.message)
            self.outbox.reply_error(msg_id, error.code, error.message)
        else:
            self.complain(logging.ERROR, "request %r failed", msg_id, exc_info=error)
            self.outbox.reply_error(msg_id, INTERNAL_ERROR, f"internal error "
                                    f"({type(error).__name__}); the server's stderr has the "
                                    "details")

    def _notification_done(self, future: Future[Any]) -> None:
        """A notification handler's failure: stderr, not pygls's Error popup per message."""
        if not future.cancelled() and (error := future.exception()) is not None:
            self.complain(logging.ERROR, "a notification handler failed", exc_info=error)

    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    def lsp_workspace__execute_command(self, params: types.ExecuteCommandParams
                                       ) -> typing.Generator[Any, Any, Any]:
        """pygls 2.1.1 skips the arity check when `arguments` is absent (the handler then fails
        with a TypeError → -32603) and its converter errors do not say which argument failed."""
        handler = self.fm.commands.get(params.command)
        if handler is None:
            known = ", ".join(sorted(self.fm.commands))
            raise JsonRpcInvalidParams(f"unknown command {short(params.command)!r}; this server "
                                       f"has {known}")
        args = command_arguments(self.converter, params.command, handler,
                                 list(params.arguments or []))
        result = yield handler, args, None
        return result

    def _reject(self, msg_id: Any, code: int, message: str) -> None:
        self.complain(logging.WARNING, "rejected a message (%d): %s", code, message)
        self.outbox.reply_error(msg_id, code, message)

    # -- messages to the client, and its answers ------------------------------------------------

    def notify(self, method: str, params: Any | None = None) -> None:
        message_type = self.get_message_type(method) or JsonRPCNotification
        self.outbox.send(message_type(method=method, params=params, jsonrpc="2.0"))

    def send_request(self, method: str, params: Any | None = None,
                     callback: Callable[[Any], None] | None = None,
                     msg_id: Any = None) -> Future[Any]:
        """A request to the client. Its answer is matched to it here (`_response`): pygls 2.1.1
        keeps the client's requests and ours in one dict, so a "response" with the id of a
        request the client sent itself would resolve that request's future."""
        msg_id = str(uuid.uuid4()) if msg_id is None else msg_id
        future: Future[Any] = Future()
        if callback is not None:
            future.add_done_callback(lambda done: callback(done.result()))
        self._asked[msg_id] = self.get_result_type(method)
        self.track(msg_id, future)
        message_type = self.get_message_type(method) or JsonRPCRequestMessage
        self.outbox.send(message_type(id=msg_id, method=method, params=params, jsonrpc="2.0"))
        return future

    def _response(self, msg_id: Any, message: dict[str, Any]) -> None:
        if msg_id not in self._asked:
            self.complain(logging.WARNING, "ignored a response to %r, which we never asked",
                          msg_id)
            return
        result_type = self._asked.pop(msg_id)
        if "error" in message:
            raw = message["error"]
            if (isinstance(raw, dict) and is_json(raw.get("code"), int)
                    and isinstance(raw.get("message"), str)):
                error = types.ResponseError(code=raw["code"], message=raw["message"],
                                            data=raw.get("data"))
            else:
                error = types.ResponseError(code=INTERNAL_ERROR, message="malformed error answer")
            self._settle(msg_id, error=error)
            return
        result = message["result"]
        if result_type is not None:
            try:
                result = self.converter.structure(
                    {"id": msg_id, "jsonrpc": "2.0", "result": result}, result_type).result
            except Exception as error:
                self._settle(msg_id, error=types.ResponseError(
                    code=INVALID_PARAMS, message=f"malformed answer: {describe(error)}"))
                return
        self._settle(msg_id, result=result)

    def _settle(self, msg_id: Any, result: Any = None,
                error: types.ResponseError | None = None) -> None:
        future = self.untrack(msg_id)
        if future is None or future.done():  # cancelled meanwhile ($/cancelRequest, shutdown)
            log.debug("an answer to %r, which is no longer awaited", msg_id)
        elif error is not None:
            future.set_exception(JsonRpcException.from_error(error))
        else:
            future.set_result(result)


def dispatch(protocol: FimProtocol, event: Any) -> None:
    """One event of `framing.FrameDecoder` to the protocol: the same answers on every transport
    (`stdio`, `transport`)."""
    if isinstance(event, Message):
        protocol.handle_message(event.value)
    elif isinstance(event, Unparsable):
        protocol.reply_unparsable(event.reason)
    elif isinstance(event, TooLarge):
        protocol.reply_too_large(event.length)
    elif isinstance(event, Skipped):
        protocol.complain(logging.WARNING, "skipped %d bytes that were not a message (%s)",
                          event.size, event.reason)
