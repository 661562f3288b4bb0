"""LSP lifecycle on the real server: before `initialize`, after `shutdown`, and `exit` codes.

LSP 3.17: a request before the initialize answer gets -32002 and notifications are dropped
(except `exit`); after `shutdown` requests get -32600; `exit` ends the process with 0 after
`shutdown` and 1 without it. Each test starts its own server: the process's life is the subject.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from rawlsp import MINIMAL_INITIALIZE, NO_MODEL, RawServer, encode, notification, request

from fimlsp.config import Settings
from fimlsp.lsp.stdio import serve_stdio
from fimlsp.server import create_server

NOT_INITIALIZED, INVALID_REQUEST, METHOD_NOT_FOUND = -32002, -32600, -32601
STATS = {"command": "fimlsp.stats"}
URI = "file:///tmp/lifecycle.py"
OPEN = {"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": "x = 1\n"}}
PROMPT = {"command": "fimlsp.prompt", "arguments": [URI, {"line": 0, "character": 0}]}


def no_error_popups(server: RawServer) -> None:
    shown = [m for m in server.received if m.get("method") == "window/showMessage"]
    assert not [m for m in shown if m["params"]["type"] == 1], shown


def test_requests_before_initialize_get_server_not_initialized() -> None:
    with RawServer() as server:
        assert server.error_code(1, "workspace/executeCommand", STATS) == NOT_INITIALIZED
        assert server.error_code(2, "textDocument/completion", {
            "textDocument": {"uri": URI}, "position": {"line": 0, "character": 0}}
        ) == NOT_INITIALIZED
        assert server.error_code(3, "no/such/method") == NOT_INITIALIZED
        assert server.error_code(4, "shutdown") == NOT_INITIALIZED
        server.send(notification("textDocument/didOpen", OPEN))  # dropped: not initialized
        server.initialize()
        # The document opened before initialize was dropped, so the server never saw it.
        answer = server.ask(5, "workspace/executeCommand", PROMPT)
        assert answer.get("result") is None and "error" not in answer, answer
        assert server.ask(6, "workspace/executeCommand", STATS)["result"]["errors"] >= 1
        assert [m["id"] for m in server.responses()] == [1, 2, 3, 4, "init", 5, 6]
        no_error_popups(server)


def test_initialize_twice_and_exit_with_an_id_are_refused() -> None:
    """`initialize` is answered once; `exit` is a notification: with an id it is a method this
    server does not serve, and the server goes on."""
    with RawServer() as server:
        server.initialize()
        assert server.error_code(2, "initialize", MINIMAL_INITIALIZE) == INVALID_REQUEST
        assert server.error_code(3, "exit") == METHOD_NOT_FOUND
        assert "result" in server.ask(4, "workspace/executeCommand", STATS)


def test_requests_after_shutdown_get_invalid_request_and_exit_after_it_is_0() -> None:
    with RawServer() as server:
        server.initialize()
        assert server.ask(1, "shutdown") == {"jsonrpc": "2.0", "id": 1, "result": None}
        assert server.error_code(2, "workspace/executeCommand", STATS) == INVALID_REQUEST
        assert server.error_code(3, "shutdown") == INVALID_REQUEST
        assert server.error_code(4, "no/such/method") == INVALID_REQUEST
        server.send(notification("textDocument/didOpen", OPEN))  # dropped, never answered
        server.send(notification("exit"))
        assert server.wait_exit() == 0, server.tail()
        assert [m["id"] for m in server.responses()] == ["init", 1, 2, 3, 4]
        no_error_popups(server)


def test_exit_without_shutdown_is_1() -> None:
    with RawServer() as server:
        server.initialize()
        server.send(notification("exit"))
        assert server.wait_exit() == 1, server.tail()


# -- the read loop in process, and the CLI around it --------------------------------------------


class BrokenStdin(io.RawIOBase):
    def read1(self, size: int = -1) -> bytes:
        raise OSError(5, "Input/output error")


def serve_bytes(stdin: io.IOBase) -> tuple[int, bytes]:
    stdout = io.BytesIO()
    code = serve_stdio(create_server(Settings(model=NO_MODEL)).protocol, stdin, stdout)
    return code, stdout.getvalue()


@pytest.mark.parametrize(("messages", "code"), [
    ([request(1, "initialize", MINIMAL_INITIALIZE), notification("exit")], 1),
    ([request(1, "initialize", MINIMAL_INITIALIZE), request(2, "shutdown"),
      notification("exit")], 0),
    ([notification("exit")], 1),
], ids=["exit without shutdown", "exit after shutdown", "exit before initialize"])
def test_serve_stdio_returns_the_lsp_exit_code(messages: list[object], code: int) -> None:
    assert serve_bytes(io.BytesIO(b"".join(encode(m) for m in messages)))[0] == code


def test_a_failing_reader_ends_serve_stdio_with_1(caplog: pytest.LogCaptureFixture) -> None:
    assert serve_bytes(BrokenStdin())[0] == 1
    assert "reading stdin failed" in caplog.text


def test_serve_without_a_usable_stdin_exits_1_and_says_why() -> None:
    """`cmd_serve` ended every error with os._exit(0): a crash looked like a clean exit."""
    result = subprocess.run(
        [sys.executable, "-m", "fimlsp", "serve", "--model", NO_MODEL],
        preexec_fn=lambda: os.close(0), capture_output=True, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1, result.stderr.decode(errors="replace")
    assert b"fimlsp serve failed" in result.stderr
