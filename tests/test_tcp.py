"""`fimlsp serve --tcp` and `--socket` as a stranger on the same machine would try them.

A raw JSON-RPC client over real sockets (the pygls client would hide what the server writes to a
connection). Access control: the TCP token file is 0600 and a connection that does not send the
token in `initialize` gets one error and is closed, whatever it sends; while a client is served a
second connection is refused and never sees a byte of the first client's session; binding beyond
loopback needs --allow-remote; the Unix socket is owner-only; with --allow-multiple-clients each
connection is its own session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

WAIT_S = 120.0  # bound on one wait; never asserted
UNAUTHORIZED = -32001
SECRET = "API_KEY = 'first-clients-secret'\n"


class Connection:
    """One raw JSON-RPC connection: frames out, frames in, nothing interpreted."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.received: list[dict[str, Any]] = []  # everything, notifications included
        self._ids = 0

    @classmethod
    async def tcp(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    @classmethod
    async def unix(cls, path: Path) -> Connection:
        return cls(*await asyncio.open_unix_connection(str(path)))

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def receive(self) -> dict[str, Any] | None:
        """The next message, or None when the server closed the connection."""
        async def read() -> dict[str, Any] | None:
            length = None
            while True:
                line = await self.reader.readline()
                if not line:
                    return None
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            assert length is not None
            return json.loads(await self.reader.readexactly(length))

        message = await asyncio.wait_for(read(), WAIT_S)
        if message is not None:
            self.received.append(message)
        return message

    async def request(self, method: str, params: Any = None) -> dict[str, Any] | None:
        """Sends a request; returns its response (None if the connection closed first)."""
        self._ids += 1
        request_id = self._ids
        self.send({"id": request_id, "method": method, "params": params})
        while (message := await self.receive()) is not None:
            if message.get("id") == request_id and "method" not in message:
                return message
            if "method" in message and "id" in message:  # a request from the server
                self.send({"id": message["id"], "result": None})
        return None

    async def initialize(self, token: str | None = None, **options: Any
                         ) -> dict[str, Any] | None:
        if token is not None:
            options["token"] = token
        return await self.request("initialize", {"processId": None, "rootUri": None,
                                                 "capabilities": {},
                                                 "initializationOptions": options})

    def open(self, uri: str, text: str) -> None:
        self.send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "python", "version": 1, "text": text}}})

    async def prompt(self, uri: str) -> dict[str, Any] | None:
        return await self.request("workspace/executeCommand", {
            "command": "fimlsp.prompt", "arguments": [uri, {"line": 1, "character": 0}]})

    async def closed_by_server(self) -> bool:
        """Reads until the server closes the connection; True if it does (bounded)."""
        with contextlib.suppress(ConnectionError):
            while await self.receive() is not None:
                pass
        return True

    def close(self) -> None:
        self.writer.close()


class Server:
    """`fimlsp serve` in a subprocess; its stderr is kept."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stderr = ""
        self._drain: asyncio.Task[None] | None = None

    async def wait_line(self, pattern: str) -> re.Match[str]:
        assert self.process.stderr is not None
        while (match := re.search(pattern, self.stderr)) is None:
            line = await asyncio.wait_for(self.process.stderr.readline(), WAIT_S)
            assert line, f"server exited before {pattern!r}:\n{self.stderr}"
            self.stderr += line.decode(errors="replace")
        return match

    def drain(self) -> None:
        async def read() -> None:
            assert self.process.stderr is not None
            while line := await self.process.stderr.readline():
                self.stderr += line.decode(errors="replace")

        self._drain = asyncio.create_task(read())

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        if self._drain is not None:
            await self._drain


@contextlib.asynccontextmanager
async def serving(*args: str) -> AsyncIterator[Server]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fimlsp", "serve", *args, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = Server(process)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return tmp_path / "run" / "fimlsp.token"


async def test_only_the_token_holder_is_served_and_nobody_else_sees_its_session(
        tiny_model: Path, tmp_path: Path, token_file: Path) -> None:
    async with serving("--tcp", "--port", "0", "--token-file", str(token_file),
                       "--model", str(tiny_model)) as server:
        port = int((await server.wait_line(r"listening on 127\.0\.0\.1:(\d+)")).group(1))
        server.drain()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32

        # Strangers: whatever comes first, one error (for a request) and the door closes.
        strangers: list[Connection] = []
        for first in ("prompt", "no token", "wrong token", "notification", "garbage"):
            stranger = await Connection.tcp(port)
            strangers.append(stranger)
            if first == "prompt":
                answer = await stranger.prompt("file:///x.py")
            elif first == "notification":
                stranger.open("file:///x.py", "x = 1\n")
                answer = None
            elif first == "garbage":
                stranger.writer.write(b"Content-Length: 5\r\n\r\n[1,2]")
                answer = None
            else:
                answer = await stranger.initialize("not-the-token" if first == "wrong token"
                                                   else None)
            if answer is not None:
                assert answer["error"]["code"] == UNAUTHORIZED, answer
                assert "result" not in answer
            assert await stranger.closed_by_server(), first

        # The client with the token.
        client = await Connection.tcp(port)
        answer = await client.initialize(token)
        assert answer is not None and "capabilities" in answer["result"], answer
        client.send({"method": "initialized", "params": {}})
        client.open("file:///secret.py", SECRET)
        prompt = await client.prompt("file:///secret.py")
        assert prompt is not None and "first-clients-secret" in prompt["result"]["text"], prompt

        # While it is served: a second connection, token or not, is refused and sees nothing.
        for token_shown in (token, None):
            second = await Connection.tcp(port)
            strangers.append(second)
            if token_shown:
                answer = await second.initialize(token_shown)
                assert answer is not None and answer["error"]["code"] == UNAUTHORIZED
                assert "another client" in answer["error"]["message"], answer
            else:
                answer = await second.prompt("file:///secret.py")
                assert answer is not None and answer["error"]["code"] == UNAUTHORIZED
            assert await second.closed_by_server()

        # The first client is still served, and got nothing meant for the others.
        stats = await client.request("workspace/executeCommand", {"command": "fimlsp.stats"})
        assert stats is not None and "requests" in stats["result"], stats
        responses = [m for m in client.received if "method" not in m]
        assert [m["id"] for m in responses] == [1, 2, 3], client.received  # its own, in order
        for stranger in strangers:
            assert all("secret" not in json.dumps(m) for m in stranger.received), stranger.received
        assert token not in server.stderr  # the token is never logged

        answer = await client.request("shutdown")
        assert answer is not None and answer.get("result") is None and "error" not in answer
        client.send({"method": "exit"})
        assert await asyncio.wait_for(server.process.wait(), WAIT_S) == 0, server.stderr
    assert not token_file.exists()  # removed on the way out


async def test_binding_beyond_loopback_needs_allow_remote(tiny_model: Path,
                                                          token_file: Path) -> None:
    async with serving("--tcp", "--host", "0.0.0.0", "--port", "0",
                       "--token-file", str(token_file), "--model", str(tiny_model)) as server:
        assert await asyncio.wait_for(server.process.wait(), WAIT_S) == 2
        assert server.process.stderr is not None
        stderr = (await server.process.stderr.read()).decode()
        assert "--allow-remote" in stderr, stderr
    async with serving("--tcp", "--host", "0.0.0.0", "--port", "0", "--allow-remote",
                       "--token-file", str(token_file), "--model", str(tiny_model)) as server:
        warning = await server.wait_line(r"WARNING.*reachable from other machines.*")
        assert "token" in warning.group(0)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


async def test_unix_socket_is_owner_only(tiny_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "fimlsp.sock"
    async with serving("--socket", str(path), "--model", str(tiny_model)) as server:
        await server.wait_line(r"listening on .*fimlsp\.sock")
        server.drain()
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        client = await Connection.unix(path)
        answer = await client.initialize()  # the file permission is the access control
        assert answer is not None and "result" in answer, answer
        client.open("file:///a.py", "alpha = 1\n")
        prompt = await client.prompt("file:///a.py")
        assert prompt is not None and "alpha" in prompt["result"]["text"], prompt
        second = await Connection.unix(path)
        answer = await second.initialize()
        assert answer is not None and "another client" in answer["error"]["message"], answer
        client.close()  # its client gone, the server ends, as with stdio
        assert await asyncio.wait_for(server.process.wait(), WAIT_S) == 0, server.stderr
    assert not path.exists()


async def test_multiple_clients_each_get_their_own_session(tiny_model: Path,
                                                           token_file: Path) -> None:
    async with serving("--tcp", "--port", "0", "--token-file", str(token_file),
                       "--allow-multiple-clients", "--model", str(tiny_model)) as server:
        port = int((await server.wait_line(r"listening on 127\.0\.0\.1:(\d+)")).group(1))
        server.drain()
        token = token_file.read_text().strip()
        first, second = await Connection.tcp(port), await Connection.tcp(port)
        for client in (first, second):
            answer = await client.initialize(token)
            assert answer is not None and "result" in answer, answer
        first.open("file:///same.py", SECRET)
        second.open("file:///same.py", "other = 2\n")
        mine = await first.prompt("file:///same.py")
        theirs = await second.prompt("file:///same.py")
        assert mine is not None and "first-clients-secret" in mine["result"]["text"]
        assert theirs is not None and "other = 2" in theirs["result"]["text"]
        assert all("secret" not in json.dumps(m) for m in second.received), second.received
        # One client's exit ends its session only.
        assert (await first.request("shutdown")) is not None
        first.send({"method": "exit"})
        assert await first.closed_by_server()
        stats = await second.request("workspace/executeCommand", {"command": "fimlsp.stats"})
        assert stats is not None and "result" in stats, stats
        assert server.process.returncode is None
        assert os.path.exists(token_file)


async def test_strangers_are_bounded_and_the_client_gets_the_answers_stdio_gives(
        tiny_model: Path, token_file: Path) -> None:
    """Before the token: a size limit and a cap on waiting connections, enforced by the same
    framing decoder as stdio; after it: the same answers as on stdio, no traceback."""
    from fimlsp.lsp.transport import MAX_PENDING

    async with serving("--tcp", "--port", "0", "--token-file", str(token_file),
                       "--model", str(tiny_model)) as server:
        port = int((await server.wait_line(r"listening on 127\.0\.0\.1:(\d+)")).group(1))
        server.drain()
        token = token_file.read_text().strip()

        # 1 GiB announced by a stranger: refused on its size, never buffered.
        big = await Connection.tcp(port)
        big.writer.write(b"Content-Length: 1073741824\r\n\r\n" + b"x" * (1 << 20))
        assert await big.closed_by_server()

        # Strangers that connect and say nothing: the oldest make room for newer ones.
        idle = [await Connection.tcp(port) for _ in range(MAX_PENDING + 3)]
        for stranger in idle[:3]:
            assert await stranger.closed_by_server()

        client = await Connection.tcp(port)
        answer = await client.initialize(token)
        assert answer is not None and "capabilities" in answer["result"], answer
        client.send({"method": "initialized", "params": {}})

        # A header line far over any limit is skipped, as on stdio; the next request is served.
        client.writer.write(b"X-Padding: " + b"a" * 70_000 + b"\r\n")
        stats = await client.request("workspace/executeCommand", {"command": "fimlsp.stats"})
        assert stats is not None and "requests" in stats["result"], stats

        # JSON nested 3,000 deep: -32700 with id null, as on stdio.
        body = b"[" * 3000 + b"]" * 3000
        client.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        while (message := await client.receive()) is not None:
            if "method" not in message and message.get("id") is None:
                break
        assert message is not None and message["error"]["code"] == -32700, message
        stats = await client.request("workspace/executeCommand", {"command": "fimlsp.stats"})
        assert stats is not None and "requests" in stats["result"], stats

        for stranger in (big, *idle):
            assert stranger.received == []  # not a byte of the session
        assert "a 1073741824-byte message before initialize" in server.stderr, server.stderr
        assert "too many connections waiting" in server.stderr, server.stderr
        assert "Traceback" not in server.stderr, server.stderr
        client.close()
