"""A transparent tap on an LSP server's stdin, for the editor tests.

    python lsp_tap.py LOG -- COMMAND...

starts COMMAND with this process's stdout and stderr, copies stdin to it unchanged, and appends
one line per message the editor sends to LOG: the method, and for `workspace/executeCommand` the
command (`workspace/executeCommand fimlsp.stats`); and each message whole, one JSON a line, to
LOG.json (for the parameters a test checks: initializationOptions, URIs). LOG is created when
the server starts, its first line `<started> MS` saying when (Unix time in milliseconds), so a
test can tell whether and when an editor started a server and count what it asked for, without
trusting the editor's own log.

    python lsp_tap.py LOG --inline-edits SCRIPT -- COMMAND...

also reads what the server answers and replaces its answers to `textDocument/copilotInlineEdit`
(next edits) as SCRIPT (a JSON list) says: a tiny random-weight model's rewrite is meaningless,
and no trained next-edit model runs here, so the VS Code test needs known edits to check how the
extension draws and applies them. The server's own answer is still logged (LOG.json, `"tap":
"answer"`). Rules are taken in order: an answer to a request whose `context.triggerKind` is the
first unused rule's `trigger` (1 invoked, 2 automatic) gets its `edits` ({range, text}, for the
version asked about) and uses it up (a rule with `at` only at that position); any other answer
gets `{edits: []}`. A rule with `"hold":
true` keeps its answer back (LOG: `<held copilotInlineEdit>`) until the editor's next didChange
of that document has been passed on: an answer that arrives after the user typed on.

    python lsp_tap.py LOG --answers -- COMMAND...

also reads what the server answers, passes it on unchanged, and logs each answer to a
`textDocument/inlineCompletion` request to LOG.json (`{"tap": "inline", "id", "asked",
"answer"}`), and a line `<answered inlineCompletion ID N>` (N items) to LOG: the cycling test
needs to know which items the server sent, to tell the suggestion VS Code shows after
"show next" from the first one.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

INLINE_EDIT = "textDocument/copilotInlineEdit"
INLINE_COMPLETION = "textDocument/inlineCompletion"


def describe(message: dict[str, Any]) -> str:
    method = str(message.get("method", "<response>"))
    if method == "workspace/executeCommand":
        method += f" {(message.get('params') or {}).get('command')}"
    return method


def frames(source: IO[bytes]) -> Any:
    """LSP frames (headers, blank line, body) of a stream: (headers, body) pairs."""
    while True:
        headers = b""
        while not headers.endswith(b"\r\n\r\n"):
            byte = source.read(1)
            if not byte:
                return
            headers += byte
        length = 0
        for line in headers.decode("ascii", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        yield headers, source.read(length)


def pump(source: IO[bytes], sink: IO[bytes], log: IO[str], full: IO[str],
         script: Script | None = None) -> None:
    """Copies LSP frames from source to sink, logging each body."""
    for headers, body in frames(source):
        try:
            message = json.loads(body)
        except ValueError:
            message = None
        if script is not None and isinstance(message, dict):
            script.asking(message)  # before the server can answer it
        sink.write(headers + body)  # the only writer of the server's stdin
        sink.flush()
        if message is None:
            log.write("<not json>\n")
            log.flush()
            continue
        with Script.log_lock:
            full.write(json.dumps(message) + "\n")
            full.flush()
            log.write(describe(message) + "\n")
            log.flush()
        if script is not None:
            script.sent(message)


class Script:
    """Scripted next-edit answers (see the module's docstring)."""

    out_lock = threading.Lock()  # the editor's stdin: whole frames from either thread
    log_lock = threading.Lock()

    def __init__(self, path: str | None, editor: IO[bytes], log: IO[str], full: IO[str]) -> None:
        self.rules: list[dict[str, Any]] = []
        self.scripted = path is not None  # else every answer passes unchanged (--answers)
        if path is not None:
            with open(path, encoding="utf-8") as f:
                self.rules = json.load(f)
        self.editor, self.log, self.full = editor, log, full
        self.asked: dict[Any, dict[str, Any]] = {}  # request id -> params
        self.inline: dict[Any, dict[str, Any]] = {}  # inlineCompletion request id -> params
        self.held: list[tuple[str, dict[str, Any]]] = []  # (uri, answer)
        self.lock = threading.Lock()

    def asking(self, message: dict[str, Any]) -> None:
        """A message from the editor, about to be passed on: the requests whose answers are
        replaced or logged."""
        if message.get("method") == INLINE_EDIT and "id" in message and self.scripted:
            with self.lock:
                self.asked[message["id"]] = message.get("params") or {}
        elif message.get("method") == INLINE_COMPLETION and "id" in message:
            with self.lock:
                self.inline[message["id"]] = message.get("params") or {}

    def sent(self, message: dict[str, Any]) -> None:
        """A message from the editor, already passed on to the server."""
        if message.get("method") == "textDocument/didChange":
            uri = message["params"]["textDocument"]["uri"]
            with self.lock:
                release = [answer for held_uri, answer in self.held if held_uri == uri]
                self.held = [(u, a) for u, a in self.held if u != uri]
            for answer in release:
                self.write(answer)

    def write(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode("utf-8")
        with Script.out_lock:
            self.editor.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.editor.flush()

    def answered(self, message: dict[str, Any]) -> None:
        """A message from the server: passed on, or replaced as the rules say."""
        with self.lock:
            params = self.asked.pop(message.get("id"), None) if "method" not in message else None
            inline = self.inline.pop(message.get("id"), None) if "method" not in message else None
        if inline is not None:
            result = message.get("result") or {}
            items = result if isinstance(result, list) else result.get("items", [])
            with Script.log_lock:
                self.full.write(json.dumps({"tap": "inline", "id": message["id"],
                                            "asked": inline, "answer": result}) + "\n")
                self.full.flush()
                self.log.write(f"<answered inlineCompletion {message['id']} {len(items)}>\n")
                self.log.flush()
        if params is None or "result" not in message:
            self.write(message)
            return
        document = params["textDocument"]
        trigger = (params.get("context") or {}).get("triggerKind")
        with self.lock:
            rule = next((r for r in self.rules if not r.get("used")), None)
            if rule is not None and rule.get("trigger") == trigger and \
                    rule.get("at", params.get("position")) == params.get("position"):
                rule["used"] = True
            else:
                rule = None
        edits = [{"range": e["range"], "text": e["text"],
                  "textDocument": {"uri": document["uri"], "version": document["version"]},
                  "command": {"title": "accepted", "command": "fimlsp.acceptNextEdit",
                              "arguments": [document["uri"], document["version"]]}}
                 for e in (rule or {}).get("edits", [])]
        answer = {"jsonrpc": "2.0", "id": message["id"], "result": {"edits": edits}}
        hold = bool(rule and rule.get("hold"))
        with Script.log_lock:
            self.full.write(json.dumps({"tap": "answer", "asked": params,
                                        "real": message["result"],
                                        "sent": answer["result"]}) + "\n")
            self.full.flush()
            self.log.write(f"<{'held' if hold else 'answered'} copilotInlineEdit "
                           f"{len(edits)}>\n")
            self.log.flush()
        if hold:
            with self.lock:
                self.held.append((document["uri"], answer))
        else:
            self.write(answer)

    def pump_answers(self, source: IO[bytes]) -> None:
        for _headers, body in frames(source):
            try:
                message = json.loads(body)
            except ValueError:
                with Script.out_lock:
                    self.editor.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
                    self.editor.flush()
                continue
            self.answered(message)


def main() -> int:
    log_path, command = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    options = sys.argv[2:sys.argv.index("--")]
    script_path = options[options.index("--inline-edits") + 1] \
        if "--inline-edits" in options else None
    answers = script_path is not None or "--answers" in options  # the server's stdout read
    with open(log_path, "a", encoding="utf-8") as log, \
            open(log_path + ".json", "a", encoding="utf-8") as full:
        log.write(f"<started> {time.time() * 1000:.0f}\n")
        log.flush()
        child = subprocess.Popen(command, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE if answers else None)
        signal.signal(signal.SIGTERM, lambda *_: child.terminate())
        assert child.stdin is not None
        script = None
        if answers:
            assert child.stdout is not None
            script = Script(script_path, sys.stdout.buffer, log, full)
            answers = threading.Thread(target=script.pump_answers, args=(child.stdout,),
                                       daemon=True)
            answers.start()
        with contextlib.suppress(OSError):  # the editor or the server went away
            pump(sys.stdin.buffer, child.stdin, log, full, script)
        with contextlib.suppress(OSError):
            child.stdin.close()
        return child.wait()


if __name__ == "__main__":
    sys.exit(main())
