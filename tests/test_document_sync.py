"""The real server's copy of each document, over stdio, against the plain-Python reference of
test_documents.py: the issue's examples, then a hypothesis state machine that opens documents
and sends random didChange notifications (form feed, VT, U+0085, U+2028/9, CRLF, lone CR,
astral characters, NUL; positions past the end, inside a character, negative; several changes
per notification; whole-document replacements), comparing the server's text
(`fimlsp.documentText`) with the reference after every step, once per position encoding the
client can ask for in `general.positionEncodings`.

Negative positions are sent as raw JSON: lsprotocol (rightly) will not build them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from lsprotocol import types as t
from test_documents import ENCODINGS, change, edits, reference_apply, texts
from test_lsp import (
    WAIT_S,
    Client,
    close,
    server,  # noqa: F401  (the module's shared server, with its model loaded)
    spm_parts,
    uri_for,
    vscode_initialize,
    workspace,  # noqa: F401
)

pytestmark = pytest.mark.slow


def send_raw(client: Client, method: str, params: Any) -> None:
    """A notification framed by hand, so that it can carry what lsprotocol would refuse."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params}).encode()
    client.protocol.writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def open_raw(client: Client, uri: str, text: str) -> None:
    send_raw(client, "textDocument/didOpen", {"textDocument": {
        "uri": uri, "languageId": "python", "version": 1, "text": text}})


def change_raw(client: Client, uri: str, version: int, changes: list[dict[str, Any]]) -> None:
    send_raw(client, "textDocument/didChange", {
        "textDocument": {"uri": uri, "version": version}, "contentChanges": changes})


# -- the examples, as an editor would send them ------------------------------------------


@pytest.mark.parametrize(("name", "text", "changes"), [
    # pygls rewrote the range over str.splitlines() lines: "aZ\x0cbcdef\n".
    ("form feed.py", "a\x0cbcdef\n", [change((0, 5), (0, 5), "Z")]),
    ("separators.js", "a\u2028b\x85c\x0bd\x1ce\nf", [change((0, 7), (1, 1), "Z")]),
    # pygls clamped one too early: "abZc".
    ("past the end.py", "abc", [change((0, 99), (0, 99), "Z")]),
    # One change past the end of the document, between two valid ones: all three apply.
    ("one bad change.py", "x = 1\ny = 2\n",
     [change((0, 0), (0, 0), "A"), change((40, 0), (40, 9), "B"), change((1, 0), (1, 1), "C")]),
    # Negative positions: clamped as VS Code does, never the whole notification dropped.
    ("negative.py", "abc\ndef", [change((-1, 2), (0, 1), "A"), change((1, -4), (1, 1), "B")]),
])
async def test_edits_land_where_the_client_put_them(server: Client,  # noqa: F811
                                                    workspace: Path,  # noqa: F811
                                                    name: str, text: str,
                                                    changes: list[dict[str, Any]]) -> None:
    uri = uri_for(workspace, name)
    shown = len(server.shown)
    open_raw(server, uri, text)
    change_raw(server, uri, 2, changes)
    expected = reference_apply(text, changes, "utf-16")
    lines = expected.split("\n")  # these documents break lines with \n only
    end = t.Position(line=len(lines) - 1, character=len(lines[-1].encode("utf-16-le")) // 2)
    prompt = await server.prompt(uri, end)
    prefix, suffix = spm_parts(prompt)  # what the model sees, and what token healing backed off
    assert (prefix + prompt["healed"], suffix) == (expected, "")
    assert await server.command("fimlsp.documentText", uri) == expected
    assert len(server.shown) == shown, [m.message for m in server.shown[shown:]]  # no popups


async def test_document_text_of_a_document_never_opened_is_null(server: Client,  # noqa: F811
                                                                workspace: Path  # noqa: F811
                                                                ) -> None:
    assert await server.command("fimlsp.documentText", uri_for(workspace, "nope.py")) is None


# -- random edits through the real server ------------------------------------------------------


async def launch_with(model: Path, root: Path, encoding: str) -> Client:
    """The server, initialized by a client that offers only `encoding` for positions."""
    client = Client()
    await client.start_io(sys.executable, "-m", "fimlsp", "serve", "--model", str(model))
    client.keep_stderr()
    params = vscode_initialize(root, {}, os.getpid())
    params.capabilities.general = t.GeneralClientCapabilities(
        position_encodings=[t.PositionEncodingKind(encoding)])
    try:
        client.result = await client.ask(client.initialize_async(params))
    except Exception:
        await close(client)
        raise
    client.initialized(t.InitializedParams())
    return client


class Session:
    """One real server, driven from synchronous code (hypothesis's state machines are
    synchronous) through an event loop on a thread of its own."""

    def __init__(self, model: Path, root: Path, encoding: str) -> None:
        self.encoding, self.root = encoding, root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lsp-client",
                                       daemon=True)
        self.thread.start()
        self.client = self.run(launch_with(model, root, encoding))

    def run(self, work: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(WAIT_S)

    def send(self, method: str, params: Any) -> None:
        async def write() -> None:
            send_raw(self.client, method, params)

        self.run(write())

    def text(self, uri: str) -> str | None:
        return self.run(self.client.command("fimlsp.documentText", uri))

    def close(self) -> None:
        self.run(close(self.client))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_S)
        self.loop.close()


class DocumentSyncMachine(RuleBasedStateMachine):
    """One document per run: opened, edited at random, compared after every notification."""

    session: Session
    names = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.uri = uri_for(self.session.root, f"doc {next(self.names)}.py")
        self.text = ""
        self.version = 1

    def _send(self, changes: list[dict[str, Any]]) -> None:
        self.version += 1
        self.session.send("textDocument/didChange", {
            "textDocument": {"uri": self.uri, "version": self.version},
            "contentChanges": changes})
        self.text = reference_apply(self.text, changes, self.session.encoding)

    @initialize(text=texts)
    def open(self, text: str) -> None:
        self.session.send("textDocument/didOpen", {"textDocument": {
            "uri": self.uri, "languageId": "python", "version": 1, "text": text}})
        self.text = text

    @rule(data=st.data())
    def edit(self, data: st.DataObject) -> None:
        """1-4 changes in one notification, each against the text the previous one left."""
        self._send(data.draw(edits(self.text, self.session.encoding)))

    @rule(text=texts, data=st.data())
    def replace_then_edit(self, text: str, data: st.DataObject) -> None:
        """A whole-document change, then ranged ones, in one notification."""
        self._send([{"text": text}, *data.draw(edits(text, self.session.encoding))])

    @invariant()
    def server_has_the_same_text(self) -> None:
        assert self.session.text(self.uri) == self.text

    def teardown(self) -> None:
        self.session.send("textDocument/didClose", {"textDocument": {"uri": self.uri}})


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_random_edits_keep_the_server_in_step(tiny_model: Path,
                                              tmp_path_factory: pytest.TempPathFactory,
                                              encoding: str) -> None:
    session = Session(tiny_model, tmp_path_factory.mktemp("sync"), encoding)
    try:
        negotiated = session.client.result.capabilities.position_encoding  # type: ignore[union-attr]
        assert getattr(negotiated, "value", negotiated) == encoding
        machine = type(f"Sync_{encoding.replace('-', '')}", (DocumentSyncMachine,),
                       {"session": session})
        run_state_machine_as_test(machine, settings=settings(
            max_examples=25, stateful_step_count=25, deadline=None,
            suppress_health_check=[HealthCheck.too_slow]))
        assert session.client.shown == [], [m.message for m in session.client.shown]
    finally:
        session.close()
