"""LSP lifecycle on the real server: before `initialize`, after `shutdown`, and `exit` codes.

LSP 3.17: a request before the initialize answer gets -32002 and notifications are dropped
(except `exit`); after `shutdown` requests get -32600; `exit` ends the process with 0 after
`shutdown` and 1 without it. Each test starts its own server: the process's life is the subject.
"""

from __future__ import annotations

import pytest
from rawlsp import MINIMAL_INITIALIZE, RawServer, notification, request

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


def test_initialize_is_answered_once() -> None:
    with RawServer() as server:
        server.initialize()
        assert server.error_code(2, "initialize", MINIMAL_INITIALIZE) == INVALID_REQUEST
        assert "result" in server.ask(3, "workspace/executeCommand", STATS)


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


@pytest.mark.parametrize("initialized", [True, False], ids=["initialized", "never initialized"])
def test_exit_without_shutdown_is_1(initialized: bool) -> None:
    with RawServer() as server:
        if initialized:
            server.initialize()
        server.send(notification("exit"))
        assert server.wait_exit() == 1, server.tail()


def test_exit_sent_as_a_request_is_not_an_exit() -> None:
    """`exit` is a notification: with an id it is a method this server does not serve."""
    with RawServer() as server:
        server.initialize()
        assert server.error_code(1, "exit") == METHOD_NOT_FOUND
        server.send(request(2, "shutdown"))
        server.send(notification("exit"))
        assert server.wait_exit() == 0, server.tail()
