"""A seeded raw-protocol fuzz: thousands of generated messages into the real server on stdio.

Valid and invalid messages are mixed: random and known methods, params of the wrong types and
shapes, nulls, missing fields, huge and negative numbers, non-objects, batches, bodies that are
not JSON, notifications sent as requests and the other way round, answers to nothing, cancels.
Each generated message knows what it deserves, so the test checks, for the whole run:

- every request id is answered exactly once, with a result or an error code it may get
  (a request that was also cancelled may get -32800 instead);
- every answer without an id (-32700, -32600) was deserved, in number and code;
- notifications get nothing; no answer carries a traceback or `data`; no Error popup;
- the server still answers normal requests afterwards, and `shutdown` + `exit` ends it with 0.

The run uses the tiny random-weight model, so valid completions really run the model. Writing
and reading are pipelined (a reader thread drains stdout while the test writes), so the run costs
what the server needs to handle the messages, not round trips.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from rawlsp import (
    MINIMAL_INITIALIZE,
    MISSING,
    WAIT_S,
    RawServer,
    encode,
    frame,
    key,
    notification,
    request,
)

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("FIMLSP_FUZZ_SEED", "9"))
MESSAGES = int(os.environ.get("FIMLSP_FUZZ_MESSAGES", "6000"))
RESULT = "result"
PARSE, INVALID_REQUEST, NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
CANCELLED, NOT_INITIALIZED = -32800, -32002

REQUEST_METHODS = ["textDocument/completion", "textDocument/inlineCompletion",
                   "workspace/executeCommand"]
NOTIFICATION_METHODS = ["textDocument/didOpen", "textDocument/didChange",
                        "textDocument/didClose", "$/cancelRequest", "$/setTrace", "initialized",
                        "workspace/didChangeWorkspaceFolders", "window/workDoneProgress/cancel"]
UNKNOWN_METHODS = ["textDocument/hover", "textDocument/definition", "fimlsp/unknown", "$/x",
                   "", "/", "textDocument/completion/", "TEXTDOCUMENT/COMPLETION", "é/ü😀",
                   "workspace/executeCommand ", "completionItem/resolve", "textDocument/foo"]
TEXTS = ["", "x = 1\n", "def f(a, b):\n    return a + b\n\n",
         "# 😀 emoji\r\nprint('你好')\r\n", "a\rb\rc", "class A:\n    pass\n" * 20,
         "\t\tindented\n\n\n", "no newline at the end"]
BAD_UINTS: list[Any] = ["4", 4.5, -1, -(2**40), 2**31, 10**30, True, False, None, [], {}, "",
                        1e300]
BAD_STRINGS: list[Any] = [5, 0, -1, 1.5, True, None, [], {}, ["file:///x"], {"uri": "x"}]
BAD_OBJECTS: list[Any] = [None, "x", 5, 1.5, True, [], [{}]]
JUNK: list[Any] = [None, True, 0, -7, 2**63, 10**30, 1.5, "", "x", "😀" * 3, [], [1, [2]], {},
                   {"a": {"b": None}}]
GARBAGE_BODIES = [b"", b"{", b"}", b"[", b"nul", b"tru", b"{\"a\":}", b"{'a': 1}",
                  b"{\"a\":1,}", b"[1,2,]", b"NaN", b"-Infinity", b"\xff\xfe\x00{}",
                  b"{\"a\":\"\xc3\x28\"}", b"\"unterminated", b"{\"a\":1}}", b"01",
                  b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":NaN}"]


def accept_arguments_valid(command: str, arguments: list[Any]) -> bool:
    """`fimlsp.accept [id]`, `fimlsp.partialAccept [id, chars?]` (chars may be null): JSON
    integers, as the server declares them."""
    def integer(value: Any) -> bool:
        return type(value) is int

    if command == "fimlsp.accept":
        return len(arguments) == 1 and integer(arguments[0])
    return 1 <= len(arguments) <= 2 and integer(arguments[0]) and (
        len(arguments) == 1 or arguments[1] is None or integer(arguments[1]))


def is_json(body: bytes) -> bool:
    """The server's rule: UTF-8, strict JSON (no NaN/Infinity)."""

    def reject(_name: str) -> Any:
        raise ValueError

    try:
        json.loads(body.decode("utf-8"), parse_constant=reject)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return True


class Plan:
    """The messages to send and what each deserves."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.frames: list[bytes] = []
        self.expected: dict[tuple[str, Any], set[Any]] = {}  # request id → allowed outcomes
        self.null_codes: Counter[int] = Counter()  # answers with id null, by code
        self.docs: dict[str, str] = {}  # open documents: uri → text (full-text changes only)
        self.kinds: Counter[str] = Counter()
        self._next = 0

    # -- ids and bookkeeping -------------------------------------------------------------------

    def new_id(self) -> Any:
        self._next += 1
        n = self._next
        choice = n % 4
        if choice == 0:
            return n
        if choice == 1:
            return f"req-{n}"
        if choice == 2:
            return -n * 1_000_003  # negative and large integers are valid ids
        return f"{n}😀"

    def add(self, message: Any, kind: str) -> None:
        self.frames.append(encode(message))
        self.kinds[kind] += 1

    def ask(self, method: str, params: Any, outcomes: set[Any], kind: str) -> Any:
        msg_id = self.new_id()
        self.expected[key(msg_id)] = outcomes
        self.add(request(msg_id, method, params), kind)
        return msg_id

    def reject_null(self, message: Any, code: int, kind: str) -> None:
        self.null_codes[code] += 1
        self.add(message, kind)

    # -- building blocks ----------------------------------------------------------------------

    def uri(self) -> str:
        return f"file:///fuzz/doc{self.rng.randrange(40)}.py"

    def open_uri(self) -> str | None:
        return self.rng.choice(sorted(self.docs)) if self.docs else None

    def valid_position(self, text: str) -> dict[str, int]:
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        line = self.rng.randrange(len(lines))
        units = len(lines[line].encode("utf-16-le")) // 2
        character = self.rng.randint(0, units)
        # Never inside a surrogate pair: step back to the pair's start.
        prefix = lines[line].encode("utf-16-le")[:character * 2]
        if prefix and 0xD800 <= int.from_bytes(prefix[-2:], "little") <= 0xDBFF:
            character -= 1
        return {"line": line, "character": character}

    def completion_params(self, method: str, uri: str, position: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {"textDocument": {"uri": uri}, "position": position}
        if method == "textDocument/inlineCompletion":
            params["context"] = {"triggerKind": self.rng.choice([1, 2])}
        elif self.rng.random() < 0.5:
            params["context"] = {"triggerKind": 1}
        return params

    def mutate(self, params: dict[str, Any], method: str) -> dict[str, Any] | Any:
        """Params with one required part made invalid."""
        rng = self.rng
        targets = ["textDocument", "textDocument.uri", "position", "position.line",
                   "position.character"]
        if method == "textDocument/inlineCompletion":
            targets += ["context", "context.triggerKind"]
        target = rng.choice(targets)
        params = json.loads(json.dumps(params))
        *parents, leaf = target.split(".")
        holder = params
        for part in parents:
            holder = holder[part]
        if rng.random() < 0.15:
            del holder[leaf]
        elif leaf in ("line", "character"):
            holder[leaf] = rng.choice(BAD_UINTS)
        elif leaf == "uri":
            holder[leaf] = rng.choice(BAD_STRINGS)
        elif leaf == "triggerKind":
            holder[leaf] = rng.choice([0, 3, -1, "1", 1.0, True, None, [], 10**30])
        else:
            holder[leaf] = rng.choice(BAD_OBJECTS)
        return params

    # -- message kinds --------------------------------------------------------------------------

    def valid_completion(self) -> None:
        method = self.rng.choice(REQUEST_METHODS[:2])
        uri = self.open_uri()
        if uri is None or self.rng.random() < 0.2:  # a document never opened: an empty answer
            uri = f"file:///fuzz/never{self.rng.randrange(5)}.py"
            params = self.completion_params(method, uri, {"line": 0, "character": 0})
            self.ask(method, params, {RESULT}, "request: completion, unknown document")
            return
        params = self.completion_params(method, uri, self.valid_position(self.docs[uri]))
        self.ask(method, params, {RESULT}, "request: completion")

    def outside_completion(self) -> None:
        """Structurally valid, outside the document: an error today; clamping would answer."""
        uri = self.open_uri()
        if uri is None:
            return self.valid_completion()
        method = self.rng.choice(REQUEST_METHODS[:2])
        lines = len(self.docs[uri].splitlines()) + 1
        position = self.rng.choice([{"line": lines + self.rng.randrange(1, 1000), "character": 0},
                                    {"line": 0, "character": 10_000 + self.rng.randrange(99)},
                                    {"line": 2**31 - 1, "character": 2**31 - 1}])
        params = self.completion_params(method, uri, position)
        self.ask(method, params, {RESULT, INVALID_PARAMS}, "request: completion outside")

    def invalid_completion(self) -> None:
        method = self.rng.choice(REQUEST_METHODS[:2])
        uri = self.open_uri() or self.uri()
        valid = self.completion_params(method, uri, {"line": 0, "character": 0})
        roll = self.rng.random()
        if roll < 0.1:
            self.ask(method, None, {INVALID_PARAMS}, "request: params null")
        elif roll < 0.2:
            self.ask(method, MISSING, {INVALID_PARAMS}, "request: params missing")
        elif roll < 0.3:
            self.ask(method, self.rng.choice([[], [valid], "x", 5, True]), {INVALID_PARAMS},
                     "request: params not an object")
        else:
            self.ask(method, self.mutate(valid, method), {INVALID_PARAMS},
                     "request: params of wrong type or shape")

    def command(self) -> None:
        rng = self.rng
        uri = self.open_uri()
        roll = rng.random()
        if roll < 0.15 and uri is not None:
            position = self.valid_position(self.docs[uri])
            self.ask("workspace/executeCommand",
                     {"command": "fimlsp.prompt", "arguments": [uri, position]}, {RESULT},
                     "command: valid prompt")
        elif roll < 0.4:
            arguments = rng.choice([
                [], [uri or "file:///x"], [5, {"line": 0, "character": 0}],
                [uri or "file:///x", {"line": "0", "character": 0}],
                [uri or "file:///x", {"line": -1, "character": 0}],
                [uri or "file:///x", {"line": 0}], [uri or "file:///x", "0:0"],
                [uri or "file:///x", {"line": 0, "character": 0}, "extra"], [None, None]])
            params: Any = {"command": "fimlsp.prompt"}
            if arguments or rng.random() < 0.5:
                params["arguments"] = arguments
            self.ask("workspace/executeCommand", params, {INVALID_PARAMS}, "command: bad prompt")
        elif roll < 0.55:
            self.ask("workspace/executeCommand", {"command": "fimlsp.stats"}, {RESULT},
                     "command: stats")
        elif roll < 0.65:
            command = rng.choice(["fimlsp.accept", "fimlsp.partialAccept"])
            arguments = [rng.choice(JUNK) for _ in range(rng.randrange(3))]
            self.ask("workspace/executeCommand", {"command": command, "arguments": arguments},
                     {RESULT} if accept_arguments_valid(command, arguments) else
                     {INVALID_PARAMS}, "command: accept with any arguments")
        elif roll < 0.75:
            self.ask("workspace/executeCommand",
                     {"command": rng.choice(["fimlsp.nope", "", "FIMLSP.STATS", "😀"])},
                     {INVALID_PARAMS}, "command: unknown")
        else:
            params = rng.choice([MISSING, None, [], "fimlsp.stats", 5, {},
                                 {"command": 5}, {"command": None},
                                 {"command": "fimlsp.stats", "arguments": "ab"},
                                 {"command": "fimlsp.stats", "arguments": {"a": 1}},
                                 {"command": ["fimlsp.stats"]}])
            self.ask("workspace/executeCommand", params, {INVALID_PARAMS},
                     "command: bad executeCommand params")

    def unknown_request(self) -> None:
        params = self.rng.choice([MISSING, None, {}, [], 5, {"x": self.rng.choice(JUNK)}])
        self.ask(self.rng.choice(UNKNOWN_METHODS), params, {NOT_FOUND},
                 "request: unknown method")

    def notification_as_request(self) -> None:
        method = self.rng.choice([*NOTIFICATION_METHODS, "exit"])
        self.ask(method, self.rng.choice([MISSING, {}, {"textDocument": {"uri": self.uri()}}]),
                 {NOT_FOUND}, "request: a notification method with an id")

    def initialize_again(self) -> None:
        self.ask("initialize", MINIMAL_INITIALIZE, {INVALID_REQUEST}, "request: initialize again")

    def cancel(self) -> None:
        """Cancels a recent request: it may now be answered -32800 instead."""
        recent = list(self.expected)[-5:]
        if not recent:
            return
        kind, value = self.rng.choice(recent)
        # Only a request that reached a handler can be cancelled; one rejected on arrival keeps
        # its error (the server reads the cancel only after answering it).
        if RESULT in self.expected[(kind, value)]:
            self.expected[(kind, value)] = self.expected[(kind, value)] | {CANCELLED}
        self.add(notification("$/cancelRequest", {"id": value}), "notification: cancel")

    def valid_notification(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4 or not self.docs:
            uri, text = self.uri(), rng.choice(TEXTS)
            self.docs[uri] = text
            self.add(notification("textDocument/didOpen", {"textDocument": {
                "uri": uri, "languageId": "python", "version": 1, "text": text}}),
                "notification: didOpen")
        elif roll < 0.75:
            uri = self.open_uri()
            assert uri is not None
            text = rng.choice(TEXTS)
            self.docs[uri] = text
            self.add(notification("textDocument/didChange", {
                "textDocument": {"uri": uri, "version": rng.randrange(2, 10**6)},
                "contentChanges": [{"text": text}]}), "notification: didChange (full)")
        elif roll < 0.85:
            uri = self.open_uri()
            assert uri is not None
            del self.docs[uri]
            self.add(notification("textDocument/didClose", {"textDocument": {"uri": uri}}),
                     "notification: didClose")
        else:
            self.add(notification("$/setTrace", {"value": rng.choice(["off", "messages"])}),
                     "notification: setTrace")

    def invalid_notification(self) -> None:
        rng = self.rng
        method = rng.choice(NOTIFICATION_METHODS + REQUEST_METHODS + UNKNOWN_METHODS)
        params = rng.choice([MISSING, None, [], 5, "x", {}, {"textDocument": None},
                             {"textDocument": {"uri": rng.choice(BAD_STRINGS)}},
                             {"id": rng.choice([None, [], {}, 1.5])},
                             {"value": rng.choice(["loud", 1, None])},
                             {"textDocument": {"uri": self.uri(), "version": "1"},
                              "contentChanges": [{"text": 5}]}])
        if method in ("textDocument/didOpen", "textDocument/didChange", "textDocument/didClose"
                      ) and isinstance(params, dict) and params.get("textDocument") is not None:
            params = {"textDocument": {"uri": 5}}  # keep the documents we track untouched
        self.add(notification(method, params), "notification: invalid or unknown")

    def response_to_nothing(self) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.rng.randrange(10**6)}
        if self.rng.random() < 0.5:
            message["result"] = self.rng.choice(JUNK)
        else:
            message["error"] = self.rng.choice([{"code": -1, "message": "x"}, None, "x", {}])
        self.add(message, "response to nothing we asked")

    def envelope(self) -> None:
        rng = self.rng
        roll = rng.random()
        msg_id = self.new_id()
        base = {"id": msg_id, "method": "workspace/executeCommand",
                "params": {"command": "fimlsp.stats"}}
        if roll < 0.2:
            self.reject_null(rng.choice([5, "x", None, True, 1.5, "😀", 10**30]), INVALID_REQUEST,
                             "not an object")
        elif roll < 0.35:
            batch = [request(self.new_id(), "workspace/executeCommand",
                             {"command": "fimlsp.stats"}) for _ in range(rng.randrange(3))]
            self.reject_null(batch + [rng.choice(JUNK)] * rng.randrange(2), INVALID_REQUEST,
                             "batch")
        elif roll < 0.55:
            message = dict(base)
            if rng.random() < 0.5:
                message["jsonrpc"] = rng.choice(["1.0", "2", 2.0, 2, None, ""])
            self.expected[key(msg_id)] = {INVALID_REQUEST}
            self.add(message, "request without a valid jsonrpc")
        elif roll < 0.75:
            bad_id = rng.choice([None, 1.5, True, False, [], [1], {}, {"id": 1}])
            self.reject_null({**base, "jsonrpc": "2.0", "id": bad_id}, INVALID_REQUEST,
                             "request with an id of a bad type")
        elif roll < 0.9:
            self.expected[key(msg_id)] = {INVALID_REQUEST}
            self.add({**base, "jsonrpc": "2.0", "method": rng.choice([5, None, [], {}, True])},
                     "request with a method that is not a string")
        else:
            self.expected[key(msg_id)] = {INVALID_REQUEST}
            self.add({"jsonrpc": "2.0", "id": msg_id}, "id without method, result or error")

    def unparsable(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4:
            body = rng.choice(GARBAGE_BODIES)
        elif roll < 0.8:  # a valid message cut short
            whole = json.dumps(request(self.new_id(), "textDocument/completion",
                                       self.completion_params("textDocument/completion",
                                                              self.uri(), {"line": 1,
                                                                           "character": 2})))
            body = whole[:rng.randrange(len(whole) - 1)].encode()
        elif roll < 0.97:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        else:  # valid JSON, but nested deeper than any parser here recurses
            body = b"[" * 100_000 + b"]" * 100_000
        if is_json(body):
            return self.unparsable()
        self.null_codes[PARSE] += 1
        self.frames.append(frame(body))
        self.kinds["body that is not JSON"] += 1

    def build(self, count: int) -> None:
        # Documents to complete in, then a random mix.
        for _ in range(8):
            self.valid_notification()
        kinds = [(self.valid_completion, 14), (self.outside_completion, 4),
                 (self.invalid_completion, 16), (self.command, 14), (self.unknown_request, 6),
                 (self.notification_as_request, 4), (self.initialize_again, 1),
                 (self.cancel, 4), (self.valid_notification, 10),
                 (self.invalid_notification, 8), (self.response_to_nothing, 3),
                 (self.envelope, 8), (self.unparsable, 8)]
        makers, weights = zip(*kinds, strict=True)
        while len(self.frames) < count:
            self.rng.choices(makers, weights)[0]()


def outcome(answer: dict[str, Any]) -> Any:
    return answer["error"]["code"] if "error" in answer else RESULT


@pytest.mark.parametrize("transport", ["stdio", "tcp"])
def test_fuzz_every_request_answered_once_with_its_code(tiny_model: Path, capsys: Any,
                                                        tmp_path: Path, transport: str) -> None:
    """The same plan on both transports: TCP reads with the same decoder, after the token."""
    plan = Plan(SEED)
    plan.build(MESSAGES)
    with RawServer(str(tiny_model), tcp=transport == "tcp",
                   token_file=str(tmp_path / "token")) as server:
        server.initialize()
        # Valid completions in the fuzz run the real (tiny) model: wait for it to load.
        deadline = time.monotonic() + WAIT_S
        for n in itertools.count():
            state = server.ask(f"ready?{n}", "workspace/executeCommand",
                               {"command": "fimlsp.stats"})["result"]["state"]
            if state in ("ready", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # poll interval, not synchronisation
        for data in plan.frames:  # stdout is drained by the reader thread: no deadlock
            server.write(data)

        want = set(plan.expected)
        server.wait_for(lambda: len(server.answered) >= len(want) and want <= server.answered,
                        "answers to every request")

        # Afterwards: normal requests are still answered, by the model.
        uri = "file:///fuzz/after.py"
        server.send(notification("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "python", "version": 1,
            "text": "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    "}}))
        stats = server.ask("stats after", "workspace/executeCommand", {"command": "fimlsp.stats"})
        completion = server.ask("inline after", "textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": 5, "character": 4},
            "context": {"triggerKind": 1}})
        assert server.ask("bye", "shutdown")["result"] is None
        server.send(notification("exit"))
        assert server.wait_exit() == 0, server.tail()

    assert stats["result"]["state"] == "ready", stats
    assert stats["result"]["requests"] > 0, stats
    items = completion["result"]["items"]
    assert len(items) >= 1 and isinstance(items[0]["insertText"], str), completion  # + alternatives

    responses = [m for m in server.responses() if not (
        isinstance(m.get("id"), str) and (m["id"] == "init" or m["id"].startswith("ready?")))]
    counts = Counter(key(m.get("id")) for m in responses if m.get("id") is not None)
    twice = {k: n for k, n in counts.items() if n > 1}
    assert not twice, f"answered more than once: {list(twice)[:10]}"
    extra = set(counts) - set(plan.expected) - {key(i) for i in
                                                ("stats after", "inline after", "bye")}
    assert not extra, f"answers to ids nobody sent as a request: {list(extra)[:10]}"
    wrong = []
    for answer in responses:
        if answer.get("id") is None:
            continue
        allowed = plan.expected.get(key(answer["id"]), {RESULT})
        if outcome(answer) not in allowed:
            wrong.append((answer, allowed))
    assert not wrong, f"{len(wrong)} wrong answers, e.g. {wrong[:5]}"
    nulls = Counter(m["error"]["code"] for m in responses if m.get("id") is None)
    assert nulls == plan.null_codes, (nulls, plan.null_codes)
    for answer in responses:
        assert "data" not in answer.get("error", {}), answer
        assert "Traceback" not in json.dumps(answer), answer
    shown = [m for m in server.received if m.get("method") == "window/showMessage"]
    assert not [m for m in shown if m["params"]["type"] == 1], shown[:5]
    assert not server.garbage

    codes = Counter(outcome(m) for m in responses)
    requests = len(plan.expected)
    with capsys.disabled():
        print(f"\nfuzz seed {SEED}: {len(plan.frames)} messages, {requests} requests, "
              f"{len(responses)} answers ({len(responses) - sum(nulls.values())} with an id, "
              f"{sum(nulls.values())} with id null); by outcome: "
              + ", ".join(f"{k}: {v}" for k, v in sorted(codes.items(), key=str)))
