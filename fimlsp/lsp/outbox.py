"""Everything the server writes to the client: framed here, on stdio and sockets alike.

Why our own writer instead of pygls's `_send_data` / `_send_response` (2.1.1): an answer that
cannot be serialized there is only reported out of band (pygls's default: an Error popup, a
message that can fail in turn) and the request is never answered; here it is answered -32603
and the details go to stderr.
An error answer never carries a Python traceback. An asyncio transport's write (TCP) returns an
awaitable: its task is kept until done, so it is not collected half-written.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import logging
from typing import Any, Protocol

import attrs
import cattrs

from fimlsp.lsp import framing
from fimlsp.lsp.checks import INTERNAL_ERROR
from fimlsp.lsp.ratelimit import RateLimitedLog

log = logging.getLogger("fimlsp.protocol")


class Writer(Protocol):
    """A byte sink: pygls's `StdoutWriter` on stdio, an `asyncio.StreamWriter` on a socket
    (whose `write` returns None; an awaitable is awaited in a task)."""

    def write(self, data: bytes) -> Any: ...


class Outbox:
    """Answers, notifications and requests to the client, as LSP frames on `writer`."""

    def __init__(self, converter: cattrs.Converter, complain: RateLimitedLog) -> None:
        self.converter = converter
        self.complain = complain
        self.writer: Writer | None = None
        self._writes: set[asyncio.Future[Any]] = set()

    def reply_error(self, msg_id: Any, code: int, message: str) -> None:
        self._write_body(json.dumps({"jsonrpc": "2.0", "id": msg_id,
                                     "error": {"code": code, "message": message}}))

    def respond(self, msg_id: Any, result: Any) -> None:
        try:
            body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": result},
                              default=self._to_json)
        except Exception:
            self.complain(logging.ERROR, "could not serialize the answer to %r", msg_id,
                          exc_info=True)
            self.reply_error(msg_id, INTERNAL_ERROR, "internal error: the answer could not be "
                             "serialized; the server's stderr has the details")
            return
        self._write_body(body)

    def send(self, message: Any) -> None:
        """A notification or request to the client (an lsprotocol message object)."""
        try:
            body = json.dumps(message, default=self._to_json)
        except Exception:
            self.complain(logging.ERROR, "could not serialize a message", exc_info=True)
            return
        self._write_body(body)

    def _to_json(self, data: Any) -> Any:
        """`json.dumps`'s fallback: lsprotocol objects as the converter writes them (camelCase
        names, no unset fields), enums as their value, any other object as its fields."""
        if attrs.has(type(data)):
            return self.converter.unstructure(data)
        if isinstance(data, enum.Enum):
            return data.value
        return data.__dict__

    def _write_body(self, body: str) -> None:
        if self.writer is None:
            log.error("no transport to send a message on")
            return
        result = self.writer.write(framing.encode(body))
        if inspect.isawaitable(result):  # an asyncio transport (TCP): keep the task alive
            task = asyncio.ensure_future(result)
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
