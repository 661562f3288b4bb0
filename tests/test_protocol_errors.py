"""Every request gets one answer with the code it deserves; notifications get none.

The cases are the ones a fuzzing session found unanswered, coerced or answered with a traceback
(issue 9, item 3). One real server on stdio takes them all in turn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from rawlsp import MISSING, RawServer, frame, notification, request

from fimlsp.lsp.ratelimit import RateLimitedLog

PARSE, INVALID_REQUEST, NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
URI = "file:///tmp/errors.py"
TEXT = "def f(x):\n    return x\n"


def position(line: Any = 0, character: Any = 0) -> dict[str, Any]:
    return {"textDocument": {"uri": URI}, "position": {"line": line, "character": character}}


def prompt(*arguments: Any) -> dict[str, Any]:
    return {"command": "fimlsp.prompt", "arguments": list(arguments)}


# (name, method, params, expected code, words the message must contain)
REQUESTS: list[tuple[str, str, Any, int, str]] = [
    ("negative line", "textDocument/completion", position(-1), INVALID_PARAMS, "line"),
    ("line as a string", "textDocument/completion", position("4"), INVALID_PARAMS,
     "position.line"),
    ("line as a fraction", "textDocument/completion", position(4.5), INVALID_PARAMS,
     "position.line"),
    ("character as a boolean", "textDocument/inlineCompletion",
     {**position(0, True), "context": {"triggerKind": 1}}, INVALID_PARAMS, "position.character"),
    ("line past int32", "textDocument/completion", position(2**31), INVALID_PARAMS, "line"),
    ("uri as a boolean", "textDocument/completion",
     {"textDocument": {"uri": True}, "position": {"line": 0, "character": 0}}, INVALID_PARAMS,
     "textDocument.uri"),
    ("params null", "textDocument/completion", None, INVALID_PARAMS, "params"),
    ("params missing", "textDocument/completion", MISSING, INVALID_PARAMS, "params"),
    ("params an array", "textDocument/inlineCompletion", [], INVALID_PARAMS, "object"),
    ("position missing", "textDocument/completion", {"textDocument": {"uri": URI}},
     INVALID_PARAMS, "position"),
    ("trigger kind out of range", "textDocument/inlineCompletion",
     {**position(), "context": {"triggerKind": 7}}, INVALID_PARAMS, "triggerKind"),
    ("unknown method without params", "fimlsp/unknown", MISSING, NOT_FOUND, "fimlsp/unknown"),
    ("a notification sent with an id", "textDocument/didClose", {"textDocument": {"uri": URI}},
     NOT_FOUND, "notification"),
    ("executeCommand without params", "workspace/executeCommand", MISSING, INVALID_PARAMS,
     "params"),
    ("executeCommand with params null", "workspace/executeCommand", None, INVALID_PARAMS,
     "params"),
    ("executeCommand without a command", "workspace/executeCommand", {}, INVALID_PARAMS,
     "command"),
    ("arguments as a string", "workspace/executeCommand",
     {"command": "fimlsp.stats", "arguments": "ab"}, INVALID_PARAMS, "arguments"),
    ("prompt without arguments", "workspace/executeCommand", {"command": "fimlsp.prompt"},
     INVALID_PARAMS, "fimlsp.prompt"),
    ("prompt with a number for the uri", "workspace/executeCommand",
     prompt(5, {"line": 0, "character": 0}), INVALID_PARAMS, "arguments[0]"),
    ("prompt with a string position", "workspace/executeCommand", prompt(URI, "0:0"),
     INVALID_PARAMS, "arguments[1]"),
    ("prompt with a string line", "workspace/executeCommand",
     prompt(URI, {"line": "0", "character": 0}), INVALID_PARAMS, "arguments[1].line"),
    ("prompt with a negative line", "workspace/executeCommand",
     prompt(URI, {"line": -3, "character": 0}), INVALID_PARAMS, "line"),
    ("prompt past the end of the document", "workspace/executeCommand",
     prompt(URI, {"line": 40, "character": 0}), INVALID_PARAMS, ""),
] + [(f"{command} {arguments}", "workspace/executeCommand",
      {"command": command, "arguments": arguments}, INVALID_PARAMS, says)
     for command, arguments, says in (
         ("fimlsp.accept", ["not-an-id"], "arguments[0]"),
         ("fimlsp.accept", [True], "arguments[0]"),
         ("fimlsp.accept", [1.5], "arguments[0]"),
         ("fimlsp.accept", [], "fimlsp.accept takes 1 argument"),
         ("fimlsp.accept", [1, 2], "fimlsp.accept takes 1 argument"),
         ("fimlsp.partialAccept", [True, "x"], "arguments[0]"),
         ("fimlsp.partialAccept", [1, "x"], "arguments[1]"),
         ("fimlsp.partialAccept", [1, 2, 3], "takes 1 to 2 arguments"),
         ("fimlsp.stats", [1], "fimlsp.stats takes 0 arguments"),
         ("fimlsp.documentText", [5], "arguments[0]"),
         ("fimlsp.documentText", [], "takes 1 argument"),
         ("fimlsp.acceptNextEdit", ["not-a-uri-but-a-string", "2"], "arguments[1]"),
         ("fimlsp.acceptNextEdit", [], "takes 2 arguments"),
         ("fimlsp.warm", [URI], "takes 2 arguments"),
         ("fimlsp.context", [URI], "takes 2 arguments"),
     )]

# (name, raw message, expected code, whether the answer carries the message's id)
MALFORMED: list[tuple[str, Any, int, bool]] = [
    ("no jsonrpc", {"id": "no jsonrpc", "method": "fimlsp/x"}, INVALID_REQUEST, True),
    ("jsonrpc 1.0", {"jsonrpc": "1.0", "id": "jsonrpc 1.0", "method": "x"}, INVALID_REQUEST,
     True),
    ("method a number", {"jsonrpc": "2.0", "id": "method a number", "method": 5},
     INVALID_REQUEST, True),
    ("neither method nor result", {"jsonrpc": "2.0", "id": "neither method nor result"},
     INVALID_REQUEST, True),
    ("id null", {"jsonrpc": "2.0", "id": None, "method": "shutdown"}, INVALID_REQUEST, False),
    ("id a fraction", {"jsonrpc": "2.0", "id": 1.5, "method": "shutdown"}, INVALID_REQUEST,
     False),
    ("id a boolean", {"jsonrpc": "2.0", "id": True, "method": "shutdown"}, INVALID_REQUEST,
     False),
    ("id an array", {"jsonrpc": "2.0", "id": [1], "method": "shutdown"}, INVALID_REQUEST, False),
    ("a number", 5, INVALID_REQUEST, False),
    ("a string", "shutdown", INVALID_REQUEST, False),
    ("null", None, INVALID_REQUEST, False),
    ("an empty batch", [], INVALID_REQUEST, False),
    ("a batch", [request(900, "shutdown")], INVALID_REQUEST, False),
    ("shutdown with an error", {**request("shutdown with an error", "shutdown"),
                                "error": {"code": -32603, "message": "failed"}},
     INVALID_REQUEST, True),
    ("a request with a result", {**request("a request with a result", "fimlsp/x"),
                                 "result": None}, INVALID_REQUEST, True),
    ("exit with a result", {**notification("exit"), "result": 0}, INVALID_REQUEST, False),
]

# Notifications never get an answer, valid or not.
NOTIFICATIONS: list[Any] = [
    notification("textDocument/didOpen", None),
    notification("textDocument/didOpen", {"textDocument": {"uri": 5}}),
    notification("textDocument/didChange", {"textDocument": {"uri": URI, "version": "2"},
                                            "contentChanges": [{"text": 1}]}),
    notification("textDocument/didClose", []),
    notification("fimlsp/unknown", {"a": 1}),
    notification("$/unknown"),
    notification("$/cancelRequest", {"id": [1]}),
    notification("textDocument/completion", position()),
    {"jsonrpc": "2.0", "id": 4242, "result": {"an answer": "to nothing we asked"}},
]


@pytest.fixture(scope="module")
def server() -> Iterator[RawServer]:
    with RawServer() as raw:
        raw.initialize()
        raw.send(notification("textDocument/didOpen", {"textDocument": {
            "uri": URI, "languageId": "python", "version": 1, "text": TEXT}}))
        yield raw


def check_error(answer: dict[str, Any], code: int) -> dict[str, Any]:
    assert "result" not in answer and "error" in answer, answer
    error = answer["error"]
    assert error["code"] == code, answer
    assert "data" not in error, answer
    assert "Traceback" not in json.dumps(answer) and "File \"" not in error["message"], answer
    return error


@pytest.mark.parametrize(("name", "method", "params", "code", "says"), REQUESTS,
                         ids=[c[0] for c in REQUESTS])
def test_bad_request_gets_its_error(server: RawServer, name: str, method: str, params: Any,
                                    code: int, says: str) -> None:
    error = check_error(server.ask(name, method, params), code)
    assert says in error["message"], error


@pytest.mark.parametrize(("name", "message", "code", "with_id"), MALFORMED,
                         ids=[c[0] for c in MALFORMED])
def test_malformed_message_gets_invalid_request(server: RawServer, name: str, message: Any,
                                                code: int, with_id: bool) -> None:
    before = len(server.responses())
    server.send(message)
    if with_id:
        check_error(server.response(name), code)
    else:
        server.wait_for(lambda: len(server.responses()) > before, f"an answer to {name}")
        answer = server.responses()[before]
        assert answer["id"] is None, answer
        check_error(answer, code)


def test_invalid_json_gets_parse_error_with_id_null(server: RawServer) -> None:
    before = len(server.responses())
    server.write(frame(b'{"jsonrpc": "2.0", "id": 77, "method": "shutdown",'))
    server.wait_for(lambda: len(server.responses()) > before, "an answer to invalid JSON")
    answer = server.responses()[before]
    assert answer["id"] is None
    check_error(answer, PARSE)


def test_notifications_are_never_answered_and_raise_no_popups(server: RawServer) -> None:
    before = len(server.responses())
    for message in NOTIFICATIONS:
        server.send(message)
    # Valid requests after all that are served as usual (no model: empty answers).
    stats = server.ask("stats after", "workspace/executeCommand", {"command": "fimlsp.stats"})
    assert isinstance(stats.get("result"), dict), stats
    completion = server.ask("completion after", "textDocument/completion", position(1, 4))
    assert completion.get("result") == {"isIncomplete": True, "items": []}, completion
    assert server.responses()[before:] == [stats, completion]
    shown = [m for m in server.received if m.get("method") == "window/showMessage"]
    assert not [m for m in shown if m["params"]["type"] == 1], shown


def test_malformed_messages_are_logged_rate_limited_not_shown() -> None:
    with RawServer() as server:
        server.initialize()
        for n in range(300):
            server.send({"id": f"flood{n}", "method": "fimlsp/x"})  # no "jsonrpc": -32600
        check_error(server.response("flood299"), INVALID_REQUEST)
        lines = server.wait_for(lambda: server.stderr.count(b"rejected a message"),
                                "a log line about the rejected messages")
        # 20 lines per 10 s window: 300 messages would need minutes to all be logged.
        assert lines < 150, server.tail()
        assert not [m for m in server.received if m.get("method") == "window/showMessage"
                    and m["params"]["type"] == 1]


def test_rate_limited_log_says_how_many_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    complain = RateLimitedLog(logging.getLogger("fimlsp.test"), limit=3, window_s=10.0,
                              clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="fimlsp.test"):
        for n in range(10):
            complain(logging.WARNING, "bad message %d", n)
        now[0] = 11.0
        complain(logging.WARNING, "bad message %d", 10)
    assert [r.getMessage() for r in caplog.records] == [
        "bad message 0", "bad message 1", "bad message 2",
        "7 more such messages in the last 11 s were not logged", "bad message 10"]


def test_a_method_with_a_result_or_error_runs_nothing(server: RawServer) -> None:
    """Neither shutdown nor exit ran above: the server still serves."""
    for name in ("shutdown with an error", "exit with a result"):
        server.send({**request(name, "shutdown"), "error": {"code": 1, "message": "no"}})
        check_error(server.response(name), INVALID_REQUEST)
    stats = server.ask("still serving", "workspace/executeCommand", {"command": "fimlsp.stats"})
    assert isinstance(stats.get("result"), dict), stats
    assert server.process.poll() is None


def test_invalid_command_arguments_count_nothing(server: RawServer) -> None:
    def counts(name: str) -> tuple[int, int, int, int]:
        stats = server.ask(name, "workspace/executeCommand", {"command": "fimlsp.stats"})
        result = stats["result"]
        return (result["accepted"], result["partially_accepted"], result["accepted_chars"],
                result["next_edits"]["accepted"])

    before = counts("counts before")
    for number, (command, arguments) in enumerate((
            ("fimlsp.accept", ["not-an-id"]), ("fimlsp.partialAccept", [True, "x"]),
            ("fimlsp.partialAccept", [7, "x"]), ("fimlsp.acceptNextEdit", [5])), 1):
        answer = server.ask(f"bad {number}", "workspace/executeCommand",
                            {"command": command, "arguments": arguments})
        check_error(answer, INVALID_PARAMS)
    assert counts("counts after") == before
    # Valid ones still count (an id the server no longer remembers: the accept, no characters).
    for number, (command, arguments) in enumerate((
            ("fimlsp.accept", [424242]), ("fimlsp.partialAccept", [424243, 3]),
            ("fimlsp.partialAccept", [424244]), ("fimlsp.acceptNextEdit", [URI, 1])), 1):
        answer = server.ask(f"good {number}", "workspace/executeCommand",
                            {"command": command, "arguments": arguments})
        assert "result" in answer, answer
    accepted, partial, chars, edits = counts("counts at the end")
    assert (accepted, partial, chars, edits) == (before[0] + 1, before[1] + 2, before[2],
                                                  before[3] + 1)
