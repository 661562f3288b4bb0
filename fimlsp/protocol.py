"""JSON-RPC and LSP rules between the frames and the handlers: every request gets one answer.

Why a `LanguageServerProtocol` subclass: in pygls 2.1.1 a message is turned into lsprotocol
objects inside `json.loads(..., object_hook=structure_message)`, so any message that does not
fit (params null, a negative line, no "jsonrpc", an unknown method without params) raises out of
`json.loads` and is only logged: the request is never answered and `report_server_error` shows
the user an Error popup per message. Its cattrs converter also coerces (`"line": "4"` → 4,
`4.5` → 4, `"uri": true` → "True"), internal errors carry the Python traceback in the response's
`data`, `exit` before `shutdown` ended the process with 0 (pygls catches its own SystemExit), and
requests after `shutdown` are dropped silently. docs/pygls-upstream.md has the reports.

Here the raw JSON value is checked in the order JSON-RPC and LSP give the errors:

1. not an object (batches included: LSP has none) → -32600, id null; a body that is not JSON
   never gets here (`framing` reports it and `serve_stdio` answers -32700, id null);
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

Notifications are never answered. Complaints about malformed messages go to stderr, rate-limited,
never to a `window/showMessage` popup.

pygls internals this relies on (checked against 2.1.1; the protocol tests exercise each):
`_execute_handler`, `_get_handler`, `_handle_response`, `_send_handler_result` (overridden),
`_request_futures`, `_result_types`, `_ctx_msg_id`, `_shutdown` (set by its `lsp_shutdown`) and
`fm.builtin_features` / `fm.features` / `fm.commands`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
import sys
import threading
import time
import typing
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, BinaryIO

import attrs
import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.io_ import StdoutWriter
from pygls.protocol import lsp_method

from fimlsp.documents import DocumentSync, clamp_negative
from fimlsp.framing import (
    MAX_MESSAGE_BYTES,
    FrameDecoder,
    Message,
    Skipped,
    TooLarge,
    Truncated,
    Unparsable,
)
from fimlsp.validation import describe, is_json, json_type

log = logging.getLogger("fimlsp.protocol")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
# Methods outside LSP that are notifications (lsprotocol only knows LSP's own); the handlers'
# modules add theirs (fimlsp/nextedit/lsp.py: Copilot's next-edit notifications).
CUSTOM_NOTIFICATIONS: set[str] = set()
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_NOT_INITIALIZED = -32002
REQUEST_CANCELLED = -32800



# -- messages about the client's mistakes: stderr, rate-limited -----------------------------------


class RateLimitedLog:
    """At most `limit` lines per `window_s`, then one line saying how many were left out: a
    client that sends garbage in a loop must not fill the disk or drown the useful lines."""

    def __init__(self, logger: logging.Logger, limit: int = 20, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger, self._limit, self._window_s, self._clock = logger, limit, window_s, clock
        self._start = clock()
        self._count = 0
        self._dropped = 0
        self._lock = threading.Lock()

    def __call__(self, level: int, message: str, *args: Any, exc_info: Any = None) -> None:
        with self._lock:
            now = self._clock()
            if now - self._start >= self._window_s:
                if self._dropped:
                    self._logger.warning("%d more such messages in the last %.0f s were not logged",
                                         self._dropped, now - self._start)
                self._start, self._count, self._dropped = now, 0, 0
            if self._count >= self._limit:
                self._dropped += 1
                return
            self._count += 1
        self._logger.log(level, message, *args, exc_info=exc_info)


def _short(method: str) -> str:
    return method if len(method) <= 80 else method[:77] + "..."


class InvalidParams(Exception):
    """Params that do not fit the method: answered -32602 with this message."""


class _Reject(Exception):
    """A request answered with an error before any handler runs."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _argument_hints(function: Callable[..., Any], parameters: list[inspect.Parameter]
                    ) -> dict[str, Any]:
    """The types of a command's arguments. `typing.get_type_hints` resolves every annotation,
    the server's too, which a module may import only for type checking; the arguments'
    own must resolve (an unresolvable one is a bug, not "anything goes")."""
    try:
        return typing.get_type_hints(function)
    except NameError:
        pass
    namespace = getattr(function, "__globals__", {})
    hints = {}
    for parameter in parameters:
        annotation = parameter.annotation
        if isinstance(annotation, str):
            annotation = eval(annotation, namespace)  # our own annotations, not input
        hints[parameter.name] = annotation
    return hints


# -- the protocol -----------------------------------------------------------------------------


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


class FimProtocol(DocumentSync):
    """pygls's LanguageServerProtocol (2.1.1) with the message checks described above, and
    document sync kept only in our store (`documents.DocumentSync`)."""

    def __init__(self, server: Any, converter: cattrs.Converter) -> None:
        super().__init__(server, converter)
        self._phase = "new"  # new → initializing → ready; shutdown is pygls's `_shutdown`
        self._initialize_id: Any = None
        self._initialized_seen = False
        self._outgoing: set[Any] = set()  # ids of our requests to the client, awaiting answers
        self._writes: set[asyncio.Future[Any]] = set()
        self.complain = RateLimitedLog(log)

    # pygls calls this as json.loads's object_hook, for every nested object: keep JSON as JSON.
    def structure_message(self, data: dict[str, Any]) -> Any:
        return data

    def handle_message(self, message: Any) -> None:
        """One decoded JSON value; raises SystemExit for `exit`, nothing else."""
        try:
            self._handle(message)
        except SystemExit:
            raise
        except Exception:  # a bug here must not end the read loop
            log.exception("failed to handle a message")
            if isinstance(message, dict) and _valid_id(message.get("id")) and "method" in message:
                self._reply_error(message["id"], INTERNAL_ERROR, "internal error; the server's "
                                  "stderr has the details")

    def reply_unparsable(self, reason: str) -> None:
        self.complain(logging.WARNING, "unparsable message: %s", reason)
        self._reply_error(None, PARSE_ERROR, f"Parse error: {reason}")

    def reply_too_large(self, length: int) -> None:
        self.complain(logging.WARNING, "a message of %d bytes is over the %d-byte limit; skipped",
                      length, MAX_MESSAGE_BYTES)
        self._reply_error(None, INVALID_REQUEST, f"message of {length} bytes is over the "
                          f"{MAX_MESSAGE_BYTES // (1024 * 1024)} MiB limit; skipped")

    # -- classification -------------------------------------------------------------------------

    def _handle(self, message: Any) -> None:
        if isinstance(message, list):
            self._reject(None, INVALID_REQUEST, "batch messages are not supported (LSP sends "
                         "one message per frame)")
            return
        if not isinstance(message, dict):
            self._reject(None, INVALID_REQUEST, f"a message must be a JSON object, not "
                         f"{json_type(message)}")
            return
        has_id = "id" in message
        msg_id = message.get("id")
        answer_to = msg_id if has_id and _valid_id(msg_id) else None
        if message.get("jsonrpc") != "2.0":
            self._reject(answer_to, INVALID_REQUEST, 'the message needs "jsonrpc": "2.0"')
            return
        if "method" not in message:
            if answer_to is not None and ("result" in message) != ("error" in message):
                self._response(msg_id, message)
            else:
                self._reject(answer_to, INVALID_REQUEST, 'a message needs a "method" (request, '
                             'notification) or an "id" and one of "result", "error" (response)')
            return
        method = message["method"]
        if not isinstance(method, str):
            self._reject(answer_to, INVALID_REQUEST, '"method" must be a string')
        elif "result" in message or "error" in message:
            # Neither a request nor a response: running it would let a `shutdown` that says it
            # failed shut the server down.
            self._reject(answer_to, INVALID_REQUEST, 'a message has a "method" (request, '
                         'notification) or a "result" / "error" (response), never both')
        elif has_id and answer_to is None:
            self._reject(None, INVALID_REQUEST, '"id" must be an integer or a string')
        elif has_id:
            try:
                params = self._check_request(method, message.get("params"))
            except _Reject as reject:
                self._reject(msg_id, reject.code, reject.message)
                return
            if method == types.INITIALIZE:
                self._phase, self._initialize_id = "initializing", msg_id
            contextvars.copy_context().run(self._run_request, msg_id, method, params)
        else:
            self._notification(method, message.get("params"))

    def _kind(self, method: str) -> str | None:
        """'request' | 'notification' | None (nothing handles it)."""
        if method == types.CANCEL_REQUEST or method in CUSTOM_NOTIFICATIONS:
            return "notification"
        if method not in self.fm.builtin_features and method not in self.fm.features:
            return None
        entry = types.METHOD_TO_TYPES.get(method)
        if entry is None:
            return "request"
        return "request" if "id" in attrs.fields_dict(entry[0]) else "notification"

    def _check_request(self, method: str, raw: Any) -> Any:
        if self._phase != "ready":
            if method == types.INITIALIZE and self._phase == "new":
                pass
            elif method == types.INITIALIZE:
                raise _Reject(INVALID_REQUEST, "initialize was already sent")
            else:
                raise _Reject(SERVER_NOT_INITIALIZED, "the server is not initialized yet: send "
                              "initialize first and wait for its answer")
        elif self._shutdown:
            raise _Reject(INVALID_REQUEST, "the server is shutting down: only the exit "
                          "notification is accepted after shutdown")
        elif method == types.INITIALIZE:
            raise _Reject(INVALID_REQUEST, "initialize may only be sent once")
        kind = self._kind(method)
        if kind is None:
            raise _Reject(METHOD_NOT_FOUND, f"unknown method {_short(method)!r}")
        if kind == "notification":
            raise _Reject(METHOD_NOT_FOUND, f"{_short(method)} is a notification: send it without "
                          "an id")
        try:
            return self._params(method, raw)
        except InvalidParams as error:
            raise _Reject(INVALID_PARAMS, str(error)) from None

    def _params(self, method: str, raw: Any) -> Any:
        entry = types.METHOD_TO_TYPES.get(method)
        if entry is None:
            return raw
        kind = entry[2]
        if kind is None:  # shutdown, exit: no params; clients send none, null, {} or []
            if raw in (None, {}, []):
                return None
            raise InvalidParams(f"{method} takes no params")
        if raw is None:
            if not all(a.default is not attrs.NOTHING for a in attrs.fields(kind)):
                raise InvalidParams(f"{method} needs params (an object); got none")
            raw = {}
        if not isinstance(raw, dict):
            raise InvalidParams(f"params of {method} must be an object, not {json_type(raw)}")
        try:
            return self._converter.structure(raw, kind)
        except RecursionError:
            raise InvalidParams("params nested too deeply") from None
        except Exception as error:
            raise InvalidParams(f"invalid params for {method}: {describe(error)}") from None

    def _notification(self, method: str, raw: Any) -> None:
        if method == types.EXIT:
            self.exit(0 if self._shutdown else 1)
        if self._phase != "ready" or self._shutdown:
            why = "after shutdown" if self._shutdown else "before initialize"
            log.debug("dropped the %s notification %s", _short(method), why)
            return
        if method == types.CANCEL_REQUEST:
            try:
                params = self._converter.structure(raw, types.CancelParams)
            except Exception as error:
                self.complain(logging.WARNING, "ignored $/cancelRequest: %s", describe(error))
                return
            self._handle_cancel_notification(params.id)
            return
        if method == types.INITIALIZED:
            if self._initialized_seen:
                self.complain(logging.WARNING, "ignored a repeated initialized notification")
                return
            self._initialized_seen = True
        kind = self._kind(method)
        if kind != "notification":
            if not method.startswith("$/"):  # LSP: unknown $/ notifications may be ignored
                self.complain(logging.WARNING, "ignored the notification %s: %s", _short(method),
                              "a request method needs an id" if kind else "unknown method")
            return
        if method == types.TEXT_DOCUMENT_DID_CHANGE:
            clamp_negative(raw)  # clamped like VS Code, never dropped (documents.py)
        try:
            params = self._params(method, raw)
        except InvalidParams as error:
            self.complain(logging.WARNING, "ignored the notification %s: %s", method, error)
            return
        contextvars.copy_context().run(self._run_notification, method, params)

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        """pygls 2.1.1 logs a warning for every cancel that comes after the answer (the common
        case: the client cancels what it no longer needs); that is not worth a line."""
        future = self._request_futures.pop(msg_id, None)
        if future is None:
            log.debug("cancel for %r, which is not running", msg_id)
        elif future.cancel():
            log.debug("cancelled request %r", msg_id)

    def exit(self, code: int) -> None:
        """LSP `exit`: 0 after shutdown, 1 without. pygls's own `exit` raises SystemExit inside
        its IO loop, which catches it, so the process always ended 0; ours reaches `serve`."""
        log.info("exit%s", "" if code == 0 else " without shutdown")
        raise SystemExit(code)

    # -- running handlers ---------------------------------------------------------------------

    def _run_request(self, msg_id: Any, method: str, params: Any) -> None:
        try:
            handler = self._get_handler(method)
            self._ctx_msg_id.set(msg_id)
            self._execute_handler(msg_id, handler, functools.partial(
                self._send_handler_result, msg_id=msg_id), args=(params,))
        except Exception as error:
            failed: Future[Any] = Future()
            failed.set_exception(error)
            self._send_handler_result(failed, msg_id=msg_id)

    def _run_notification(self, method: str, params: Any) -> None:
        key = str(uuid.uuid4())
        try:
            handler = self._get_handler(method)
            self._execute_handler(key, handler, self._check_handler_result, args=(params,))
        except Exception:
            self.complain(logging.ERROR, "the %s handler failed", method, exc_info=True)
        finally:
            # pygls 2.1.1 keeps each async/generator handler's future in `_request_futures` under
            # its message id; requests remove theirs when answered, but a notification's made-up
            # id is never removed: one Future per keystroke, the storm's RSS growth
            # (docs/pygls-upstream.md). Dropped here, at once: popping it in a done callback
            # instead would break `lsp_shutdown`, which cancels that dict's futures while
            # iterating it.
            self._request_futures.pop(key, None)

    def _send_handler_result(self, future: Future[Any], *, msg_id: Any) -> None:
        """pygls 2.1.1 puts the traceback into `data` and shows a popup; one answer, no data."""
        self._request_futures.pop(msg_id, None)
        error = None if future.cancelled() else future.exception()
        if msg_id == self._initialize_id and self._phase == "initializing":
            self._phase = "new" if future.cancelled() or error is not None else "ready"
        if future.cancelled():
            self._reply_error(msg_id, REQUEST_CANCELLED, "request cancelled")
        elif error is None:
            self._send_response(msg_id, result=future.result())
        elif isinstance(error, JsonRpcException):
            if error.code == INTERNAL_ERROR:
                self.complain(logging.ERROR, "request %r failed: %s", msg_id, error.message)
            else:
                self.complain(logging.WARNING, "request %r: %s", msg_id, error.message)
            self._reply_error(msg_id, error.code, error.message)
        else:
            self.complain(logging.ERROR, "request %r failed", msg_id, exc_info=error)
            self._reply_error(msg_id, INTERNAL_ERROR, f"internal error ({type(error).__name__}); "
                              "the server's stderr has the details")

    def _check_handler_result(self, future: Future[Any]) -> None:
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
            raise JsonRpcInvalidParams(f"unknown command {_short(params.command)!r}; this server "
                                       f"has {known}")
        args = self._command_arguments(params.command, handler, list(params.arguments or []))
        result = yield handler, args, None
        return result

    def _command_arguments(self, command: str, handler: Any, values: list[Any]) -> tuple[Any, ...]:
        """The command's arguments, each checked against the handler's annotation. pygls binds
        the server instance (a `functools.partial`, or a wrapper with `.func` for coroutines);
        that first parameter is not an argument."""
        function = getattr(handler, "func", handler)
        parameters = list(inspect.signature(function).parameters.values())
        if function is not handler:
            parameters = parameters[1:]
        hints = _argument_hints(function, parameters)
        # Every argument is declared and typed: a `*args` handler would take anything (an
        # accept of "not-an-id" counted as an accept), so `*args` takes none here.
        parameters = [p for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                          inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        least = sum(p.default is inspect.Parameter.empty for p in parameters)
        if not least <= len(values) <= len(parameters):
            count = str(least) if least == len(parameters) else f"{least} to {len(parameters)}"
            raise JsonRpcInvalidParams(f"{command} takes {count} argument"
                                       f"{'s' if count != '1' else ''}, got {len(values)}")
        args = []
        for index, (parameter, value) in enumerate(zip(parameters, values, strict=False)):
            kind = hints.get(parameter.name, Any)
            try:
                args.append(value if kind is Any else self._converter.structure(value, kind))
            except Exception as error:
                raise JsonRpcInvalidParams(f"invalid arguments for {command}: "
                                           f"{describe(error, f'arguments[{index}]')}") from None
        return tuple(args)

    # -- answers from the client ------------------------------------------------------------

    def send_request(self, method: str, params: Any | None = None,
                     callback: Callable[[Any], None] | None = None,
                     msg_id: Any = None) -> Future[Any]:
        msg_id = str(uuid.uuid4()) if msg_id is None else msg_id
        self._outgoing.add(msg_id)
        return super().send_request(method, params, callback, msg_id)

    def _response(self, msg_id: Any, message: dict[str, Any]) -> None:
        """pygls 2.1.1 keeps the client's requests and ours in one dict, so a "response" with the
        id of a request the client sent itself would resolve that request's future."""
        if msg_id not in self._outgoing:
            self.complain(logging.WARNING, "ignored a response to %r, which we never asked",
                          msg_id)
            return
        self._outgoing.discard(msg_id)
        result_type = self._result_types.pop(msg_id, None)
        if "error" in message:
            raw = message["error"]
            if (isinstance(raw, dict) and is_json(raw.get("code"), int)
                    and isinstance(raw.get("message"), str)):
                error = types.ResponseError(code=raw["code"], message=raw["message"],
                                            data=raw.get("data"))
            else:
                error = types.ResponseError(code=INTERNAL_ERROR, message="malformed error answer")
            self._handle_response(msg_id, None, error)
            return
        result = message["result"]
        if result_type is not None:
            try:
                result = self._converter.structure(
                    {"id": msg_id, "jsonrpc": "2.0", "result": result}, result_type).result
            except Exception as error:
                self._handle_response(msg_id, None, types.ResponseError(
                    code=INVALID_PARAMS, message=f"malformed answer: {describe(error)}"))
                return
        self._handle_response(msg_id, result)

    # -- writing --------------------------------------------------------------------------------

    def _reject(self, msg_id: Any, code: int, message: str) -> None:
        self.complain(logging.WARNING, "rejected a message (%d): %s", code, message)
        self._reply_error(msg_id, code, message)

    def _reply_error(self, msg_id: Any, code: int, message: str) -> None:
        self._write({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})

    def _send_response(self, msg_id: Any, result: Any | None = None,
                       error: types.ResponseError | None = None) -> None:
        if error is not None:
            self._reply_error(msg_id, error.code, error.message)
            return
        try:
            body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": result},
                              default=self._serialize_message)
        except Exception:
            self.complain(logging.ERROR, "could not serialize the answer to %r", msg_id,
                          exc_info=True)
            self._reply_error(msg_id, INTERNAL_ERROR, "internal error: the answer could not be "
                              "serialized; the server's stderr has the details")
            return
        self._write_body(body)

    def _send_data(self, data: Any) -> None:
        """Notifications and requests to the client (pygls 2.1.1 reports a failure here with an
        Error popup, which is itself a message that can fail)."""
        if not data:
            return
        try:
            body = json.dumps(data, default=self._serialize_message)
        except Exception:
            self.complain(logging.ERROR, "could not serialize a message", exc_info=True)
            return
        self._write_body(body)

    def _write(self, data: dict[str, Any]) -> None:
        self._write_body(json.dumps(data))

    def _write_body(self, body: str) -> None:
        if self.writer is None:
            log.error("no transport to send a message on")
            return
        payload = body.encode("utf-8")
        header = (f"Content-Length: {len(payload)}\r\n"
                  f"Content-Type: {self.CONTENT_TYPE}; charset={self.CHARSET}\r\n\r\n")
        result = self.writer.write(header.encode("ascii") + payload)
        if inspect.isawaitable(result):  # an asyncio transport (TCP): keep the task alive
            task = asyncio.ensure_future(result)
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)


# -- stdio ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _End:
    truncated: Truncated | None


@dataclass(frozen=True)
class _Crash:
    error: BaseException


def serve_stdio(protocol: FimProtocol, stdin: BinaryIO | None = None,
                stdout: BinaryIO | None = None) -> int:
    """Runs the server on stdin/stdout until `exit` or the end of input; returns the exit code.

    0: `exit` after `shutdown`, or stdin closed between messages; 1: `exit` without `shutdown`,
    stdin closed inside a message, the reader failing or stdout gone (each with a line on
    stderr)."""
    protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
    return asyncio.run(_serve(protocol, stdin or sys.stdin.buffer))


async def _serve(protocol: FimProtocol, stdin: BinaryIO) -> int:
    loop = asyncio.get_running_loop()
    # Bounded: a client that writes faster than we handle waits in its write, not in our memory.
    queue: asyncio.Queue[list[Any]] = asyncio.Queue(maxsize=16)
    threading.Thread(target=_pump, args=(stdin, loop, queue), name="fimlsp-stdin",
                     daemon=True).start()
    while True:
        for item in await queue.get():
            try:
                code = dispatch(protocol, item)
            except SystemExit as exit_:
                return exit_.code if isinstance(exit_.code, int) else 1
            except BrokenPipeError:
                log.error("the client closed our stdout; exiting")
                return 1
            if code is not None:
                return code
            # Let the handler just started take its first step (a completion reads the document
            # there) before the next message changes the document: messages act in order.
            await asyncio.sleep(0)


def dispatch(protocol: FimProtocol, item: Any) -> int | None:
    """One decoded event to the protocol: the same answers on every transport (stdio here,
    sockets in transport.py)."""
    if isinstance(item, Message):
        protocol.handle_message(item.value)
    elif isinstance(item, Unparsable):
        protocol.reply_unparsable(item.reason)
    elif isinstance(item, TooLarge):
        protocol.reply_too_large(item.length)
    elif isinstance(item, Skipped):
        protocol.complain(logging.WARNING, "skipped %d bytes that were not a message (%s)",
                          item.size, item.reason)
    elif isinstance(item, _End):
        if item.truncated is not None:
            log.error("stdin: %s; exiting", item.truncated.reason)
            return 1
        log.info("stdin closed; exiting")
        return 0
    elif isinstance(item, _Crash):
        log.error("reading stdin failed; exiting", exc_info=item.error)
        return 1
    return None


def _pump(stdin: BinaryIO, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[list[Any]]
          ) -> None:
    """The reader thread: stdin → decoder → the event loop, one batch of events per read."""

    def put(items: list[Any]) -> bool:
        put = queue.put(items)
        try:
            asyncio.run_coroutine_threadsafe(put, loop).result()
            return True
        except Exception:  # the loop is closed or cancelled the put: the server is ending
            put.close()
            return False

    decoder = FrameDecoder()
    read = getattr(stdin, "read1", stdin.read)
    try:
        while True:
            chunk = read(1 << 16)
            if not chunk:
                put([_End(decoder.finish())])
                return
            events = decoder.feed(chunk)
            if events and not put(list(events)):
                return
    except BaseException as error:  # reported on the loop, which exits 1
        put([_Crash(error)])

