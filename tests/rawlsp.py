"""A raw LSP client for protocol tests: `python -m fimlsp serve` on pipes, bytes in, frames out.

pygls's client cannot send what these tests need to send (bad JSON, bad frames, ids of the wrong
type), so this one writes bytes and parses whatever comes back. A reader thread collects the
server's messages and stderr, so a test that writes a lot never deadlocks on a full pipe; every
wait is bounded by `WAIT_S` (never asserted) and reports the server's stderr when it runs out.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

WAIT_S = float(os.environ.get("FIMLSP_TEST_WAIT_S", "60"))  # bound on one wait; never asserted
MISSING: Any = object()
# A model that fails at once without touching the network: these tests are about the protocol.
NO_MODEL = "/nonexistent/fimlsp-protocol-test-model"
MINIMAL_INITIALIZE = {"processId": None, "rootUri": None, "capabilities": {}}


def key(msg_id: Any) -> tuple[str, Any]:
    """Ids compare by type too: 5 and "5" are different requests."""
    return (type(msg_id).__name__, msg_id)


def frame(body: bytes | str) -> bytes:
    payload = body.encode() if isinstance(body, str) else body
    return b"Content-Length: %d\r\n\r\n" % len(payload) + payload


def encode(message: Any) -> bytes:
    return frame(json.dumps(message, separators=(",", ":")))


def request(msg_id: Any, method: str, params: Any = MISSING) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not MISSING:
        message["params"] = params
    return message


def notification(method: str, params: Any = MISSING) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not MISSING:
        message["params"] = params
    return message


class RawServer:
    """`tcp`: the server listens on a loopback port (`--tcp --port 0`) and this client talks
    over one connection that shows the token in `initialize`, byte for byte as on stdio."""

    def __init__(self, model: str = NO_MODEL, *extra: str, tcp: bool = False,
                 token_file: str | None = None) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.token: str | None = None
        self.socket: socket.socket | None = None
        args = [sys.executable, "-m", "fimlsp", "serve", "--model", model, *extra]
        if tcp:
            assert token_file is not None
            args += ["--tcp", "--port", "0", "--token-file", token_file]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL if tcp else subprocess.PIPE,
            stdout=subprocess.DEVNULL if tcp else subprocess.PIPE, stderr=subprocess.PIPE,
            env=env)
        self.received: list[dict[str, Any]] = []
        self.answered: set[tuple[str, Any]] = set()  # keys of the ids answered so far
        self.stderr = bytearray()
        self.garbage = bytearray()  # anything on stdout that is not a well-formed frame
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._read_stderr, daemon=True)]
        self._threads[0].start()
        self._output: Any = self.process.stdout
        if tcp:
            port = int(self.wait_for(lambda: re.search(
                rb"listening on 127\.0\.0\.1:(\d+)", self.stderr), "the port").group(1))
            with open(token_file, encoding="utf-8") as handle:
                self.token = handle.read().strip()
            self.socket = socket.create_connection(("127.0.0.1", port))
            self._output = self.socket.makefile("rb")
        self._threads.append(threading.Thread(target=self._read_stdout, daemon=True))
        self._threads[-1].start()

    # -- writing --------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.socket is not None:
            self.socket.sendall(data)
            return
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, message: Any) -> None:
        self.write(encode(message))

    def close_stdin(self) -> None:
        if self.socket is not None:
            self.socket.shutdown(socket.SHUT_WR)
            return
        assert self.process.stdin is not None
        self.process.stdin.close()

    # -- reading --------------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        stream = self._output
        assert stream is not None
        buf = bytearray()
        while chunk := stream.read1(1 << 16):
            buf += chunk
            while (end := buf.find(b"\r\n\r\n")) >= 0:
                headers = dict(line.split(b": ", 1) for line in bytes(buf[:end]).split(b"\r\n"))
                length = int(headers[b"Content-Length"])
                if len(buf) < end + 4 + length:
                    break
                body = bytes(buf[end + 4:end + 4 + length])
                del buf[:end + 4 + length]
                message = json.loads(body)
                with self._changed:
                    self.received.append(message)
                    if "method" not in message:
                        self.answered.add(key(message.get("id")))
                    self._changed.notify_all()
        with self._changed:
            self.garbage += buf
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        while chunk := stream.read1(1 << 16):
            with self._changed:
                self.stderr += chunk
                self._changed.notify_all()

    def tail(self) -> str:
        return self.stderr.decode(errors="replace")[-4000:]

    def wait_for(self, ready: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
        with self._changed:
            value = self._changed.wait_for(
                lambda: ready() or self.process.poll() is not None, timeout)
            value = ready()
        if not value:
            state = ("running" if self.process.poll() is None
                     else f"exited with {self.process.returncode}")
            raise AssertionError(f"no {what} (server {state}); stderr:\n{self.tail()}")
        return value

    def responses(self) -> list[dict[str, Any]]:
        return [m for m in self.received if "method" not in m]

    def response(self, msg_id: Any, timeout: float = WAIT_S) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((m for m in self.responses() if m.get("id") == msg_id
                         and type(m.get("id")) is type(msg_id)), None)

        return self.wait_for(found, f"answer to request {msg_id!r}", timeout)

    def ask(self, msg_id: Any, method: str, params: Any = MISSING) -> dict[str, Any]:
        self.send(request(msg_id, method, params))
        return self.response(msg_id)

    def error_code(self, msg_id: Any, method: str, params: Any = MISSING) -> int | None:
        answer = self.ask(msg_id, method, params)
        return answer["error"]["code"] if "error" in answer else None

    def initialize(self) -> dict[str, Any]:
        params = MINIMAL_INITIALIZE if self.token is None else {
            **MINIMAL_INITIALIZE, "initializationOptions": {"token": self.token}}
        answer = self.ask("init", "initialize", params)
        assert "result" in answer, answer
        self.send(notification("initialized", {}))
        return answer

    def wait_exit(self, timeout: float = WAIT_S) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server did not exit; stderr:\n{self.tail()}") from None
        for thread in self._threads:
            thread.join(WAIT_S)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.socket is not None:
            with contextlib.suppress(OSError):
                self._output.close()
                self.socket.close()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        for thread in self._threads:
            thread.join(WAIT_S)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
