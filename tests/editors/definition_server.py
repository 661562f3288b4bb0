"""A stand-in for a language's own language server (pyright, gopls, ...) beside fimlsp in the
editor tests: it answers `textDocument/definition` for a few known names, so the test knows what
the plugin must send on with `fimlsp.context`. A real server would need a language toolchain the
tests cannot pin; this one is a real process speaking LSP over stdio all the same.

    python definition_server.py DEFINITIONS.json LOG.jsonl

DEFINITIONS.json maps a name to `{"uri": ..., "line": ...}` (a Location is answered) or to
`"never"` (the request is never answered: a slow server). The name is read from the server's
own copy of the document (full sync) at the requested position, counted in UTF-16 code units,
so a client that sends a position in other units asks about the wrong word. Each definition
request is appended to LOG.jsonl as `{"name", "position"}`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, BinaryIO

_WORD = re.compile(r"[A-Za-z_$][\w$]*")


def read_message(stream: BinaryIO) -> dict[str, Any] | None:
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("ascii").partition(":")
        if name.lower() == "content-length":
            length = int(value.strip())
    if length is None:
        return None
    return json.loads(stream.read(length))


def write_message(stream: BinaryIO, message: dict[str, Any]) -> None:
    body = json.dumps(message).encode("utf-8")
    stream.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    stream.flush()


def word_at(text: str, line: int, character: int) -> str | None:
    """The identifier at an LSP position (UTF-16 units) of `text`."""
    lines = text.split("\n")
    if not 0 <= line < len(lines):
        return None
    row = lines[line]
    encoded = row.encode("utf-16-le")
    if character * 2 > len(encoded):
        return None
    column = len(encoded[:character * 2].decode("utf-16-le", errors="replace"))
    for match in _WORD.finditer(row):
        if match.start() <= column < match.end():
            return match.group(0)
    return None


def main(argv: list[str]) -> int:
    definitions = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    log = open(argv[2], "a", encoding="utf-8")  # noqa: SIM115 (open for the process's life)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    documents: dict[str, str] = {}
    while True:
        message = read_message(stdin)
        if message is None:
            return 0
        method, params = message.get("method"), message.get("params") or {}
        if method == "initialize":
            write_message(stdout, {"jsonrpc": "2.0", "id": message["id"], "result": {
                "capabilities": {"definitionProvider": True, "textDocumentSync": 1},
                "serverInfo": {"name": "definition-standin"}}})
        elif method == "textDocument/didOpen":
            document = params["textDocument"]
            documents[document["uri"]] = document["text"]
        elif method == "textDocument/didChange":
            changes = params["contentChanges"]
            if changes:
                documents[params["textDocument"]["uri"]] = changes[-1]["text"]
        elif method == "textDocument/definition":
            position = params["position"]
            name = word_at(documents.get(params["textDocument"]["uri"], ""), position["line"],
                           position["character"])
            log.write(json.dumps({"name": name, "position": position}) + "\n")
            log.flush()
            found = definitions.get(name) if name else None
            if found == "never":
                continue
            result = None if found is None else {"uri": found["uri"], "range": {
                "start": {"line": found["line"], "character": 0},
                "end": {"line": found["line"], "character": 1}}}
            write_message(stdout, {"jsonrpc": "2.0", "id": message["id"], "result": result})
        elif method == "shutdown":
            write_message(stdout, {"jsonrpc": "2.0", "id": message["id"], "result": None})
        elif method == "exit":
            return 0
        elif "id" in message:
            write_message(stdout, {"jsonrpc": "2.0", "id": message["id"], "error": {
                "code": -32601, "message": f"{method} not handled"}})


if __name__ == "__main__":
    sys.exit(main(sys.argv))
