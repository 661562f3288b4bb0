"""A transparent tap on an LSP server's stdin, for the editor tests.

    python lsp_tap.py LOG -- COMMAND...

starts COMMAND with this process's stdout and stderr, copies stdin to it unchanged, and appends
one line per message the editor sends to LOG: the method, and for `workspace/executeCommand` the
command (`workspace/executeCommand fimlsp.stats`); and each message whole, one JSON a line, to
LOG.json (for the parameters a test checks: initializationOptions, URIs). LOG is created when
the server starts, its first line `<started> MS` saying when (Unix time in milliseconds), so a
test can tell whether and when an editor started a server and count what it asked for, without
trusting the editor's own log.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from typing import IO, Any


def describe(message: dict[str, Any]) -> str:
    method = str(message.get("method", "<response>"))
    if method == "workspace/executeCommand":
        method += f" {(message.get('params') or {}).get('command')}"
    return method


def pump(source: IO[bytes], sink: IO[bytes], log: IO[str], full: IO[str]) -> None:
    """Copies LSP frames (headers, blank line, body) from source to sink, logging each body."""
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
        body = source.read(length)
        sink.write(headers + body)
        sink.flush()
        try:
            message = json.loads(body)
            full.write(json.dumps(message) + "\n")
            full.flush()
            log.write(describe(message) + "\n")
        except ValueError:
            log.write("<not json>\n")
        log.flush()


def main() -> int:
    log_path, command = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    with open(log_path, "a", encoding="utf-8") as log, \
            open(log_path + ".json", "a", encoding="utf-8") as full:
        log.write(f"<started> {time.time() * 1000:.0f}\n")
        log.flush()
        child = subprocess.Popen(command, stdin=subprocess.PIPE)
        signal.signal(signal.SIGTERM, lambda *_: child.terminate())
        assert child.stdin is not None
        with contextlib.suppress(OSError):  # the editor or the server went away
            pump(sys.stdin.buffer, child.stdin, log, full)
        with contextlib.suppress(OSError):
            child.stdin.close()
        return child.wait()


if __name__ == "__main__":
    sys.exit(main())
